"""A queued job row and its message, kept in step: the one home of "stamped as sent".

A new job is stamped as sent (its job_sends row) when it is created: its creator sends the
message next (mark_unsent if that fails), so no reconciler sends a second one meanwhile; a send
lost with its process is redone after requeue_seconds (worker.reconciler).

The stamp is a row of its own, not a column of the job's: a stamp that updated the job row
locked it until its commit, and a claim's pick (FOR NO KEY UPDATE SKIP LOCKED) then passed the
job over for a lower one. Inserting a job_sends row takes only a key-share lock on the job row,
which the pick does not skip; updating or deleting one locks no job row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db import events
from db.models import Job, JobSend, UTCDateTime, new_id, utcnow
from db.states import Status


def new_queued_job(session: Session, *, tenant: str, spec: dict[str, Any], queue: str, **columns: Any) -> Job:
    """Add a queued job, stamped as sent, and its "queued" event (the caller commits). columns:
    the row's other values (name, summary, a trial's sweep_id, trial_number, params, priority;
    name, priority and monitor default to the spec's);
    a trial's sweep_id and trial_number are on its event too."""
    columns.setdefault("name", spec.get("name"))
    columns.setdefault("priority", int(spec.get("priority") or 0))
    columns.setdefault("monitor", monitor_of(spec))
    job = Job(id=new_id(), tenant=tenant, spec=spec, epochs=int(spec["training"]["epochs"]), queue=queue,
              status=Status.QUEUED, **columns)
    session.add(job)
    session.flush()
    session.add(JobSend(job_id=job.id, sent_at=utcnow()))
    trial = {k: columns[k] for k in ("sweep_id", "trial_number") if k in columns}
    events.status(session, job.id, Status.QUEUED, **trial)
    return job


def monitor_of(spec: dict[str, Any]) -> str | None:
    """The jobs row's `monitor`: the metric the spec's early stopping watches (None without one)."""
    return (spec["training"].get("early_stopping") or {}).get("monitor")


def stamp(session: Session, job_id: str, when: datetime, *only_if: Any, sent_before: datetime | None = None) -> bool:
    """Stamp the job as sent at `when` (the caller commits). `only_if`: conditions on its job row;
    `sent_before`: only if never sent or last sent before then. One statement (an upsert), so
    that of writers racing, one stamps. False if it did not (or there is no such job)."""
    rows = select(Job.id, literal(when, UTCDateTime())).where(Job.id == job_id, *only_if)
    insert = (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(JobSend)
    upsert = insert.from_select(["job_id", "sent_at"], rows).on_conflict_do_update(
        index_elements=[JobSend.job_id], set_={"sent_at": insert.excluded.sent_at},
        where=None if sent_before is None else JobSend.sent_at < sent_before)
    return session.execute(upsert.returning(JobSend.job_id)).first() is not None


def unstamp(session: Session, job_id: str) -> None:
    """Not sent: the reconciler's next pass sends it (the caller commits)."""
    session.execute(delete(JobSend).where(JobSend.job_id == job_id))


def mark_enqueued(session: Session, job_id: str, when: datetime | None = None) -> None:
    stamp(session, job_id, when or utcnow())
    session.commit()


def mark_unsent(session: Session, job_id: str) -> None:
    """Its creator could not send it: the reconciler's next pass does."""
    unstamp(session, job_id)
    session.commit()


def queue_if_queued(session: Session, job_id: str) -> str | None:
    """The job's queue while it is queued (a message for it would be claimed), else None."""
    return session.scalar(select(Job.queue).where(Job.id == job_id, Job.status == Status.QUEUED))
