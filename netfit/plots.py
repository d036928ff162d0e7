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
RISE_TOLERANCE = 0.05


def _column(rows: Sequence[Mapping[str, Any]], name: str) -> list[float | None]:
    return [row.get(name) for row in rows]


def _as_dicts(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [row if isinstance(row, Mapping) else row.model_dump() for row in rows]


def _smooth(values: Sequence[float | None], half: int) -> list[float | None]:
    """Centred moving average over 2*half+1 epochs (gaps skipped): epoch-to-epoch noise
    should neither start nor end an over-fitting region."""
    out: list[float | None] = []
    for i, value in enumerate(values):
        window = [v for v in values[max(0, i - half): i + half + 1] if v is not None]
        out.append(None if value is None else sum(window) / len(window))
    return out


def overfitting_spans(
    epochs: Sequence[int],
    train_loss: Sequence[float | None],
    val_loss: Sequence[float | None],
    tolerance: float = RISE_TOLERANCE,
) -> list[tuple[int, int]]:
    """(first, last) epoch ranges where the model over-fits.

    Over-fitting is what follows the lowest validation loss of the run: an epoch after it
    over-fits when validation loss is more than `tolerance` (relative) above that low while
    training loss is below its value there. Both curves are smoothed over ~5% of the run
    first, and runs shorter than that window are noise: bumps before the low are not
    over-fitting, since validation improved again afterwards.
    """
    half = len(epochs) // 40
    train, val = _smooth(train_loss, half), _smooth(val_loss, half)
    seen = [i for i in range(len(epochs)) if val[i] is not None and train[i] is not None]
    if not seen:
        return []
    low = min(seen, key=lambda i: val[i])  # type: ignore[arg-type,return-value]
    limit = val[low] + tolerance * abs(val[low]) + 1e-12  # type: ignore[operator]
    runs: list[list[int]] = []
    for i in (i for i in seen if i > low and val[i] > limit and train[i] < train[low]):  # type: ignore[operator]
        if runs and i - runs[-1][1] <= max(1, half):  # a short dip does not split a region
            runs[-1][1] = i
        else:
            runs.append([i, i])
    min_length = max(2, half)
    return [(epochs[a], epochs[b]) for a, b in runs if b - a + 1 >= min_length]


def _spans_decades(rows: list[dict[str, Any]], names: Sequence[str], decades: float = 1.5) -> bool:
    values = [row[n] for row in rows for n in names if row.get(n) is not None and row[n] > 0]
    return bool(values) and max(values) / min(values) > 10**decades


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
        if name == "loss" and _spans_decades(data, ("train_loss", "val_loss")):
            ax.set_yscale("log")  # else the first epochs' large losses flatten the rest
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
