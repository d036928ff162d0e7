"""What the API returns: the wire contract shared by the server and the SDK."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
StopReason = Literal[
    "max_epochs", "early_stopping", "stopping_threshold", "divergence", "non_finite", "cancelled",
    "pruned",  # a sweep's trial stopped by the pruner (it ends succeeded)
]


class Wire(BaseModel):
    # ignore unknown fields so that an older SDK keeps working against a newer server
    model_config = ConfigDict(extra="ignore")


class LayerSummary(Wire):
    index: int
    type: str
    output_shape: list[int]
    params: int
    # a dense or conv layer's own activation (Keras' "activation": "relu"), applied after it
    activation: str | None = None
    # a functional graph's node (None in a sequence): its name ("r1.conv" inside block use "r1"),
    # the nodes it takes ("input": the network's input) and the block it is defined in
    name: str | None = None
    inputs: list[str] | None = None
    block: str | None = None


class ModelSummary(Wire):
    input_shape: list[int]
    task: str
    loss: str
    n_outputs: int
    layers: list[LayerSummary]
    total_params: int
    # what netfit changed or assumed, in words (a folded softmax, the loss it chose, ...)
    notes: list[str] = []


class JobItem(Wire):
    """A job as GET /v1/jobs lists it: what a list shows. The whole job (its spec, model summary,
    error, device) is GET /v1/jobs/{id}."""

    id: str
    name: str | None = None
    status: JobStatus
    stop_reason: StopReason | None = None
    epochs: int
    epochs_completed: int = 0
    best_epoch: int | None = None
    monitor: str = Field("val_loss", description="the metric that chose the best epoch (the early stopping's)")
    best_metrics: dict[str, float | None] | None = None
    test_metrics: dict[str, float | None] | None = None
    sweep_id: str | None = None  # set on a sweep's trials
    trial_number: int | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


class Job(Wire):
    id: str
    name: str | None = None
    status: JobStatus
    stop_reason: StopReason | None = None
    error: str | None = None
    epochs: int
    epochs_completed: int = 0
    best_epoch: int | None = None
    best_metrics: dict[str, float | None] | None = None
    test_metrics: dict[str, float | None] | None = None
    attempts: int = 0
    queue: str | None = None
    device: str | None = None
    spec: dict[str, Any]
    summary: ModelSummary | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    sweep_id: str | None = None  # set on a sweep's trials
    trial_number: int | None = None
    priority: int = 0
    waiting: Waiting | None = Field(None, description="while queued: why it waits")

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


class Waiting(Wire):
    """Why a queued job has not started."""

    reason: Literal["queue", "no_worker", "max_running"] = Field(
        description="queue: others are ahead of it; no_worker: no live worker serves its queue; "
                    "max_running: its tenant runs its most jobs at once")
    position: int = Field(description="its place in its queue's line (1: next), by priority, resumed-first and age")
    workers: int = Field(description="live workers that serve its queue")
    message: str


class WorkerJob(Wire):
    id: str | None = Field(None, description="the job's id; null for another tenant's job")
    epochs_completed: int = 0


class WorkerInfo(Wire):
    """A live worker process (GET /v1/workers)."""

    id: str
    host: str
    pid: int
    queues: list[str]
    device: str
    started_at: datetime
    last_seen_at: datetime
    jobs: list[WorkerJob] = Field(description="what it trains now (a pack: several)")


class Usage(Wire):
    """The caller's tenant's share of the service (GET /v1/usage)."""

    tenant: str
    running_jobs: int
    queued_jobs: int
    checkpoint_bytes: int = Field(description="bytes of the weights and resume states its jobs keep")
    dataset_bytes: int = Field(description="bytes of its uploaded data sets")
    datasets: int


class EpochMetrics(Wire):
    epoch: int
    train_loss: float | None = None
    train_accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    train_rmse: float | None = None
    train_mae: float | None = None
    val_rmse: float | None = None
    val_mae: float | None = None
    lr: float | None = None
    seconds: float | None = None


class LayerStat(Wire):
    """One layer with parameters, after an epoch (the engine's LayerStats)."""

    index: int = Field(description="the spec layer it belongs to, numbered as in the summary (a Dense with an activation is one layer)")
    type: str = Field(description="the PyTorch module, lower case: linear, conv2d, batchnorm1d, ...")
    weight_max_abs: float | None = Field(None, description="max |w| of its weight at the end of the epoch")
    weight_norm: float | None = Field(None, description="the L2 norm of its weight at the end of the epoch")
    grad_norm: float | None = Field(None, description=(
        "the L2 norm of the gradient of all its parameters, before clipping: the root mean square over at most "
        "32 evenly spaced training steps of the epoch (every step when the epoch has fewer)"))


class EpochLayerStats(Wire):
    epoch: int
    layers: list[LayerStat]


class EarlyStoppingProgress(Wire):
    """The engine's early-stopping countdown after an epoch, sent with each epoch event."""

    monitor: str
    mode: Literal["min", "max"]
    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0  # epochs since the monitored metric last improved
    patience: int | None = None  # None: no early stopping configured (the best epoch is still tracked)


class Dataset(Wire):
    id: str
    name: str | None = None
    format: Literal["csv", "npz"]
    n_samples: int
    input_shape: list[int]
    task: str
    n_classes: int | None = None
    has_test_split: bool = False
    has_validation_split: bool = False  # x_val, y_val given: the jobs' validation set, used as is
    size_bytes: int
    sha256: str
    created_at: datetime
    # in the reply to a CSV upload only: the column taken as the label (the last one unless
    # `target` named another) and the classes found in it (None: a regression target)
    target: str | None = None
    classes: list[str] | None = None


class Checkpoint(Wire):
    kind: Literal["best", "last"]
    epoch: int
    metrics: dict[str, float | None]
    size_bytes: int
    sha256: str
    created_at: datetime


T = TypeVar("T")


class Page(Wire, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


SweepStatus = Literal["running", "succeeded", "failed", "cancelled"]


class Trial(Wire):
    """A row of a sweep's leaderboard; `value` is the trial's best objective value so far."""

    number: int
    job_id: str
    params: dict[str, Any]
    status: JobStatus
    stop_reason: StopReason | None = None
    value: float | None = None
    epochs_completed: int = 0
    pruned_rung: int | None = None  # asha: the rung index; median: the epoch


class Sweep(Wire):
    id: str
    name: str | None = None
    status: SweepStatus
    error: str | None = None
    method: Literal["grid", "random", "tpe"]
    objective: dict[str, str]  # {"metric": ..., "mode": "min" | "max"}
    max_trials: int
    max_concurrent: int
    trials: dict[str, int]  # counts by trial status (and "pruned")
    best: Trial | None = None
    created_at: datetime
    finished_at: datetime | None = None
    elapsed_seconds: float = 0.0
    trials_per_minute: float | None = None
    spec: dict[str, Any]  # the sweep request as stored

    @property
    def done(self) -> bool:
        return self.status != "running"


class SweepImportance(Wire):
    sweep_id: str
    evaluator: str
    importances: dict[str, float]  # parameter path -> share of the objective's variance, summing to 1
    trials_used: int
    note: str | None = None


class ErrorDetail(Wire):
    loc: list[str | int] = []
    msg: str


class ErrorBody(Wire):
    """Every 4xx/5xx body: a sentence a person can act on, and per-field details."""

    error: str
    message: str
    details: list[ErrorDetail] = []
    request_id: str | None = None  # also the X-Request-ID response header; quote it when reporting
