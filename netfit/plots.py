"""Learning curves: train vs validation loss and accuracy (or RMSE) per epoch.

The picture the lesson is about: the best epoch marked, where training stopped marked, and
the epochs after the best one shaded (see after_best): where training loss keeps falling
there while validation loss does not, the network over-fits. matplotlib is imported inside the function (Agg, no display), so
`import netfit` stays light.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

# The shaded band's legend entry, in the PNG, the SVG and the dashboard alike (charts.js).
BAND_LABEL = "after the best epoch: validation no better"

def _column(rows: Sequence[Mapping[str, Any]], name: str) -> list[float | None]:
    return [row.get(name) for row in rows]


def _as_dicts(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [row if isinstance(row, Mapping) else row.model_dump() for row in rows]


def after_best(epochs: Sequence[int], val_loss: Sequence[float | None], best_epoch: int | None = None) -> tuple[int, int] | None:
    """The band the plots shade: from the best epoch to the last one drawn (where the run
    stopped), when the run went on past its best. The best epoch is the job's (`best_epoch`), else
    the lowest validation loss; by its definition validation never beat it again in the band.
    Where training loss still falls in the band, the network is over-fitting: learning the
    training set at the cost of new data. The dashboard's charts shade the same epochs."""
    if not epochs:
        return None
    if best_epoch is None or best_epoch not in epochs:
        seen = [(v, e) for e, v in zip(epochs, val_loss) if v is not None]
        if not seen:
            return None
        best_epoch = min(seen)[1]
    last = max(epochs)
    return (best_epoch, last) if last > best_epoch else None


def _y_scale(ax: Any, name: str) -> None:
    """One rule for every job, so that two plots compare at a glance: losses on a log axis (the
    first epochs' large losses would flatten the rest, and a loss halving looks alike at any
    level), accuracy on 0..1 (with room above 1.0), RMSE and MAE linear."""
    if name == "loss":
        ax.set_yscale("log", nonpositive="mask")
    elif name == "accuracy":
        ax.set_ylim(-0.02, 1.05)  # room above 1.0: a perfect score is a line, not the border


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
    _check_format(fmt)
    return _render(curves_figure(rows, best_epoch, stop_epoch, title), fmt)


def _check_format(fmt: str) -> None:
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be 'png' or 'svg', not {fmt!r}")


def _render(fig: Any, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=100)
    return buffer.getvalue()


def curves_figure(rows: Sequence[Any], best_epoch: int | None = None, stop_epoch: int | None = None,
                  title: str | None = None) -> Any:
    """learning_curves' matplotlib Figure, before rendering."""
    # A bare Figure renders with Agg and leaves pyplot's global state (and a user's
    # notebook backend) alone; it is also safe to use from the API's threads.
    from matplotlib.figure import Figure

    data = _as_dicts(rows)
    epochs = [int(row["epoch"]) for row in data]
    metric, metric_label = _second_metric(data)
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, metric_ax = fig.subplots(1, 2)
    panels = ((loss_ax, "loss", "loss"), (metric_ax, metric, metric_label))
    band = after_best(epochs, _column(data, "val_loss"), best_epoch)

    for ax, name, label in panels:
        for split, style in (("train", "-"), ("val", "-")):  # both solid, as on the dashboard; colour tells them apart
            values = _column(data, f"{split}_{name}")
            points = [(e, v) for e, v in zip(epochs, values) if v is not None]
            if points:
                xs, ys = zip(*points)
                line, = ax.plot(xs, ys, style, marker="." if len(points) < 30 else None,
                                label=f"{'training' if split == 'train' else 'validation'} {label}")
                line.set_gid(f"{split}_{name}")
        if band is not None:
            ax.axvspan(*band, color="tab:red", alpha=0.10, label=BAND_LABEL).set_gid("overfitting")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:green", linestyle=":", label=f"best epoch {best_epoch}").set_gid("best_epoch")
        if stop_epoch is not None:
            ax.axvline(stop_epoch, color="tab:gray", linestyle="-.", label=f"stopped at {stop_epoch}").set_gid("stop_epoch")
        _y_scale(ax, name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize="small")
    loss_ax.set_title("loss")
    metric_ax.set_title(metric_label)
    if title:
        fig.suptitle(title)
    return fig


def compare_curves(series: Sequence[tuple[str, Sequence[Any], int | None]], fmt: str = "png",
                   title: str | None = None) -> bytes:
    """Several jobs' validation curves overlaid on one scale: `series` is (label, rows, best
    epoch) per job. Validation loss on the left (training loss when a job has no validation
    split), accuracy or RMSE on the right; each job's best epoch is a dot on its curve. SVG ids:
    loss:<label>, <metric>:<label>, best:<label>."""
    _check_format(fmt)
    return _render(compare_figure(series, title), fmt)


def compare_figure(series: Sequence[tuple[str, Sequence[Any], int | None]], title: str | None = None) -> Any:
    from matplotlib.figure import Figure

    all_rows = [row for _, rows, _ in series for row in _as_dicts(rows)]
    metric, metric_label = _second_metric(all_rows)
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, metric_ax = fig.subplots(1, 2)
    for n, (label, rows, best) in enumerate(series):
        data, color = _as_dicts(rows), f"C{n % 10}"
        split = "val" if any(r.get("val_loss") is not None for r in data) else "train"
        for ax, name in ((loss_ax, "loss"), (metric_ax, metric)):
            points = [(int(r["epoch"]), r.get(f"{split}_{name}")) for r in data]
            points = [(e, v) for e, v in points if v is not None]
            if not points:
                continue
            xs, ys = zip(*points)
            shown = label if split == "val" else f"{label} (training: no validation split)"
            line, = ax.plot(xs, ys, "-", color=color, label=shown if ax is loss_ax else None)
            line.set_gid(f"{name}:{label}")
            at = dict(points).get(best) if best is not None else None
            if at is not None:
                ax.plot([best], [at], "o", color=color, markersize=5)[0].set_gid(f"best:{label}")
    for ax, name, label in ((loss_ax, "loss", "validation loss"), (metric_ax, metric, f"validation {metric_label}")):
        _y_scale(ax, name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
    if loss_ax.has_data():
        loss_ax.legend(fontsize="small", title="job (dot: best epoch)", title_fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def layer_curves(rows: Sequence[Any], fmt: str = "png", title: str | None = None) -> bytes:
    """Per-layer statistics vs epoch (`rows`: EpochLayerStats or dicts {epoch, layers}): max |w|
    on the left, the gradient's norm on the right, one line per layer, both on a log axis (a
    deep sigmoid network's first-layer gradient sits orders of magnitude below its last's).
    SVG ids: weight_max_abs:<index>, grad_norm:<index>."""
    _check_format(fmt)
    return _render(layers_figure(rows, title), fmt)


def layers_figure(rows: Sequence[Any], title: str | None = None) -> Any:
    from matplotlib.figure import Figure

    series: dict[int, dict[str, Any]] = {}  # layer index -> its type and (epoch, value) points
    for row in _as_dicts(rows):
        for layer in row["layers"]:
            entry = series.setdefault(int(layer["index"]), {"type": layer["type"], "points": []})
            entry["points"].append((int(row["epoch"]), layer))
    fig = Figure(figsize=(10, 4), layout="constrained")
    weight_ax, grad_ax = fig.subplots(1, 2)
    for ax, name, label in ((weight_ax, "weight_max_abs", "max |w| (end of epoch)"),
                            (grad_ax, "grad_norm", "gradient norm (over the epoch)")):
        for n, (index, entry) in enumerate(sorted(series.items())):
            # a log axis cannot show zero or a missing value: those epochs are gaps
            points = [(e, layer.get(name)) for e, layer in entry["points"]]
            points = [(e, v) for e, v in points if v is not None and v > 0 and math.isfinite(v)]
            if not points:
                continue
            xs, ys = zip(*points)
            line, = ax.plot(xs, ys, "-", color=f"C{n % 10}", marker="." if len(points) < 30 else None,
                            label=f"{index}: {entry['type']}")
            line.set_gid(f"{name}:{index}")
        if ax.has_data():
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
    if grad_ax.has_data() or weight_ax.has_data():  # one legend beside both panels: a layer has one colour
        shown = grad_ax if grad_ax.has_data() else weight_ax
        fig.legend(*shown.get_legend_handles_labels(), loc="outside right center", fontsize="small",
                   title="layer", title_fontsize="small")
    if title:
        fig.suptitle(title)
    return fig
