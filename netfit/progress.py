"""How a job's progress reads: one line per epoch (the CLI's, `client.fit`'s and an event's
`str()`), the outcome line, and where they are shown: a terminal, or a Jupyter notebook where
a live chart and the line are updated in place through IPython display handles."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from netfit.models import EarlyStoppingProgress, EpochMetrics, Job

CHART_EVERY_S = 1.0  # a notebook's chart is redrawn at most this often (matplotlib takes ~0.1 s)


def num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}" if abs(value) >= 1e4 else f"{value:.{digits}f}"


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds}s"


def _split_text(row: EpochMetrics, split: str) -> str:
    parts = [f"{split} loss {num(getattr(row, f'{split}_loss'))}"]
    for name, label in (("accuracy", "acc"), ("rmse", "rmse")):
        value = getattr(row, f"{split}_{name}")
        if value is not None:
            parts.append(f"{label} {num(value)}")
    return " ".join(parts)


def progress_line(row: EpochMetrics, total: int | None, countdown: EarlyStoppingProgress | None, width: int = 20,
                  elapsed: float | None = None) -> str:
    """`countdown` is what the engine decided after this epoch (sent with the event), never
    recomputed here: the engine alone knows min_delta, baselines and non-finite epochs.
    `total` None: no bar (an event on its own); `elapsed`: seconds since training began, which
    adds the time taken and an estimate of what is left."""
    if total:
        done = min(width, round(width * row.epoch / max(total, 1)))
        bar = f" [{'#' * done + '.' * (width - done)}]" if width else ""
        pieces = [f"epoch {row.epoch:>{len(str(total))}}/{total}{bar}", _split_text(row, "train")]
    else:
        pieces = [f"epoch {row.epoch}", _split_text(row, "train")]
    if row.val_loss is not None:
        pieces.append(_split_text(row, "val"))
    if countdown is not None and countdown.patience is not None:
        pieces.append(f"patience {countdown.wait}/{countdown.patience}")
    if elapsed is not None and total:
        left = elapsed / max(row.epoch, 1) * max(total - row.epoch, 0)
        pieces.append(f"{duration(elapsed)}" + (f" (ETA {duration(left)})" if row.epoch < total else ""))
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


def status_line(status: str, stop_reason: str | None = None, error: str | None = None) -> str:
    pieces = [status] + ([f"stopped by {stop_reason}"] if stop_reason else []) + ([f"error: {error}"] if error else [])
    return " · ".join(pieces)


def _after(epoch: int | None) -> str:
    return f"after epoch {epoch}" if epoch else "before its first epoch ended"


def life_line(kind: str, data: dict[str, Any]) -> str:
    """A job's life on the cluster as one line (the dashboard's job page says the same)."""
    if kind == "waiting":
        message = data.get("message") or f"number {data.get('position')} in line"
        return f"waiting: {message}"
    if kind == "lost":
        return f"lost: the worker stopped beating; taken back {_after(data.get('epoch'))}"
    if kind == "preempted":
        by = f"job {data['by']}" if data.get("by") else "another team's job"
        return f"preempted by {by} {_after(data.get('after_epoch'))}; it waits to resume"
    if kind == "resumed":
        if not data.get("epoch"):
            return "resumed from the beginning (no saved state yet)"
        redone = data.get("redone") or 0
        return f"resumed from epoch {data['epoch']}" + (
            f" ({redone} epoch{'' if redone == 1 else 's'} after it train again)" if redone else "")
    return f"{kind}: {data}"


# --------------------------------------------------------------------------- where it is shown


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where display handles update output in place)."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return bool(shell) and type(shell).__name__ == "ZMQInteractiveShell"


class Progress:
    """A live view of one job: `epoch(event)` after each epoch, `status(text)` on a change,
    `done(job)` at the end. verbose 0: silent; 1: a line per epoch with a bar (and, in a
    notebook, a live chart with the line under it, updated in place); 2: a line per epoch."""

    def __init__(self, total: int, verbose: int = 1, out: Callable[[str], None] | None = None,
                 notebook: bool | None = None):
        self.total, self.verbose = total, verbose
        self.out = out or (lambda line: print(line, flush=True))
        self.notebook = in_notebook() if notebook is None else notebook
        self.rows: list[EpochMetrics] = []
        self.best_epoch: int | None = None
        self.started: float | None = None
        self._chart = self._line = None
        self._drawn = 0.0

    def epoch(self, row: EpochMetrics, countdown: EarlyStoppingProgress | None) -> None:
        now = time.monotonic()
        if self.started is None:  # the first epoch's own time, as the job reports it
            self.started = now - (row.seconds or 0.0)
        self.rows.append(row)
        if countdown is not None and countdown.best_epoch is not None:
            self.best_epoch = countdown.best_epoch
        if not self.verbose:
            return
        # the engine's own epoch times when it sends them: right for a job followed from its middle too
        timed = all(r.seconds is not None for r in self.rows)
        elapsed = sum(r.seconds for r in self.rows) if timed else now - self.started  # type: ignore[misc]
        line = progress_line(row, self.total, countdown, width=20 if self.verbose == 1 else 0, elapsed=elapsed)
        if self.notebook and self.verbose == 1:
            self._show(line, chart=now - self._drawn >= CHART_EVERY_S)
        else:
            self.out(line)

    def status(self, text: str) -> None:
        if self.verbose == 2:  # queued, running: the lines of verbose 2 only
            self.out(text)

    def done(self, job: Job) -> None:
        if not self.verbose:
            return
        line = final_line(job)
        if self.notebook and self.verbose == 1:
            self.best_epoch = job.best_epoch
            self._show(line, chart=True, stop=job.epochs_completed if job.stop_reason == "early_stopping" else None)
        else:
            self.out(line)

    def _show(self, line: str, chart: bool, stop: int | None = None) -> None:
        from IPython.display import Image, Pretty, display

        if chart and self.rows:
            from netfit.plots import learning_curves

            image = Image(data=learning_curves(self.rows, best_epoch=self.best_epoch, stop_epoch=stop, fmt="png"))
            self._drawn = time.monotonic()
            if self._chart is None:
                self._chart = display(image, display_id=True)
            else:
                self._chart.update(image)
        if self._line is None:
            self._line = display(Pretty(line), display_id=True)
        else:
            self._line.update(Pretty(line))


def chart_png(rows: list[Any], best_epoch: int | None, stop_epoch: int | None = None) -> bytes:
    from netfit.plots import learning_curves

    return learning_curves(rows, best_epoch=best_epoch, stop_epoch=stop_epoch, fmt="png")
