"""The reconciler's queries (worker.reconciler): jobs whose message or worker may be lost."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from db import events, sending
from db.models import Job, JobSend, utcnow
from db.states import EventKind, Status


def stale_queued(session: Session, *, not_sent_since: datetime) -> list[tuple[str, str]]:
    """Queued jobs whose message may be lost: never sent, or not re-sent lately."""
    return [tuple(row) for row in session.execute(
        select(Job.id, Job.queue).outerjoin(JobSend, JobSend.job_id == Job.id).where(
            Job.status == Status.QUEUED,
            or_(JobSend.sent_at.is_(None), JobSend.sent_at < not_sent_since),
        ).order_by(Job.created_at)
    )]


def expired_running(session: Session, *, now: datetime | None = None) -> list[Any]:
    """Running jobs whose worker stopped renewing its lease. Rows with .id, .queue, .lost
    (attempts that did not end in a release), .cancel_requested, .sent_at (None: never sent),
    .lease_expires_at."""
    return list(session.execute(
        select(Job.id, Job.queue, (Job.attempts - Job.releases).label("lost"), Job.cancel_requested,
               JobSend.sent_at, Job.lease_expires_at)
        .outerjoin(JobSend, JobSend.job_id == Job.id)
        .where(Job.status == Status.RUNNING, Job.lease_expires_at < (now or utcnow()))
        .order_by(Job.created_at)
    ))


def take_back(session: Session, job_id: str, now: datetime) -> bool:
    """A running job whose lease expired and that was not sent since: stamped as sent now, with a
    "lost" event (the attempt whose worker stopped renewing its lease, the epoch it had reached).
    The stamp is one conditional upsert: of reconcilers passing at once, one takes it back (and
    sends it). It locks no job row (db.sending), so a claim meanwhile still sees the job; if one
    takes it, the message sent is a duplicate, which finds nothing to claim."""
    expired = (Job.status == Status.RUNNING, Job.lease_expires_at < now)
    row = session.execute(select(Job.attempts, Job.epochs_completed, Job.lease_expires_at)
                          .where(Job.id == job_id, *expired)).one_or_none()
    if row is None or not sending.stamp(session, job_id, now, *expired, sent_before=row.lease_expires_at):
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
