"""Tables: jobs, their per-epoch metrics, status/epoch events, checkpoints, uploaded data sets,
API keys."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, TypeDecorator,
    UniqueConstraint, Float, false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column

from netfit.spec import ALL_METRICS


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    """A short, url-safe, unguessable id (72 random bits). Never one that starts with '-':
    the CLI's argument parser would read `netfit job -Xy...` as an option."""
    while (id_ := secrets.token_urlsafe(9)).startswith("-"):
        pass
    return id_


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text; we store UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # the list endpoint: newest first, per tenant, optionally by status
        Index("ix_jobs_tenant_created", "tenant", "created_at", "id"),
        # the reconciler's scans
        Index("ix_jobs_status_updated", "status", "updated_at"),
        # the per-tenant limit on queued + running jobs, counted at every submit
        Index("ix_jobs_tenant_status", "tenant", "status"),
        # a sweep's trials: a trial number is taken once (two askers cannot both create trial n)
        UniqueConstraint("sweep_id", "trial_number", name="uq_jobs_sweep_trial"),
        Index("ix_jobs_sweep_status", "sweep_id", "status"),
        # the claim's candidates: a queue's queued jobs, highest priority first (migration 0005)
        Index("ix_jobs_claim", "status", "queue", "priority"),
        # fair share's turns: the starts of the last minute, an index range (0010)
        Index("ix_jobs_attempt_started", "attempt_started_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    name: Mapped[str | None] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]]
    summary: Mapped[dict[str, Any] | None]
    status: Mapped[str] = mapped_column(String(16), default="queued")
    stop_reason: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    epochs: Mapped[int]
    epochs_completed: Mapped[int] = mapped_column(default=0)
    best_epoch: Mapped[int | None]
    best_metrics: Mapped[dict[str, Any] | None]
    test_metrics: Mapped[dict[str, Any] | None]
    # attempts counts claims; releases counts graceful hand-backs (SIGTERM), which are not
    # lost attempts: attempts - releases is what NETFIT_MAX_ATTEMPTS limits.
    attempts: Mapped[int] = mapped_column(default=0)
    releases: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    queue: Mapped[str] = mapped_column(String(16), default="cpu")
    device: Mapped[str | None] = mapped_column(String(16))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # not written or read since migration 0009 (job_sends holds when a message was sent); kept so
    # that workers from before it keep running while an upgrade switches them over
    enqueued_at: Mapped[datetime | None] = mapped_column(deferred=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # set on a sweep's trials only (migration 0003); pruned_rung: the rung whose decision pruned it
    sweep_id: Mapped[str | None] = mapped_column(ForeignKey("sweeps.id", name="fk_jobs_sweep_id"))
    trial_number: Mapped[int | None]
    params: Mapped[dict[str, Any] | None]
    pruned_rung: Mapped[int | None]
    # migration 0005: the spec's priority (-100..100, higher first; a trial inherits its sweep's),
    # and the retention rule that removed the job's weights (their download is then a 410 naming it)
    priority: Mapped[int] = mapped_column(default=0, server_default="0")
    weights_removed: Mapped[str | None] = mapped_column(String(64))
    # migration 0006, preemption (db.preemption): the queued job this running one was asked to make
    # way for at its next epoch end (cleared by the claim, the release and the end), when this
    # attempt was claimed (a younger one is never preempted), and how many times it was preempted
    preempt_requested_by: Mapped[str | None] = mapped_column(String(32))
    attempt_started_at: Mapped[datetime | None]
    preemptions: Mapped[int] = mapped_column(default=0, server_default="0")
    # the early stopping's metric, the one that chose the best epoch: copied from the spec when the
    # job is made, so that the list shows the best metric without reading each job's spec (0011)
    monitor: Mapped[str | None] = mapped_column(String(32))


class JobSend(Base):
    """When the job's message was last sent (db.sending); no row: never, or to be sent again.
    Its own table so that stamping a send locks no job row: a claim's pick skips locked rows
    (SKIP LOCKED) and would pass the job over. Inserting a row takes only a key-share lock on the
    job, which the pick's FOR NO KEY UPDATE does not skip; updating or deleting one takes none."""

    __tablename__ = "job_sends"

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    sent_at: Mapped[datetime]


class Sweep(Base):
    """A search over a base spec (netfit.sweep_spec). The whole sweep request is kept in `spec`;
    `trials_asked` is the next trial number, advanced by a conditional UPDATE at each ask."""

    __tablename__ = "sweeps"
    __table_args__ = (
        Index("ix_sweeps_tenant_created", "tenant", "created_at", "id"),
        Index("ix_sweeps_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    name: Mapped[str | None] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]]
    method: Mapped[str] = mapped_column(String(8))
    objective_metric: Mapped[str] = mapped_column(String(32))
    objective_mode: Mapped[str] = mapped_column(String(4))
    max_trials: Mapped[int]
    max_concurrent: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str | None] = mapped_column(Text)
    trials_asked: Mapped[int] = mapped_column(default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # migration 0005: when retention last applied `keep_best_trials` (after every trial ended)
    retained_at: Mapped[datetime | None]


class EpochMetric(Base):
    __tablename__ = "epoch_metrics"
    # exactly once per epoch: a second write of the same epoch is an integrity error
    __table_args__ = (UniqueConstraint("job_id", "epoch", name="uq_epoch_metrics_job_epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    epoch: Mapped[int]
    train_loss: Mapped[float | None] = mapped_column(Float)
    train_accuracy: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    train_rmse: Mapped[float | None] = mapped_column(Float)
    train_mae: Mapped[float | None] = mapped_column(Float)
    val_rmse: Mapped[float | None] = mapped_column(Float)
    val_mae: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float | None] = mapped_column(Float)
    # per layer with parameters: {index, type, weight_max_abs, weight_norm, grad_norm} (migration 0004)
    layers: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)


# the metric columns above, named by the one list (netfit.spec.metric_names), in the wire's order
METRIC_COLUMNS = (*ALL_METRICS, "lr", "seconds")


class JobEvent(Base):
    """What the SSE stream replays: the autoincrement id is the event id (Last-Event-ID)."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "epoch" | "status"
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "kind", name="uq_checkpoints_job_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # best | last | resume
    epoch: Mapped[int]
    metrics: Mapped[dict[str, Any]]
    # deferred: listing checkpoints must not pull megabytes of weights
    data: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))
    size_bytes: Mapped[int] = mapped_column("size")  # named as on the wire
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"
    # the second: `fit` asks whether its arrays are uploaded already (GET /v1/datasets?sha256=)
    __table_args__ = (Index("ix_datasets_tenant_created", "tenant", "created_at"),
                      Index("ix_datasets_tenant_sha256", "tenant", "sha256"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    name: Mapped[str | None] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(8))  # the upload's format: csv | npz
    data: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))  # canonical npz
    n_samples: Mapped[int]
    input_shape: Mapped[list[int]] = mapped_column(JSON)
    task: Mapped[str] = mapped_column(String(16))
    n_classes: Mapped[int | None]
    has_test_split: Mapped[bool] = mapped_column(Boolean, default=False)
    # a given validation set (x_val, y_val), used instead of a share drawn from the training data
    has_validation_split: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    size_bytes: Mapped[int] = mapped_column("size")  # named as on the wire
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A bearer key of a tenant. Only its SHA-256 is stored; `prefix` is the start of the key,
    shown in listings so that a person can tell keys apart without seeing them."""

    __tablename__ = "api_keys"
    # unique: the per-request lookup is one indexed equality
    __table_args__ = (UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Tenant(Base):
    """A tenant's share of the cluster (migration 0005), set by `netfit tenants set`. A tenant
    without a row has weight 1 and no caps."""

    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    weight: Mapped[float] = mapped_column(Float, default=1.0)  # fair share: running work / weight
    max_priority: Mapped[int | None]  # a spec above it is a 422
    max_running: Mapped[int | None]  # running jobs at once; the rest wait queued
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Worker(Base):
    """A worker process that trains (migration 0005): registered at start, beaten while it lives,
    marked stopped when it exits. `owner` is what it writes as a job's lease_owner, so what it
    trains is read from the jobs it leases."""

    __tablename__ = "workers"
    __table_args__ = (Index("ix_workers_last_seen", "last_seen_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int]
    queues: Mapped[list[str]] = mapped_column(JSON)
    device: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]
