"""What the example scripts share: options, loading a spec, running jobs, the leaderboard.

Every script takes `--url` (default $NETFIT_API_URL or http://127.0.0.1:8000) and `--epochs`
(shortens every run, e.g. `--epochs 5` for a quick look).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import netfit
from netfit.models import Job

HERE = Path(__file__).resolve().parent


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", help="netfit API (default: $NETFIT_API_URL or http://127.0.0.1:8000)")
    parser.add_argument("--epochs", type=int, help="train at most this many epochs (default: the spec's)")
    return parser


def load_spec(name: str | Path, epochs: int | None = None) -> dict:
    """A spec from examples/ (by file name) or any path, optionally with fewer epochs."""
    path = Path(name)
    if not path.exists() and (HERE / path).exists():
        path = HERE / path
    spec = json.loads(path.read_text())
    if epochs is not None:
        spec["training"]["epochs"] = epochs
    return spec


def run_all(client: netfit.Client, specs: list[dict], timeout: float | None = None) -> list[Job]:
    """Submit every spec first (the workers take them in turn), then wait for each."""
    jobs = [client.submit(spec) for spec in specs]
    for job in jobs:
        print(f"submitted {job.name or job.id}: {job.id}", flush=True)
    return [client.wait(job.id, timeout=timeout) for job in jobs]


def score(job: Job) -> float | None:
    """The number a leaderboard ranks by: the validation loss at the job's best epoch (the
    weights it keeps). Never a test metric: choosing a model by its test score makes that score
    an optimistic guess; the test set is looked at once, for the model chosen."""
    return (job.best_metrics or {}).get("val_loss")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


RANKED_BY = "ranked by validation loss at the best epoch (lower is better); test columns are for reading, not for choosing"


def leaderboard(jobs: list[Job]) -> str:
    """Best first by score(); jobs without a validation loss last. The test metrics beside it
    are those of the same weights (the best epoch's)."""
    def rank(job: Job) -> tuple:
        value = score(job)
        return (value is None, value or 0.0)

    header = ("rank", "name", "params", "status", "stop", "epochs", "best epoch", "val loss", "val acc",
              "test loss", "test acc", "test rmse")
    rows = [header]
    for i, job in enumerate(sorted(jobs, key=rank), start=1):
        best, test = job.best_metrics or {}, job.test_metrics or {}
        rows.append((
            str(i), job.name or job.id,
            f"{job.summary.total_params:,}" if job.summary else "-",
            job.status, job.stop_reason or "-", str(job.epochs_completed), str(job.best_epoch or "-"),
            _fmt(best.get("val_loss")), _fmt(best.get("val_accuracy")), _fmt(test.get("test_loss")),
            _fmt(test.get("test_accuracy")), _fmt(test.get("test_rmse")),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    table = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
    return f"{RANKED_BY}\n{table}"


def save_curves(client: netfit.Client, jobs: list[Job], folder: str | None) -> None:
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    for job in jobs:
        path = Path(folder) / f"{job.name or job.id}.png"
        client.curves(job.id, path=path)
        print(f"curves: {path}")
