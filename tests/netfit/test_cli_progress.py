"""The progress line of `netfit submit --follow`: the early-stopping countdown and its text."""

from netfit.cli import PatienceTracker, progress_line
from netfit.models import EpochMetrics


def spec(**early_stopping) -> dict:
    return {"training": {"early_stopping": early_stopping}}


def feed(tracker: PatienceTracker, metric: str, values: list[float]) -> list[int]:
    waits = []
    for epoch, value in enumerate(values, start=1):
        tracker.update(EpochMetrics(epoch=epoch, **{metric: value}))
        waits.append(tracker.wait)
    return waits


def test_countdown_grows_without_improvement_and_resets_on_a_new_best():
    tracker = PatienceTracker(spec(patience=20))
    assert feed(tracker, "val_loss", [1.0, 0.8, 0.9, 0.85, 0.7, 0.75]) == [0, 0, 1, 2, 0, 1]
    assert tracker.text() == "patience 1/20"


def test_min_delta_and_accuracy_mode():
    tracker = PatienceTracker(spec(monitor="val_accuracy", patience=3, min_delta=0.05))
    assert feed(tracker, "val_accuracy", [0.5, 0.52, 0.6, 0.3]) == [0, 1, 0, 1]


def test_epochs_before_start_from_epoch_do_not_count():
    tracker = PatienceTracker(spec(patience=5, start_from_epoch=2))
    assert feed(tracker, "val_loss", [0.1, 0.2, 0.9, 1.0]) == [0, 0, 0, 1]


def test_progress_line_shows_epoch_losses_accuracy_and_patience():
    tracker = PatienceTracker(spec(patience=20))
    row = EpochMetrics(epoch=12, train_loss=0.41234, train_accuracy=0.867, val_loss=0.39, val_accuracy=0.9)
    tracker.update(row)
    line = progress_line(row, total=300, patience=tracker)
    assert line.startswith("epoch  12/300 [#")
    assert "train loss 0.4123 acc 0.8670" in line and "val loss 0.3900 acc 0.9000" in line
    assert line.endswith("patience 0/20")


def test_no_early_stopping_no_countdown():
    tracker = PatienceTracker({"training": {}})
    line = progress_line(EpochMetrics(epoch=1, train_loss=1.0), total=5, patience=tracker)
    assert "patience" not in line and "val" not in line
