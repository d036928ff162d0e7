"""Deleting jobs, sweeps and data sets, retention, and what a tenant uses.

A delete refuses what is in use (`InUse`, the API's 409, naming what to cancel first) and
otherwise removes every row it owns in one transaction, then gives the space back (db.space).
Retention (`retain`, run by the reconciler): a job's resume state goes once it has ended; a
sweep keeps the weights of its best `keep_best_trials` trials once every trial has ended; with
NETFIT_KEEP_FAILED_DAYS, failed and cancelled jobs lose their weights after that many days. A
job whose weights a rule removed records the rule (`jobs.weights_removed`): its download is a
410 that names it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session

from db import space
from db.models import Checkpoint, Dataset, EpochMetric, Job, JobEvent, JobSend, Sweep, utcnow

ACTIVE = ("queued", "running")
KEEP_BEST = "keep_best_trials"
KEEP_FAILED = "NETFIT_KEEP_FAILED_DAYS"
RULES = {KEEP_BEST: "the sweep's keep_best_trials kept only its best trials' weights",
         KEEP_FAILED: "NETFIT_KEEP_FAILED_DAYS removes a failed or cancelled job's weights after that many days"}


class InUse(Exception):
    """What is to be deleted is in use; the message names what to cancel (or delete) first."""


def _delete_jobs(session: Session, job_ids: list[str]) -> None:
    for table in (EpochMetric, JobEvent, Checkpoint, JobSend):
        session.execute(delete(table).where(table.job_id.in_(job_ids)))
    session.execute(delete(Job).where(Job.id.in_(job_ids)))


def delete_job(session: Session, tenant: str, job_id: str) -> bool:
    """False if the tenant has no such job; InUse while it is queued or running, or a trial of a
    running sweep."""
    job = session.execute(select(Job.status, Job.sweep_id).where(Job.id == job_id, Job.tenant == tenant)
                          .with_for_update()).one_or_none()
    if job is None:
        return False
    if job.status in ACTIVE:
        session.rollback()
        raise InUse(f"job {job_id} is {job.status}; cancel it first (POST /v1/jobs/{job_id}/cancel), then delete it")
    if job.sweep_id is not None and session.scalar(select(Sweep.status).where(Sweep.id == job.sweep_id)) == "running":
        session.rollback()
        raise InUse(f"job {job_id} is a trial of sweep {job.sweep_id}, which is running; cancel the sweep first "
                    f"(POST /v1/sweeps/{job.sweep_id}/cancel), or delete the whole sweep once it has ended")
    _delete_jobs(session, [job_id])
    session.commit()
    space.give_back(session.get_bind())
    return True


def delete_sweep(session: Session, tenant: str, sweep_id: str) -> bool:
    """The sweep and every trial with its rows. InUse while it runs or a trial is active."""
    status = session.scalar(select(Sweep.status).where(Sweep.id == sweep_id, Sweep.tenant == tenant).with_for_update())
    if status is None:
        return False
    active = list(session.scalars(select(Job.id).where(Job.sweep_id == sweep_id, Job.status.in_(ACTIVE))
                                  .order_by(Job.trial_number).limit(5)))
    if status == "running" or active:
        session.rollback()
        busy = f" (trials {', '.join(active)} are still queued or running)" if active else ""
        raise InUse(f"sweep {sweep_id} is {status}{busy}; cancel it first (POST /v1/sweeps/{sweep_id}/cancel) "
                    "and delete it once its trials have stopped")
    _delete_jobs(session, list(session.scalars(select(Job.id).where(Job.sweep_id == sweep_id))))
    session.execute(delete(Sweep).where(Sweep.id == sweep_id))
    session.commit()
    space.give_back(session.get_bind())
    return True


def _uses(spec: dict[str, Any], dataset_id: str) -> bool:
    return (spec.get("dataset") or {}).get("id") == dataset_id


def delete_dataset(session: Session, tenant: str, dataset_id: str) -> bool:
    """InUse while a queued or running job, or a running sweep, trains on it. Ended jobs that
    used it stay (their metrics and weights); they cannot be trained again."""
    found = session.scalar(select(Dataset.id).where(Dataset.id == dataset_id, Dataset.tenant == tenant)
                           .with_for_update())
    if found is None:
        return False
    # a tenant's active jobs are few (NETFIT_MAX_ACTIVE_JOBS): read and look at their specs here
    jobs = [job_id for job_id, spec in session.execute(
        select(Job.id, Job.spec).where(Job.tenant == tenant, Job.status.in_(ACTIVE)).order_by(Job.created_at))
        if _uses(spec, dataset_id)]
    sweeps = [sweep_id for sweep_id, spec in session.execute(
        select(Sweep.id, Sweep.spec).where(Sweep.tenant == tenant, Sweep.status == "running"))
        if _uses(spec.get("spec") or {}, dataset_id)]
    if jobs or sweeps:
        session.rollback()
        what = ([f"sweep {s} (POST /v1/sweeps/{s}/cancel)" for s in sweeps]
                + [f"job {j} (POST /v1/jobs/{j}/cancel)" for j in jobs[:5]])
        more = f" and {len(jobs) - 5} more jobs" if len(jobs) > 5 else ""
        raise InUse(f"data set {dataset_id} is in use by {', '.join(what)}{more}; cancel them first, then delete it")
    session.execute(delete(Dataset).where(Dataset.id == dataset_id))
    session.commit()
    space.give_back(session.get_bind())
    return True


def removed_by(session: Session, tenant: str, job_id: str) -> str | None:
    """The retention rule that removed the job's weights, explained; None if none did."""
    rule = session.scalar(select(Job.weights_removed).where(Job.id == job_id, Job.tenant == tenant))
    return None if rule is None else f"{rule}: {RULES.get(rule, rule)}"


def _remove_weights(session: Session, job_ids: list[str], rule: str) -> int:
    if not job_ids:
        return 0
    gone = session.execute(delete(Checkpoint).where(Checkpoint.job_id.in_(job_ids))).rowcount or 0
    session.execute(update(Job).where(Job.id.in_(job_ids)).values(weights_removed=rule))
    return gone


def retain(session: Session, *, keep_failed_days: float | None = None) -> dict[str, int]:
    """One retention pass (idempotent, safe from any number of processes at once). Returns how
    many checkpoints each rule removed."""
    counts = {"resume": 0, KEEP_BEST: 0, KEEP_FAILED: 0}
    # resume states of ended jobs (a queued job cancelled, or one failed after a lost worker,
    # ends without a worker's finish, which removes it otherwise)
    ended = select(Job.id).where(Job.id == Checkpoint.job_id, Job.status.not_in(ACTIVE))
    counts["resume"] = session.execute(
        delete(Checkpoint).where(Checkpoint.kind == "resume", exists(ended))).rowcount or 0
    # sweeps that have ended, once all their trials have
    for sweep_id, request in session.execute(
            select(Sweep.id, Sweep.spec).where(Sweep.status != "running", Sweep.retained_at.is_(None))):
        if session.scalar(select(func.count()).select_from(Job).where(Job.sweep_id == sweep_id,
                                                                      Job.status.in_(ACTIVE))):
            continue
        keep = request.get(KEEP_BEST)
        if keep:
            counts[KEEP_BEST] += _remove_weights(session, _beyond_best(session, sweep_id, request, int(keep)), KEEP_BEST)
        session.execute(update(Sweep).where(Sweep.id == sweep_id).values(retained_at=utcnow()))
    if keep_failed_days is not None:
        cutoff = utcnow() - timedelta(days=keep_failed_days)
        has_weights = exists(select(Checkpoint.id).where(Checkpoint.job_id == Job.id))
        old = list(session.scalars(select(Job.id).where(
            Job.status.in_(("failed", "cancelled")), Job.updated_at < cutoff, has_weights).limit(500)))
        counts[KEEP_FAILED] = _remove_weights(session, old, KEEP_FAILED)
    session.commit()
    if any(counts.values()):
        space.give_back(session.get_bind())
    return counts


def _beyond_best(session: Session, sweep_id: str, request: dict[str, Any], keep: int) -> list[str]:
    """The sweep's trials outside its best `keep` by its objective (a trial without a value last)."""
    objective = request.get("objective") or {}
    metric = objective.get("metric") or "val_loss"
    from netfit.objective import rank
    from netfit.spec import metric_mode

    mode = objective.get("mode") or metric_mode(metric)
    rows = session.execute(select(Job.id, Job.best_metrics, Job.trial_number).where(Job.sweep_id == sweep_id))

    def key(row: Any) -> tuple[tuple[bool, float], int]:
        return rank((row.best_metrics or {}).get(metric), mode), row.trial_number or 0

    ranked = sorted(rows, key=key)
    return [r.id for r in ranked[keep:]]


def usage(session: Session, tenant: str) -> dict[str, int]:
    """The tenant's running and queued jobs and the bytes its checkpoints and data sets hold."""
    counts = dict(session.execute(select(Job.status, func.count()).where(Job.tenant == tenant, Job.status.in_(ACTIVE))
                                  .group_by(Job.status)).all())
    checkpoints = session.scalar(select(func.coalesce(func.sum(Checkpoint.size_bytes), 0))
                                 .join(Job, Job.id == Checkpoint.job_id).where(Job.tenant == tenant))
    datasets = session.scalar(select(func.coalesce(func.sum(Dataset.size_bytes), 0)).where(Dataset.tenant == tenant))
    n_datasets = session.scalar(select(func.count()).select_from(Dataset).where(Dataset.tenant == tenant))
    return {"running_jobs": int(counts.get("running", 0)), "queued_jobs": int(counts.get("queued", 0)),
            "checkpoint_bytes": int(checkpoints or 0), "dataset_bytes": int(datasets or 0),
            "datasets": int(n_datasets or 0)}


def usage_by_tenant(session: Session) -> dict[str, dict[str, int]]:
    """Bytes of checkpoints and data sets per tenant (the Prometheus gauges)."""
    out: dict[str, dict[str, int]] = {}
    for tenant, size in session.execute(select(Job.tenant, func.sum(Checkpoint.size_bytes))
                                        .join(Job, Job.id == Checkpoint.job_id).group_by(Job.tenant)):
        out.setdefault(tenant, {})["checkpoints"] = int(size or 0)
    for tenant, size in session.execute(select(Dataset.tenant, func.sum(Dataset.size_bytes)).group_by(Dataset.tenant)):
        out.setdefault(tenant, {})["datasets"] = int(size or 0)
    return out
