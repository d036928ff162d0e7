"""Learning curves: what is drawn, and the band after the best epoch (one rule with the dashboard)."""

import struct

import pytest

from netfit.models import EpochMetrics
from netfit.plots import BAND_LABEL, after_best, learning_curves


def v_shaped_rows(n: int = 12, turn: int = 6) -> list[dict]:
    """Training loss falls throughout; validation loss bottoms out at `turn`, then climbs."""
    return [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 0.3 + abs(e - turn) / 10,
         "train_accuracy": 1 - 0.5 / e, "val_accuracy": 0.9 - abs(e - turn) / 100}
        for e in range(1, n + 1)
    ]


def band_of(rows: list[dict], best_epoch: int | None = None) -> tuple[int, int] | None:
    return after_best([r["epoch"] for r in rows], [r["val_loss"] for r in rows], best_epoch)


def test_the_band_runs_from_the_best_epoch_to_where_the_run_stopped():
    assert band_of(v_shaped_rows(12, turn=6)) == (6, 12)  # the lowest validation loss, to the end
    assert band_of(v_shaped_rows(12, turn=6), best_epoch=7) == (7, 12)  # the job's best epoch wins


def test_no_band_when_the_best_epoch_is_the_last():
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.0 / e} for e in range(1, 20)]
    assert band_of(rows) is None and band_of(rows, best_epoch=19) is None
    assert band_of([]) is None


def test_the_larger_iris_network_gets_its_band():
    # the run examples/README.md describes: best 48, stopped by early stopping at 68, validation
    # loss 0.014 at its best and 0.023-0.049 after it (a noisy rise the old detector let pass)
    val = [0.03] * 47 + [0.0142, 0.0486, 0.0389, 0.0227, 0.0287, 0.0266, 0.0246, 0.0311, 0.0448, 0.0382, 0.0313,
                         0.0362, 0.0398, 0.0277, 0.041, 0.0302, 0.0302, 0.0388, 0.0339, 0.0336, 0.0328]
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": v} for e, v in enumerate(val, start=1)]
    svg = learning_curves(rows, best_epoch=48, stop_epoch=68, fmt="svg").decode()
    assert 'id="overfitting' in svg and BAND_LABEL in svg  # shaded, and the legend says what the shade is


def test_svg_draws_train_and_validation_curves_in_both_panels_with_the_markers():
    svg = learning_curves(v_shaped_rows(), best_epoch=6, stop_epoch=12, fmt="svg").decode()
    for gid in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "best_epoch", "stop_epoch", "overfitting"):
        assert f'id="{gid}' in svg, gid
    assert "best epoch 6" in svg and "stopped at 12" in svg


def test_regression_rows_plot_rmse_and_accept_wire_models():
    rows = [EpochMetrics(epoch=e, train_loss=1 / e, val_loss=1 / e, train_rmse=1 / e, val_rmse=1.1 / e)
            for e in range(1, 6)]
    svg = learning_curves(rows, fmt="svg").decode()
    assert 'id="train_rmse' in svg and 'id="val_rmse' in svg
    assert 'id="train_accuracy' not in svg and 'id="best_epoch' not in svg and 'id="overfitting' not in svg


def test_png_is_a_real_image_of_two_panels():
    png = learning_curves(v_shaped_rows(), best_epoch=6, stop_epoch=12, fmt="png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width > height > 100  # two panels side by side


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="png' or 'svg"):
        learning_curves(v_shaped_rows(), fmt="jpg")


# ---- honest plots: one definition of best, no bands on noise, one y-scale rule, overlays

import random

from netfit.plots import compare_curves, compare_figure, curves_figure


def noisy_rows(seed: int, n: int = 120, turn: int | None = 60, noise: float = 0.08) -> list[dict]:
    """Training loss falls; validation loss is noisy (±noise relative), flat or turning up at `turn`."""
    rng = random.Random(seed)
    rows = []
    for e in range(1, n + 1):
        trend = 0.5 + (0.004 * (e - turn) if turn is not None and e > turn else 0.0)
        rows.append({"epoch": e, "train_loss": 1.0 / e, "val_loss": trend * (1 + rng.uniform(-noise, noise))})
    return rows


def test_one_y_scale_rule_for_every_job():
    one_layer_iris = [{"epoch": e, "train_loss": 1.1 - 0.02 * e, "val_loss": 1.1 - 0.019 * e,
                       "train_accuracy": 0.3 + 0.01 * e, "val_accuracy": 0.3 + 0.01 * e} for e in range(1, 40)]
    deep = [{"epoch": e, "train_loss": 10.0 / e**2, "val_loss": 12.0 / e**2, "train_accuracy": 1 - 1 / (e + 1),
             "val_accuracy": 1 - 1 / (e + 1)} for e in range(1, 40)]
    for rows in (one_layer_iris, deep):
        loss_ax, metric_ax = curves_figure(rows).axes
        assert (loss_ax.get_yscale(), metric_ax.get_yscale()) == ("log", "linear")
        assert metric_ax.get_ylim() == pytest.approx((-0.02, 1.05))  # the dashboard's range too (charts.js axisFor)


def test_compare_overlays_each_jobs_validation_curve_on_one_scale():
    a, b = v_shaped_rows(12, turn=6), noisy_rows(1, n=30, turn=15)
    svg = compare_curves([("job-a", a, 6), ("job-b", b, 15)], fmt="svg").decode()
    for gid in ("loss:job-a", "loss:job-b", "accuracy:job-a", "best:job-a", "best:job-b"):
        assert f'id="{gid}' in svg, gid
    assert 'id="accuracy:job-b' not in svg  # b has no accuracy: nothing invented
    loss_ax, _ = compare_figure([("job-a", a, 6), ("job-b", b, 15)]).axes
    assert loss_ax.get_yscale() == "log" and len(loss_ax.get_legend().get_texts()) == 2
    png = compare_curves([("job-a", a, 6)], fmt="png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_and_validation_are_solid_lines_as_on_the_dashboard():
    fig = curves_figure(v_shaped_rows(), best_epoch=6, stop_epoch=12)
    styles = {line.get_gid(): line.get_linestyle() for ax in fig.axes for line in ax.get_lines()
              if (line.get_gid() or "").startswith(("train_", "val_"))}
    assert len(styles) == 4 and set(styles.values()) == {"-"}, styles
