"""The reconciler's queries (worker.reconciler): jobs whose message or worker may be lost."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from db import events
from db.models import Job, utcnow
from db.states import EventKind, Status


def stale_queued(session: Session, *, not_enqueued_since: datetime) -> list[tuple[str, str]]:
    """Queued jobs whose message may be lost: never enqueued, or not re-sent lately."""
    return [tuple(row) for row in session.execute(
        select(Job.id, Job.queue).where(
            Job.status == Status.QUEUED,
            or_(Job.enqueued_at.is_(None), Job.enqueued_at < not_enqueued_since),
        ).order_by(Job.created_at)
    )]


def expired_running(session: Session, *, now: datetime | None = None) -> list[Any]:
    """Running jobs whose worker stopped renewing its lease. Rows with .id, .queue, .lost
    (attempts that did not end in a release), .cancel_requested, .enqueued_at, .lease_expires_at."""
    return list(session.execute(
        select(Job.id, Job.queue, (Job.attempts - Job.releases).label("lost"), Job.cancel_requested,
               Job.enqueued_at, Job.lease_expires_at)
        .where(Job.status == Status.RUNNING, Job.lease_expires_at < (now or utcnow()))
        .order_by(Job.created_at)
    ))


def take_back(session: Session, job_id: str, now: datetime) -> bool:
    """A running job whose lease expired and that was not sent since: stamped as sent now, with a
    "lost" event (the attempt whose worker stopped renewing its lease, the epoch it had reached).
    One conditional UPDATE: of reconcilers passing at once, one takes it back (and sends it)."""
    row = session.execute(
        update(Job).where(Job.id == job_id, Job.status == Status.RUNNING, Job.lease_expires_at < now,
                          or_(Job.enqueued_at.is_(None), Job.enqueued_at < Job.lease_expires_at))
        .values(enqueued_at=now).returning(Job.attempts, Job.epochs_completed)
    ).one_or_none()
    if row is None:
        session.rollback()
        return False
    events.add(session, job_id, EventKind.LOST, {"attempt": row.attempts, "epoch": row.epochs_completed})
    session.commit()
    return True


def fail_lost(session: Session, job_id: str, *, max_attempts: int, message: str) -> bool:
    """Fail a running job whose lease expired after its last allowed attempt."""
    return _end_expired(session, job_id, Job.attempts - Job.releases >= max_attempts,
                        status=Status.FAILED, error=message)


def cancel_expired(session: Session, job_id: str) -> bool:
    """A running job that was asked to cancel and whose worker is gone ends cancelled."""
    return _end_expired(session, job_id, Job.cancel_requested.is_(True),
                        status=Status.CANCELLED, stop_reason="cancelled")


def _end_expired(session: Session, job_id: str, condition: Any, *, status: Status, **outcome: Any) -> bool:
    """End a running job whose lease expired, if `condition` holds; one conditional UPDATE."""
    now = utcnow()
    done = session.execute(
        update(Job).where(Job.id == job_id, Job.status == Status.RUNNING, Job.lease_expires_at < now, condition)
        .values(status=status, **outcome, finished_at=now, updated_at=now,
                lease_owner=None, lease_expires_at=None)
        .returning(Job.id)
    ).scalar_one_or_none()
    if done is None:
        session.rollback()
        return False
    events.status(session, job_id, status, **outcome)
    session.commit()
    return True
