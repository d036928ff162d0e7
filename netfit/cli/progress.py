"""Following a job: a line per epoch with the engine's early-stopping countdown, a line per
event of its life on the cluster (waiting, running, lost, preempted, resumed), then the outcome."""

from __future__ import annotations

from collections.abc import Callable

from netfit.client import Client
from netfit.models import Job
from netfit.progress import final_line, progress_line
from netfit.sse import EpochEvent, LifeEvent, StatusEvent

__all__ = ["final_line", "follow", "progress_line", "status_change"]


def status_change(event: StatusEvent) -> str:
    """A status on the way (the end is final_line's): a second attempt says it is one."""
    data = event.data or {}
    if event.status == "running" and (data.get("attempt") or 0) > 1:
        return f"running again (attempt {data['attempt']})"
    if event.status == "queued" and data.get("released_by_attempt"):
        return f"queued again (attempt {data['released_by_attempt']} gave it back)"
    return event.status


def follow(client: Client, job: Job, out: Callable[[str], None]) -> Job:
    """Print the job's events until it ends (a finished job's whole history, then its outcome)."""
    for event in client.follow(job.id):
        if isinstance(event, EpochEvent):
            out(progress_line(event.metrics, job.epochs, event.early_stopping))
        elif isinstance(event, LifeEvent):
            out(str(event))
        elif isinstance(event, StatusEvent) and not event.done:
            out(status_change(event))
    return client.job(job.id)
