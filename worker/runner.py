"""Training what a worker claims, one job or a pack of them alike (a job is a pack of one):
claim, load, train under one lease (worker.lease) with one persister (worker.persist), and end
each job on its own: finished with its status and best/last weights, handed back on SIGTERM, or
superseded (another attempt owns it: it writes nothing more).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db import datasets as db_datasets
from db import attempts as db_attempts
from db import sweeps as db_sweeps
from db.epochs import rewind
from db.fencing import Fenced
from db.states import Status
from netfit.engine.checkpoints import TrainingState
from netfit.engine.errors import DataError, SpecError
from netfit.engine.fit import FitResult, fit
from netfit.engine.inference import model_metadata
from netfit.engine.packed import fit_packed
from netfit.spec import JobSpec
from netfit.sweep_spec import SweepSpec
from service.queue import enqueue
from service.settings import get_settings
from worker import packs, uploads
from worker.claims import claim, owner_name, wake
from worker.database import session_factory
from worker.lease import Lease, shutting_down
from worker.persist import Member, Persister, checkpoint_bytes
from worker.prepared import job_data, uploads_dir
from worker.retry import with_db_retry
from worker.writes import hand_back

log = logging.getLogger("netfit.worker")


class Outcome(StrEnum):
    """How a job's turn on this worker ended."""

    SKIPPED = "skipped"  # nothing to claim: another worker has it, it ended, or a duplicate message
    SUCCEEDED = Status.SUCCEEDED.value
    FAILED = Status.FAILED.value
    CANCELLED = Status.CANCELLED.value
    RELEASED = "released"  # handed back on SIGTERM or preempted: queued again, its epochs so far saved
    FENCED = "fenced"  # another attempt took it over: this one's writes were refused


ENDED = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.CANCELLED)


def one_line(exc: BaseException) -> str:
    """The error a user sees: the exception's first line, no traceback (that goes to the log)."""
    text = (str(exc).strip().splitlines() or [""])[0][:500]
    if isinstance(exc, (SpecError, DataError)):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run(job_id: str, factory: sessionmaker[Session] | None = None) -> dict[str, Outcome]:
    """Claim the job (and, a packing sweep's trial, its pack) and train it: each job's outcome."""
    factory = factory or session_factory()
    claimed = with_db_retry(lambda s: claim(s, job_id), factory)
    if claimed is None:
        log.info("job %s: nothing to claim (taken, finished or a duplicate message)", job_id)
        return {job_id: Outcome.SKIPPED}
    taken, attempt = claimed
    if taken != job_id:  # the policy's pick: this message's job still waits (claims.wake says why)
        wake(factory, job_id, enqueue)
    job_id = taken
    pack = packs.claim_pack(factory, job_id, attempt, owner_name())
    attempts = pack or {job_id: attempt}
    lease = Lease(factory, attempts)
    lease.start()
    try:
        return train(factory, attempts, lease, packed=pack is not None)
    finally:
        lease.stop()


@dataclass(frozen=True)
class Claimed:
    """What training a claimed job needs, read once."""

    spec: JobSpec
    queue: str
    sweep_id: str | None
    sha256: str | None  # its upload's
    uploaded: bytes | None  # the upload's bytes, when this machine has not decoded them yet
    resume: bytes | None  # the saved state's


def load_job(session: Session, job_id: str, *, with_data: bool = True) -> Claimed:
    return load_jobs(session, [job_id], with_data=with_data)[job_id]


def load_jobs(session: Session, job_ids: list[str], *, with_data: bool = True) -> dict[str, Claimed]:
    """Each job's Claimed, the first's with its data (a pack's members share the leader's): the
    rows and resume states in one query each (one session and three queries a member were ~4 %
    of a 32-member pack's worker time)."""
    jobs, states = db_attempts.jobs_for_worker(session, job_ids), db_attempts.resume_states(session, job_ids)
    claimed = {}
    for job_id in job_ids:
        job = jobs[job_id]
        dataset_id = job.spec.get("dataset", {}).get("id")
        data = with_data and job_id == job_ids[0]
        sha256 = db_datasets.dataset_sha256(session, job.tenant, dataset_id) if dataset_id and data else None
        # the blob only when neither this process nor the machine's cache has decoded the same content
        fresh = sha256 is not None and uploads.found(sha256, uploads_dir()) is None
        uploaded = db_datasets.dataset_bytes(session, job.tenant, dataset_id) if fresh else None
        claimed[job_id] = Claimed(JobSpec.model_validate(job.spec), job.queue, job.sweep_id, sha256, uploaded,
                                  states.get(job_id))
    return claimed


def resume_from(factory: sessionmaker[Session], job_id: str, attempt: int, saved: bytes | None) -> TrainingState | None:
    """The state to go on from; a later attempt first drops the rows a lost one wrote after it
    (db.epochs.rewind, which records a "resumed" event)."""
    resume = TrainingState.from_bytes(saved) if saved else None
    if attempt > 1:
        after = resume.epoch if resume is not None else 0
        redone = with_db_retry(lambda s: rewind(
            s, job_id, attempt, after, resume.best_epoch if resume else None, resume.best_metrics if resume else None),
            factory)
        log.info("job %s: resuming after epoch %d (%d later epochs recorded by a lost attempt are trained again)",
                 job_id, after, redone)
    return resume


def train(factory: sessionmaker[Session], attempts: dict[str, int], lease: Lease, *, packed: bool) -> dict[str, Outcome]:
    leader = next(iter(attempts))
    persister: Persister | None = None
    try:
        claimed = with_db_retry(lambda s: load_jobs(s, list(attempts)), factory)
        resume = [resume_from(factory, j, a, claimed[j].resume) for j, a in attempts.items()]
        first = claimed[leader]
        data = job_data(first.spec, first.sha256, first.uploaded)  # a pack: one data set, split and preprocessing
        request = None
        if first.sweep_id is not None:  # a sweep's trial: its pruner judges some epochs
            request = with_db_retry(lambda s: SweepSpec.model_validate(
                db_sweeps.sweep_for_worker(s, first.sweep_id).spec), factory)
        members = [Member(j, a, claimed[j].queue, model_metadata(claimed[j].spec, data.signature, data.preprocessing,
                                                                 data.classes), lease)
                   for j, a in attempts.items()]
        persister = Persister(factory, members, lease, request,
                              end=lambda ended, here, checkpoint: conclude(factory, persister, ended, here, checkpoint))
        specs = [claimed[m.job_id].spec for m in members]
        if packed:
            log.info("pack of %d (%s): attempt %s started", len(members), leader, sorted(set(attempts.values())))
            fit_packed(specs, data, callbacks=members, resume=resume, pack=persister)
        else:
            [member] = members
            member.persister = persister  # alone: its own epochs drive the flushes
            log.info("job %s: attempt %d started", leader, member.attempt)
            # per-layer statistics are cheap enough to keep for every job (bench engine: engine_stats / engine)
            result = fit(specs[0], data, callbacks=member, resume=resume[0], layer_stats=True)
            persister.on_members_end({0: result})
    except Exception as exc:  # noqa: BLE001 - the jobs not ended yet fail with a readable reason
        log.exception("job %s%s failed", leader, f" (a pack of {len(attempts)})" if packed else "")
        if persister is not None:
            try:  # members that stopped before the failure end as they stopped
                persister.end_stopped()
            except Exception:  # noqa: BLE001 - they fail with the others
                log.exception("job %s: the pack's stopped members could not be ended", leader)
        ended = persister.outcomes if persister is not None else {}
        outcomes = dict(ended)
        for job_id, attempt in attempts.items():
            if job_id not in ended:
                outcomes[job_id] = fail(factory, job_id, attempt, exc)
        return outcomes
    if packed:
        counts = {o: sum(v == o for v in persister.outcomes.values()) for o in set(persister.outcomes.values())}
        log.info("pack of %d (%s) ended: %s", len(attempts), leader, counts)
    return dict(persister.outcomes)


def fail(factory: sessionmaker[Session], job_id: str, attempt: int, exc: Exception) -> Outcome:
    if isinstance(exc, Fenced) and exc.job_id in (None, job_id):
        return superseded(factory, job_id, attempt)
    try:
        with_db_retry(lambda s: db_attempts.finish(s, job_id, attempt, status=Status.FAILED, error=one_line(exc)), factory)
    except Fenced:
        return superseded(factory, job_id, attempt)
    return Outcome.FAILED


def superseded(factory: sessionmaker[Session], job_id: str, attempt: int) -> Outcome:
    log.warning("job %s: attempt %d was superseded; its writes were refused", job_id, attempt)
    try:  # the user reads it in the job's events too
        with_db_retry(lambda s: db_attempts.superseded(s, job_id, attempt), factory, deadline=5)
    except Exception as exc:  # noqa: BLE001 - the job's story misses a line; its state is right
        log.warning("job %s: the superseded event was not written (%s)", job_id, str(exc).splitlines()[0][:120])
    return Outcome.FENCED


def conclude(factory: sessionmaker[Session], persister: Persister, ended: list[tuple[Member, FitResult]],
             here: list[Member] = (), checkpoint: bool = False) -> dict[str, Outcome]:
    """Jobs that stopped training (alone, or leaving their pack after the same epoch or since the
    pack's last flush): each handed back (SIGTERM, or preempted at this epoch's end) or finished
    with its status and best/last weights (a cancel asked for meanwhile wins over a preemption).
    The finished ones end in one transaction with their last epochs and the pending epochs of
    `here`, the members training on (with checkpoint, their resume states)."""
    outcomes: dict[str, Outcome] = {}
    ends: dict[str, tuple[int, db_attempts.Ending]] = {}
    finishing: list[Member] = []
    for m, result in ended:
        lost, cancelled = m.lease.leave(m.job_id)
        if lost:
            outcomes[m.job_id] = superseded(factory, m.job_id, m.attempt)
            continue
        try:
            if result.stop_reason == "cancelled" and shutting_down.is_set() and not cancelled:
                outcomes[m.job_id] = release(factory, persister, m, result)
                continue
            if result.stop_reason == "preempted" and not cancelled:
                outcomes[m.job_id] = release(factory, persister, m, result, preempted_by=persister.preempting)
                continue
        except Fenced:
            outcomes[m.job_id] = superseded(factory, m.job_id, m.attempt)
            continue
        ends[m.job_id] = (m.attempt, ending(m, result))
        finishing.append(m)
    attempts = {m.job_id: m.attempt for m, _ in ended}
    written = dict(ends)
    persister.write(list(here), checkpoint=checkpoint, ending=finishing, ends=written)  # drops the superseded
    for job_id, (_, e) in ends.items():
        if job_id not in written:
            outcomes[job_id] = superseded(factory, job_id, attempts[job_id])
            continue
        log.info("job %s: %s (%s) after %d epochs", job_id, e.status, e.stop_reason, e.epochs_completed)
        outcomes[job_id] = Outcome(e.status)
    return outcomes


def ending(m: Member, result: FitResult) -> db_attempts.Ending:
    """How a job that stopped training is finished (preempted here: a cancel came meanwhile)."""
    if result.stop_reason == "preempted":
        result = replace(result, stop_reason="cancelled")
    last_metrics = result.history[-1].metrics if result.history else {}
    checkpoints: list[tuple[str, int, dict[str, Any], bytes]] = []
    if result.epochs_completed:
        best_epoch = result.best_epoch or result.epochs_completed
        best_metrics = result.best_metrics or last_metrics
        checkpoints = [
            ("best", best_epoch, best_metrics,
             checkpoint_bytes(m.job_id, "best", best_epoch, best_metrics, result.best_weights, m.described)),
            ("last", result.epochs_completed, last_metrics,
             checkpoint_bytes(m.job_id, "last", result.epochs_completed, last_metrics, result.last_weights,
                              m.described)),
        ]
    status = Status.CANCELLED if result.stop_reason == "cancelled" else Status.SUCCEEDED
    return db_attempts.Ending(status, stop_reason=result.stop_reason, epochs_completed=result.epochs_completed,
                              best_epoch=result.best_epoch, best_metrics=result.best_metrics or None,
                              test_metrics=result.test_metrics, device=result.device, checkpoints=checkpoints,
                              finished_at=m.stopped_at)


def release(factory: sessionmaker[Session], persister: Persister, m: Member, result: FitResult, *,
            preempted_by: str | None = None) -> Outcome:
    """SIGTERM, not a user's cancel, or preempted for the queued job `preempted_by`: the epochs
    so far are saved with the state to resume from; the job is queued again and re-sent (a
    preempted job's `preempted` event names the job it made way for)."""
    persister.write([m], checkpoint=True)
    hand_back(factory, m.lease, m.job_id, m.attempt, m.queue, enqueue, after_epoch=result.epochs_completed,
              preempted_by=preempted_by)
    return Outcome.RELEASED


def warm_up() -> None:
    """Pay the one-time costs (the first trace and forward, data set imports, the first
    optimizer step, the database engine and its first connection) when the worker starts,
    not in the first job it trains."""
    from netfit.engine.data import load_data

    spec = JobSpec.model_validate({"dataset": {"builtin": "iris"}, "model": {"layers": [{"type": "linear", "units": 3}]},
                                   "training": {"epochs": 1, "device": "cpu"}})
    fit(spec, load_data(spec))
    # a claim of an id no job has: connects and compiles the claim's statement, changes nothing
    with session_factory()() as session:
        claim(session, "warm-up")
