"""Job queries and state transitions.

Every read is scoped by tenant here, once, so the API never pastes ownership checks.
Every write made by a worker is *fenced* by its attempt number: a conditional UPDATE
that matches only while that attempt still owns the job. A worker whose lease was taken
over matches nothing, writes nothing and gets `Fenced`.

    queued --claim--> running --finish--> succeeded | failed | cancelled
       ^                 |  \\--release (SIGTERM)--> queued
       |                 \\--lease expires--> claimable again (or failed: worker_lost)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session, undefer

from db.models import METRIC_COLUMNS, Checkpoint, EpochMetric, Job, JobEvent, UTCDateTime, new_id, utcnow
from db.pages import newest_first
from netfit.models import Job as WireJob

ACTIVE = ("queued", "running")
# the columns a job has on the wire (netfit.models.Job); list_jobs reads only these
WIRE_COLUMNS = tuple(name for name in WireJob.model_fields if name in Job.__table__.c)
METRIC_ROW = ("epoch", *METRIC_COLUMNS)  # metric_rows' columns, in netfit.models.EpochMetrics' order


class Fenced(Exception):
    """This attempt no longer owns the job: its lease was taken over or the job ended."""

    def __init__(self, message: str, job_id: str | None = None):
        super().__init__(message)
        self.job_id = job_id  # which job (a pack's batched write names the member that lost it)


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch as record_epochs stores it: metrics (with "epoch" and "seconds"), the
    early-stopping countdown after it, and per-layer statistics when measured."""

    metrics: dict[str, Any]
    early_stopping: dict[str, Any] | None = None
    layers: list[dict[str, Any]] | None = None


# --------------------------------------------------------------------------- helpers


def finite_or_none(value: Any) -> Any:
    """NaN/inf cannot travel in JSON (nor in PostgreSQL's json): store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def clean_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: finite_or_none(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            for k, v in metrics.items()}


def _event(session: Session, job_id: str, kind: str, data: dict[str, Any]) -> None:
    session.add(JobEvent(job_id=job_id, kind=kind, data=data))


def _status_event(session: Session, job_id: str, status: str, **extra: Any) -> None:
    _event(session, job_id, "status", {"status": status, **extra})


def _fenced_update(session: Session, job_id: str, attempt: int, values: dict[str, Any]) -> None:
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempts == attempt, Job.status == "running")
        .values(**values)
        .returning(Job.id)
    ).scalar_one_or_none()
    if done is None:
        session.rollback()
        raise Fenced(f"job {job_id}: attempt {attempt} no longer owns it", job_id)


def _fenced_updates(session: Session, updates: dict[str, tuple[int, dict[str, Any]]]) -> None:
    """_fenced_update of many jobs (id -> attempt, values), one executemany per set of columns (an
    UPDATE a member made most of a 32-member pack's flush). Fenced names a job its attempt no
    longer owns."""
    owned = or_(*(and_(Job.id == job_id, Job.attempts == attempt) for job_id, (attempt, _) in updates.items()))
    # the rows locked in id order first, as heartbeat_pack locks them (no deadlock)
    session.execute(select(Job.id).where(owned).order_by(Job.id).with_for_update())
    table = Job.__table__
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for job_id, (attempt, values) in sorted(updates.items()):
        by_columns.setdefault(tuple(values), []).append(
            {"job": job_id, "attempt": attempt, **{f"new_{k}": v for k, v in values.items()}})
    matched = 0
    for columns, params in by_columns.items():
        matched += session.execute(
            update(table).where(table.c.id == bindparam("job"), table.c.attempts == bindparam("attempt"),
                                table.c.status == "running")
            .values({c: bindparam(f"new_{c}", type_=table.c[c].type) for c in columns}), params).rowcount
    if matched < len(updates):
        alive = set(session.scalars(select(Job.id).where(owned, Job.status == "running")))
        lost = sorted(set(updates) - alive)[0]
        session.rollback()
        raise Fenced(f"job {lost}: attempt {updates[lost][0]} no longer owns it", lost)


def _put_checkpoint(session: Session, job_id: str, kind: str, epoch: int, metrics: dict[str, Any], data: bytes) -> None:
    session.execute(delete(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.kind == kind))
    session.add(Checkpoint(
        job_id=job_id, kind=kind, epoch=epoch, metrics=metrics, data=data,
        size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
    ))


def _at(now: datetime) -> Any:
    # a datetime used inside an SQL expression (coalesce) needs the column type spelled out
    return literal(now, UTCDateTime())


# --------------------------------------------------------------------------- API side


def create_job(session: Session, *, tenant: str, spec: dict[str, Any], summary: dict[str, Any] | None,
               queue: str) -> Job:
    """Insert a queued job and commit (the message is sent only after this commits). It is
    stamped as sent: its creator sends it next (mark_unsent if that fails), so no reconciler
    sends a second message meanwhile; a send lost with its process is redone after requeue_seconds."""
    job = Job(
        id=new_id(), tenant=tenant, name=spec.get("name"), spec=spec, summary=summary,
        epochs=int(spec["training"]["epochs"]), queue=queue, status="queued", enqueued_at=utcnow(),
        priority=int(spec.get("priority") or 0),
    )
    session.add(job)
    session.flush()
    _status_event(session, job.id, "queued")
    session.commit()
    return job


def mark_enqueued(session: Session, job_id: str, when: datetime | None = None) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=when or utcnow()))
    session.commit()


def mark_unsent(session: Session, job_id: str) -> None:
    """Its creator could not send it: the reconciler's next pass does."""
    session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=None))
    session.commit()


def count_active(session: Session, tenant: str) -> int:
    """The tenant's queued and running jobs (what NETFIT_MAX_ACTIVE_JOBS limits)."""
    return session.scalar(select(func.count()).select_from(Job).where(Job.tenant == tenant, Job.status.in_(ACTIVE)))


def get_job(session: Session, tenant: str, job_id: str) -> Job | None:
    return session.scalars(select(Job).where(Job.id == job_id, Job.tenant == tenant)).one_or_none()


def list_jobs(session: Session, tenant: str, *, status: str | None = None, limit: int = 50,
              cursor: str | None = None, sweep: str | None = None,
              name: str | None = None) -> tuple[list[Job], str | None]:
    """Newest first; returns the page and the cursor of the next page (None at the end). Rows
    hold the columns of WIRE_COLUMNS only, read as plain rows: ORM objects cost more than the query."""
    query = select(*(getattr(Job, c) for c in WIRE_COLUMNS)).where(Job.tenant == tenant)
    if status:
        query = query.where(Job.status == status)
    if sweep:  # a sweep's trials
        query = query.where(Job.sweep_id == sweep)
    if name:  # a case-insensitive substring of the name (the dashboard's search box)
        query = query.where(Job.name.icontains(name, autoescape=True))
    return newest_first(query, Job, cursor, limit, session.execute)


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


def get_checkpoint(session: Session, tenant: str | None, job_id: str, kind: str) -> Checkpoint | None:
    """With its data. tenant None: the worker's own read (it already owns the job)."""
    query = select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.kind == kind)
    if tenant is not None:
        query = query.join(Job, Job.id == Checkpoint.job_id).where(Job.tenant == tenant)
    return session.scalars(query.options(undefer(Checkpoint.data))).one_or_none()


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
        update(Job).where(Job.id == job_id, Job.status == "queued")
        .values(status="cancelled", stop_reason="cancelled", cancel_requested=True, finished_at=now, updated_at=now)
        .returning(Job.id)
    ).scalar_one_or_none()
    if cancelled:
        _status_event(session, job_id, "cancelled", stop_reason="cancelled")
    else:
        session.execute(update(Job).where(Job.id == job_id, Job.status == "running")
                        .values(cancel_requested=True, updated_at=now))
    session.commit()
    session.refresh(job)
    return job


# --------------------------------------------------------------------------- worker side


def claim(session: Session, job_id: str, owner: str, *, lease_seconds: float, max_attempts: int) -> int | None:
    """Take the job with ONE conditional UPDATE: a queued job, or a running one whose lease
    expired, with lost attempts left. Returns this attempt's number, or None (nothing to do:
    another worker has it, it ended, or a duplicate message arrived)."""
    now = utcnow()
    attempt = session.execute(
        update(Job)
        .where(Job.id == job_id, _claimable(now, max_attempts))
        .values(
            status="running", attempts=Job.attempts + 1, lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(Job.started_at, _at(now)), updated_at=now,
        )
        .returning(Job.attempts)
    ).scalar_one_or_none()
    if attempt is None:
        session.rollback()
        return None
    _status_event(session, job_id, "running", attempt=attempt)
    session.commit()
    return attempt


def _claimable(now: datetime, max_attempts: int) -> Any:
    """claim()'s condition: queued, or running with an expired lease, not cancelled, attempts left."""
    return and_(Job.cancel_requested.is_(False), Job.attempts - Job.releases < max_attempts,
                or_(Job.status == "queued", and_(Job.status == "running", Job.lease_expires_at < now)))


def claimable_trials(session: Session, sweep_id: str, *, exclude: str, max_attempts: int,
                     limit: int) -> list[Any]:
    """The sweep's other trials claim() would take now, oldest trial first, as rows (id, spec,
    resume_epoch: the epoch of the saved resume state, 0 for none): a pack's candidates."""
    resume = (select(Checkpoint.epoch).where(Checkpoint.job_id == Job.id, Checkpoint.kind == "resume")
              .correlate(Job).scalar_subquery())
    return list(session.execute(
        select(Job.id, Job.spec, func.coalesce(resume, 0).label("resume_epoch"))
        .where(Job.sweep_id == sweep_id, Job.id != exclude, _claimable(utcnow(), max_attempts))
        .order_by(Job.trial_number).limit(limit)))


def resume_epoch(session: Session, job_id: str) -> int:
    """The epoch of the job's saved resume state; 0 when it has none (a fresh start)."""
    return int(session.scalar(select(Checkpoint.epoch).where(Checkpoint.job_id == job_id,
                                                             Checkpoint.kind == "resume")) or 0)


def claim_many(session: Session, job_ids: list[str], owner: str, *, lease_seconds: float,
               max_attempts: int) -> dict[str, int]:
    """claim() for several jobs in one UPDATE (a pack's members): {job id: attempt} of those taken;
    one another worker took first, or that ended meanwhile, is simply not among them."""
    if not job_ids:
        return {}
    now = utcnow()
    taken = dict(session.execute(
        update(Job).where(Job.id.in_(job_ids), _claimable(now, max_attempts))
        .values(status="running", attempts=Job.attempts + 1, lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                started_at=func.coalesce(Job.started_at, _at(now)), updated_at=now)
        .returning(Job.id, Job.attempts)).all())
    for job_id, attempt in taken.items():
        _status_event(session, job_id, "running", attempt=attempt)
    session.commit()
    return taken


def note_pack(session: Session, attempts: dict[str, int], *, leader: str, resume_after: int) -> None:
    """A "pack" event on each member: which pack it trains in (its leader's id), of how many
    members, going on after which epoch (GET /v1/jobs/{id}/events shows it)."""
    for job_id, attempt in attempts.items():
        _event(session, job_id, "pack", {"leader": leader, "members": len(attempts), "attempt": attempt,
                                         "resume_after": resume_after})
    session.commit()


def heartbeat_pack(session: Session, attempts: dict[str, int], *, lease_seconds: float | None) -> tuple[set[str], set[str]]:
    """A pack's lease in one transaction: every member's lease renewed (lease_seconds None: only
    read), and (cancel requested, lost) member ids. Lost: the member's attempt no longer owns it."""
    now = utcnow()
    owned = or_(*(and_(Job.id == job_id, Job.attempts == attempt) for job_id, attempt in attempts.items()))
    if lease_seconds is None:
        rows = session.execute(select(Job.id, Job.cancel_requested).where(owned, Job.status == "running")).all()
    else:
        # the rows locked in id order first: a pack's flush locks them in that order too (no deadlock)
        session.execute(select(Job.id).where(owned).order_by(Job.id).with_for_update())
        rows = session.execute(
            update(Job).where(owned, Job.status == "running")
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
            .returning(Job.id, Job.cancel_requested)).all()
    session.commit()
    alive = {job_id for job_id, _ in rows}
    return {job_id for job_id, cancel in rows if cancel}, set(attempts) - alive


def heartbeat(session: Session, job_id: str, attempt: int, *, lease_seconds: float) -> bool:
    """Renew the lease; returns whether a cancel was requested. Fenced if the lease was lost."""
    now = utcnow()
    cancel = session.execute(
        update(Job).where(Job.id == job_id, Job.attempts == attempt, Job.status == "running")
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
        .returning(Job.cancel_requested)
    ).scalar_one_or_none()
    if cancel is None:
        session.rollback()
        raise Fenced(f"job {job_id}: attempt {attempt} lost its lease")
    session.commit()
    return bool(cancel)


def cancel_requested(session: Session, job_id: str) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def record_epochs(session: Session, job_id: str, attempt: int, epochs: list[EpochRecord], *,
                  resume: tuple[int, bytes] | None = None,
                  best: tuple[int, dict[str, Any], bytes] | None = None) -> None:
    """One transaction per flush (worker.tasks batches fast epochs): each epoch's metrics row
    (with its per-layer statistics) and event, the job's progress, and when given the state to
    resume from (its epoch, bytes) and the best weights so far (epoch, metrics, bytes). A stale
    attempt writes nothing and gets Fenced."""
    _fenced_update(session, job_id, attempt, _progress(epochs, best))
    rows = _EpochRows()
    _record(session, job_id, epochs, resume, best, rows)
    rows.insert(session)
    session.commit()


@dataclass(frozen=True)
class Flush:
    """One job's share of a pack's flush: record_epochs' arguments."""

    job_id: str
    attempt: int
    epochs: list[EpochRecord]
    resume: tuple[int, bytes] | None = None
    best: tuple[int, dict[str, Any], bytes] | None = None


def record_pack_epochs(session: Session, flushes: list[Flush]) -> None:
    """record_epochs for every member of a pack in ONE transaction, so that their resume states
    are saved at the same epoch or not at all. A member that lost its attempt rolls the whole
    transaction back with Fenced naming it (the caller drops it and writes the rest again)."""
    _fenced_updates(session, {f.job_id: (f.attempt, _progress(f.epochs, f.best)) for f in flushes})
    rows = _EpochRows()
    for f in flushes:
        _record(session, f.job_id, f.epochs, f.resume, f.best, rows)
    rows.insert(session)
    session.commit()


def _progress(epochs: list[EpochRecord], best: tuple[int, dict[str, Any], bytes] | None) -> dict[str, Any]:
    """A flush's new values for the job's row."""
    values: dict[str, Any] = {"updated_at": utcnow()}
    if epochs:
        values["epochs_completed"] = int(epochs[-1].metrics["epoch"])
    if best is not None:
        values.update(best_epoch=best[0], best_metrics=_scores(best[1]))
    return values


def _record(session: Session, job_id: str, epochs: list[EpochRecord], resume: tuple[int, bytes] | None,
            best: tuple[int, dict[str, Any], bytes] | None, rows: _EpochRows) -> None:
    """A flush's rows, checkpoints and events, once its job's row was updated (fenced)."""
    for record in epochs:
        rows.add(job_id, record)
    if resume is not None:
        epoch, state = resume
        scores = next((_scores(r.metrics) for r in epochs if r.metrics["epoch"] == epoch), {})
        _put_checkpoint(session, job_id, "resume", epoch, scores, state)
    if best is not None:
        _put_checkpoint(session, job_id, "best", best[0], _scores(best[1]), best[2])


def record_epoch(session: Session, job_id: str, attempt: int, metrics: dict[str, Any], *,
                 resume_state: bytes, best: bytes | None = None,
                 early_stopping: dict[str, Any] | None = None,
                 layers: list[dict[str, Any]] | None = None) -> None:
    """One epoch, its resume state and (when it is the best so far) its weights: record_epochs of one."""
    epoch = int(metrics["epoch"])
    record_epochs(session, job_id, attempt, [EpochRecord(metrics, early_stopping, layers)],
                  resume=(epoch, resume_state), best=(epoch, metrics, best) if best is not None else None)


def _scores(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in clean_metrics(metrics).items() if k in METRIC_COLUMNS and k != "seconds"}


class _EpochRows:
    """The epochs' metrics rows and events of one flush, inserted as two multi-row INSERTs (an
    ORM object per row cost ~1 ms each: a 32-member pack's flush took 0.28 s)."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def add(self, job_id: str, record: EpochRecord) -> None:
        row = {k: v for k, v in clean_metrics(record.metrics).items() if k in METRIC_COLUMNS}
        epoch = int(record.metrics["epoch"])
        layers = record.layers
        if layers is not None:
            layers = [{k: finite_or_none(v) for k, v in layer.items()} for layer in layers]
            row["layers"] = layers  # set only when measured: a None here would store JSON null, not SQL NULL
        self.metrics.append({"job_id": job_id, "epoch": epoch, **row})
        # the event also carries the engine's early-stopping countdown, so followers show it as is
        self.events.append({"job_id": job_id, "kind": "epoch", "created_at": utcnow(), "data": {
            "epoch": epoch, **row, "early_stopping": record.early_stopping, "layers": layers}})

    def insert(self, session: Session) -> None:
        # one INSERT per set of columns (rows with and without layer statistics); events in order
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in self.metrics:
            by_columns.setdefault(tuple(row), []).append(row)
        for group in by_columns.values():
            session.execute(insert(EpochMetric), group)
        if self.events:
            session.execute(insert(JobEvent), self.events)


def rewind(session: Session, job_id: str, attempt: int, epoch: int, best_epoch: int | None,
           best_metrics: dict[str, Any] | None) -> int:
    """A resumed attempt starts after `epoch`, its resume state's: the rows a lost attempt wrote
    after that state are dropped (they are trained again, so every epoch is recorded once), and
    the progress goes back to the state's. Fenced; returns how many rows were dropped."""
    _fenced_update(session, job_id, attempt, {
        "epochs_completed": epoch, "best_epoch": best_epoch,
        "best_metrics": _scores(best_metrics) if best_metrics else None, "updated_at": utcnow()})
    dropped = session.execute(delete(EpochMetric).where(EpochMetric.job_id == job_id, EpochMetric.epoch > epoch))
    session.commit()
    return dropped.rowcount or 0


def finish(session: Session, job_id: str, attempt: int, *, status: str, stop_reason: str | None = None,
           error: str | None = None, epochs_completed: int | None = None, best_epoch: int | None = None,
           best_metrics: dict[str, Any] | None = None, test_metrics: dict[str, Any] | None = None,
           device: str | None = None,
           checkpoints: Iterable[tuple[str, int, dict[str, Any], bytes]] = ()) -> None:
    """End the job (fenced): status, why, final metrics and the best/last weights."""
    now = utcnow()
    # lease_owner stays: it records which worker ran the job
    values: dict[str, Any] = {
        "status": status, "stop_reason": stop_reason, "error": error, "finished_at": now,
        "updated_at": now, "lease_expires_at": None,
    }
    for key, value in (("epochs_completed", epochs_completed), ("best_epoch", best_epoch), ("device", device),
                       ("best_metrics", best_metrics and clean_metrics(best_metrics)),
                       ("test_metrics", test_metrics and clean_metrics(test_metrics))):
        if value is not None:
            values[key] = value
    _fenced_update(session, job_id, attempt, values)
    for kind, epoch, metrics, data in checkpoints:
        _put_checkpoint(session, job_id, kind, epoch, clean_metrics(metrics), data)
    # the resume state is only for an unfinished job
    session.execute(delete(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.kind == "resume"))
    _status_event(session, job_id, status, stop_reason=stop_reason, error=error,
                  epochs_completed=values.get("epochs_completed"), best_epoch=values.get("best_epoch"))
    session.commit()


def release(session: Session, job_id: str, attempt: int) -> None:
    """Hand the job back (worker shutting down): queued again, lease cleared, not a lost attempt."""
    _fenced_update(session, job_id, attempt, {
        "status": "queued", "lease_owner": None, "lease_expires_at": None, "enqueued_at": None,
        "releases": Job.releases + 1, "updated_at": utcnow(),
    })
    _status_event(session, job_id, "queued", released_by_attempt=attempt)
    session.commit()


# --------------------------------------------------------------------------- reconciler


def stale_queued(session: Session, *, not_enqueued_since: datetime) -> list[tuple[str, str]]:
    """Queued jobs whose message may be lost: never enqueued, or not re-sent lately."""
    return [tuple(row) for row in session.execute(
        select(Job.id, Job.queue).where(
            Job.status == "queued",
            or_(Job.enqueued_at.is_(None), Job.enqueued_at < not_enqueued_since),
        ).order_by(Job.created_at)
    )]


def expired_running(session: Session, *, now: datetime | None = None) -> list[Any]:
    """Running jobs whose worker stopped renewing its lease. Rows with .id, .queue, .lost
    (attempts that did not end in a release), .cancel_requested, .enqueued_at, .lease_expires_at."""
    return list(session.execute(
        select(Job.id, Job.queue, (Job.attempts - Job.releases).label("lost"), Job.cancel_requested,
               Job.enqueued_at, Job.lease_expires_at)
        .where(Job.status == "running", Job.lease_expires_at < (now or utcnow()))
        .order_by(Job.created_at)
    ))


def fail_lost(session: Session, job_id: str, *, max_attempts: int, message: str) -> bool:
    """Fail a running job whose lease expired after its last allowed attempt."""
    return _end_expired(session, job_id, Job.attempts - Job.releases >= max_attempts,
                        status="failed", error=message)


def cancel_expired(session: Session, job_id: str) -> bool:
    """A running job that was asked to cancel and whose worker is gone ends cancelled."""
    return _end_expired(session, job_id, Job.cancel_requested.is_(True),
                        status="cancelled", stop_reason="cancelled")


def _end_expired(session: Session, job_id: str, condition: Any, *, status: str, **outcome: Any) -> bool:
    """End a running job whose lease expired, if `condition` holds; one conditional UPDATE."""
    now = utcnow()
    done = session.execute(
        update(Job).where(Job.id == job_id, Job.status == "running", Job.lease_expires_at < now, condition)
        .values(status=status, **outcome, finished_at=now, updated_at=now,
                lease_owner=None, lease_expires_at=None)
        .returning(Job.id)
    ).scalar_one_or_none()
    if done is None:
        session.rollback()
        return False
    _status_event(session, job_id, status, **outcome)
    session.commit()
    return True


def job_for_worker(session: Session, job_id: str) -> Job | None:
    """The worker's read of a job it has claimed (no tenant: the id came from our own queue)."""
    return session.get(Job, job_id)
