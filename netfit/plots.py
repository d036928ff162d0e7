"""Learning curves: train vs validation loss and accuracy (or RMSE) per epoch.

The picture the lesson is about: the best epoch marked, where training stopped marked, and
the over-fitting region shaded — validation loss climbing off its minimum while training
loss keeps falling. matplotlib is imported inside the function (Agg, no display), so
`import netfit` stays light.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

# Validation loss must sit this far (relative) above its best so far to count as rising:
# small wiggles of a noisy validation curve are not over-fitting.
RISE_TOLERANCE = 0.02


def _column(rows: Sequence[Mapping[str, Any]], name: str) -> list[float | None]:
    return [row.get(name) for row in rows]


def _as_dicts(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [row if isinstance(row, Mapping) else row.model_dump() for row in rows]


def overfitting_spans(
    epochs: Sequence[int],
    train_loss: Sequence[float | None],
    val_loss: Sequence[float | None],
    tolerance: float = RISE_TOLERANCE,
) -> list[tuple[int, int]]:
    """(first, last) epoch ranges where the model over-fits.

    An epoch over-fits when its validation loss is more than `tolerance` (relative) above the
    best validation loss so far while its training loss is below the training loss at that
    best epoch. A range starts at the best epoch it turned from, so the shading begins where
    validation stopped improving.
    """
    spans: list[tuple[int, int]] = []
    best_i: int | None = None
    for i, (train, val) in enumerate(zip(train_loss, val_loss)):
        if val is None or train is None:
            continue
        if best_i is None or val < val_loss[best_i]:  # type: ignore[operator]
            best_i = i
            continue
        best_val, best_train = val_loss[best_i], train_loss[best_i]
        rising = val > best_val + tolerance * abs(best_val) + 1e-12  # type: ignore[operator]
        if rising and best_train is not None and train < best_train:
            start = epochs[best_i]
            if spans and spans[-1][0] == start:
                spans[-1] = (start, epochs[i])
            else:
                spans.append((start, epochs[i]))
    return spans


def _second_metric(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """accuracy for classification, RMSE for regression: whichever the rows carry."""
    for name, label in (("accuracy", "accuracy"), ("rmse", "RMSE"), ("mae", "MAE")):
        if any(row.get(f"train_{name}") is not None or row.get(f"val_{name}") is not None for row in rows):
            return name, label
    return "accuracy", "accuracy"


def learning_curves(
    rows: Sequence[Any],
    best_epoch: int | None = None,
    stop_epoch: int | None = None,
    fmt: str = "png",
    title: str | None = None,
) -> bytes:
    """Render the curves of `rows` (EpochMetrics or dicts) as PNG or SVG bytes.

    Every drawn element carries an id (`gid`) in SVG output: train_loss, val_loss,
    train_<metric>, val_<metric>, best_epoch, stop_epoch, overfitting.
    """
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be 'png' or 'svg', not {fmt!r}")
    # A bare Figure renders with Agg and leaves pyplot's global state (and a user's
    # notebook backend) alone; it is also safe to use from the API's threads.
    from matplotlib.figure import Figure

    data = _as_dicts(rows)
    epochs = [int(row["epoch"]) for row in data]
    metric, metric_label = _second_metric(data)
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, metric_ax = fig.subplots(1, 2)
    panels = ((loss_ax, "loss", "loss"), (metric_ax, metric, metric_label))
    spans = overfitting_spans(epochs, _column(data, "train_loss"), _column(data, "val_loss"))

    for ax, name, label in panels:
        for split, style in (("train", "-"), ("val", "--")):
            values = _column(data, f"{split}_{name}")
            points = [(e, v) for e, v in zip(epochs, values) if v is not None]
            if points:
                xs, ys = zip(*points)
                line, = ax.plot(xs, ys, style, marker="." if len(points) < 30 else None,
                                label=f"{'training' if split == 'train' else 'validation'} {label}")
                line.set_gid(f"{split}_{name}")
        for first, last in spans:
            patch = ax.axvspan(first, last, color="tab:red", alpha=0.12,
                               label="over-fitting" if (first, last) == spans[0] else None)
            patch.set_gid("overfitting")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:green", linestyle=":", label=f"best epoch {best_epoch}").set_gid("best_epoch")
        if stop_epoch is not None:
            ax.axvline(stop_epoch, color="tab:gray", linestyle="-.", label=f"stopped at {stop_epoch}").set_gid("stop_epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize="small")
    loss_ax.set_title("loss")
    metric_ax.set_title(metric_label)
    if title:
        fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=100)
    return buffer.getvalue()
