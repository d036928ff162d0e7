"""Learning curves: what is drawn, and where over-fitting is shaded."""

import struct

import pytest

from netfit.models import EpochMetrics
from netfit.plots import learning_curves, overfitting_spans


def v_shaped_rows(n: int = 12, turn: int = 6) -> list[dict]:
    """Training loss falls throughout; validation loss bottoms out at `turn`, then climbs."""
    return [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 0.3 + abs(e - turn) / 10,
         "train_accuracy": 1 - 0.5 / e, "val_accuracy": 0.9 - abs(e - turn) / 100}
        for e in range(1, n + 1)
    ]


def spans_of(rows: list[dict]) -> list[tuple[int, int]]:
    return overfitting_spans([r["epoch"] for r in rows], [r["train_loss"] for r in rows],
                             [r["val_loss"] for r in rows])


def test_overfitting_is_where_validation_climbs_off_its_low_while_training_improves():
    (first, last), = spans_of(v_shaped_rows(12, turn=6))
    assert first in (7, 8) and last == 12  # from where the climb clears the level around the low


def test_small_wiggles_of_validation_loss_are_not_overfitting():
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 0.5 + (0.005 if e % 2 else 0.0)} for e in range(1, 20)]
    assert spans_of(rows) == []


def test_both_losses_rising_is_divergence_not_overfitting():
    rows = [{"epoch": e, "train_loss": 0.1 * e, "val_loss": 0.1 * e} for e in range(1, 10)]
    assert spans_of(rows) == []


def test_bumps_before_the_lowest_validation_loss_are_not_overfitting():
    losses = [1.0, 0.5, 0.7, 0.8, 0.4, 0.41, 0.6, 0.65, 0.7]  # a bump at 3-4, the low at 5, a climb from 7
    rows = [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "val_loss": v} for i, v in enumerate(losses)]
    assert spans_of(rows) == [(7, 9)]
    assert spans_of(rows[:8]) == []  # two epochs up are not yet a sustained rise


def test_noise_is_smoothed_away_on_long_runs():
    # 400 epochs: validation flat with +-10% epoch-to-epoch noise, then a steady climb from 300
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 0.5 * (1.1 if e % 2 else 0.9) + max(0, e - 300) / 100}
            for e in range(1, 401)]
    (first, last), = spans_of(rows)
    assert 290 < first < 320 and last == 400  # within a smoothing window of the turn


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


def raw_best(rows: list[dict]) -> int:
    return min(rows, key=lambda r: r["val_loss"])["epoch"]


@pytest.mark.parametrize("seed", range(8))
def test_the_band_starts_at_or_after_the_marked_best_epoch(seed):
    rows = noisy_rows(seed)
    epochs, train, val = ([r[k] for r in rows] for k in ("epoch", "train_loss", "val_loss"))
    best = raw_best(rows)
    spans = overfitting_spans(epochs, train, val, best_epoch=best)
    assert spans, "a steady climb of 50% over 60 epochs is over-fitting"
    assert all(first > best for first, _ in spans), (best, spans)
    assert spans[-1][1] == 120
    # and with the job's best epoch, whichever it is, the band follows it
    late = overfitting_spans(epochs, train, val, best_epoch=90)
    assert all(first > 90 for first, _ in late)


@pytest.mark.parametrize("seed", range(8))
def test_noise_alone_never_makes_a_band(seed):
    for n in (15, 40, 120, 400):
        rows = noisy_rows(seed, n=n, turn=None, noise=0.1)
        spans = overfitting_spans(*([r[k] for r in rows] for k in ("epoch", "train_loss", "val_loss")),
                                  best_epoch=raw_best(rows))
        assert spans == [], (n, spans)


def test_one_y_scale_rule_for_every_job():
    one_layer_iris = [{"epoch": e, "train_loss": 1.1 - 0.02 * e, "val_loss": 1.1 - 0.019 * e,
                       "train_accuracy": 0.3 + 0.01 * e, "val_accuracy": 0.3 + 0.01 * e} for e in range(1, 40)]
    deep = [{"epoch": e, "train_loss": 10.0 / e**2, "val_loss": 12.0 / e**2, "train_accuracy": 1 - 1 / (e + 1),
             "val_accuracy": 1 - 1 / (e + 1)} for e in range(1, 40)]
    for rows in (one_layer_iris, deep):
        loss_ax, metric_ax = curves_figure(rows).axes
        assert (loss_ax.get_yscale(), metric_ax.get_yscale()) == ("log", "linear")
        assert metric_ax.get_ylim() == pytest.approx((-0.02, 1.02))


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
