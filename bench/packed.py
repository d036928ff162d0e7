"""Packed trials (issue 16 §3): a sweep-like set of small-net trials, packed vs one at a time.

The set: wine (178 x 13, 3 classes) or Iris, an MLP 13-32-3 with a dropout layer, batch 16,
Adam, early stopping on val_loss (patience 10), each trial with its own log-uniform learning
rate and weight decay, dropout rate, label smoothing and seed, as a random sweep would draw
them. "One at a time" is engine fit() per trial on this one process (a single worker);
"packed" is one fit_packed() of all of them. Both include each trial's set-up (checks, model
build, test evaluation), as a worker pays it per job. Rounds alternate which goes first; the
ratio is the median of per-round ratios (side by side, so a shared machine's load hits both).

python -m bench packed [--quick] [--rounds N]
"""

from __future__ import annotations

import random
import statistics
import time

from bench.report import Report, median_ratio
from netfit.engine.data import load_data
from netfit.engine.fit import fit
from netfit.engine.packed import fit_packed
from netfit.spec import JobSpec

SIZES = (8, 32, 128)
GOAL_AT = 32  # the goal: >= 8x for a 32-trial sweep
GOAL = (">=", 8.0)


def trial_specs(count: int, *, dataset: str = "wine", epochs: int = 60, seed: int = 0) -> list[JobSpec]:
    """`count` trials of one shape with the numbers a random sweep would draw."""
    rng = random.Random(seed)
    specs = []
    for i in range(count):
        specs.append(JobSpec.model_validate({
            "name": f"trial-{i}",
            "dataset": {"builtin": dataset},
            "split": {"validation": 0.2, "test": 0.2, "seed": 0},
            "preprocess": {"features": "standardize"},
            "model": {"layers": [{"type": "linear", "units": 32}, {"type": "relu"},
                                 {"type": "dropout", "p": rng.choice([0.0, 0.1, 0.2, 0.3])},
                                 {"type": "linear", "units": 3}]},
            "training": {
                "epochs": epochs, "batch_size": 16, "device": "cpu", "seed": rng.randrange(1000),
                "optimizer": {"type": "adam", "lr": 10 ** rng.uniform(-3.5, -1.5), "weight_decay": 10 ** rng.uniform(-5, -2)},
                "label_smoothing": rng.choice([0.0, 0.05, 0.1]),
                "early_stopping": {"monitor": "val_loss", "patience": 10},
            },
        }))
    return specs


def one_at_a_time(specs: list[JobSpec], data) -> float:
    began = time.perf_counter()
    for spec in specs:
        fit(spec, data)
    return time.perf_counter() - began


def packed(specs: list[JobSpec], data) -> float:
    began = time.perf_counter()
    fit_packed(specs, data)
    return time.perf_counter() - began


def run(report: Report, *, quick: bool = False, rounds: int | None = None) -> None:
    rounds = rounds or (1 if quick else 3)
    epochs = 8 if quick else 60
    sizes = SIZES[:2] if quick else SIZES
    report.begin("packed", f"packed trials: wine MLP 13-32-3 + dropout, batch 16, Adam, <= {epochs} epochs with early "
                           f"stopping, per-trial lr / weight decay / dropout / label smoothing / seed; engine level, one process")
    sets = {k: trial_specs(k, epochs=epochs) for k in sizes}
    data = load_data(sets[sizes[0]][0])
    fit_packed(sets[sizes[0]][:2], data)  # warm-up: the first batched kernels and the allocator
    fit(sets[sizes[0]][0], data)
    for k in sizes:
        alone, pack = [], []
        for r in range(rounds):
            for name in (("alone", "packed") if r % 2 == 0 else ("packed", "alone")):
                (alone if name == "alone" else pack).append(
                    one_at_a_time(sets[k], data) if name == "alone" else packed(sets[k], data))
        ratio = median_ratio(alone, pack)
        report.note(f"\n  {k} trials: one at a time {statistics.median(alone):7.2f} s, packed {statistics.median(pack):6.2f} s"
                    f" (median of {rounds})")
        report.record(f"k{k}_seconds", {"alone": alone, "packed": pack})
        report.figure(f"k{k}_alone/packed", ratio, "x", goal=GOAL if k == GOAL_AT else None,
                      label=f"{k} trials: one at a time / packed")
