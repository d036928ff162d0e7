"""The fit loop, end to end through the engine's public surface: spec + data in, result out.

These are the acceptance runs of issue 2 (Iris, digits, over-fitting, divergence, the
`linear` regression, resume, a conv net, cancel, determinism), kept to a few epochs each.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import netfit.engine.fit as fit_module
from netfit.spec import JobSpec
from netfit.engine.checkpoints import TrainingState
from netfit.engine.data import DataSignature, PreparedData, Split, load_data
from netfit.engine.errors import SpecError
from netfit.engine.fit import EpochReport, FitCallbacks, fit
from netfit.engine.layers import build_model, resolve_head

MLP = [{"type": "linear", "units": 16}, {"type": "relu"}, {"type": "linear", "units": 3}]


def make_spec(layers: list[dict], dataset: dict | None = None, preprocess: str = "standardize", **training: Any) -> JobSpec:
    return JobSpec.model_validate({
        "dataset": dataset or {"builtin": "iris"},
        "split": {"validation": 0.2, "test": 0.2, "seed": 0},
        "preprocess": {"features": preprocess},
        "model": {"layers": layers},
        "training": {"epochs": 30, "batch_size": 16, "optimizer": {"type": "adam", "lr": 0.01},
                     "device": "cpu", **training},
    })


def train(spec: JobSpec, **kwargs: Any):
    return fit(spec, load_data(spec), **kwargs)


class Recorder(FitCallbacks):
    """Keeps every report and resume state; asks to stop after `stop_after` epochs."""

    def __init__(self, stop_after: int | None = None):
        self.reports: list[EpochReport] = []
        self.states: list[bytes] = []
        self.stop_after = stop_after

    def on_epoch_end(self, report: EpochReport, state: TrainingState) -> None:
        self.reports.append(report)
        self.states.append(state.to_bytes())  # what the worker persists

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.reports) >= self.stop_after


def metrics_only(history: list[EpochReport]) -> list[dict]:
    return [{k: v for k, v in r.metrics.items()} for r in history]


# --------------------------------------------------------------------------- it learns


def test_iris_mlp_reaches_93_percent_and_reports_every_epoch():
    spec = make_spec(MLP, epochs=40)
    recorder = Recorder()
    result = train(spec, callbacks=recorder)

    assert result.test_metrics["test_accuracy"] >= 0.93
    assert result.stop_reason == "max_epochs" and result.epochs_completed == 40
    assert [r.epoch for r in recorder.reports] == list(range(1, 41))
    first, last = recorder.reports[0].metrics, recorder.reports[-1].metrics
    assert set(first) == {"train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr"}
    assert last["train_loss"] < first["train_loss"] and last["lr"] == 0.01
    assert all(r.seconds > 0 for r in recorder.reports)
    # the best epoch is the lowest val_loss, even without early stopping
    losses = [r.metrics["val_loss"] for r in result.history]
    assert result.best_epoch == 1 + losses.index(min(losses))
    assert [r.is_best for r in result.history].count(True) >= 1 and result.history[result.best_epoch - 1].is_best


def test_a_single_linear_layer_trains():
    result = train(make_spec([{"type": "linear", "units": 3}], epochs=30))
    assert result.test_metrics["test_accuracy"] > 0.8


def test_digits_mlp_reaches_95_percent():
    spec = make_spec([{"type": "dense", "units": 64, "activation": "relu"}, {"type": "dense", "units": 10}],
                     dataset={"builtin": "digits"}, epochs=12, batch_size=32, optimizer={"type": "adam", "lr": 0.003})
    assert train(spec).test_metrics["test_accuracy"] >= 0.95


def test_binary_task_with_one_output_and_regularisation_options():
    spec = make_spec([{"type": "linear", "units": 16, "activation": "relu"}, {"type": "dropout", "p": 0.2},
                      {"type": "linear", "units": 1, "activation": "sigmoid"}],
                     dataset={"builtin": "breast_cancer"}, epochs=10, grad_clip=1.0,
                     optimizer={"type": "adamw", "lr": 0.01, "weight_decay": 0.01})
    result = train(spec)
    head = resolve_head(spec, load_data(spec).signature)
    assert head.task == "binary" and head.loss == "bce"
    assert result.test_metrics["test_accuracy"] > 0.9


@pytest.mark.parametrize("optimizer", [{"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
                                       {"type": "rmsprop", "lr": 0.01}])
def test_other_optimizers_and_label_smoothing_train(optimizer):
    result = train(make_spec(MLP, epochs=20, optimizer=optimizer, label_smoothing=0.1))
    assert result.test_metrics["test_accuracy"] >= 0.9


def test_regression_on_the_linear_set_recovers_slope_and_intercept():
    spec = make_spec([{"type": "linear", "units": 1}], dataset={"synthetic": {"kind": "linear", "n_samples": 200}},
                     preprocess="none", epochs=60, batch_size=16, optimizer={"type": "adam", "lr": 0.05})
    result = train(spec)
    slope, intercept = result.best_weights["0.weight"].item(), result.best_weights["0.bias"].item()
    assert slope == pytest.approx(2.0, abs=0.1) and intercept == pytest.approx(0.9, abs=0.06)
    assert set(result.history[0].metrics) == {"train_loss", "val_loss", "train_rmse", "val_rmse", "train_mae", "val_mae", "lr"}
    assert result.test_metrics["test_rmse"] < 0.2  # the noise is 0.1


@pytest.mark.parametrize("loss", ["mse", "mae"])
def test_regression_losses_and_metrics_agree_for_several_targets(loss):
    spec = make_spec([{"type": "linear", "units": 2}], epochs=3, loss=loss,
                     dataset={"synthetic": {"kind": "regression", "n_features": 3, "n_targets": 2, "noise": 1.0}})
    result = train(spec)
    for prefix, m in [("train", result.history[-1].metrics), ("val", result.history[-1].metrics), ("test", result.test_metrics)]:
        same = m[f"{prefix}_rmse"] ** 2 if loss == "mse" else m[f"{prefix}_mae"]
        assert m[f"{prefix}_loss"] == pytest.approx(same, rel=1e-4)


def test_a_conv_net_learns_a_pattern_in_small_images():
    # class 1 images have a bright top half: a 3x3 filter and pooling see it, chance is 50%
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = rng.random((200, 1, 8, 8), dtype=np.float32)
    x[y == 1, :, :4, :] += 1.0
    signature = DataSignature((1, 8, 8), "classification", 2, 1, 200, False)
    t = lambda a, b: Split(torch.from_numpy(a), torch.from_numpy(b))  # noqa: E731
    data = PreparedData(t(x[:140], y[:140]), t(x[140:170], y[140:170]), t(x[170:], y[170:]), signature, {})
    spec = make_spec([{"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
                      {"type": "MaxPooling2D", "pool_size": 2}, {"type": "Flatten"}, {"type": "Dropout", "rate": 0.2},
                      {"type": "Dense", "units": 2}], preprocess="none", epochs=8)
    result = fit(spec, data)
    assert result.test_metrics["test_accuracy"] >= 0.8


# --------------------------------------------------------------------------- it stops


def test_overfitting_is_stopped_and_the_best_weights_restored():
    # 48 noisy training points, a big network: training loss keeps falling while validation loss turns up
    spec = make_spec([{"type": "linear", "units": 256}, {"type": "relu"}, {"type": "linear", "units": 256},
                      {"type": "relu"}, {"type": "linear", "units": 2}],
                     dataset={"synthetic": {"kind": "classification", "n_samples": 80, "n_features": 10,
                                            "flip_y": 0.3, "seed": 1}},
                     epochs=200, batch_size=8, optimizer={"type": "adam", "lr": 0.001}, early_stopping={"patience": 10})
    data = load_data(spec)
    result = fit(spec, data)

    assert result.stop_reason == "early_stopping"
    assert result.epochs_completed == result.best_epoch + 10
    val = [r.metrics["val_loss"] for r in result.history]
    train_loss = [r.metrics["train_loss"] for r in result.history]
    assert val[-1] > val[result.best_epoch - 1] and train_loss[-1] < train_loss[result.best_epoch - 1]

    model = build_model(spec, data.signature)
    model.load_state_dict(result.best_weights)
    model.eval()
    with torch.inference_mode():
        restored = nn.functional.cross_entropy(model(data.val.x), data.val.y).item()
    assert restored == pytest.approx(result.best_metrics["val_loss"], rel=1e-5)
    assert result.best_metrics == result.history[result.best_epoch - 1].metrics
    # test metrics come from the restored weights, not the over-fitted last ones
    with torch.inference_mode():
        test_acc = (model(data.test.x).argmax(1) == data.test.y).float().mean().item()
    assert result.test_metrics["test_accuracy"] == pytest.approx(test_acc)


def test_huge_learning_rate_ends_as_non_finite_without_early_stopping():
    spec = make_spec([{"type": "linear", "units": 1}], dataset={"synthetic": {"kind": "linear"}}, preprocess="none",
                     epochs=50, optimizer={"type": "sgd", "lr": 100.0})
    result = train(spec)
    assert result.stop_reason == "non_finite" and result.epochs_completed < 50
    last = result.history[-1].metrics
    assert None in (last["train_loss"], last["val_loss"])  # NaN/inf are reported as None, JSON-safe


def test_huge_learning_rate_ends_as_divergence_when_a_threshold_is_set():
    spec = make_spec(MLP, epochs=50, optimizer={"type": "adam", "lr": 100.0},
                     early_stopping={"divergence_threshold": 5.0, "patience": 50})
    result = train(spec)
    # a finite loss above the threshold: divergence, not the non-finite check
    assert result.stop_reason == "divergence" and result.epochs_completed < 50
    assert 5.0 < result.history[-1].metrics["val_loss"] < float("inf")
    unguarded = train(make_spec(MLP, epochs=3, optimizer={"type": "adam", "lr": 100.0}))
    assert unguarded.stop_reason != "divergence"  # without the threshold nothing calls it that


def test_stopping_threshold_ends_the_run_once_good_enough():
    result = train(make_spec(MLP, epochs=50, early_stopping={"monitor": "val_accuracy", "stopping_threshold": 0.9}))
    assert result.stop_reason == "stopping_threshold"
    assert result.history[-1].metrics["val_accuracy"] >= 0.9 and result.epochs_completed < 50


def test_should_stop_cancels_after_an_epoch_and_inside_one(monkeypatch):
    result = train(make_spec(MLP, epochs=30), callbacks=Recorder(stop_after=3))
    assert (result.stop_reason, result.epochs_completed) == ("cancelled", 3)

    class StopNow(FitCallbacks):
        def should_stop(self) -> bool:
            return True

    monkeypatch.setattr(fit_module, "POLL_SECONDS", 0.0)  # poll at the first batch instead of after 2 s
    result = train(make_spec(MLP, epochs=30), callbacks=StopNow())
    assert (result.stop_reason, result.epochs_completed, result.history) == ("cancelled", 0, [])


def test_a_monitor_the_run_does_not_record_is_a_spec_error():
    spec = make_spec([{"type": "linear", "units": 1}], dataset={"synthetic": {"kind": "linear"}},
                     early_stopping={"monitor": "val_accuracy"})
    with pytest.raises(SpecError) as err:
        train(spec)
    assert err.value.errors[0]["loc"] == ["training", "early_stopping", "monitor"]


# --------------------------------------------------------------------------- it repeats and resumes


def test_same_seed_same_metrics_other_seed_other_metrics():
    spec = make_spec(MLP[:2] + [{"type": "dropout", "p": 0.3}] + MLP[2:], epochs=5)
    a, b = train(spec), train(spec)
    assert metrics_only(a.history) == metrics_only(b.history)
    other = train(spec.model_copy(update={"training": spec.training.model_copy(update={"seed": 1})}))
    assert metrics_only(other.history) != metrics_only(a.history)


def test_resume_continues_exactly_like_an_uninterrupted_run():
    # dropout and shuffling use the RNG; the lr schedule and early stopping carry state too
    spec = make_spec(MLP[:2] + [{"type": "dropout", "p": 0.3}] + MLP[2:], epochs=10,
                     lr_schedule={"type": "step", "step_size": 3, "gamma": 0.5},
                     early_stopping={"patience": 50, "min_delta": 0.001})
    data = load_data(spec)
    whole = fit(spec, data)

    first = Recorder(stop_after=5)
    interrupted = fit(spec, data, callbacks=first)
    assert (interrupted.stop_reason, interrupted.epochs_completed) == ("cancelled", 5)
    torch.manual_seed(1234)  # a new worker process starts with other RNG states
    resumed = fit(spec, data, resume=TrainingState.from_bytes(first.states[-1]))

    assert resumed.stop_reason == "max_epochs" and resumed.epochs_completed == 10
    assert metrics_only(resumed.history) == metrics_only(whole.history)
    assert [r.metrics["lr"] for r in resumed.history][5:] == [0.005, 0.0025, 0.0025, 0.0025, 0.00125]
    assert resumed.test_metrics == whole.test_metrics and resumed.best_epoch == whole.best_epoch
    assert all(torch.equal(resumed.last_weights[k], v) for k, v in whole.last_weights.items())


def test_lr_schedules_set_each_epochs_lr():
    def lrs(schedule: dict, **training: Any) -> list[float]:
        result = train(make_spec(MLP, epochs=6, lr_schedule=schedule, **training))
        return [r.metrics["lr"] for r in result.history]

    assert lrs({"type": "exponential", "gamma": 0.5}) == pytest.approx([0.01 * 0.5**e for e in range(6)])
    cosine = lrs({"type": "cosine", "t_max": 4, "eta_min": 0.001})
    assert cosine[0] == 0.01 and cosine[2] == pytest.approx(0.0055) and cosine[4:] == pytest.approx([0.001, 0.001])
    # demanding a 90% gain each epoch with no patience: every epoch is a plateau, lr falls each time
    plateau = lrs({"type": "reduce_on_plateau", "monitor": "train_loss", "patience": 0, "factor": 0.5, "threshold": 0.9})
    assert plateau == pytest.approx([0.01, 0.01, 0.005, 0.0025, 0.00125, 0.000625])


def test_shuffle_off_trains_on_the_batches_in_the_datas_order_every_epoch():
    import dataclasses

    from tests.netfit.engine.conftest import make_spec as iris_spec

    shuffled = iris_spec(p=None, epochs=2, seed=5)
    data = load_data(shuffled)
    # the order the shuffled run's first epoch draws (its generator, seeded by the seed, on the CPU)
    first = torch.randperm(len(data.train.x), generator=torch.Generator().manual_seed(5))
    given = dataclasses.replace(data, train=Split(data.train.x[first], data.train.y[first]))
    in_order = iris_spec(p=None, epochs=2, seed=5, shuffle=False)
    a, b = fit(shuffled, data).history, fit(in_order, given).history
    # epoch 1: the same batches, so the same weights and metrics; epoch 2: the shuffled run draws a
    # new order, the other keeps the one given
    assert b[0].metrics == pytest.approx(a[0].metrics, rel=1e-6)
    assert b[1].metrics["train_loss"] != pytest.approx(a[1].metrics["train_loss"], rel=1e-4)
    # the order given is what it trains on: another order, other numbers
    assert fit(in_order, data).history[0].metrics["train_loss"] != pytest.approx(a[0].metrics["train_loss"], rel=1e-4)
