"""The rule every write a worker makes follows: it matches only while that attempt owns the job.

A conditional UPDATE (id, attempt, running) per job: a worker whose lease was taken over matches
nothing, writes nothing and gets `Fenced`. One job or a pack's N, the same statement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, select, tuple_, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ClauseElement

from db.models import Job
from db.states import Status


class Fenced(Exception):
    """This attempt no longer owns the job: its lease was taken over or the job ended."""

    def __init__(self, message: str, job_id: str | None = None):
        super().__init__(message)
        self.job_id = job_id  # which job (a pack's batched write names the member that lost it)


def owned(attempts: Mapping[str, int]) -> Any:
    """The rows these (job id -> attempt) still name: one (id, attempts) IN list, whose statement
    is compiled once for any number of jobs (an OR of one AND per job was built and compiled
    anew at every flush of a pack)."""
    return tuple_(Job.id, Job.attempts).in_(list(attempts.items()))


def lock_in_id_order(session: Session, attempts: Mapping[str, int]) -> None:
    """Several jobs' rows are locked in id order first, by every writer of several (no deadlock).
    By id alone: a row another attempt owns is locked too (and then refused by the fenced write)."""
    if len(attempts) > 1:
        session.execute(select(Job.id).where(Job.id.in_(sorted(attempts))).order_by(Job.id).with_for_update())


def fenced_update(session: Session, updates: Mapping[str, tuple[int, Mapping[str, Any]]]) -> None:
    """Update each job (id -> (attempt, values)) only while its attempt owns it: one statement per
    set of columns, run for every job that has them (an UPDATE a member made most of a 32-member
    pack's flush). A value may be an SQL expression of the row (releases + 1): it goes into the
    statement as is. Fenced (everything rolled back) names a job its attempt no longer owns."""
    attempts = {job_id: attempt for job_id, (attempt, _) in updates.items()}
    table = Job.__table__
    groups: dict[tuple[Any, ...], tuple[dict[str, ClauseElement], list[dict[str, Any]]]] = {}
    for job_id, (attempt, values) in sorted(updates.items()):
        expressions = {k: v for k, v in values.items() if isinstance(v, ClauseElement)}
        bound = {f"new_{k}": v for k, v in values.items() if k not in expressions}
        key = (tuple(bound), tuple((k, id(v)) for k, v in expressions.items()))
        groups.setdefault(key, (expressions, []))[1].append({"job": job_id, "attempt": attempt, **bound})
    if len(groups) > 1:  # one statement runs its jobs in id order: it locks them in that order itself
        lock_in_id_order(session, attempts)
    matched = 0
    for (columns, _), (expressions, params) in groups.items():
        statement = (update(table)
                     .where(table.c.id == bindparam("job"), table.c.attempts == bindparam("attempt"),
                            table.c.status == Status.RUNNING)
                     .values({**{c[4:]: bindparam(c, type_=table.c[c[4:]].type) for c in columns}, **expressions}))
        matched += session.execute(statement, params[0] if len(params) == 1 else params).rowcount
    if matched < len(updates):
        # read after the rollback: an update that ended a job (finish) made its own row look lost
        session.rollback()
        alive = set(session.scalars(select(Job.id).where(owned(attempts), Job.status == Status.RUNNING)))
        session.rollback()
        lost = (sorted(set(updates) - alive) or sorted(updates))[0]
        raise Fenced(f"job {lost}: attempt {attempts[lost]} no longer owns it", lost)
