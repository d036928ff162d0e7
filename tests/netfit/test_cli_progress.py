"""The progress line of `netfit submit --follow` shows the engine's early-stopping countdown,
sent with each epoch event — never recomputed by the client."""

import math
import re

from netfit.cli import main
from netfit.cli.progress import progress_line
from netfit.engine.data import load_data
from netfit.engine.early_stopping import EarlyStopper
from netfit.engine.fit import fit
from netfit.models import EarlyStoppingProgress, EpochMetrics
from netfit.spec import EarlyStopping, JobSpec
from tests.conftest import iris_spec


def test_progress_line_shows_epoch_losses_accuracy_and_the_countdown_it_is_given():
    row = EpochMetrics(epoch=12, train_loss=0.41234, train_accuracy=0.867, val_loss=0.39, val_accuracy=0.9)
    countdown = EarlyStoppingProgress(monitor="val_loss", mode="min", best=0.3, best_epoch=9, wait=3, patience=20)
    line = progress_line(row, total=300, countdown=countdown)
    assert line.startswith("epoch  12/300 [#")
    assert "train loss 0.4123 acc 0.8670" in line and "val loss 0.3900 acc 0.9000" in line
    assert line.endswith("patience 3/20")


def test_no_early_stopping_no_countdown():
    no_rule = EarlyStoppingProgress(monitor="val_loss", mode="min", patience=None)
    for countdown in (None, no_rule):
        line = progress_line(EpochMetrics(epoch=1, train_loss=1.0), total=5, countdown=countdown)
        assert "patience" not in line and "val" not in line


def test_a_non_finite_epoch_counts_as_no_improvement_when_check_finite_is_off():
    """The case the old client-side twin got wrong (it showed 0,0,0)."""
    stopper = EarlyStopper(EarlyStopping(monitor="val_loss", patience=5, check_finite=False), "val_loss")
    waits = []
    for epoch, value in enumerate([1.0, math.nan, math.nan], start=1):
        stopper.decide(epoch, {"train_loss": value, "val_loss": value})
        waits.append(stopper.progress()["wait"])
    assert waits == [0, 1, 2]


def test_the_followed_countdown_equals_the_engines(embedded_service, tmp_path, capsys):
    spec = iris_spec(epochs=40, optimizer={"type": "sgd", "lr": 0.3, "momentum": 0.9},
                     early_stopping={"monitor": "val_loss", "patience": 6, "min_delta": 0.002})
    path = tmp_path / "spec.json"
    path.write_text(JobSpec.model_validate(spec).model_dump_json())
    assert main(["--url", embedded_service, "submit", str(path), "--follow"]) == 0
    shown = [(int(m[1]), int(m[2])) for m in re.finditer(r"^epoch +(\d+)/40 .*patience (\d+)/6$",
                                                         capsys.readouterr().out, re.M)]
    job_spec = JobSpec.model_validate(spec)
    engine = [(r.epoch, r.early_stopping["wait"]) for r in fit(job_spec, load_data(job_spec)).history]
    assert shown == engine
    assert len({wait for _, wait in engine}) > 2  # the run really counted up and reset
