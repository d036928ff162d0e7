"""Sweeps: ask Optuna for the next trial(s), decide pruning, compute importance.

Why the study is rebuilt from our rows at every ask (and not kept in Optuna's RDB storage):
the sweeps and jobs tables are the one source of truth, under our Alembic migrations and our
tenant scoping; a second set of Optuna tables would be a second truth that could disagree
with the jobs (a trial Optuna thinks is running whose job ended, a job Optuna never heard
of), and its schema would be migrated by Optuna, not us. A rebuild is cheap at sweep sizes
(one query for the trials, one for their per-epoch objective values), holds nothing a
restart loses, and lets any process ask: the API when the sweep is created, the worker when
a trial ends, the reconciler to repair an ask that was lost with its process. Two askers at
once are resolved by db.sweeps.create_trial (a conditional UPDATE of the trial counter).

The sampler is made afresh for each ask, so its seed is derived from (seed, trial number):
the same history gives the same next trial, and each trial gets its own random draw.
No torch here: the API imports this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api.settings import get_settings
from db import sweeps as db_sweeps
from db import jobs as db_jobs
from netfit.sweep_spec import SweepSpec, apply

log = logging.getLogger("netfit.sweeps")
MAX_ACTIVE_TRIALS = get_settings().max_active_trials  # per tenant, all sweeps
Enqueue = Callable[[str, str], None]


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# --------------------------------------------------------------------------- the study


def distributions(request: SweepSpec) -> dict[str, Any]:
    """Optuna distributions by parameter path; a categorical is over value indexes, so any
    JSON value (a list of layers) can be a choice."""
    dist = _optuna().distributions
    out: dict[str, Any] = {}
    for path, p in request.parameters.items():
        if p.values is not None:
            out[path] = dist.CategoricalDistribution(list(range(len(p.values))))
        elif p.kind == "int_uniform":
            out[path] = dist.IntDistribution(int(p.min), int(p.max))  # type: ignore[arg-type]
        else:
            out[path] = dist.FloatDistribution(float(p.min), float(p.max), log=p.kind == "log_uniform")  # type: ignore[arg-type]
    return out


def choice_keys(request: SweepSpec) -> dict[str, dict[str, int]]:
    """Each categorical parameter's {value's key: index}, made once for a whole rebuild."""
    from netfit.sweep_spec import _key

    return {path: {_key(v): i for i, v in enumerate(p.values)}
            for path, p in request.parameters.items() if p.values is not None}


def to_internal(request: SweepSpec, params: dict[str, Any],
                keys: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
    """A trial's stored params (the values themselves) -> Optuna's (index for categoricals)."""
    from netfit.sweep_spec import _key

    keys = choice_keys(request) if keys is None else keys
    return {path: keys[path][_key(params[path])] if path in keys else params[path] for path in request.parameters}


def from_internal(request: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    return {path: (p.values[params[path]] if p.values is not None else
                   int(params[path]) if p.kind == "int_uniform" else float(params[path]))
            for path, p in request.parameters.items()}


def _sampler(request: SweepSpec, number: int) -> Any:
    samplers = _optuna().samplers
    if request.method == "grid":
        # the grid's order must be the same at every ask: one seed for the sweep
        space = {path: list(range(len(p.values or ()))) for path, p in request.parameters.items()}
        return samplers.GridSampler(space, seed=request.seed)
    seed = (request.seed * 1_000_003 + number) % 2**31
    if request.method == "random":
        return samplers.RandomSampler(seed=seed)
    return samplers.TPESampler(seed=seed)


def pruner(request: SweepSpec) -> Any:
    pruners = _optuna().pruners
    p = request.pruning
    if p.type == "asha":
        return pruners.SuccessiveHalvingPruner(min_resource=p.min_epochs, reduction_factor=p.reduction_factor,
                                               min_early_stopping_rate=0)
    if p.type == "median":
        return pruners.MedianPruner(n_startup_trials=max(2, request.max_concurrent), n_warmup_steps=p.min_epochs - 1)
    return pruners.NopPruner()


def rung_steps(request: SweepSpec, up_to: int) -> list[int]:
    """ASHA's rung epochs (min_epochs * reduction_factor**k) up to `up_to`."""
    steps, step = [], request.pruning.min_epochs
    while step <= up_to:
        steps.append(step)
        step *= request.pruning.reduction_factor
    return steps


@lru_cache(maxsize=1)
def _rebuilt_trial() -> type:
    class RebuiltTrial(_optuna().trial.FrozenTrial):
        """A trial made for one rebuilt study and never shared, so the in-memory storage's deep
        copy of it (9/10 of a rebuild at 1,000 trials: 490 ms of 540) can be the trial itself."""

        def __deepcopy__(self, memo: dict[int, Any]) -> RebuiltTrial:
            return self

    return RebuiltTrial


def best_value(curve: dict[int, float], mode: str) -> float | None:
    if not curve:
        return None
    return min(curve.values()) if mode == "min" else max(curve.values())


def build_study(request: SweepSpec, rows: list[Any], curves: dict[str, dict[int, float]], *,
                number: int, judged: str | None = None) -> Any:
    """An in-memory study holding our trials 0..n-1 (same numbers as ours), in the states
    Optuna would have given them; ASHA's per-rung records are re-made from the curves.
    `judged`: the job whose last epoch is being judged keeps no record for that epoch."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    mode = request.objective.direction
    study = optuna.create_study(direction="minimize" if mode == "min" else "maximize",
                                sampler=_sampler(request, number), pruner=pruner(request))
    dists, keys, now = distributions(request), choice_keys(request), datetime.now()
    trial_class = _rebuilt_trial()
    frozen = []
    for row in rows:
        curve = curves.get(row.id, {})
        value = best_value(curve, mode)
        if row.status in db_sweeps.ACTIVE:
            trial_state, value = state.RUNNING, None
        elif row.status == "succeeded" and row.stop_reason == "pruned":
            trial_state, value = state.PRUNED, None
        elif row.status == "succeeded" and value is not None:
            trial_state = state.COMPLETE
        else:
            trial_state, value = state.FAIL, None
        attrs: dict[str, Any] = {}
        if request.pruning.type == "asha":
            last = max(curve) - (1 if row.id == judged else 0) if curve else 0
            for k, step in enumerate(rung_steps(request, last)):
                if step in curve:
                    attrs[f"completed_rung_{k}"] = curve[step]
        frozen.append(trial_class(
            number=row.trial_number, state=trial_state, value=value, datetime_start=now,
            datetime_complete=now if trial_state.is_finished() else None,
            params=to_internal(request, row.params or {}, keys), distributions=dists, user_attrs={},
            system_attrs=attrs, intermediate_values=curve, trial_id=-1))
    study.add_trials(frozen)  # validated there, as optuna.trial.create_trial would
    return study


# --------------------------------------------------------------------------- asking


def fill(factory: sessionmaker[Session], sweep_id: str, enqueue: Enqueue) -> int:
    """Ask for trials until max_concurrent are active or the sweep has asked max_trials; end
    the sweep when it is done. Safe to call from any process, any number of times."""
    created = 0
    for _ in range(200):  # bounded: each pass creates a trial or stops
        with factory() as session:
            job = _step(session, sweep_id)
            if job is None:
                return created
            created += 1
            try:
                enqueue(job.id, job.queue)
                db_jobs.mark_enqueued(session, job.id)
            except Exception as exc:  # noqa: BLE001 - the row is committed; the reconciler sends it
                log.warning("sweep %s: trial %s not sent (%s); the reconciler will", sweep_id, job.id, exc)
    return created


def _step(session: Session, sweep_id: str) -> Any:
    """One decision: None when nothing is to be asked now (the sweep may have ended), or the
    new trial's job (None also when another process took the number: the next fill asks)."""
    from worker.celery_app import queue_for

    for _ in range(5):  # another asker took the number: read again and ask again
        sweep = db_sweeps.get_sweep(session, None, sweep_id)
        if sweep is None or sweep.status != "running":
            return None
        request = SweepSpec.model_validate(sweep.spec)
        rows = db_sweeps.trials(session, sweep_id)
        active = sum(r.status in db_sweeps.ACTIVE for r in rows)
        if _failing(session, sweep, rows):
            return None
        if sweep.trials_asked >= sweep.max_trials:
            if active == 0:
                ok = any(r.status == "succeeded" for r in rows)
                db_sweeps.end_sweep(session, sweep_id, "succeeded" if ok else "failed",
                                    None if ok else "no trial succeeded; see the trials' errors")
            return None
        if active >= sweep.max_concurrent or db_sweeps.count_active_trials(session, sweep.tenant) >= MAX_ACTIVE_TRIALS:
            return None
        number = sweep.trials_asked
        params = next_params(session, sweep, request, rows, number)
        spec = apply(request.spec, params)
        spec["name"] = f"{sweep.name or 'sweep ' + sweep.id} #{number}"[:200]
        queue = queue_for(str(spec.get("training", {}).get("device", "auto")))
        job = db_sweeps.create_trial(session, sweep, number, params=params, spec=spec, queue=queue,
                                     tenant_limit=MAX_ACTIVE_TRIALS)
        if job is not None:
            log.info("sweep %s: trial %d asked (%s)", sweep_id, number, params)
            return job
        session.expire_all()
    return None


def next_params(session: Session, sweep: Any, request: SweepSpec, rows: list[Any], number: int) -> dict[str, Any]:
    """Optuna's choice for trial `number`: the study rebuilt from the rows, then one ask (what
    `python -m bench sweeps` times at 1,000 trials)."""
    curves = db_sweeps.objective_curves(session, sweep.id, sweep.objective_metric)
    study = build_study(request, rows, curves, number=number)
    return from_internal(request, study.ask(distributions(request)).params)


def _failing(session: Session, sweep: Any, rows: list[Any]) -> bool:
    """max_concurrent trials in a row (by when they ended) failed because of their spec, and
    none succeeded: the sweep ends failed with the last error (a lost worker is not the spec's)."""
    ended = sorted((r for r in rows if r.status in ("succeeded", "failed")), key=lambda r: r.finished_at)
    if any(r.status == "succeeded" for r in ended):
        return False
    streak = [r for r in ended if r.status == "failed" and not (r.error or "").startswith("worker_lost")]
    if len(streak) < sweep.max_concurrent or len(streak) != len(ended):
        return False
    reason = (f"{len(streak)} trials in a row failed (max_concurrent={sweep.max_concurrent}), so the sweep "
              f"stopped; the last error: {streak[-1].error}")
    db_sweeps.end_sweep(session, sweep.id, "failed", reason)
    return True


def after_job(factory: sessionmaker[Session], job_id: str, enqueue: Enqueue) -> int:
    """The worker's hook when a job ends: a trial's slot is free, ask for the next."""
    with factory() as session:
        sweep_id = db_sweeps.sweep_of_job(session, job_id)
    return fill(factory, sweep_id, enqueue) if sweep_id else 0


def repair(factory: sessionmaker[Session], enqueue: Enqueue) -> int:
    """The reconciler's pass: every running sweep is filled (an ask lost with a killed process,
    a trial ended by the reconciler itself) and ended when done."""
    with factory() as session:
        ids = db_sweeps.running_sweeps(session)
    created = 0
    for sweep_id in ids:
        try:
            created += fill(factory, sweep_id, enqueue)
        except Exception as exc:  # noqa: BLE001 - one bad sweep must not stop the others
            log.warning("sweep %s: repair failed (%s)", sweep_id, str(exc).splitlines()[0][:200])
    return created


# --------------------------------------------------------------------------- pruning

# job id -> (sweep id or None: not a trial, the job's epochs); a job never changes either
_trial_of: dict[str, tuple[str | None, int]] = {}


def prune_decision(factory: sessionmaker[Session], job_id: str, epoch: int) -> str | None:
    """After a trial's epoch is recorded: "pruned" if the sweep's pruner stops it here (the
    rung is recorded on the job), else None. Not a trial, or no pruning: None, one cached read."""
    if job_id not in _trial_of:
        if len(_trial_of) > 10_000:
            _trial_of.clear()
        with factory() as session:
            _trial_of[job_id] = db_sweeps.sweep_and_epochs(session, job_id)
    sweep_id, epochs = _trial_of[job_id]
    if sweep_id is None or epoch >= epochs:
        return None  # not a trial, or its last epoch: it ends now anyway, pruning saves nothing
    with factory() as session:
        sweep = db_sweeps.get_sweep(session, None, sweep_id)
        if sweep is None:
            return None
        request = SweepSpec.model_validate(sweep.spec)
        if request.pruning.type == "none" or epoch < request.pruning.min_epochs:
            return None
        if request.pruning.type == "asha" and epoch not in rung_steps(request, epoch):
            return None  # ASHA decides at rung epochs only
        rows = db_sweeps.trials(session, sweep_id)
        curves = db_sweeps.objective_curves(session, sweep_id, sweep.objective_metric)
        if epoch not in curves.get(job_id, {}):
            return None  # no objective value this epoch (e.g. no validation split)
        study = build_study(request, rows, curves, number=sweep.trials_asked, judged=job_id)
        number = next(r.trial_number for r in rows if r.id == job_id)
        frozen = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, number))
        if not study.pruner.prune(study, frozen):
            return None
        rung = rung_steps(request, epoch).index(epoch) if request.pruning.type == "asha" else epoch
        db_sweeps.mark_pruned(session, job_id, epoch, rung)
        log.info("sweep %s: trial %d pruned at epoch %d (rung %d)", sweep_id, number, epoch, rung)
        return "pruned"


# --------------------------------------------------------------------------- importance


def importance(session: Session, sweep: Any) -> tuple[str, dict[str, float], int, str | None]:
    """(evaluator, {path: importance}, trials used, note). PED-ANOVA needs no model fitting."""
    optuna = _optuna()
    request = SweepSpec.model_validate(sweep.spec)
    rows = db_sweeps.trials(session, sweep.id)
    curves = db_sweeps.objective_curves(session, sweep.id, sweep.objective_metric)
    study = build_study(request, rows, curves, number=sweep.trials_asked)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    name = "ped_anova"
    if len(complete) < 2:
        return name, {}, len(complete), "importance needs at least 2 completed (not pruned) trials"
    varying = [p for p in request.parameters if len({repr(t.params.get(p)) for t in complete}) > 1]
    if not varying:
        return name, {}, len(complete), "the completed trials share the same parameter values"
    try:
        values = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varying, normalize=True)
    except Exception as exc:  # noqa: BLE001 - too few trials for the evaluator, say so
        return name, {}, len(complete), f"importance could not be computed yet: {str(exc).splitlines()[0][:200]}"
    return name, {k: float(v) for k, v in values.items()}, len(complete), None
