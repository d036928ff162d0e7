"""Early stopping: the decision chain, its order, and its saved state."""

from __future__ import annotations

import json
import math

from netfit.spec import EarlyStopping
from netfit.engine.early_stopping import EarlyStopper


def run(stopper: EarlyStopper, values: list[float], key: str = "val_loss") -> list[tuple[bool, str | None]]:
    """Feed one value per epoch until the stopper says stop; the decisions made."""
    decisions = []
    for epoch, value in enumerate(values, start=1):
        decisions.append(stopper.decide(epoch, {"train_loss": 1.0, key: value}))
        if decisions[-1][0]:
            break
    return decisions


def es(**options) -> EarlyStopper:
    config = EarlyStopping(**options)
    return EarlyStopper(config, config.monitor)


def test_patience_counts_epochs_without_improvement_and_tracks_the_best():
    stopper = es(patience=3)
    decisions = run(stopper, [1.0, 0.8, 0.9, 0.85, 0.81, 0.5])
    assert decisions[-1] == (True, "early_stopping")
    assert len(decisions) == 5  # epochs 3, 4, 5 did not beat 0.8
    assert (stopper.best_epoch, stopper.best) == (2, 0.8)


def test_patience_zero_stops_at_the_first_epoch_that_does_not_improve():
    assert run(es(patience=0), [1.0, 0.9, 0.95])[-1] == (True, "early_stopping")
    assert len(run(es(patience=0), [1.0, 0.9, 0.95])) == 3


def test_mode_comes_from_the_metric_accuracy_goes_up():
    stopper = es(monitor="val_accuracy", patience=2)
    decisions = run(stopper, [0.5, 0.7, 0.9, 0.8, 0.85, 0.95], key="val_accuracy")
    assert decisions[-1] == (True, "early_stopping") and len(decisions) == 5
    assert stopper.best_epoch == 3


def test_explicit_mode_overrides_the_metric():
    stopper = es(monitor="val_loss", mode="max", patience=1)
    run(stopper, [1.0, 2.0, 1.5])
    assert stopper.best_epoch == 2


def test_min_delta_absolute_small_gains_do_not_reset_patience_but_still_mark_the_best():
    stopper = es(patience=2, min_delta=0.1)
    decisions = run(stopper, [1.0, 0.95, 0.92, 0.5])
    assert decisions[-1] == (True, "early_stopping") and len(decisions) == 3
    assert stopper.best_epoch == 3  # the best weights are still the lowest loss seen


def test_min_delta_relative_scales_with_the_metric():
    # 10% of 100 is 10: 95 is not enough, 85 is
    assert run(es(patience=1, min_delta=0.1, min_delta_mode="rel"), [100.0, 95.0])[-1] == (True, "early_stopping")
    assert run(es(patience=1, min_delta=0.1, min_delta_mode="rel"), [100.0, 85.0, 84.0])[-1] == (True, "early_stopping")
    assert len(run(es(patience=1, min_delta=0.1, min_delta_mode="rel"), [100.0, 85.0, 84.0])) == 3


def test_baseline_must_be_beaten_within_patience():
    assert run(es(patience=2, baseline=0.5), [0.9, 0.8, 0.7])[-1] == (True, "early_stopping")
    assert len(run(es(patience=2, baseline=0.5), [0.9, 0.8, 0.7])) == 2
    assert run(es(patience=2, baseline=0.5), [0.9, 0.4, 0.3, 0.2]) == [(False, None)] * 4


def test_start_from_epoch_ignores_the_warm_up():
    decisions = run(es(patience=1, start_from_epoch=3), [1.0, 2.0, 3.0, 4.0, 5.0])
    assert len(decisions) == 5 and decisions[-1] == (True, "early_stopping")


def test_stopping_threshold_ends_the_run_when_good_enough():
    assert run(es(stopping_threshold=0.1), [1.0, 0.5, 0.1, 0.05]) == [(False, None), (False, None), (True, "stopping_threshold")]


def test_divergence_threshold_ends_a_run_that_went_bad():
    assert run(es(divergence_threshold=10.0, patience=100), [1.0, 5.0, 12.0])[-1] == (True, "divergence")


def test_non_finite_comes_first_with_or_without_a_config():
    assert run(es(stopping_threshold=10.0), [math.nan]) == [(True, "non_finite")]
    no_config = EarlyStopper(None, "val_loss")
    assert run(no_config, [1.0, 0.5, math.inf]) == [(False, None), (False, None), (True, "non_finite")]
    assert no_config.best_epoch == 2
    # a NaN training loss stops even when validation looks fine (e.g. monitoring accuracy)
    stopper = es(monitor="val_accuracy")
    assert stopper.decide(1, {"train_loss": math.nan, "val_accuracy": 0.3}) == (True, "non_finite")


def test_check_finite_off_lets_a_nan_epoch_count_as_no_improvement():
    stopper = es(check_finite=False, patience=2)
    assert run(stopper, [1.0, math.nan, math.nan]) == [(False, None), (False, None), (True, "early_stopping")]
    assert stopper.best_epoch == 1


def test_without_config_it_never_stops_on_finite_values():
    stopper = EarlyStopper(None, "train_loss")
    assert run(stopper, [1.0, 2.0, 3.0, 4.0], key="train_loss") == [(False, None)] * 4
    assert stopper.best_epoch == 1


def test_state_round_trips_through_json_and_continues_identically():
    values = [1.0, 0.8, 0.9, 0.7, 0.75, 0.76, 0.77, 0.78]
    whole = es(patience=3, min_delta=0.01, baseline=2.0)
    expected = run(whole, values)

    assert len(expected) == 7
    first = es(patience=3, min_delta=0.01, baseline=2.0)
    head = [first.decide(e, {"val_loss": v}) for e, v in enumerate(values[:4], start=1)]
    saved = json.loads(json.dumps(first.state_dict()))
    second = es(patience=3, min_delta=0.01, baseline=2.0)
    second.load_state_dict(saved)
    tail = [second.decide(e, {"val_loss": v}) for e, v in enumerate(values[4:7], start=5)]
    assert head + tail == expected
    assert second.state_dict() == whole.state_dict()
