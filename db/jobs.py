"""The API's job queries: every read and change a user asks for, scoped by tenant here, once,
so the API never pastes ownership checks. A `tenant` is always compared (None matches no job:
no read here skips the filter); the worker's own reads are in db.attempts.

The rest of a job's life lives by audience: db.attempts (a worker's claim, lease, release and
finish), db.epochs (its epochs), db.expiry (the reconciler's queries), db.sending (a queued
row and its message), db.states (statuses and event kinds).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, undefer

from db import events
from db.models import METRIC_COLUMNS, Checkpoint, EpochMetric, Job, JobEvent, utcnow
from db.sending import new_queued_job
from db.states import ACTIVE, Status

METRIC_ROW = ("epoch", *METRIC_COLUMNS)  # metric_rows' columns, in netfit.models.EpochMetrics' order


def create_job(session: Session, *, tenant: str, spec: dict[str, Any], summary: dict[str, Any] | None,
               queue: str) -> Job:
    """Insert a queued job, stamped as sent (db.sending), and commit: the message is sent only
    after this commits."""
    job = new_queued_job(session, tenant=tenant, spec=spec, queue=queue, summary=summary)
    session.commit()
    return job


def count_active(session: Session, tenant: str) -> int:
    """The tenant's queued and running jobs (what NETFIT_MAX_ACTIVE_JOBS limits)."""
    return session.scalar(select(func.count()).select_from(Job).where(Job.tenant == tenant, Job.status.in_(ACTIVE)))


def get_job(session: Session, tenant: str, job_id: str) -> Job | None:
    return session.scalars(select(Job).where(Job.id == job_id, Job.tenant == tenant)).one_or_none()


def job_status(session: Session, tenant: str, job_id: str) -> str | None:
    """The job's status; None if the tenant has no such job."""
    return session.scalar(select(Job.status).where(Job.id == job_id, Job.tenant == tenant))


def _metrics_of(tenant: str, job_id: str, *what: Any) -> Any:
    """SELECT what FROM a tenant's job's epochs, in order."""
    return (select(*what).join(Job, Job.id == EpochMetric.job_id)
            .where(EpochMetric.job_id == job_id, Job.tenant == tenant).order_by(EpochMetric.epoch))


def metric_rows(session: Session, tenant: str, job_id: str, *, after: int = 0,
                limit: int | None = None) -> list[tuple[Any, ...]]:
    """A tuple of METRIC_ROW's values per epoch after `after`, in order, at most `limit` (the
    API's fast path: no ORM objects)."""
    columns = [getattr(EpochMetric, c) for c in METRIC_ROW]
    query = _metrics_of(tenant, job_id, *columns).where(EpochMetric.epoch > after).limit(limit)
    return [tuple(r) for r in session.execute(query)]


def layer_rows(session: Session, tenant: str, job_id: str, *, after: int = 0,
               limit: int | None = None) -> list[tuple[int, list[dict[str, Any]]]]:
    """(epoch, per-layer statistics) for each epoch after `after` that recorded them, in order."""
    query = (_metrics_of(tenant, job_id, EpochMetric.epoch, EpochMetric.layers)
             .where(EpochMetric.epoch > after, EpochMetric.layers.is_not(None)).limit(limit))
    return [(epoch, layers) for epoch, layers in session.execute(query)]


def list_metrics(session: Session, tenant: str, job_id: str) -> list[EpochMetric]:
    return list(session.scalars(_metrics_of(tenant, job_id, EpochMetric)))


def list_checkpoints(session: Session, tenant: str, job_id: str) -> list[Checkpoint]:
    """The job's downloadable weights (best, last); the resume state is the worker's own."""
    return list(session.scalars(
        select(Checkpoint).join(Job, Job.id == Checkpoint.job_id)
        .where(Checkpoint.job_id == job_id, Job.tenant == tenant, Checkpoint.kind.in_(("best", "last")))
        .order_by(Checkpoint.kind)
    ))


def get_checkpoint(session: Session, tenant: str, job_id: str, kind: str) -> Checkpoint | None:
    """With its data."""
    return session.scalars(
        select(Checkpoint).join(Job, Job.id == Checkpoint.job_id)
        .where(Checkpoint.job_id == job_id, Checkpoint.kind == kind, Job.tenant == tenant)
        .options(undefer(Checkpoint.data))).one_or_none()


def events_after(session: Session, job_id: str, after_id: int, limit: int = 500) -> list[JobEvent]:
    """The SSE stream's next events (the caller has checked the job's tenant)."""
    return list(session.scalars(
        select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after_id)
        .order_by(JobEvent.id).limit(limit)
    ))


def request_cancel(session: Session, tenant: str, job_id: str) -> Job | None:
    """A queued job is cancelled at once; a running one is flagged and its worker stops it.
    Cancelling a finished job changes nothing. None if there is no such job."""
    job = get_job(session, tenant, job_id)
    if job is None:
        return None
    now = utcnow()
    cancelled = session.execute(
        update(Job).where(Job.id == job_id, Job.status == Status.QUEUED)
        .values(status=Status.CANCELLED, stop_reason="cancelled", cancel_requested=True, finished_at=now, updated_at=now)
        .returning(Job.id)
    ).scalar_one_or_none()
    if cancelled:
        events.status(session, job_id, Status.CANCELLED, stop_reason="cancelled")
    else:
        session.execute(update(Job).where(Job.id == job_id, Job.status == Status.RUNNING)
                        .values(cancel_requested=True, updated_at=now))
    session.commit()
    session.refresh(job)
    return job
