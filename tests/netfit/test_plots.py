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
    assert spans_of(v_shaped_rows(12, turn=6)) == [(7, 12)]


def test_small_wiggles_of_validation_loss_are_not_overfitting():
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 0.5 + (0.005 if e % 2 else 0.0)} for e in range(1, 20)]
    assert spans_of(rows) == []


def test_both_losses_rising_is_divergence_not_overfitting():
    rows = [{"epoch": e, "train_loss": 0.1 * e, "val_loss": 0.1 * e} for e in range(1, 10)]
    assert spans_of(rows) == []


def test_bumps_before_the_lowest_validation_loss_are_not_overfitting():
    losses = [1.0, 0.5, 0.7, 0.8, 0.4, 0.41, 0.6, 0.65]  # a bump at 3-4, the low at 5, a climb from 7
    rows = [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "val_loss": v} for i, v in enumerate(losses)]
    assert spans_of(rows) == [(7, 8)]


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
