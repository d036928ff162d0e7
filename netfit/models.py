"""What the API returns: the wire contract shared by the server and the SDK."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
StopReason = Literal[
    "max_epochs", "early_stopping", "stopping_threshold", "divergence", "non_finite", "cancelled"
]


class Wire(BaseModel):
    # ignore unknown fields so that an older SDK keeps working against a newer server
    model_config = ConfigDict(extra="ignore")


class LayerSummary(Wire):
    index: int
    type: str
    output_shape: list[int]
    params: int


class ModelSummary(Wire):
    input_shape: list[int]
    task: str
    loss: str
    n_outputs: int
    layers: list[LayerSummary]
    total_params: int
    trainable_params: int
    # what netfit changed or assumed, in words (a folded softmax, the loss it chose, ...)
    notes: list[str] = []


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

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


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


class Dataset(Wire):
    id: str
    name: str | None = None
    format: Literal["csv", "npz"]
    n_samples: int
    input_shape: list[int]
    task: str
    n_classes: int | None = None
    has_test_split: bool = False
    size_bytes: int
    sha256: str
    created_at: datetime


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


class ErrorDetail(Wire):
    loc: list[str | int] = []
    msg: str


class ErrorBody(Wire):
    """Every 4xx/5xx body: a sentence a person can act on, and per-field details."""

    error: str
    message: str
    details: list[ErrorDetail] = []
    request_id: str | None = None  # also the X-Request-ID response header; quote it when reporting
