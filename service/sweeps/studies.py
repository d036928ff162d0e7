"""A sweep's Optuna study, rebuilt from our rows at every ask.

Why rebuilt (and not kept in Optuna's RDB storage): the sweeps and jobs tables are the one
source of truth, under our Alembic migrations and our tenant scoping; a second set of Optuna
tables would be a second truth that could disagree with the jobs (a trial Optuna thinks is
running whose job ended, a job Optuna never heard of), and its schema would be migrated by
Optuna, not us. A rebuild is cheap at sweep sizes: one query for every trial's state, and params
and objective curves only for the trials this process has not seen finished (a finished trial
never changes, so it is kept). It holds nothing a restart loses, and lets any process ask.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy.orm import Session

from db import sweeps as db_sweeps
from netfit.objective import best
from netfit.sweep_spec import SweepSpec
from service.sweeps.adapter import OptunaStudy

# A finished trial never changes, so each process keeps the sweeps' finished trials as Optuna
# trials (sweep id -> job id -> (its row's state, the trial)) and re-makes only the trials whose
# row differs: the active ones (at most max_concurrent) and the newly ended. The database stays
# the one truth: every rebuild reads every trial's state, and a row that changed is re-made.
SWEEPS_KEPT = 16
_kept: OrderedDict[str, dict[str, tuple[tuple[Any, ...], Any]]] = OrderedDict()
_kept_lock = threading.Lock()


def row_state(row: Any) -> tuple[Any, ...]:
    return tuple(row)  # a row of db_sweeps.STATE_COLUMNS


def trial_states(session: Session, sweep_id: str) -> list[Any]:
    """Every trial's state row (db_sweeps.STATE_COLUMNS), what `study_of` rebuilds from."""
    return db_sweeps.trials(session, sweep_id, db_sweeps.STATE_COLUMNS)


def state_of(request: SweepSpec, row: Any, curve: dict[int, float]) -> tuple[Any, float | None]:
    """(Optuna's state, value) for one of our trials: its value is its curve's best."""
    return OptunaStudy.state(row.status, row.stop_reason, best(curve.values(), request.objective.direction),
                             active=row.status in db_sweeps.ACTIVE)


def frozen(request: SweepSpec, row: Any, params: dict[str, Any], curve: dict[int, float], *,
           judged: str | None, dists: dict[str, Any], keys: dict[str, dict[str, int]]) -> Any:
    """One of our trials as Optuna would have it. `judged`: the job whose last epoch is being
    judged keeps no ASHA record for that epoch."""
    state, value = state_of(request, row, curve)
    last = max(curve) - (1 if row.id == judged else 0) if curve else 0
    return OptunaStudy.trial(request, number=row.trial_number, state=state, value=value,
                             params=OptunaStudy.to_internal(request, params, keys), curve=curve,
                             rungs_up_to=last, dists=dists)


def study_of(session: Session, sweep: Any, request: SweepSpec, rows: list[Any], *, number: int,
             judged: str | None = None) -> OptunaStudy:
    """An in-memory study holding our trials 0..n-1 (`rows`, from trial_states; same numbers
    as ours) in the states Optuna would have given them, with a sampler for trial `number`."""
    with _kept_lock:
        kept = _kept.setdefault(sweep.id, {})
        _kept.move_to_end(sweep.id)
        while len(_kept) > SWEEPS_KEPT:
            _kept.popitem(last=False)
        trials = {r.id: kept[r.id][1] for r in rows
                  if r.status not in db_sweeps.ACTIVE and r.id in kept and kept[r.id][0] == row_state(r)}
    stale = [r for r in rows if r.id not in trials]
    if stale:
        ids = [r.id for r in stale]
        params = db_sweeps.trial_params(session, ids)
        # the whole sweep's curves in one scan when most are needed (a process's first rebuild)
        curves = db_sweeps.objective_curves(session, sweep.id, sweep.objective_metric,
                                            ids if 2 * len(ids) < len(rows) else None)
        dists, keys = OptunaStudy.distributions(request), OptunaStudy.choice_keys(request)
        made = {r.id: (row_state(r), frozen(request, r, params.get(r.id, {}), curves.get(r.id, {}), judged=judged,
                                            dists=dists, keys=keys)) for r in stale}
        trials.update({job_id: trial for job_id, (_, trial) in made.items()})
        with _kept_lock:
            kept.update({job_id: entry for job_id, entry in made.items() if OptunaStudy.finished(entry[1])})
            for job_id in [j for j in kept if j not in trials]:
                del kept[job_id]  # no longer a trial of the sweep (deleted)
    return OptunaStudy(request, [trials[r.id] for r in rows], number)


def forget_kept() -> None:
    """Drop every kept trial (as a new process would start)."""
    with _kept_lock:
        _kept.clear()
