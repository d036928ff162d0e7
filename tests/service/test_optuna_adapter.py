"""The contract between netfit and the installed Optuna: each private part of Optuna that
service/sweeps/adapter.py relies on, exercised for the behaviour netfit needs from it. When an
Optuna release moves one of them, a test here fails naming it (pyproject.toml pins the range
these pass on)."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from netfit.sweep_spec import SweepSpec
from service.sweeps.adapter import OptunaStudy, rung_steps
from tests.conftest import iris_spec


def request(method: str = "tpe", pruning: dict[str, Any] | None = None, **overrides: Any) -> SweepSpec:
    return SweepSpec.model_validate({
        "spec": iris_spec(epochs=9), "method": method, "max_trials": 40, "max_concurrent": 2, "seed": 3,
        "parameters": {"training.optimizer.lr": {"min": 0.001, "max": 0.1, "distribution": "log_uniform"},
                       "model.layers.0.units": {"values": [4, 8, 16]}},
        "pruning": pruning or {"type": "none"}, **overrides})


def trials(req: SweepSpec, n: int, curves: dict[int, dict[int, float]] | None = None,
           judged: int | None = None) -> list[Any]:
    """n completed trials (or running ones with the given curves), as the adapter makes them from
    our rows; the `judged` one without the rung record of its last epoch (the pruner makes it)."""
    dists, keys = OptunaStudy.distributions(req), OptunaStudy.choice_keys(req)
    out = []
    for i in range(n):
        curve = (curves or {}).get(i, {1: 1.0 + (i % 7) / 10})
        state = optuna.trial.TrialState.COMPLETE if curves is None else optuna.trial.TrialState.RUNNING
        params = {"training.optimizer.lr": 0.001 * (1.3 ** (i % 17)), "model.layers.0.units": (4, 8, 16)[i % 3]}
        out.append(OptunaStudy.trial(req, number=i, state=state, value=min(curve.values()) if curves is None else None,
                                     params=OptunaStudy.to_internal(req, params, keys), curve=curve,
                                     rungs_up_to=max(curve) - (i == judged), dists=dists))
    return out


@pytest.mark.parametrize("n", [3, 15])  # TPE's start-up (random) sampler, then its model
def test_a_kept_tpe_sampler_reseeded_asks_what_a_fresh_one_would(n):
    """TPESampler._rng and its _random_sampler._rng: reseeding them makes a kept sampler draw as
    TPESampler(seed=...) would."""
    req = request()
    kept = OptunaStudy(req, trials(req, n), number=n)
    kept.ask(n)  # the sampler has drawn: its random state moved on
    kept.study.tell(n, 1.5)
    fresh = OptunaStudy(req, trials(req, n) + [kept.held()[n]], number=n + 1)
    assert kept.ask(n + 1) == fresh.ask(n + 1)


def test_a_rebuilt_trial_is_held_by_the_storage_itself_and_validated():
    """FrozenTrial subclassed: the in-memory storage keeps the object (no deep copy) and still
    validates what it is given."""
    req = request()
    made = trials(req, 2)
    study = OptunaStudy(req, made, number=2)
    assert all(held is trial for held, trial in zip(study.held(), made))
    bad = OptunaStudy.trial(req, number=2, state=optuna.trial.TrialState.COMPLETE, value=None,
                            params={"training.optimizer.lr": 0.01, "model.layers.0.units": 0}, curve={1: 1.0},
                            rungs_up_to=1, dists=OptunaStudy.distributions(req))
    with pytest.raises(ValueError):
        study.add(bad)  # a complete trial needs a value


def test_asha_reads_the_rung_records_the_adapter_writes():
    """SuccessiveHalvingPruner judges a trial by the completed_rung_<k> system attributes: the
    worst at a rung is pruned, the best goes on."""
    req = request(pruning={"type": "asha", "min_epochs": 1, "reduction_factor": 3})
    assert rung_steps(req, 9) == [1, 3, 9]
    curves = {i: {1: 1.0 + i / 10, 2: 0.9 + i / 10, 3: 0.8 + i / 10} for i in range(6)}
    study = OptunaStudy(req, trials(req, 6, curves), number=6)
    assert study.held()[0].system_attrs == {"completed_rung_0": 1.0, "completed_rung_1": 0.8}
    for judged, pruned in ((5, True), (0, False)):  # judged at epoch 3: the worst of six is stopped
        study = OptunaStudy(req, trials(req, 6, curves, judged=judged), number=6)
        assert study.prunes(judged) is pruned


def test_a_member_judged_with_its_rung_already_recorded_is_judged_as_before_it_was():
    """_storage._set_trial: a pack's members judged together hold each other's rung records;
    the one judged is judged without its own (as ASHA first sees it), and keeps it after."""
    req = request(pruning={"type": "asha", "min_epochs": 1, "reduction_factor": 3})
    curves = {i: {1: 1.0 + i / 10, 2: 0.9 + i / 10, 3: 0.8 + i / 10} for i in range(6)}
    for judged, pruned in ((5, True), (0, False)):
        recorded = OptunaStudy(req, trials(req, 6, curves), number=6)  # every rung already recorded
        rungs = dict(recorded.held()[judged].system_attrs)
        assert "completed_rung_1" in rungs
        assert recorded.prunes(judged, judging="completed_rung_1") is pruned
        assert recorded.held()[judged].system_attrs == rungs


def test_an_ended_trial_is_told_through_the_storage():
    """_storage and _study_id: a held trial set to complete, with its curve, as TPE reads it."""
    req = request(method="random")
    study = OptunaStudy(req, trials(req, 1, {0: {1: 2.0}}), number=1)
    held = study.held()[0]
    study.end(held, optuna.trial.TrialState.COMPLETE, 0.5, {1: 2.0, 2: 0.5})
    (trial,) = study.study.get_trials(deepcopy=False)
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 0.5
    assert trial.intermediate_values == {1: 2.0, 2: 0.5} and len(study.completed()) == 1


def test_importance_names_the_parameter_that_matters():
    req = request(method="random")
    made = []
    dists, keys = OptunaStudy.distributions(req), OptunaStudy.choice_keys(req)
    for i in range(30):
        lr = 0.001 * (1.15 ** i)
        params = {"training.optimizer.lr": lr, "model.layers.0.units": (4, 8, 16)[i % 3]}
        made.append(OptunaStudy.trial(req, number=i, state=optuna.trial.TrialState.COMPLETE, value=lr * 10,
                                      params=OptunaStudy.to_internal(req, params, keys), curve={1: lr * 10},
                                      rungs_up_to=1, dists=dists))
    values = OptunaStudy(req, made, number=30).importance(list(req.parameters))
    assert max(values, key=values.get) == "training.optimizer.lr"
