"""Following a job: a line per epoch with the engine's early-stopping countdown, then the outcome."""

from __future__ import annotations

from collections.abc import Callable

from netfit.cli.output import num
from netfit.client import Client
from netfit.models import EarlyStoppingProgress, EpochMetrics, Job
from netfit.sse import EpochEvent, StatusEvent


def _split_text(row: EpochMetrics, split: str) -> str:
    parts = [f"{split} loss {num(getattr(row, f'{split}_loss'))}"]
    for name, label in (("accuracy", "acc"), ("rmse", "rmse")):
        value = getattr(row, f"{split}_{name}")
        if value is not None:
            parts.append(f"{label} {num(value)}")
    return " ".join(parts)


def progress_line(row: EpochMetrics, total: int, countdown: EarlyStoppingProgress | None, width: int = 20) -> str:
    """`countdown` is what the engine decided after this epoch (sent with the event), never
    recomputed here: the engine alone knows min_delta, baselines and non-finite epochs."""
    done = min(width, round(width * row.epoch / max(total, 1)))
    bar = "#" * done + "." * (width - done)
    pieces = [f"epoch {row.epoch:>{len(str(total))}}/{total} [{bar}]", _split_text(row, "train")]
    if row.val_loss is not None:
        pieces.append(_split_text(row, "val"))
    if countdown is not None and countdown.patience is not None:
        pieces.append(f"patience {countdown.wait}/{countdown.patience}")
    return "  ".join(pieces)


def final_line(job: Job) -> str:
    pieces = [job.status]
    if job.stop_reason:
        pieces.append(f"stopped by {job.stop_reason} after {job.epochs_completed} epochs")
    if job.best_epoch is not None:
        pieces.append(f"best epoch {job.best_epoch}")
    if job.test_metrics:
        pieces.append("test " + " ".join(f"{k.removeprefix('test_')} {num(v)}" for k, v in job.test_metrics.items()))
    if job.error:
        pieces.append(f"error: {job.error}")
    return " · ".join(pieces)


def follow(client: Client, job: Job, out: Callable[[str], None]) -> Job:
    """Print the job's events until it ends (a finished job's whole history, then its outcome)."""
    for event in client.follow(job.id):
        if isinstance(event, EpochEvent):
            out(progress_line(event.metrics, job.epochs, event.early_stopping))
        elif isinstance(event, StatusEvent) and not event.done:
            out(f"{event.status}")
    return client.job(job.id)
