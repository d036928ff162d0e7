"""Packed trials (issue 16 §3): a member of a pack trains as the same spec alone in fit() does.

Every comparison runs the same specs through fit() one at a time and through fit_packed() at
once and compares each epoch's metrics: equal to float tolerance (the pack's batched matmuls
and unfused optimizer round differently from fit's), including dropout masks on the CPU.
"""

from __future__ import annotations


import pytest
import torch

from netfit.engine.checkpoints import TrainingState
from netfit.engine.data import load_data
from netfit.engine.fit import EpochReport, FitCallbacks, fit
from netfit.engine.packed import PackCallbacks, fit_packed
from netfit.packing import CPU_CONV_PACK, max_members, pack_key, packable
from netfit.spec import JobSpec
from netfit.sweep_spec import MAX_PACK
from tests.netfit.engine.conftest import make_spec

TOL = dict(rel=1e-4, abs=1e-5)


def assert_same_run(packed, alone) -> None:
    assert packed.stop_reason == alone.stop_reason
    assert [h.epoch for h in packed.history] == [h.epoch for h in alone.history]
    for a, b in zip(packed.history, alone.history):
        assert a.metrics.keys() == b.metrics.keys()
        for key in a.metrics:
            assert a.metrics[key] == pytest.approx(b.metrics[key], **TOL), (a.epoch, key)
        assert a.is_best == b.is_best
    assert packed.best_epoch == alone.best_epoch
    assert packed.test_metrics == pytest.approx(alone.test_metrics, **TOL)


OPTIMIZERS = {
    "adam": [{"type": "adam", "lr": 0.01}, {"type": "adam", "lr": 0.003, "weight_decay": 0.01, "betas": [0.8, 0.99]}],
    "adamw": [{"type": "adamw", "lr": 0.01, "weight_decay": 0.1}, {"type": "adamw", "lr": 0.02}],
    "sgd": [{"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, {"type": "sgd", "lr": 0.05, "weight_decay": 0.001}],
    "rmsprop": [{"type": "rmsprop", "lr": 0.003, "momentum": 0.5}, {"type": "rmsprop", "lr": 0.001}],
}


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_each_member_trains_as_it_would_alone(kind):
    first, second = OPTIMIZERS[kind]
    specs = [
        make_spec(seed=1, optimizer=first),
        make_spec(seed=2, optimizer=second, label_smoothing=0.1),
        make_spec(p=0.3, seed=3, optimizer=first, grad_clip=0.5),  # its own dropout masks and clipping
        make_spec(p=0.5, seed=1, optimizer=second, epochs=7),  # a shorter member leaves early
    ]
    data = load_data(specs[0])
    packed = fit_packed(specs, data)
    for spec, result in zip(specs, packed):
        assert_same_run(result, fit(spec, data))
    assert [r.epochs_completed for r in packed] == [12, 12, 12, 7]
    # the members really differ: they are not one run copied four times
    assert len({r.history[-1].metrics["train_loss"] for r in packed}) == 4


@pytest.mark.parametrize("dataset,out", [
    ({"synthetic": {"kind": "moons", "n_samples": 200, "noise": 0.2}}, 1),  # binary: one logit, BCE
    ({"synthetic": {"kind": "regression", "n_samples": 200, "n_features": 5, "n_targets": 2, "noise": 5}}, 2),
])
def test_binary_and_regression_members_match_fit(dataset, out):
    specs = [make_spec(p=p, dataset=dataset, out=out, seed=s, optimizer={"type": "adam", "lr": lr})
             for p, s, lr in ((0.0, 0, 0.01), (0.2, 1, 0.003))]
    data = load_data(specs[0])
    for spec, result in zip(specs, fit_packed(specs, data)):
        assert_same_run(result, fit(spec, data))


class Pruner(FitCallbacks):
    """Prunes at `epoch` like a sweep's pruner; keeps every report."""

    def __init__(self, epoch: int | None = None, cancel_after: int | None = None):
        self.epoch, self.cancel_after = epoch, cancel_after
        self.reports: list[EpochReport] = []
        self.states: list[bytes] = []  # as the worker stores them

    def on_epoch_end(self, report: EpochReport, state: TrainingState | None) -> str | None:
        self.reports.append(report)
        self.states.append(state and state.to_bytes())
        return "pruned" if report.epoch == self.epoch else None

    def should_stop(self) -> bool:
        return self.cancel_after is not None and len(self.reports) >= self.cancel_after


def test_stopped_members_leave_and_the_others_train_on():
    specs = [
        make_spec(seed=0, epochs=15),
        make_spec(seed=1, epochs=15),  # pruned after epoch 3
        make_spec(seed=2, epochs=15),  # cancelled after epoch 5
        make_spec(seed=3, epochs=15, optimizer={"type": "adam", "lr": 0.05},
                  early_stopping={"monitor": "val_loss", "patience": 2, "restore_best_weights": True}),
    ]
    data = load_data(specs[0])
    callbacks = [Pruner(), Pruner(epoch=3), Pruner(cancel_after=5), Pruner()]
    packed = fit_packed(specs, data, callbacks=callbacks)

    assert [r.stop_reason for r in packed[:3]] == ["max_epochs", "pruned", "cancelled"]
    assert [len(c.reports) for c in callbacks[:3]] == [15, 3, 5]
    assert packed[3].stop_reason == "early_stopping" and packed[3].epochs_completed < 15
    assert_same_run(packed[0], fit(specs[0], data))  # the survivor is untouched by the others leaving
    assert_same_run(packed[3], fit(specs[3], data))  # early stopping and restored best weights as alone
    pruned_alone = fit(specs[1], data, callbacks=Pruner(epoch=3))
    assert_same_run(packed[1], pruned_alone)


def test_a_members_resume_state_continues_alone_in_fit_and_in_a_pack():
    specs = [make_spec(p=0.3, seed=4, optimizer={"type": "sgd", "lr": 0.05, "momentum": 0.9}),
             make_spec(p=0.1, seed=5, optimizer={"type": "sgd", "lr": 0.1, "momentum": 0.5},
                       lr_schedule={"type": "step", "step_size": 3, "gamma": 0.5})]
    data = load_data(specs[0])
    callbacks = [Pruner(), Pruner()]
    whole = fit_packed(specs, data, callbacks=callbacks)
    at_5 = lambda: [TrainingState.from_bytes(c.states[4]) for c in callbacks]  # noqa: E731 (fit() trains on in them)

    # fit() takes a member's state as its own: the spec goes on alone exactly as in the pack
    alone = fit(specs[1], data, resume=at_5()[1])
    assert_same_run(whole[1], alone)
    # a pack resumed from its members' states (a killed worker) ends as the uninterrupted one
    for again, first in zip(fit_packed(specs, data, resume=at_5()), whole):
        assert_same_run(again, first)


def test_a_pack_builds_its_members_states_only_for_the_epochs_its_callbacks_want():
    class SavesAtFive(PackCallbacks):  # as the worker's persister: a checkpoint every few seconds
        def wants_states(self, epoch: int, seconds: float) -> bool:
            return epoch == 5

    specs = [make_spec(p=0.3, seed=4), make_spec(p=0.1, seed=5, optimizer={"type": "adam", "lr": 0.003})]
    data = load_data(specs[0])
    callbacks = [Pruner(), Pruner()]
    whole = fit_packed(specs, data, callbacks=callbacks, pack=SavesAtFive())
    for c in callbacks:
        assert [s is not None for s in c.states] == [r.epoch == 5 for r in c.reports]
    # the one state built resumes the pack as the uninterrupted run
    resume = [TrainingState.from_bytes(c.states[4]) for c in callbacks]
    for again, first in zip(fit_packed(specs, data, resume=resume), whole):
        assert_same_run(again, first)


def test_only_specs_of_one_shape_pack():
    base = make_spec()
    assert pack_key(make_spec(p=0.5, seed=9, label_smoothing=0.2, optimizer={"type": "adam", "lr": 0.1})) == pack_key(base)
    wider = JobSpec.model_validate({**base.model_dump(), "model": {"layers": [
        {"type": "linear", "units": 32}, {"type": "relu"}, {"type": "linear", "units": 3}]}})
    assert pack_key(wider) != pack_key(base)
    with pytest.raises(ValueError, match="group them by pack_key"):
        fit_packed([base, wider], load_data(base))
    assert "bf16" in packable(make_spec(precision="bf16"))
    assert packable(base) is None


DIGITS = {"dataset": {"builtin": "digits"}, "split": {"validation": 0.2, "test": 0.2, "seed": 0},
          "preprocess": {"features": "scale"}}
CONV_BN = [{"type": "reshape", "shape": [1, 8, 8]},
           # no bias where a batchnorm follows, even a few layers on: it cancels most of the bias's
           # gradient, and Adam turns what is left, rounding noise, into steps of about lr that
           # differ alone and packed (with the second conv's bias, member 0 drifted 3e-4 by epoch
           # 3 on one thread; the two-branch graph below keeps conv biases)
           {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": 1, "bias": False}, {"type": "batchnorm"},
           {"type": "relu"},
           {"type": "maxpool2d", "pool_size": 2},
           {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu", "bias": False},
           {"type": "avgpool2d", "pool_size": 2}, {"type": "flatten"}, {"type": "dropout", "p": 0.0},
           {"type": "linear", "units": 16, "bias": False}, {"type": "batchnorm"}, {"type": "relu"},
           {"type": "linear", "units": 10}]
TWO_BRANCH = {"blocks": {"two_branch": {"layers": [
    {"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": 1, "activation": "relu", "name": "small"},
    {"type": "conv2d", "filters": 3, "kernel_size": 5, "padding": 2, "activation": "relu", "name": "wide", "inputs": ["input"]},
    {"type": "concat", "inputs": ["small", "wide"]}]}},
    "layers": [{"type": "reshape", "shape": [1, 8, 8]}, {"type": "block", "block": "two_branch", "name": "branches"},
               {"type": "maxpool2d", "pool_size": 2}, {"type": "flatten"}, {"type": "dropout", "p": 0.0},
               {"type": "linear", "units": 10}]}


def conv_spec(model: dict, p: float, **training) -> JobSpec:
    layers = [dict(layer, p=p) if layer["type"] == "dropout" else layer for layer in model["layers"]]
    return JobSpec.model_validate({**DIGITS, "model": {**model, "layers": layers}, "training": {
        "epochs": 3, "batch_size": 64, "device": "cpu",
        "optimizer": training.pop("optimizer", {"type": "adam", "lr": 0.01}), **training}})


@pytest.mark.slow
def test_conv_members_with_batchnorm_and_pooling_train_as_alone_and_resume_in_fit():
    specs = [conv_spec({"layers": CONV_BN}, 0.0, seed=1),
             conv_spec({"layers": CONV_BN}, 0.3, seed=2, label_smoothing=0.1,
                       optimizer={"type": "adam", "lr": 0.02, "weight_decay": 0.01}),
             conv_spec({"layers": CONV_BN}, 0.2, seed=3, epochs=2, optimizer={"type": "adam", "lr": 0.003})]
    assert len({pack_key(s) for s in specs}) == 1 and packable(specs[0]) is None
    data = load_data(specs[0])
    callbacks = [Pruner() for _ in specs]
    packed = fit_packed(specs, data, callbacks=callbacks)
    for spec, result in zip(specs, packed):
        assert_same_run(result, fit(spec, data))
    assert len({r.history[-1].metrics["train_loss"] for r in packed}) == 3
    # a member's resume state holds its own batchnorm statistics: fit() goes on from it as the pack did
    state = TrainingState.from_bytes(callbacks[1].states[1])
    assert not torch.equal(state.model["2.running_mean"], TrainingState.from_bytes(callbacks[0].states[1]).model["2.running_mean"])
    assert_same_run(fit(specs[1], data, resume=state), packed[1])


def test_functional_graph_members_train_as_alone():
    specs = [conv_spec(TWO_BRANCH, 0.0, seed=0), conv_spec(TWO_BRANCH, 0.25, seed=5, optimizer={"type": "adam", "lr": 0.003})]
    assert specs[0].model.is_graph and len({pack_key(s) for s in specs}) == 1 and packable(specs[0]) is None
    data = load_data(specs[0])
    for spec, result in zip(specs, fit_packed(specs, data)):
        assert_same_run(result, fit(spec, data))


def test_a_pack_mixing_shuffle_on_and_off_trains_each_member_as_alone():
    specs = [make_spec(seed=1, shuffle=False), make_spec(seed=2), make_spec(p=0.3, seed=3, shuffle=False, epochs=6)]
    assert len({pack_key(s) for s in specs}) == 1  # shuffle is a member's own, as its seed is
    data = load_data(specs[0])
    packed = fit_packed(specs, data)
    for spec, result in zip(specs, packed):
        assert_same_run(result, fit(spec, data))
    # shuffle off: the same order every epoch, so not the run that shuffles
    assert packed[0].history[-1].metrics["train_loss"] != fit(make_spec(seed=1), data).history[-1].metrics["train_loss"]


def test_a_conv_nets_pack_holds_eight_members_on_a_cpu_and_all_on_a_gpu():
    conv, mlp = conv_spec(TWO_BRANCH, 0.0, seed=0), make_spec(seed=1)
    assert max_members(conv, on_cpu=True) == CPU_CONV_PACK == 8
    assert max_members(conv, on_cpu=False) == max_members(mlp, on_cpu=True) == MAX_PACK
