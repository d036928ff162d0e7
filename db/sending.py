"""A queued job row and its message, kept in step: the one home of "stamped as sent".

A new job is stamped as sent (enqueued_at) when it is created: its creator sends the message
next (mark_unsent if that fails), so no reconciler sends a second one meanwhile; a send lost
with its process is redone after requeue_seconds (worker.reconciler).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db import events
from db.models import Job, new_id, utcnow
from db.states import Status


def new_queued_job(session: Session, *, tenant: str, spec: dict[str, Any], queue: str, **columns: Any) -> Job:
    """Add a queued job, stamped as sent, and its "queued" event (the caller commits). columns:
    the row's other values (name, summary, a trial's sweep_id, trial_number, params, priority);
    a trial's sweep_id and trial_number are on its event too."""
    columns.setdefault("name", spec.get("name"))
    columns.setdefault("priority", int(spec.get("priority") or 0))
    job = Job(id=new_id(), tenant=tenant, spec=spec, epochs=int(spec["training"]["epochs"]), queue=queue,
              status=Status.QUEUED, enqueued_at=utcnow(), **columns)
    session.add(job)
    session.flush()
    trial = {k: columns[k] for k in ("sweep_id", "trial_number") if k in columns}
    events.status(session, job.id, Status.QUEUED, **trial)
    return job


def mark_enqueued(session: Session, job_id: str, when: datetime | None = None) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=when or utcnow()))
    session.commit()


def mark_unsent(session: Session, job_id: str) -> None:
    """Its creator could not send it: the reconciler's next pass does."""
    session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=None))
    session.commit()


def queue_if_queued(session: Session, job_id: str) -> str | None:
    """The job's queue while it is queued (a message for it would be claimed), else None."""
    return session.scalar(select(Job.queue).where(Job.id == job_id, Job.status == Status.QUEUED))
