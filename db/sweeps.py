"""Sweep queries and state transitions (reads scoped by tenant, as in db.jobs).

A sweep's trials are jobs rows with sweep_id, trial_number and params. The next trials are
created by `create_trials` in ONE transaction that first moves the sweep's `trials_asked`
counter from n to n+k with a conditional UPDATE: two processes asking at once both read n,
one moves the counter, the other's UPDATE matches nothing (PostgreSQL re-checks the WHERE
after waiting for the row lock; SQLite serialises writers) and it creates nothing. The
unique (sweep_id, trial_number) backs this up. The running-trial count is taken inside that
transaction, after the row lock, so `max_concurrent` holds whoever asks. A packing sweep asks
all its trials at once (k > 1): they appear together, or none do.

    running --(all trials asked and ended)--> succeeded | failed
       \\--(max_concurrent spec failures in a row)--> failed;   \\--cancel--> cancelled
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.orm import Session

from db import events
from db import jobs as db_jobs
from db.models import EpochMetric, Job, JobEvent, Sweep, new_id, utcnow
from db.pages import newest_first
from db.sending import new_queued_job
from db.states import ACTIVE, EventKind

# what every ask reads of every trial (no params: a finished trial's are kept by service.sweeps)
STATE_COLUMNS = ("id", "trial_number", "status", "stop_reason", "error", "epochs_completed", "finished_at")
# what the leaderboard shows
TRIAL_COLUMNS = (*STATE_COLUMNS, "params", "pruned_rung")


def create_sweep(session: Session, *, tenant: str, request: dict[str, Any], method: str, metric: str, mode: str,
                 max_trials: int, max_concurrent: int) -> Sweep:
    sweep = Sweep(id=new_id(), tenant=tenant, name=request.get("name"), spec=request, method=method,
                  objective_metric=metric, objective_mode=mode, max_trials=max_trials,
                  max_concurrent=max_concurrent, status="running", trials_asked=0)
    session.add(sweep)
    session.commit()
    return sweep


def get_sweep(session: Session, tenant: str, sweep_id: str) -> Sweep | None:
    """The tenant's sweep (None matches none: the worker reads with sweep_for_worker)."""
    return session.scalars(select(Sweep).where(Sweep.id == sweep_id, Sweep.tenant == tenant)).one_or_none()


def sweep_for_worker(session: Session, sweep_id: str) -> Sweep | None:
    """The worker's and the controller's read (no tenant: the id came from our own job row)."""
    return session.get(Sweep, sweep_id)


def list_sweeps(session: Session, tenant: str, *, limit: int = 50, cursor: str | None = None,
                status: str | None = None) -> tuple[list[Sweep], str | None]:
    """Newest first, with the jobs list's cursor (created_at|id). ValueError for a bad cursor."""
    query = select(Sweep).where(Sweep.tenant == tenant)
    if status:
        query = query.where(Sweep.status == status)
    return newest_first(query, Sweep, cursor, limit, session.scalars)


def running_sweeps(session: Session) -> list[str]:
    return list(session.scalars(select(Sweep.id).where(Sweep.status == "running").order_by(Sweep.created_at)))


def trials(session: Session, sweep_id: str, columns: tuple[str, ...] = TRIAL_COLUMNS) -> list[Any]:
    """The sweep's trials as plain rows (`columns`), by trial number."""
    return list(session.execute(select(*(getattr(Job, c) for c in columns))
                                .where(Job.sweep_id == sweep_id).order_by(Job.trial_number)))


def trial_params(session: Session, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    return {job_id: params or {} for job_id, params in
            session.execute(select(Job.id, Job.params).where(Job.id.in_(job_ids)))}


def objective_curves(session: Session, sweep_id: str, metric: str,
                     job_ids: list[str] | None = None) -> dict[str, dict[int, float]]:
    """job id -> {epoch: objective value} for every trial, or for `job_ids` (None values left out)."""
    column = getattr(EpochMetric, metric)
    curves: dict[str, dict[int, float]] = {}
    which = EpochMetric.job_id.in_(job_ids) if job_ids is not None else Job.sweep_id == sweep_id
    rows = session.execute(select(EpochMetric.job_id, EpochMetric.epoch, column)
                           .join(Job, Job.id == EpochMetric.job_id)
                           .where(which, column.is_not(None)))
    for job_id, epoch, value in rows:
        curves.setdefault(job_id, {})[int(epoch)] = float(value)
    return curves


def trial_curve(session: Session, job_id: str, metric: str) -> dict[int, float]:
    column = getattr(EpochMetric, metric)
    return {int(e): float(v) for e, v in session.execute(
        select(EpochMetric.epoch, column).where(EpochMetric.job_id == job_id, column.is_not(None)))}


def trial_events_after(session: Session, sweep_id: str, after_id: int, skip: set[int] | frozenset[int] = frozenset(),
                       limit: int = 500) -> list[Any]:
    """The sweep SSE's next events: its trials' status changes and prunings (not their epochs)
    after `after_id` and not in `skip`, oldest first, as rows (id, job_id, trial_number, kind,
    data, created_at). Each trial's events come by the (job_id, id) index."""
    query = (select(JobEvent.id, JobEvent.job_id, Job.trial_number, JobEvent.kind, JobEvent.data, JobEvent.created_at)
             .join(Job, Job.id == JobEvent.job_id)
             .where(JobEvent.job_id.in_(select(Job.id).where(Job.sweep_id == sweep_id).scalar_subquery()),
                    JobEvent.id > after_id, JobEvent.kind.in_(("status", "pruned"))))
    if skip:
        query = query.where(JobEvent.id.not_in(sorted(skip)))
    return list(session.execute(query.order_by(JobEvent.id).limit(limit)))


def sweep_of_job(session: Session, job_id: str) -> str | None:
    return session.scalar(select(Job.sweep_id).where(Job.id == job_id))


def sweeps_of_jobs(session: Session, job_ids: list[str]) -> dict[str, str | None]:
    return dict(session.execute(select(Job.id, Job.sweep_id).where(Job.id.in_(job_ids))).all())


def sweep_and_epochs(session: Session, job_id: str) -> tuple[str | None, int]:
    row = session.execute(select(Job.sweep_id, Job.epochs).where(Job.id == job_id)).one_or_none()
    return (row.sweep_id, int(row.epochs)) if row else (None, 0)


def count_active(session: Session, sweep_id: str) -> int:
    return session.scalar(select(func.count()).select_from(Job).where(Job.sweep_id == sweep_id,
                                                                     Job.status.in_(ACTIVE)))


def count_active_trials(session: Session, tenant: str) -> int:
    """The tenant's queued and running trials, over all its sweeps."""
    return session.scalar(select(func.count()).select_from(Job).where(
        Job.tenant == tenant, Job.sweep_id.is_not(None), Job.status.in_(ACTIVE)))


def status_counts(session: Session, sweep_id: str) -> dict[str, int]:
    counts = {s: 0 for s in ("queued", "running", "succeeded", "failed", "cancelled", "pruned")}
    pruned = case((Job.stop_reason == "pruned", 1), else_=0)
    for status, n, n_pruned in session.execute(
            select(Job.status, func.count(), func.sum(pruned)).where(Job.sweep_id == sweep_id).group_by(Job.status)):
        counts[status] = int(n)
        counts["pruned"] += int(n_pruned or 0)
    return counts


def create_trials(session: Session, sweep: Sweep, number: int, trials: list[tuple[dict[str, Any], dict[str, Any], str]],
                  *, tenant_limit: int | None = None) -> list[Job]:
    """Trials number, number+1, ... (each (params, spec, queue)) as queued jobs, in ONE
    transaction: the first that max_concurrent and the tenant's `tenant_limit` leave room for,
    counted under the sweep row's lock (the rest are not created). [] (nothing written) when
    another process took `number` first, the sweep stopped, or there is no room."""
    if not trials:
        return []
    now = utcnow()
    moved = session.execute(
        update(Sweep).where(Sweep.id == sweep.id, Sweep.trials_asked == number, Sweep.status == "running",
                            Sweep.cancel_requested.is_(False))
        .values(trials_asked=number + len(trials), updated_at=now).returning(Sweep.id)
    ).scalar_one_or_none()
    if moved is None:
        session.rollback()
        return []
    # counted under the sweep row's lock: only askers change the count upwards
    room = sweep.max_concurrent - count_active(session, sweep.id)
    if tenant_limit is not None:
        room = min(room, tenant_limit - count_active_trials(session, sweep.tenant))
    if room <= 0:
        session.rollback()
        return []
    if room < len(trials):  # still under the lock: the counter says what was created
        trials = trials[:room]
        session.execute(update(Sweep).where(Sweep.id == sweep.id).values(trials_asked=number + room))
    # a trial runs with its sweep's priority, whatever the base spec says
    priority = int(sweep.spec.get("priority") or 0)
    jobs = []
    for n, (params, spec, queue) in enumerate(trials, start=number):
        name = f"{sweep.name or sweep.id} #{n}"
        jobs.append(new_queued_job(session, tenant=sweep.tenant, spec={**spec, "priority": priority}, queue=queue,
                                   name=name[:200], summary=None, priority=priority, sweep_id=sweep.id,
                                   trial_number=n, params=params))
    session.commit()
    return jobs


def end_sweep(session: Session, sweep_id: str, status: str, error: str | None = None) -> bool:
    """running -> status (once; a second call changes nothing). Active trials are cancelled."""
    now = utcnow()
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": now, "updated_at": now}
    if status == "cancelled":
        values["cancel_requested"] = True
    done = session.execute(
        update(Sweep).where(Sweep.id == sweep_id, Sweep.status == "running").values(**values)
        .returning(Sweep.tenant)
    ).scalar_one_or_none()
    if done is None:
        session.rollback()
        return False
    session.commit()
    cancel_trials(session, done, sweep_id)
    return True


def cancel_trials(session: Session, tenant: str, sweep_id: str) -> int:
    """The job cancel path for each queued/running trial (queued: at once; running: its worker stops it)."""
    ids = list(session.scalars(select(Job.id).where(Job.sweep_id == sweep_id, Job.status.in_(ACTIVE))))
    for job_id in ids:
        db_jobs.request_cancel(session, tenant, job_id)
    return len(ids)


def request_cancel(session: Session, tenant: str, sweep_id: str) -> Sweep | None:
    """Idempotent: a running sweep ends cancelled and its trials are stopped; an ended one is
    returned as it is (its stragglers, if any, are asked to stop again)."""
    sweep = get_sweep(session, tenant, sweep_id)
    if sweep is None:
        return None
    if not end_sweep(session, sweep_id, "cancelled"):
        cancel_trials(session, tenant, sweep_id)
    session.refresh(sweep)
    return sweep


def mark_pruned(session: Session, job_id: str, epoch: int, rung: int) -> None:
    """Record which rung pruned the trial (its stop_reason is written when the job finishes)."""
    session.execute(update(Job).where(Job.id == job_id).values(pruned_rung=rung))
    events.add(session, job_id, EventKind.PRUNED, {"epoch": epoch, "rung": rung})
    session.commit()


def mark_pruned_all(session: Session, job_ids: list[str], epoch: int, rung: int) -> None:
    """mark_pruned for trials pruned at the same epoch (a pack's members), in one transaction."""
    session.execute(update(Job).where(Job.id.in_(job_ids)).values(pruned_rung=rung))
    session.execute(insert(JobEvent), [{"job_id": job_id, "kind": str(EventKind.PRUNED), "created_at": utcnow(),
                                        "data": {"epoch": epoch, "rung": rung}} for job_id in job_ids])
    session.commit()


def elapsed(sweep: Sweep, now: datetime | None = None) -> float:
    end = sweep.finished_at or now or utcnow()
    return max(0.0, (end - sweep.created_at).total_seconds())
