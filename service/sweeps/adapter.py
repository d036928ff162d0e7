"""Every use netfit makes of Optuna, in one class: the samplers, pruners and importance it
calls, and the private parts it relies on for speed (a kept sampler's random state, a study's
storage, a trial built once and never copied, ASHA's per-rung records). Optuna is pinned to a
version range in pyproject.toml, and tests/service/test_optuna_adapter.py exercises each private
access against the installed Optuna: when Optuna changes under this class, that test fails
first, naming what moved.

No torch here: the API imports this module.
"""

from __future__ import annotations

import copy
from datetime import datetime
from functools import lru_cache
from typing import Any

from netfit.sweep_spec import SweepSpec, _key


def optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def rung_steps(request: SweepSpec, up_to: int) -> list[int]:
    """ASHA's rung epochs (min_epochs * reduction_factor**k) up to `up_to`: where Optuna's
    SuccessiveHalvingPruner (min_early_stopping_rate 0) records a trial's value and judges it."""
    steps, step = [], request.pruning.min_epochs
    while step <= up_to:
        steps.append(step)
        step *= request.pruning.reduction_factor
    return steps


@lru_cache(maxsize=1)
def _rebuilt_trial() -> type:
    class RebuiltTrial(optuna().trial.FrozenTrial):
        """A trial made from our rows, so the in-memory storage's deep copy of it (9/10 of a
        rebuild at 1,000 trials: 490 ms of 540) can be the trial itself. The storage only sets
        its number and id, which are the same in every study rebuilt for the sweep. Its own
        fields never change, so it is validated once, when made (half of add_trials' cost)."""

        validated = False

        def __deepcopy__(self, memo: dict[int, Any]) -> RebuiltTrial:
            return self

        def _validate(self) -> None:
            if not self.validated:
                super()._validate()
                self.validated = True

    return RebuiltTrial


class OptunaStudy:
    """One sweep's study in Optuna's in-memory storage, made of trials rebuilt from our rows
    (`trial`), with a sampler for the next trial number."""

    def __init__(self, request: SweepSpec, trials: list[Any], number: int):
        self.request = request
        self.study = optuna().create_study(direction="minimize" if request.objective.direction == "min" else "maximize",
                                           sampler=self._sampler(number), pruner=self._pruner())
        self.study.add_trials(trials)  # validated there, as optuna.trial.create_trial would

    # ----------------------------------------------------------------- the search space

    @staticmethod
    def distributions(request: SweepSpec) -> dict[str, Any]:
        """Optuna distributions by parameter path; a categorical is over value indexes, so any
        JSON value (a list of layers) can be a choice."""
        dist = optuna().distributions
        out: dict[str, Any] = {}
        for path, p in request.parameters.items():
            if p.values is not None:
                out[path] = dist.CategoricalDistribution(list(range(len(p.values))))
            elif p.kind == "int_uniform":
                out[path] = dist.IntDistribution(int(p.min), int(p.max))  # type: ignore[arg-type]
            else:
                out[path] = dist.FloatDistribution(float(p.min), float(p.max), log=p.kind == "log_uniform")  # type: ignore[arg-type]
        return out

    @staticmethod
    def choice_keys(request: SweepSpec) -> dict[str, dict[str, int]]:
        """Each categorical parameter's {value's key: index}, made once for a whole rebuild."""
        return {path: {_key(v): i for i, v in enumerate(p.values)}
                for path, p in request.parameters.items() if p.values is not None}

    @staticmethod
    def to_internal(request: SweepSpec, params: dict[str, Any], keys: dict[str, dict[str, int]]) -> dict[str, Any]:
        """A trial's stored params (the values themselves) -> Optuna's (index for categoricals)."""
        return {path: keys[path][_key(params[path])] if path in keys else params[path] for path in request.parameters}

    @staticmethod
    def from_internal(request: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
        return {path: (p.values[params[path]] if p.values is not None else
                       int(params[path]) if p.kind == "int_uniform" else float(params[path]))
                for path, p in request.parameters.items()}

    # ----------------------------------------------------------------- trials from our rows

    @staticmethod
    def state(status: str, stop_reason: str | None, value: float | None, active: bool) -> tuple[Any, float | None]:
        """(Optuna's state, value) for one of our trials."""
        state = optuna().trial.TrialState
        if active:
            return state.RUNNING, None
        if status == "succeeded" and stop_reason == "pruned":
            return state.PRUNED, None
        if status == "succeeded" and value is not None:
            return state.COMPLETE, value
        return state.FAIL, None

    @staticmethod
    def finished(trial_or_state: Any) -> bool:
        return getattr(trial_or_state, "state", trial_or_state).is_finished()

    @classmethod
    def trial(cls, request: SweepSpec, *, number: int, state: Any, value: float | None, params: dict[str, Any],
              curve: dict[int, float], rungs_up_to: int, dists: dict[str, Any]) -> Any:
        """One of our trials as Optuna would have made it; ASHA's per-rung records (the
        `completed_rung_<k>` system attributes its pruner reads) re-made from its curve up to
        `rungs_up_to`. `params` in Optuna's form (to_internal)."""
        attrs: dict[str, Any] = {}
        if request.pruning.type == "asha":
            for k, step in enumerate(rung_steps(request, rungs_up_to)):
                if step in curve:
                    attrs[f"completed_rung_{k}"] = curve[step]
        now = datetime.now()
        return _rebuilt_trial()(
            number=number, state=state, value=value, datetime_start=now,
            datetime_complete=now if state.is_finished() else None, params=params, distributions=dists,
            user_attrs={}, system_attrs=attrs, intermediate_values=curve, trial_id=-1)

    # ----------------------------------------------------------------- a kept study

    def held(self) -> list[Any]:
        """The study's trials as its storage holds them (no copies)."""
        return self.study._storage.get_all_trials(self.study._study_id, deepcopy=False)

    def add(self, trial: Any) -> None:
        self.study.add_trial(trial)

    def end(self, held: Any, state: Any, value: float | None, curve: dict[int, float]) -> None:
        """A held trial that has ended: what TPE reads of it (its value, a pruned one's curve)."""
        storage = self.study._storage
        for step, v in curve.items():
            storage.set_trial_intermediate_value(held._trial_id, step, v)
        storage.set_trial_state_values(held._trial_id, state, None if value is None else [value])

    def ask(self, number: int) -> dict[str, Any]:
        """Trial `number`'s params (the values themselves)."""
        self.study.sampler = self._sampler_for(number)
        return self.from_internal(self.request, self.study.ask(self.distributions(self.request)).params)

    def prunes(self, number: int, judging: str | None = None) -> bool:
        """Whether the study's pruner stops trial `number` at its last recorded step. `judging`:
        the system attribute the pruner records at that step (ASHA's completed_rung_<k>), held by
        the trial as every other trial's is (a pack's members judged after one epoch, in one
        study): it is taken away while the trial is judged, as the pruner sees a trial it has not
        judged yet, then put back (the pruner records the same value)."""
        storage = self.study._storage
        trial_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        trial = storage.get_trial(trial_id)
        if judging is None or judging not in trial.system_attrs:
            return bool(self.study.pruner.prune(self.study, trial))
        unjudged = copy.copy(trial)
        unjudged.system_attrs = {k: v for k, v in trial.system_attrs.items() if k != judging}
        storage._set_trial(trial_id, unjudged)
        try:
            return bool(self.study.pruner.prune(self.study, unjudged))
        finally:
            storage._set_trial(trial_id, trial)

    def completed(self) -> list[Any]:
        return self.study.get_trials(deepcopy=False, states=(optuna().trial.TrialState.COMPLETE,))

    def importance(self, params: list[str]) -> dict[str, float]:
        """PED-ANOVA importance of `params` (it fits no model), normalized to sum 1."""
        importance = optuna().importance
        values = importance.get_param_importances(self.study, evaluator=importance.PedAnovaImportanceEvaluator(),
                                                  params=params, normalize=True)
        return {k: float(v) for k, v in values.items()}

    # ----------------------------------------------------------------- samplers and pruners

    def _sampler(self, number: int) -> Any:
        """A fresh sampler for trial `number`: its seed derived from (seed, number), so the same
        history gives the same next trial and each trial gets its own random draw."""
        samplers, request = optuna().samplers, self.request
        if request.method == "grid":
            # the grid's order must be the same at every ask: one seed for the sweep
            space = {path: list(range(len(p.values or ()))) for path, p in request.parameters.items()}
            return samplers.GridSampler(space, seed=request.seed)
        if request.method == "random":
            return samplers.RandomSampler(seed=self._seed(number))
        return samplers.TPESampler(seed=self._seed(number))

    def _seed(self, number: int) -> int:
        return (self.request.seed * 1_000_003 + number) % 2**31

    def _sampler_for(self, number: int) -> Any:
        """The sampler for trial `number` on a kept study. A kept TPE sampler is reseeded rather
        than made afresh: what else it holds is its search space's cache, made from the study's
        trials, which then walks only the trials added since (at 1,000 trials a fresh one walks
        them all, a quarter of an ask). Reseeded, it draws as a fresh one would."""
        sampler = self.study.sampler
        if self.request.method != "tpe" or not isinstance(sampler, optuna().samplers.TPESampler):
            return self._sampler(number)
        seed = self._seed(number)
        sampler._rng.rng.seed(seed)  # what TPESampler(seed=seed) sets up: its own and its start-up sampler's
        sampler._random_sampler._rng.rng.seed(seed)
        return sampler

    def _pruner(self) -> Any:
        pruners, p = optuna().pruners, self.request.pruning
        if p.type == "asha":
            return pruners.SuccessiveHalvingPruner(min_resource=p.min_epochs, reduction_factor=p.reduction_factor,
                                                   min_early_stopping_rate=0)
        if p.type == "median":
            return pruners.MedianPruner(n_startup_trials=max(2, self.request.max_concurrent),
                                        n_warmup_steps=p.min_epochs - 1)
        return pruners.NopPruner()
