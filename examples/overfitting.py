"""The lesson's over-fitting demo: a few noisy points of a cubic, a small vs a large network,
each with and without early stopping.

Without early stopping the large network memorises the training points: its training loss
keeps falling while the validation loss climbs. Early stopping halts near the turn and
restores the best weights.

    python examples/overfitting.py --plots curves/
"""

from __future__ import annotations

import compare
import netfit
from netfit.models import Job

SPECS = ["overfitting_small_no_es.json", "overfitting_small_es.json",
         "overfitting_large_no_es.json", "overfitting_large_es.json"]


def gaps(client: netfit.Client, jobs: list[Job]) -> None:
    """Where validation loss bottomed out, and how far it drifted from there by the end."""
    print("\nname                       lowest val loss (epoch)   final train loss   final val loss")
    for job in jobs:
        rows = [r for r in client.metrics(job.id) if r.val_loss is not None]
        if not rows:
            continue
        low = min(rows, key=lambda r: r.val_loss)
        last = rows[-1]
        print(f"{job.name:<26} {low.val_loss:>10.4f} ({low.epoch:>4})        "
              f"{last.train_loss:>10.4f}       {last.val_loss:>10.4f}")


def main(argv: list[str] | None = None) -> int:
    return compare.main(argv, SPECS, __doc__.splitlines()[0], report=gaps)


if __name__ == "__main__":
    raise SystemExit(main())
