"""How fast is an epoch of the engine's fit, next to hand-written PyTorch loops?

MNIST-shaped synthetic data (60k x 784 float32 to train on, 10k to validate, 10 classes),
an MLP 784-128-10 and Adam. Every contender does the same work per epoch: train on all
60k samples in shuffled batches, track training loss and accuracy, evaluate the 10k
validation samples. Contenders run interleaved, one epoch each per round after a warm-up
round, so that a slow moment of a shared machine hits all of them alike; medians are reported.

A contender is one function: (data, batch_size) -> a callable that runs one epoch.
Add Lightning or Keras by writing one more and listing it in CONTENDERS.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from netfit.spec import JobSpec
from worker.engine.data import DataSignature, PreparedData, Split
from worker.engine.fit import fit

N_TRAIN, N_VAL, N_FEATURES, N_CLASSES, HIDDEN = 60_000, 10_000, 784, 10, 128
LR = 1e-3
EVAL_BATCH = 8192

Epoch = Callable[[], None]


@dataclass
class BenchData:
    x: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def make_data(seed: int = 0) -> BenchData:
    """Random pixels in [0, 1) labelled by a fixed random linear map: learnable, like digits."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(N_TRAIN + N_VAL, N_FEATURES, generator=g)
    y = (x @ torch.randn(N_FEATURES, N_CLASSES, generator=g)).argmax(1)
    return BenchData(x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:])


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(N_FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, N_CLASSES))


# --------------------------------------------------------------------------- contenders


def engine(data: BenchData, batch_size: int) -> Epoch:
    """netfit's fit() for one epoch, timed whole (model set-up included)."""
    spec = JobSpec.model_validate({
        # the data come from `prepared` below; the dataset entry only describes their shape
        "dataset": {"synthetic": {"kind": "classification", "n_samples": N_TRAIN + N_VAL,
                                  "n_features": N_FEATURES, "n_informative": 8, "n_classes": N_CLASSES}},
        "model": {"layers": [{"type": "linear", "units": HIDDEN}, {"type": "relu"},
                             {"type": "linear", "units": N_CLASSES}]},
        "training": {"epochs": 1, "batch_size": batch_size, "optimizer": {"type": "adam", "lr": LR},
                     "device": "cpu"},
    })
    signature = DataSignature(input_shape=(N_FEATURES,), task="classification", n_classes=N_CLASSES,
                              n_targets=1, n_samples=N_TRAIN + N_VAL, has_test_split=False)
    prepared = PreparedData(train=Split(data.x, data.y), val=Split(data.x_val, data.y_val), test=None,
                            signature=signature, preprocessing={})

    def epoch() -> None:
        fit(spec, prepared)

    return epoch


def _hand(data: BenchData, batch_size: int, **adam_options: object) -> Epoch:
    """The loop an expert writes: tensors, one randperm, slices, device-side metric sums."""
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, **adam_options)
    loss_fn = nn.CrossEntropyLoss()
    n = len(data.x)

    def epoch() -> None:
        model.train()
        loss_sum, correct = torch.zeros(()), torch.zeros(())
        perm = torch.randperm(n)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = data.x[idx], data.y[idx]
            out = model(xb)
            loss = loss_fn(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum.add_(loss.detach(), alpha=len(idx))
            correct.add_((out.argmax(1) == yb).sum())
        model.eval()
        val_loss, val_correct = torch.zeros(()), torch.zeros(())
        with torch.inference_mode():
            for i in range(0, len(data.x_val), EVAL_BATCH):
                out = model(data.x_val[i : i + EVAL_BATCH])
                yb = data.y_val[i : i + EVAL_BATCH]
                val_loss += nn.functional.cross_entropy(out, yb, reduction="sum")
                val_correct += (out.argmax(1) == yb).sum()
        torch.stack([loss_sum, correct, val_loss, val_correct]).tolist()

    return epoch


def hand_fused(data: BenchData, batch_size: int) -> Epoch:
    return _hand(data, batch_size, fused=True)


def hand_plain(data: BenchData, batch_size: int) -> Epoch:
    return _hand(data, batch_size)


def tutorial(data: BenchData, batch_size: int) -> Epoch:
    """The PyTorch quick-start loop: DataLoader(shuffle=True), .item() per batch."""
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    train_loader = DataLoader(TensorDataset(data.x, data.y), batch_size=batch_size, shuffle=True)
    val_loader = DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=batch_size)

    def epoch() -> None:
        model.train()
        total, correct = 0.0, 0.0
        for xb, yb in train_loader:
            pred = model(xb)
            loss = loss_fn(pred, yb)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            total += loss.item()
            correct += (pred.argmax(1) == yb).type(torch.float).sum().item()
        model.eval()
        val_loss, val_correct = 0.0, 0.0
        with torch.no_grad():
            for xb, yb in val_loader:
                pred = model(xb)
                val_loss += loss_fn(pred, yb).item()
                val_correct += (pred.argmax(1) == yb).type(torch.float).sum().item()

    return epoch


CONTENDERS: dict[str, Callable[[BenchData, int], Epoch]] = {
    "engine": engine,
    "hand_fused": hand_fused,
    "hand_plain": hand_plain,
    "tutorial": tutorial,
}
LABELS = {
    "engine": "netfit engine fit()",
    "hand_fused": "hand-optimized, fused Adam",
    "hand_plain": "hand-optimized, plain Adam",
    "tutorial": "tutorial DataLoader loop",
}


# --------------------------------------------------------------------------- running and reporting


def measure(batch_sizes: list[int], rounds: int, names: list[str]) -> dict[int, dict[str, list[float]]]:
    data = make_data()
    torch.manual_seed(0)
    epochs = {bs: {name: CONTENDERS[name](data, bs) for name in names} for bs in batch_sizes}
    times: dict[int, dict[str, list[float]]] = {bs: {name: [] for name in names} for bs in batch_sizes}
    for r in range(rounds + 1):  # round 0 warms up caches, allocator and thread pool
        for bs in batch_sizes:
            for name in names if r % 2 else names[::-1]:  # alternate the order: no one always goes first
                began = time.perf_counter()
                epochs[bs][name]()
                if r:
                    times[bs][name].append(time.perf_counter() - began)
    return times


RATIOS = {"engine/hand_fused": ("engine", "hand_fused"), "tutorial/engine": ("tutorial", "engine")}


def summarize(times: dict[int, dict[str, list[float]]]) -> dict[str, object]:
    """Medians per contender, and each ratio as the median of its per-round ratios: contenders that
    ran side by side in one round share that moment's load, so pairing them cancels most of it."""
    medians = {bs: {name: statistics.median(ts) for name, ts in per.items()} for bs, per in times.items()}
    ratios: dict[int, dict[str, float]] = {}
    for bs, per in times.items():
        for key, (a, b) in RATIOS.items():
            if a in per and b in per:
                ratios.setdefault(bs, {})[key] = statistics.median(x / y for x, y in zip(per[a], per[b]))
    return {"seconds_per_epoch_median": medians, "ratios": ratios, "samples": times}


def print_table(summary: dict[str, object], rounds: int) -> None:
    medians: dict = summary["seconds_per_epoch_median"]  # type: ignore[assignment]
    ratios: dict = summary["ratios"]  # type: ignore[assignment]
    sizes = list(medians)
    print(f"\nseconds per epoch, median of {rounds} interleaved rounds "
          f"(MNIST-shaped {N_TRAIN}x{N_FEATURES}, MLP {N_FEATURES}-{HIDDEN}-{N_CLASSES}, Adam, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__})")
    print(f"{'loop':<30}" + "".join(f"{'batch ' + str(bs):>12}" for bs in sizes))
    for name in medians[sizes[0]]:
        print(f"{LABELS.get(name, name):<30}" + "".join(f"{medians[bs][name]:>12.3f}" for bs in sizes))
    goals = {"engine/hand_fused": "goal <= 1.05", "tutorial/engine": "goal >= 1.5"}
    print("ratios: median of per-round ratios")
    for key, goal in goals.items():
        if all(key in ratios.get(bs, {}) for bs in sizes):
            print(f"{key:<30}" + "".join(f"{ratios[bs][key]:>12.3f}" for bs in sizes) + f"   ({goal})")


def run(batch_sizes: list[int], rounds: int, names: list[str] | None = None, save: Path | None = None) -> dict[str, object]:
    names = names or list(CONTENDERS)
    summary = summarize(measure(batch_sizes, rounds, names))
    print_table(summary, rounds)
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        record = {"torch": torch.__version__, "threads": torch.get_num_threads(), "rounds": rounds, **summary}
        save.write_text(json.dumps(record, indent=2))
        print(f"wrote {save}")
    return summary
