"""Following a job: a line per epoch with the engine's early-stopping countdown, then the outcome."""

from __future__ import annotations

from collections.abc import Callable

from netfit.client import Client
from netfit.models import Job
from netfit.progress import final_line, progress_line
from netfit.sse import EpochEvent, StatusEvent

__all__ = ["final_line", "follow", "progress_line"]


def follow(client: Client, job: Job, out: Callable[[str], None]) -> Job:
    """Print the job's events until it ends (a finished job's whole history, then its outcome)."""
    for event in client.follow(job.id):
        if isinstance(event, EpochEvent):
            out(progress_line(event.metrics, job.epochs, event.early_stopping))
        elif isinstance(event, StatusEvent) and not event.done:
            out(f"{event.status}")
    return client.job(job.id)
