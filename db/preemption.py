"""Preemption through exact resume: which running job makes way for a queued one, decided here.

When a queued job outranks a running one and no live worker serving its queue is free, the
lowest-priority running job of that queue (the youngest attempt among equals) is asked to stop
at its next epoch end: `jobs.preempt_requested_by` is set to the queued job's id. Its worker
reads the request with its lease (db.attempts.heartbeat), writes the epoch and the state to
resume from, and hands the job back (db.attempts.release: queued again, a `preempted` event
naming the queued job); the freed worker's claim then takes the queued job (db.schedule), and
the preempted job later resumes from its saved state, exactly, before fresh jobs of its priority.

Nothing thrashes: never for equal priority; never a job whose attempt started less than
`after_seconds` ago; at most one request on its way per queued job and per victim. A pack (the
trials one worker trains together) is one victim, preempted whole. Victims come from the queued
job's own queue. A request whose queued job was claimed, cancelled or deleted meanwhile is
dropped (and a worker ignores one whose job is no longer queued).

Every worker's reconciler runs `preempt`: on PostgreSQL one pass at a time (a transaction-scoped
advisory lock, tried, never waited for); SQLite's single writer serialises the conditional UPDATEs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, aliased

from db import schedule
from db import workers as db_workers
from db.models import Job, Tenant, utcnow
from db.states import Status

LOCK_KEY = 0x6E65746669745F70  # the advisory lock of the pass ("netfit_p")


@dataclass
class Unit:
    """What one worker trains: a job, or a pack's members (preempted together)."""

    owner: str
    queue: str
    priority: int
    started: datetime  # its youngest member's attempt start
    members: list[tuple[str, int]]  # (job id, attempt)
    asked: bool  # a request is already on its way


def clear_stale(session: Session) -> int:
    """Drop requests whose queued job no longer waits (claimed by a free worker, cancelled, deleted)."""
    named = aliased(Job)
    waits = exists().where(named.id == Job.preempt_requested_by, named.status == Status.QUEUED)
    return session.execute(update(Job).where(Job.status == Status.RUNNING, Job.preempt_requested_by.is_not(None), ~waits)
                           .values(preempt_requested_by=None).execution_options(synchronize_session=False)).rowcount or 0


def running_units(session: Session, now: datetime) -> list[Unit]:
    """The running work whose lease is alive, one unit per worker (lease owner)."""
    units: dict[str, Unit] = {}
    for job_id, queue, priority, owner, attempt, started, first, asked in session.execute(
            select(Job.id, Job.queue, Job.priority, Job.lease_owner, Job.attempts, Job.attempt_started_at,
                   Job.started_at, Job.preempt_requested_by)
            .where(Job.status == Status.RUNNING, Job.lease_expires_at > now).order_by(Job.id)):
        started = started or first or now  # a job claimed before migration 0006: its first start
        unit = units.setdefault(owner, Unit(owner, queue, priority, started, [], False))
        unit.priority = max(unit.priority, priority)
        unit.started = max(unit.started, started)
        unit.members.append((job_id, attempt))
        unit.asked = unit.asked or asked is not None
    return list(units.values())


def outranking(session: Session, queue: str, above: int, limit: int) -> list[tuple[str, int]]:
    """The queue's claimable queued jobs of priority above `above`, in the claim's order, as
    (id, priority); a tenant at its max_running is skipped (a freed worker would not take its job)."""
    running = (select(Job.tenant.label("tenant"), func.count().label("n")).where(Job.status == Status.RUNNING)
               .group_by(Job.tenant).subquery("running_work"))
    work = func.coalesce(running.c.n, 0)
    return [tuple(row) for row in session.execute(
        select(Job.id, Job.priority).outerjoin(running, running.c.tenant == Job.tenant)
        .outerjoin(Tenant, Tenant.name == Job.tenant)
        .where(Job.status == Status.QUEUED, Job.queue == queue, Job.cancel_requested.is_(False), Job.priority > above,
               Tenant.max_running.is_(None) | (work < Tenant.max_running))
        .order_by(Job.priority.desc(), schedule.resumed(), Job.created_at, Job.id).limit(limit))]


def ask(session: Session, unit: Unit, by: str) -> bool:
    """Ask the unit to make way for `by`: one conditional UPDATE of its first member, which matches
    only while that attempt runs it, no request is on its way, and none names `by` already."""
    job_id, attempt = unit.members[0]
    named = aliased(Job)
    done = session.execute(
        update(Job).where(Job.id == job_id, Job.attempts == attempt, Job.status == Status.RUNNING,
                          Job.preempt_requested_by.is_(None),
                          ~exists().where(named.preempt_requested_by == by, named.status == Status.RUNNING))
        .values(preempt_requested_by=by).execution_options(synchronize_session=False)).rowcount
    return bool(done)


def preempt(session: Session, *, after_seconds: float, stale_after: float, now: datetime | None = None) -> list[tuple[str, str]]:
    """One pass: ask running jobs to make way where the rule says so. Returns [(job asked, queued
    job it makes way for)], committed."""
    now = now or utcnow()
    if session.get_bind().dialect.name == "postgresql" and not session.scalar(
            select(func.pg_try_advisory_xact_lock(LOCK_KEY))):
        session.rollback()
        return []  # another worker's reconciler is at it
    clear_stale(session)
    units = running_units(session, now)
    named = {by for (by,) in session.execute(select(Job.preempt_requested_by).where(
        Job.status == Status.RUNNING, Job.preempt_requested_by.is_not(None)))}
    free: dict[str, int] = {}
    for worker, training in db_workers.live_workers(session, stale_after=stale_after):
        if not training:
            for queue in worker.queues or ():
                free[queue] = free.get(queue, 0) + 1
    asked: list[tuple[str, str]] = []
    old_enough = now - timedelta(seconds=after_seconds)
    for queue in sorted({u.queue for u in units}):
        # the lowest priority first, the youngest attempt among equals
        victims = sorted((u for u in units if u.queue == queue and not u.asked and u.started <= old_enough),
                         key=lambda u: (u.priority, -u.started.timestamp(), u.owner))
        if not victims:
            continue
        # a queued job already named has its worker on the way; the first `free` get a free worker
        waiting = [(j, p) for j, p in outranking(session, queue, victims[0].priority,
                                                   free.get(queue, 0) + len(named) + len(victims))
                   if j not in named][free.get(queue, 0):]
        for job_id, priority in waiting:
            if not victims or victims[0].priority >= priority:
                break  # strictly lower priority only
            victim = victims.pop(0)
            if ask(session, victim, job_id):
                asked.append((victim.members[0][0], job_id))
    session.commit()
    return asked
