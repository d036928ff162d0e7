"""Sweeps: ask Optuna for the next trial(s), decide pruning, compute importance.

Why the study is rebuilt from our rows at every ask (and not kept in Optuna's RDB storage):
the sweeps and jobs tables are the one source of truth, under our Alembic migrations and our
tenant scoping; a second set of Optuna tables would be a second truth that could disagree
with the jobs (a trial Optuna thinks is running whose job ended, a job Optuna never heard
of), and its schema would be migrated by Optuna, not us. A rebuild is cheap at sweep sizes:
one query for every trial's state, and params and objective curves only for the trials this
process has not seen finished (a finished trial never changes, so `study_of` keeps it). It
holds nothing a restart loses, and lets any process ask: the API when the sweep is created,
the worker when a trial ends, the reconciler to repair an ask that was lost with its process.
Two askers at once are resolved by db.sweeps.create_trial (a conditional UPDATE of the trial
counter).

The sampler is made afresh for each ask, so its seed is derived from (seed, trial number):
the same history gives the same next trial, and each trial gets its own random draw.
No torch here: the API imports this module.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings, get_settings
from db import sweeps as db_sweeps
from db import sending
from netfit.sweep_spec import SweepSpec, apply

log = logging.getLogger("netfit.sweeps")
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
    seed = _seed(request, number)
    if request.method == "random":
        return samplers.RandomSampler(seed=seed)
    return samplers.TPESampler(seed=seed)


def _seed(request: SweepSpec, number: int) -> int:
    return (request.seed * 1_000_003 + number) % 2**31


def _sampler_for(study: Any, request: SweepSpec, number: int) -> Any:
    """The sampler for trial `number` on a study this process keeps. A kept TPE sampler is
    reseeded rather than made afresh: what else it holds is its search space's cache, made
    from the study's trials, which then walks only the trials added since (at 1,000 trials
    a fresh one walks them all, a quarter of an ask). Reseeded, it draws as a fresh one would."""
    sampler = study.sampler
    if request.method != "tpe" or not isinstance(sampler, _optuna().samplers.TPESampler):
        return _sampler(request, number)
    seed = _seed(request, number)
    sampler._rng.rng.seed(seed)  # what TPESampler(seed=seed) sets up: its own and its start-up sampler's
    sampler._random_sampler._rng.rng.seed(seed)
    return sampler


def pruner(request: SweepSpec) -> Any:
    pruners = _optuna().pruners
    p = request.pruning
    if p.type == "asha":
        return pruners.SuccessiveHalvingPruner(min_resource=p.min_epochs, reduction_factor=p.reduction_factor,
                                               min_early_stopping_rate=0)
    if p.type == "median":
        return pruners.MedianPruner(n_startup_trials=max(2, request.max_concurrent), n_warmup_steps=p.min_epochs - 1)
    return pruners.NopPruner()


def prunes_at(request: SweepSpec, epoch: int) -> bool:
    """Whether the sweep's pruner judges a trial at this epoch (so its row must be written first):
    ASHA at its rung epochs, median at every epoch from min_epochs on, none never."""
    p = request.pruning
    if p.type == "none" or epoch < p.min_epochs:
        return False
    return p.type != "asha" or epoch in rung_steps(request, epoch)


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


def best_value(curve: dict[int, float], mode: str) -> float | None:
    if not curve:
        return None
    return min(curve.values()) if mode == "min" else max(curve.values())


def _state_of(request: SweepSpec, row: Any, curve: dict[int, float]) -> tuple[Any, float | None]:
    """(Optuna's state, value) for one of our trials."""
    state = _optuna().trial.TrialState
    value = best_value(curve, request.objective.direction)
    if row.status in db_sweeps.ACTIVE:
        return state.RUNNING, None
    if row.status == "succeeded" and row.stop_reason == "pruned":
        return state.PRUNED, None
    if row.status == "succeeded" and value is not None:
        return state.COMPLETE, value
    return state.FAIL, None


def _frozen(request: SweepSpec, row: Any, params: dict[str, Any], curve: dict[int, float], *,
            judged: str | None, dists: dict[str, Any], keys: dict[str, dict[str, int]]) -> Any:
    """One of our trials as Optuna would have it; ASHA's per-rung records re-made from its curve.
    `judged`: the job whose last epoch is being judged keeps no record for that epoch."""
    trial_state, value = _state_of(request, row, curve)
    attrs: dict[str, Any] = {}
    if request.pruning.type == "asha":
        last = max(curve) - (1 if row.id == judged else 0) if curve else 0
        for k, step in enumerate(rung_steps(request, last)):
            if step in curve:
                attrs[f"completed_rung_{k}"] = curve[step]
    now = datetime.now()
    return _rebuilt_trial()(
        number=row.trial_number, state=trial_state, value=value, datetime_start=now,
        datetime_complete=now if trial_state.is_finished() else None,
        params=to_internal(request, params, keys), distributions=dists, user_attrs={},
        system_attrs=attrs, intermediate_values=curve, trial_id=-1)


# A finished trial never changes, so each process keeps the sweeps' finished trials as Optuna
# trials (sweep id -> job id -> (its row's state, the trial)) and re-makes only the trials whose
# row differs: the active ones (at most max_concurrent) and the newly ended. The database stays
# the one truth: every rebuild reads every trial's state, and a row that changed is re-made.
SWEEPS_KEPT = 16
_kept: OrderedDict[str, dict[str, tuple[tuple[Any, ...], Any]]] = OrderedDict()
_kept_lock = threading.Lock()


def _row_state(row: Any) -> tuple[Any, ...]:
    return tuple(row)  # a row of db_sweeps.STATE_COLUMNS


def trial_states(session: Session, sweep_id: str) -> list[Any]:
    """Every trial's state row (db_sweeps.STATE_COLUMNS), what `study_of` rebuilds from."""
    return db_sweeps.trials(session, sweep_id, db_sweeps.STATE_COLUMNS)


def study_of(session: Session, sweep: Any, request: SweepSpec, rows: list[Any], *, number: int,
             judged: str | None = None) -> Any:
    """An in-memory study holding our trials 0..n-1 (`rows`, from trial_states; same numbers
    as ours) in the states Optuna would have given them, with a sampler for trial `number`."""
    optuna = _optuna()
    with _kept_lock:
        kept = _kept.setdefault(sweep.id, {})
        _kept.move_to_end(sweep.id)
        while len(_kept) > SWEEPS_KEPT:
            _kept.popitem(last=False)
        trials = {r.id: kept[r.id][1] for r in rows
                  if r.status not in db_sweeps.ACTIVE and r.id in kept and kept[r.id][0] == _row_state(r)}
    stale = [r for r in rows if r.id not in trials]
    if stale:
        ids = [r.id for r in stale]
        params = db_sweeps.trial_params(session, ids)
        # the whole sweep's curves in one scan when most are needed (a process's first rebuild)
        curves = db_sweeps.objective_curves(session, sweep.id, sweep.objective_metric,
                                            ids if 2 * len(ids) < len(rows) else None)
        dists, keys = distributions(request), choice_keys(request)
        made = {r.id: (_row_state(r), _frozen(request, r, params.get(r.id, {}), curves.get(r.id, {}), judged=judged,
                                              dists=dists, keys=keys)) for r in stale}
        trials.update({job_id: trial for job_id, (_, trial) in made.items()})
        with _kept_lock:
            kept.update({job_id: entry for job_id, entry in made.items() if entry[1].state.is_finished()})
            for job_id in [j for j in kept if j not in trials]:
                del kept[job_id]  # no longer a trial of the sweep (deleted)
    mode = request.objective.direction
    study = optuna.create_study(direction="minimize" if mode == "min" else "maximize",
                                sampler=_sampler(request, number), pruner=pruner(request))
    study.add_trials([trials[r.id] for r in rows])  # validated there, as optuna.trial.create_trial would
    return study


# --------------------------------------------------------------------------- asking


def fill(factory: sessionmaker[Session], sweep_id: str, enqueue: Enqueue, settings: Settings | None = None) -> int:
    """Ask for trials until max_concurrent are active (and the tenant's trials are below
    settings.max_active_trials) or the sweep has asked max_trials; end the sweep when it is done.
    Safe to call from any process, any number of times."""
    settings = settings or get_settings()
    created, held = 0, []
    with factory() as session:  # a packing sweep's trials are all asked first, then sent, so
        sweep = db_sweeps.sweep_for_worker(session, sweep_id)  # the first message starts a full pack
        packing = bool(sweep is not None and sweep.spec.get("packing"))
    for _ in range(200):  # bounded: each pass creates a trial or stops
        with factory() as session:
            job = _step(session, sweep_id, settings)
            if job is None:
                break
            created += 1
            if not packing:
                _send(session, sweep_id, job, enqueue)
                continue
            # held: created stamped as sent, so no reconciler sends it before the rest are asked
            # (it does after NETFIT_REQUEUE_SECONDS if this process dies holding it)
            held.append(job)
    if held:
        with factory() as session:
            for job in held:
                _send(session, sweep_id, job, enqueue)
    return created


def _send(session: Session, sweep_id: str, job: Any, enqueue: Enqueue) -> None:
    try:
        enqueue(job.id, job.queue)
    except Exception as exc:  # noqa: BLE001 - the row is committed; the reconciler sends it
        log.warning("sweep %s: trial %s not sent (%s); the reconciler will", sweep_id, job.id, exc)
        sending.mark_unsent(session, job.id)


def _step(session: Session, sweep_id: str, settings: Settings | None = None) -> Any:
    """One decision: None when nothing is to be asked now (the sweep may have ended), or the
    new trial's job (None also when another process took the number: the next fill asks)."""
    from service.queue import queue_for

    settings = settings or get_settings()
    for _ in range(5):  # another asker took the number: read again and ask again
        sweep = db_sweeps.sweep_for_worker(session, sweep_id)
        if sweep is None or sweep.status != "running":
            return None
        request = SweepSpec.model_validate(sweep.spec)
        rows = trial_states(session, sweep_id)
        active = sum(r.status in db_sweeps.ACTIVE for r in rows)
        if _failing(session, sweep, rows):
            return None
        if sweep.trials_asked >= sweep.max_trials:
            if active == 0:
                ok = any(r.status == "succeeded" for r in rows)
                db_sweeps.end_sweep(session, sweep_id, "succeeded" if ok else "failed",
                                    None if ok else "no trial succeeded; see the trials' errors")
            return None
        if active >= sweep.max_concurrent or db_sweeps.count_active_trials(session, sweep.tenant) >= settings.max_active_trials:
            return None
        number = sweep.trials_asked
        params = next_params(session, sweep, request, rows, number)
        spec = apply(request.spec, params)
        spec["name"] = f"{sweep.name or 'sweep ' + sweep.id} #{number}"[:200]
        queue = queue_for(str(spec.get("training", {}).get("device", "auto")), settings)
        job = db_sweeps.create_trial(session, sweep, number, params=params, spec=spec, queue=queue,
                                     tenant_limit=settings.max_active_trials)
        if job is not None:
            log.info("sweep %s: trial %d asked (%s)", sweep_id, number, params)
            return job
        forget(sweep_id)  # its study holds a trial that is not ours
        session.expire_all()
    return None


# The study each process last asked on, by sweep: (study, each trial's row state as last seen).
# The next ask brings it up to date from the rows instead of rebuilding it: trials that ended
# since are told to it, trials another process asked are added, and the trial it asked last is
# already in it (when that trial's number was taken by another asker, forget() drops it).
_asking: OrderedDict[str, tuple[Any, dict[int, tuple[Any, ...]]]] = OrderedDict()
_asking_lock = threading.Lock()


def forget(sweep_id: str) -> None:
    with _asking_lock:
        _asking.pop(sweep_id, None)


def next_params(session: Session, sweep: Any, request: SweepSpec, rows: list[Any], number: int) -> dict[str, Any]:
    """Optuna's choice for trial `number` (= len(rows)): the process's study brought up to date
    from the rows, then one ask (what `python -m bench sweeps` times at 1,000 trials)."""
    with _asking_lock:
        study, seen = _asking.pop(sweep.id, (None, {}))
        if study is None or not _catch_up(session, sweep, request, rows, study, seen):
            study, seen = study_of(session, sweep, request, rows, number=number), {}
            seen.update((r.trial_number, _row_state(r)) for r in rows)
        study.sampler = _sampler_for(study, request, number)
        params = from_internal(request, study.ask(distributions(request)).params)
        _asking[sweep.id] = (study, seen)
        while len(_asking) > SWEEPS_KEPT:
            _asking.popitem(last=False)
    return params


def _catch_up(session: Session, sweep: Any, request: SweepSpec, rows: list[Any], study: Any,
              seen: dict[int, tuple[Any, ...]]) -> bool:
    """Tell `study` what changed in `rows` since it was last seen; False when it cannot be
    brought up to date (a trial it holds that the rows do not, or a finished one that changed)."""
    storage = study._storage
    held = storage.get_all_trials(study._study_id, deepcopy=False)
    if len(held) > len(rows):
        return False  # it asked a trial whose number another process took
    changed = [r for r in rows if seen.get(r.trial_number) != _row_state(r)]
    if not changed:
        return True
    ids = [r.id for r in changed]
    curves = db_sweeps.objective_curves(session, sweep.id, sweep.objective_metric, ids)
    fresh = [r for r in changed if r.trial_number >= len(held)]
    params = db_sweeps.trial_params(session, [r.id for r in fresh]) if fresh else {}
    dists, keys = distributions(request), choice_keys(request)
    for row in changed:
        curve = curves.get(row.id, {})
        if row.trial_number >= len(held):  # asked by another process
            study.add_trial(_frozen(request, row, params.get(row.id, {}), curve, judged=None, dists=dists, keys=keys))
        else:
            trial = held[row.trial_number]
            if trial.state.is_finished():
                return False
            state, value = _state_of(request, row, curve)
            if state.is_finished():  # ended: what TPE reads of it (its value, a pruned one's curve)
                for step, v in curve.items():
                    storage.set_trial_intermediate_value(trial._trial_id, step, v)
                storage.set_trial_state_values(trial._trial_id, state, None if value is None else [value])
        seen[row.trial_number] = _row_state(row)
    return True


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

# job id -> (its sweep's request, or None: not a trial; the job's epochs); neither ever changes
_trial_of: dict[str, tuple[SweepSpec | None, int]] = {}


def _trial(factory: sessionmaker[Session], job_id: str) -> tuple[SweepSpec | None, int]:
    if job_id not in _trial_of:
        if len(_trial_of) > 10_000:
            _trial_of.clear()
        with factory() as session:
            sweep_id, epochs = db_sweeps.sweep_and_epochs(session, job_id)
            sweep = db_sweeps.sweep_for_worker(session, sweep_id) if sweep_id else None
            _trial_of[job_id] = (SweepSpec.model_validate(sweep.spec) if sweep else None, epochs)
    return _trial_of[job_id]


def judges(factory: sessionmaker[Session], job_id: str, epoch: int) -> bool:
    """Whether the job's sweep's pruner judges it after this epoch (its row must be written first;
    between such epochs a trial's rows are batched by time like any job's). One read per job."""
    request, epochs = _trial(factory, job_id)
    # a trial's last epoch is not judged: it ends now anyway, pruning saves nothing
    return request is not None and epoch < epochs and prunes_at(request, epoch)


def prune_decision(factory: sessionmaker[Session], job_id: str, epoch: int) -> str | None:
    """After a trial's epoch is recorded: "pruned" if the sweep's pruner stops it here (the
    rung is recorded on the job), else None (also when the pruner does not judge this epoch)."""
    if not judges(factory, job_id, epoch):
        return None
    request = _trial(factory, job_id)[0]
    with factory() as session:
        sweep_id = db_sweeps.sweep_of_job(session, job_id)
        sweep = db_sweeps.sweep_for_worker(session, sweep_id) if sweep_id else None
        if sweep is None:
            return None
        if epoch not in db_sweeps.trial_curve(session, job_id, sweep.objective_metric):
            return None  # no objective value this epoch (e.g. no validation split)
        rows = trial_states(session, sweep_id)
        study = study_of(session, sweep, request, rows, number=sweep.trials_asked, judged=job_id)
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
    study = study_of(session, sweep, request, trial_states(session, sweep.id), number=sweep.trials_asked)
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
