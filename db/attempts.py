"""A job's life on a worker, for one job or a pack's N at once: claim, lease, release, finish,
and the worker's own reads (no tenant: the ids come from our own queue and rows).

Every write after the claim is fenced by the attempt number (db.fencing).

    queued --claim--> running --finish--> succeeded | failed | cancelled
       ^                 |  \\--release (SIGTERM, or preempted at an epoch end)--> queued
       |                 \\--lease expires--> claimable again (or failed: worker_lost)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session, undefer

from db import events
from db.epochs import Flush, clean_metrics, progress, put_checkpoints, stage_epochs
from db.fencing import fenced_update, lock_in_id_order, owned
from db.models import Checkpoint, Job, JobEvent, UTCDateTime, utcnow
from db.sending import unstamp
from db.states import EventKind, Status


def _at(now: datetime) -> Any:
    # a datetime used inside an SQL expression (coalesce) needs the column type spelled out
    return literal(now, UTCDateTime())


def claimable(now: datetime, max_attempts: int) -> Any:
    """What claim() takes: queued, or running with an expired lease, not cancelled, attempts left."""
    return and_(Job.cancel_requested.is_(False), Job.attempts - Job.releases < max_attempts,
                or_(Job.status == Status.QUEUED, and_(Job.status == Status.RUNNING, Job.lease_expires_at < now)))


def claim(session: Session, job_ids: Sequence[str], owner: str, *, lease_seconds: float,
          max_attempts: int) -> dict[str, int]:
    """Take the jobs (one, or a pack's members) with ONE conditional UPDATE: those queued, or
    running with an expired lease, with lost attempts left. Returns {job id: this attempt's
    number} of those taken; one another worker has, that ended, or whose message was a
    duplicate is simply not among them."""
    if not job_ids:
        return {}
    now = utcnow()
    taken = dict(session.execute(
        update(Job).where(Job.id.in_(job_ids), claimable(now, max_attempts))
        .values(status=Status.RUNNING, attempts=Job.attempts + 1, lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                # a new attempt: its age guards it from preemption; an old request is void
                attempt_started_at=now, preempt_requested_by=None,
                started_at=func.coalesce(Job.started_at, _at(now)), updated_at=now)
        .returning(Job.id, Job.attempts)).all())
    if not taken:
        session.rollback()
        return {}
    for job_id, attempt in taken.items():
        events.status(session, job_id, Status.RUNNING, attempt=attempt)
    session.commit()
    return taken


def claimable_trials(session: Session, sweep_id: str, *, exclude: str, max_attempts: int,
                     limit: int) -> list[Any]:
    """The sweep's other trials claim() would take now, oldest trial first, as rows (id, spec,
    resume_epoch: the epoch of the saved resume state, 0 for none): a pack's candidates."""
    resume = (select(Checkpoint.epoch).where(Checkpoint.job_id == Job.id, Checkpoint.kind == "resume")
              .correlate(Job).scalar_subquery())
    return list(session.execute(
        select(Job.id, Job.spec, func.coalesce(resume, 0).label("resume_epoch"))
        .where(Job.sweep_id == sweep_id, Job.id != exclude, claimable(utcnow(), max_attempts))
        .order_by(Job.trial_number).limit(limit)))


def note_pack(session: Session, attempts: dict[str, int], *, leader: str, resume_after: int) -> None:
    """A "pack" event on each member: which pack it trains in (its leader's id), of how many
    members, going on after which epoch (GET /v1/jobs/{id}/events shows it)."""
    for job_id, attempt in attempts.items():
        events.add(session, job_id, EventKind.PACK, {"leader": leader, "members": len(attempts), "attempt": attempt,
                                                     "resume_after": resume_after})
    session.commit()


def heartbeat(session: Session, attempts: dict[str, int], *, lease_seconds: float | None,
              preempted: dict[str, str] | None = None) -> tuple[set[str], set[str]]:
    """The jobs' lease in one transaction: every job's lease renewed (lease_seconds None: only
    read), and the ids of (those a cancel was asked for, those lost: their attempt no longer
    owns them). `preempted`, when given, is filled with {job id: the queued job it makes way
    for} (db.preemption), a request whose queued job was taken meanwhile left out."""
    if not attempts:
        return set(), set()
    now = utcnow()
    if lease_seconds is None:
        rows = session.execute(select(Job.id, Job.cancel_requested, Job.preempt_requested_by)
                               .where(owned(attempts), Job.status == Status.RUNNING)).all()
    else:
        lock_in_id_order(session, attempts)
        rows = session.execute(
            update(Job).where(owned(attempts), Job.status == Status.RUNNING)
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
            .returning(Job.id, Job.cancel_requested, Job.preempt_requested_by)).all()
    asked = {job_id: by for job_id, _, by in rows if by is not None}
    if asked and preempted is not None:  # rare: only while a preemption is on its way
        waiting = set(session.scalars(select(Job.id).where(Job.id.in_(set(asked.values())),
                                                           Job.status == Status.QUEUED)))
        preempted.update({job_id: by for job_id, by in asked.items() if by in waiting})
    session.commit()
    alive = {job_id for job_id, _, _ in rows}
    return {job_id for job_id, cancel, _ in rows if cancel}, set(attempts) - alive


@dataclass(frozen=True)
class Ending:
    """How one job ends (finish): its status, why, final metrics and best/last weights."""

    status: Status
    stop_reason: str | None = None
    error: str | None = None
    epochs_completed: int | None = None
    best_epoch: int | None = None
    best_metrics: dict[str, Any] | None = None
    test_metrics: dict[str, Any] | None = None
    device: str | None = None
    checkpoints: Iterable[tuple[str, int, dict[str, Any], bytes]] = ()
    # when it stopped training, if before this write (a pack's member ends with the pack's next flush)
    finished_at: datetime | None = None


def finish(session: Session, job_id: str, attempt: int, **ending: Any) -> None:
    """End the job (fenced): Ending's fields."""
    finish_all(session, {job_id: (attempt, Ending(**ending))})


def finish_all(session: Session, ends: dict[str, tuple[int, Ending]], flushes: Iterable[Flush] = ()) -> None:
    """End these jobs (id -> (attempt, Ending); fenced) in one transaction: a pack's members that
    stopped (after the same epoch, or since the pack's last flush), with `flushes` (db.epochs:
    their last epochs, and the pack's other members' pending epochs and resume states) written
    in it first. Fenced (nothing written) names one job its attempt no longer owns."""
    flushes = list(flushes)
    now = utcnow()
    updates: dict[str, tuple[int, dict[str, Any]]] = {f.job_id: (f.attempt, progress(f)) for f in flushes}
    for job_id, (attempt, e) in ends.items():
        # lease_owner stays: it records which worker ran the job
        values: dict[str, Any] = {
            **(updates[job_id][1] if job_id in updates else {}),
            "status": Status(e.status), "stop_reason": e.stop_reason, "error": e.error,
            "finished_at": e.finished_at or now,
            "updated_at": now, "lease_expires_at": None, "preempt_requested_by": None,
        }
        for key, value in (("epochs_completed", e.epochs_completed), ("best_epoch", e.best_epoch),
                           ("device", e.device), ("best_metrics", e.best_metrics and clean_metrics(e.best_metrics)),
                           ("test_metrics", e.test_metrics and clean_metrics(e.test_metrics))):
            if value is not None:
                values[key] = value
        updates[job_id] = (attempt, values)
    fenced_update(session, updates)
    stage_epochs(session, flushes)
    if not ends:
        session.commit()
        return
    put_checkpoints(session, [(job_id, kind, epoch, clean_metrics(metrics), data)
                              for job_id, (_, e) in ends.items() for kind, epoch, metrics, data in e.checkpoints])
    # the resume state is only for an unfinished job
    session.execute(delete(Checkpoint).where(Checkpoint.job_id.in_(list(ends)), Checkpoint.kind == "resume"))
    # after the epochs' events (their ids are their order)
    session.execute(insert(JobEvent), [
        {"job_id": job_id, "kind": str(EventKind.STATUS), "created_at": updates[job_id][1]["finished_at"], "data": {
            "status": str(updates[job_id][1]["status"]), "stop_reason": e.stop_reason, "error": e.error,
            "epochs_completed": updates[job_id][1].get("epochs_completed"),
            "best_epoch": updates[job_id][1].get("best_epoch")}}
        for job_id, (_, e) in ends.items()])
    session.commit()


def release(session: Session, job_id: str, attempt: int, *, preempted_by: str | None = None,
            after_epoch: int | None = None) -> None:
    """Hand the job back (worker shutting down, or preempted: `preempted_by` the queued job it
    made way for, after `after_epoch`): queued again, lease cleared, not a lost attempt."""
    values: dict[str, Any] = {
        "status": Status.QUEUED, "lease_owner": None, "lease_expires_at": None,
        "releases": Job.releases + 1, "preempt_requested_by": None, "updated_at": utcnow(),
    }
    if preempted_by is not None:
        values["preemptions"] = Job.preemptions + 1
    fenced_update(session, {job_id: (attempt, values)})
    unstamp(session, job_id)  # not sent until its releaser sends it (else the reconciler does)
    if preempted_by is not None:
        # another team's job is not named to this one (its id would leak): only its priority
        by = session.execute(select(Job.tenant, Job.priority).where(Job.id == preempted_by)).first()
        mine = session.scalar(select(Job.tenant).where(Job.id == job_id))
        events.add(session, job_id, EventKind.PREEMPTED, {
            "by": preempted_by if by is not None and by.tenant == mine else None,
            "by_priority": by.priority if by is not None else None, "after_epoch": after_epoch, "attempt": attempt})
    events.status(session, job_id, Status.QUEUED, released_by_attempt=attempt)
    session.commit()


def superseded(session: Session, job_id: str, attempt: int) -> None:
    """A "superseded" event: this attempt woke to find the job taken over; its writes were refused.
    Not fenced: an event adds to the job's story, it changes no state."""
    events.add(session, job_id, EventKind.SUPERSEDED, {"attempt": attempt})
    session.commit()


# --------------------------------------------------------------------------- the worker's reads


def job_for_worker(session: Session, job_id: str) -> Job | None:
    """A job the worker has claimed (no tenant: the id came from our own queue)."""
    return session.get(Job, job_id)


def resume_checkpoint(session: Session, job_id: str) -> Checkpoint | None:
    """The state a claimed job goes on from, with its data; None for a fresh start."""
    return session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.kind == "resume")
                           .options(undefer(Checkpoint.data))).one_or_none()


def jobs_for_worker(session: Session, job_ids: Sequence[str]) -> dict[str, Job]:
    """job_for_worker for a pack's members, in one query."""
    return {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(list(job_ids))))}


def resume_states(session: Session, job_ids: Sequence[str]) -> dict[str, bytes]:
    """resume_checkpoint's data for a pack's members that have one, in one query."""
    return dict(session.execute(select(Checkpoint.job_id, Checkpoint.data).where(
        Checkpoint.job_id.in_(list(job_ids)), Checkpoint.kind == "resume")).all())


def resume_epoch(session: Session, job_id: str) -> int:
    """The epoch of the job's saved resume state; 0 when it has none (a fresh start)."""
    return int(session.scalar(select(Checkpoint.epoch).where(Checkpoint.job_id == job_id,
                                                             Checkpoint.kind == "resume")) or 0)
