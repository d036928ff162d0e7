"""The sweep controller: ask Optuna for the next trial(s) until the sweep has asked its
trials, end it when done. Any process may ask: the API when the sweep is created, the worker
when a trial ends, the reconciler to repair an ask that was lost with its process. Two askers at
once are resolved by db.sweeps.create_trials (a conditional UPDATE of the trial counter). A
packing sweep's trials are asked together: one read of the trials' states, one ask after another
on the same study (as one at a time would, each asked trial running in it), one commit.

No torch here: the API imports this module.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db import sending
from db import sweeps as db_sweeps
from netfit.sweep_spec import SweepSpec, apply
from service.queue import queue_for
from service.settings import Settings, get_settings
from service.sweeps.adapter import OptunaStudy
from service.sweeps.studies import SWEEPS_KEPT, frozen, row_state, state_of, study_of, trial_states

log = logging.getLogger("netfit.sweeps")
Enqueue = Callable[[str, str], None]


def fill(factory: sessionmaker[Session], sweep_id: str, enqueue: Enqueue, settings: Settings | None = None) -> int:
    """Ask for trials until max_concurrent are active (and the tenant's trials are below
    settings.max_active_trials) or the sweep has asked max_trials; end the sweep when it is done.
    Safe to call from any process, any number of times."""
    settings = settings or get_settings()
    with factory() as session:
        sweep = db_sweeps.sweep_for_worker(session, sweep_id)
        packing = bool(sweep is not None and sweep.spec.get("packing"))
    if packing:
        # all asked in one transaction, then sent, so the first message starts a full pack;
        # created stamped as sent, so no reconciler sends them before (it does after
        # NETFIT_REQUEUE_SECONDS if this process dies before sending)
        with factory() as session:
            jobs = _step(session, sweep_id, settings, most=MAX_ASKED)
            for job in jobs:
                _send(session, sweep_id, job, enqueue)
        return len(jobs)
    created = 0
    for _ in range(MAX_ASKED):  # bounded: each pass creates a trial or stops
        with factory() as session:
            jobs = _step(session, sweep_id, settings)
            if not jobs:
                break
            created += 1
            _send(session, sweep_id, jobs[0], enqueue)
    return created


MAX_ASKED = 200  # trials one fill asks at most (the next fill asks the rest)


def _send(session: Session, sweep_id: str, job: Any, enqueue: Enqueue) -> None:
    try:
        enqueue(job.id, job.queue)
    except Exception as exc:  # noqa: BLE001 - the row is committed; the reconciler sends it
        log.warning("sweep %s: trial %s not sent (%s); the reconciler will", sweep_id, job.id, exc)
        sending.mark_unsent(session, job.id)


def _step(session: Session, sweep_id: str, settings: Settings | None = None, most: int = 1) -> list[Any]:
    """One decision: the new trials' jobs (up to `most`, all in one transaction), or [] when
    nothing is to be asked now (the sweep may have ended; [] also when another process took the
    number: the next fill asks)."""
    settings = settings or get_settings()
    for _ in range(5):  # another asker took the number: read again and ask again
        sweep = db_sweeps.sweep_for_worker(session, sweep_id)
        if sweep is None or sweep.status != "running":
            return []
        request = SweepSpec.model_validate(sweep.spec)
        rows = trial_states(session, sweep_id)
        active = sum(r.status in db_sweeps.ACTIVE for r in rows)
        if _failing(session, sweep, rows):
            return []
        if sweep.trials_asked >= sweep.max_trials:
            if active == 0:
                ok = any(r.status == "succeeded" for r in rows)
                db_sweeps.end_sweep(session, sweep_id, "succeeded" if ok else "failed",
                                    None if ok else "no trial succeeded; see the trials' errors")
            return []
        room = min(most, sweep.max_trials - sweep.trials_asked, sweep.max_concurrent - active,
                   settings.max_active_trials - db_sweeps.count_active_trials(session, sweep.tenant))
        if room <= 0:
            return []
        number = sweep.trials_asked
        trials = []
        for n, params in enumerate(next_params(session, sweep, request, rows, number, room), start=number):
            spec = apply(request.spec, params)
            spec["name"] = f"{sweep.name or 'sweep ' + sweep.id} #{n}"[:200]
            trials.append((params, spec, queue_for(str(spec.get("training", {}).get("device", "auto")), settings)))
        jobs = db_sweeps.create_trials(session, sweep, number, trials, tenant_limit=settings.max_active_trials)
        if len(jobs) < len(trials):
            forget(sweep_id)  # its study holds trials that are not ours (taken by another, or not created)
        if jobs:
            for job in jobs:
                log.info("sweep %s: trial %d asked (%s)", sweep_id, job.trial_number, job.params)
            return jobs
        session.expire_all()
    return []


# The study each process last asked on, by sweep: (study, each trial's row state as last seen).
# The next ask brings it up to date from the rows instead of rebuilding it: trials that ended
# since are told to it, trials another process asked are added, and the trial it asked last is
# already in it (when that trial's number was taken by another asker, forget() drops it).
_asking: OrderedDict[str, tuple[OptunaStudy, dict[int, tuple[Any, ...]]]] = OrderedDict()
_asking_lock = threading.Lock()


def forget(sweep_id: str) -> None:
    with _asking_lock:
        _asking.pop(sweep_id, None)


def next_params(session: Session, sweep: Any, request: SweepSpec, rows: list[Any], number: int,
                count: int = 1) -> list[dict[str, Any]]:
    """Optuna's choices for trials `number` (= len(rows)) .. number+count-1: the process's study
    brought up to date from the rows, then one ask per trial, each asked trial running in the
    study when the next is asked (what `python -m bench sweeps` times at 1,000 trials)."""
    with _asking_lock:
        study, seen = _asking.pop(sweep.id, (None, {}))
        if study is None or not _catch_up(session, sweep, request, rows, study, seen):
            study, seen = study_of(session, sweep, request, rows, number=number), {}
            seen.update((r.trial_number, row_state(r)) for r in rows)
        params = [study.ask(n) for n in range(number, number + count)]
        _asking[sweep.id] = (study, seen)
        while len(_asking) > SWEEPS_KEPT:
            _asking.popitem(last=False)
    return params


def _catch_up(session: Session, sweep: Any, request: SweepSpec, rows: list[Any], study: OptunaStudy,
              seen: dict[int, tuple[Any, ...]]) -> bool:
    """Tell `study` what changed in `rows` since it was last seen; False when it cannot be
    brought up to date (a trial it holds that the rows do not, or a finished one that changed)."""
    held = study.held()
    if len(held) > len(rows):
        return False  # it asked a trial whose number another process took
    changed = [r for r in rows if seen.get(r.trial_number) != row_state(r)]
    if not changed:
        return True
    ids = [r.id for r in changed]
    curves = db_sweeps.objective_curves(session, sweep.id, sweep.objective_metric, ids)
    fresh = [r for r in changed if r.trial_number >= len(held)]
    params = db_sweeps.trial_params(session, [r.id for r in fresh]) if fresh else {}
    dists, keys = OptunaStudy.distributions(request), OptunaStudy.choice_keys(request)
    for row in changed:
        curve = curves.get(row.id, {})
        if row.trial_number >= len(held):  # asked by another process
            study.add(frozen(request, row, params.get(row.id, {}), curve, judged=None, dists=dists, keys=keys))
        else:
            trial = held[row.trial_number]
            if OptunaStudy.finished(trial):
                return False
            state, value = state_of(request, row, curve)
            if OptunaStudy.finished(state):
                study.end(trial, state, value, curve)
        seen[row.trial_number] = row_state(row)
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
