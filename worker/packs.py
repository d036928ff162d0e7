"""Packed trials in the service (issue 16 §3): a packing sweep's trials of one shape, trained
together on one worker as one batched model (netfit.engine.packed.fit_packed).

No controller: a pack forms when a worker claims a trial of a packing sweep. It then claims, at
once, the sweep's other claimable trials with the same pack key and the same resume epoch (fill
sends a packing sweep's messages only after asking all its trials, so the first message finds
them queued); their own messages later find nothing to claim. Everything else is per job, as
for a trial trained alone: each member keeps its row, attempt, lease expiry, metrics, events,
checkpoints, resume state and finish(). What the pack shares:
- one lease thread: every member's lease renewed in one transaction, cancels noticed for all of
  them in one query a second (a cancelled or lost member leaves; the others go on);
- one flush decision per pack epoch: every member's pending rows (and, when due, resume states:
  all of the same epoch) in one transaction; a trial's epoch is written before its pruner judges
  it, at the epochs the pruner judges (service.sweeps.prunes_at), not every epoch;
- after a kill, the reconciler re-sends each member's message as for any job; the first one
  claims the whole pack again (same epoch: it was saved in one transaction) and resumes it.
A member leaves with its own finish() when it stops; the sweep asks for more trials once, when
the pack ends (worker.tasks.train_job).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db import jobs as db_jobs
from db import sweeps as db_sweeps
from netfit.engine.fit import FitResult
from netfit.engine.inference import model_metadata
from netfit.engine.packed import PackCallbacks, fit_packed
from netfit.packing import pack_key, packable
from netfit.spec import JobSpec
from netfit.sweep_spec import MAX_PACK, SweepSpec
from service import sweeps
from worker.database import LEASE_SECONDS
from worker.tasks import (CANCEL_POLL_SECONDS, HEARTBEAT_SECONDS, MAX_ATTEMPTS, JobCallbacks, conclude, flush_due,
                          job_data, load_job, one_line, owner_name, resume_from, shutting_down, with_db_retry)

log = logging.getLogger("netfit.worker")


# --------------------------------------------------------------------------- forming a pack


def claim_pack(factory: sessionmaker[Session], job_id: str, attempt: int) -> dict[str, int] | None:
    """For a claimed trial of a packing sweep: {job id: attempt} of it and the trials claimed with
    it (it first). None: not a packing trial (or one that cannot pack): it trains alone."""

    def claim(session: Session) -> dict[str, int] | None:
        job = db_jobs.job_for_worker(session, job_id)
        if job is None or job.sweep_id is None:
            return None
        sweep = db_sweeps.get_sweep(session, None, job.sweep_id)
        if sweep is None or not sweep.spec.get("packing"):
            return None
        spec = JobSpec.model_validate(job.spec)
        if packable(spec) is not None:
            return None
        key, epoch = pack_key(spec), db_jobs.resume_epoch(session, job_id)
        # A pack never mixes resume epochs (fit_packed refuses): members whose saved states differ
        # after a crash (one left the pack before it, or a flush was lost) resume as separate packs,
        # one per epoch: each re-sent message claims those of its own epoch.
        rows = db_jobs.claimable_trials(session, job.sweep_id, exclude=job_id, max_attempts=MAX_ATTEMPTS,
                                        limit=4 * MAX_PACK)
        wanted = [r.id for r in rows if r.resume_epoch == epoch and pack_key(JobSpec.model_validate(r.spec)) == key]
        taken = db_jobs.claim_many(session, wanted[: MAX_PACK - 1], owner_name(), lease_seconds=LEASE_SECONDS,
                                   max_attempts=MAX_ATTEMPTS)
        members = {job_id: attempt, **taken}
        db_jobs.note_pack(session, members, leader=job_id, resume_after=epoch)
        return members

    return with_db_retry(claim, factory)


# --------------------------------------------------------------------------- one lease for the pack


class PackLease(threading.Thread):
    """Renews every member's lease in one transaction every HEARTBEAT_SECONDS and, in between,
    reads their cancel flags in one query every CANCEL_POLL_SECONDS. A member that leaves is
    dropped; `cancelled` and `lost` hold member ids."""

    def __init__(self, factory: sessionmaker[Session], attempts: dict[str, int]):
        super().__init__(name=f"pack-lease-{next(iter(attempts))}", daemon=True)
        self.factory, self.attempts = factory, dict(attempts)
        self.cancelled: set[str] = set()
        self.lost: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def drop(self, job_id: str) -> None:
        with self._lock:
            self.attempts.pop(job_id, None)

    def run(self) -> None:
        tick = min(HEARTBEAT_SECONDS, CANCEL_POLL_SECONDS)
        renew_at = time.monotonic() + HEARTBEAT_SECONDS
        while not self._stop.wait(tick):
            with self._lock:
                attempts = dict(self.attempts)
            if not attempts:
                continue
            renew = time.monotonic() >= renew_at
            try:
                with self.factory() as session:
                    cancelled, lost = db_jobs.heartbeat_pack(session, attempts,
                                                             lease_seconds=LEASE_SECONDS if renew else None)
            except Exception as exc:  # noqa: BLE001 - a DB hiccup: try again next period
                log.warning("pack %s: heartbeat failed (%s)", self.name, str(exc).splitlines()[0][:120])
                continue
            if renew:
                renew_at = time.monotonic() + HEARTBEAT_SECONDS
            self.cancelled |= cancelled
            for job_id in lost - self.lost:
                log.warning("job %s: attempt %d lost its lease; it leaves its pack", job_id, attempts[job_id])
            self.lost |= lost

    def stop(self) -> None:
        self._stop.set()


# --------------------------------------------------------------------------- members and the pack's persistence


class MemberCallbacks(JobCallbacks):
    """A member's JobCallbacks: its epochs are kept for the pack's flush (PackPersister decides
    when, once for all), and its stop comes from the pack's lease."""

    def on_epoch_end(self, report: Any, state: Any) -> str | None:
        self.record(report, state)
        return None

    def should_stop(self) -> bool:
        return shutting_down.is_set() or self.job_id in self.lease.lost or self.job_id in self.lease.cancelled


@dataclass
class Member:
    job_id: str
    attempt: int
    queue: str
    callbacks: MemberCallbacks


class PackPersister(PackCallbacks):
    def __init__(self, factory: sessionmaker[Session], members: list[Member], lease: PackLease, request: SweepSpec):
        self.factory, self.members, self.lease, self.request = factory, members, lease, request
        self.flushed_at = self.saved_at = time.monotonic()
        self.due = (False, False)  # this epoch's (flush, checkpoint), decided once in wants_states
        self.outcomes: dict[str, str] = {}

    def wants_states(self, epoch: int, seconds: float) -> bool:
        self.due = flush_due(seconds, self.flushed_at, self.saved_at)
        return self.due[1]  # the members' states only when this epoch saves them

    def on_epoch_end(self, epoch: int, indexes: list[int]) -> dict[int, str]:
        here = [self.members[i] for i in indexes]
        flush, checkpoint = self.due
        judged = sweeps.prunes_at(self.request, epoch)  # its pruners read this epoch's rows
        if flush or judged:
            self.flushed_at = self._write(here, checkpoint)
            if checkpoint:
                self.saved_at = self.flushed_at
        if not judged:
            return {}
        verdicts = {}
        for i, m in zip(indexes, here):
            if m.job_id not in self.lease.lost:
                verdict = with_db_retry(lambda _: sweeps.prune_decision(self.factory, m.job_id, epoch), self.factory)
                if verdict:
                    verdicts[i] = verdict
        return verdicts

    def _write(self, here: list[Member], checkpoint: bool) -> float:
        """These members' pending epochs (and with checkpoint, resume states) in one transaction;
        a member that lost its attempt is dropped (it leaves at this epoch's end) and the rest
        written. Returns when."""
        taken = [(m, f) for m in here if m.job_id not in self.lease.lost
                 and (f := m.callbacks.take(checkpoint=checkpoint)) is not None]
        while taken:
            try:
                with_db_retry(lambda s: db_jobs.record_pack_epochs(s, [f for _, f in taken]), self.factory,
                              done_if_duplicate=True)
                break
            except db_jobs.Fenced as exc:
                self.lease.lost.add(exc.job_id)
                taken = [(m, f) for m, f in taken if m.job_id != exc.job_id]
        now = time.monotonic()
        for m, f in taken:
            m.callbacks.written(f, now)
        return now

    def on_members_end(self, results: dict[int, FitResult]) -> None:
        # their last epochs in one transaction (one each was a third of a member's end), then each its end
        self._write([self.members[i] for i in results], checkpoint=False)
        for i, result in results.items():
            m = self.members[i]
            lost, cancelled = m.job_id in self.lease.lost, m.job_id in self.lease.cancelled
            self.lease.drop(m.job_id)
            try:
                self.outcomes[m.job_id] = conclude(self.factory, m.job_id, m.attempt, m.queue, result, m.callbacks,
                                                   lost=lost, cancelled=cancelled)
            except db_jobs.Fenced:
                log.warning("job %s: attempt %d was superseded; its writes were refused", m.job_id, m.attempt)
                self.outcomes[m.job_id] = "fenced"


def run_pack(factory: sessionmaker[Session], attempts: dict[str, int]) -> str:
    """Train the claimed members as one pack; each ends with its own finish (or release). Returns
    "packed" (worker.tasks.train_job then lets the sweep ask for more, once)."""
    leader = next(iter(attempts))
    lease = PackLease(factory, attempts)
    lease.start()
    persister: PackPersister | None = None
    try:
        loaded = {job_id: with_db_retry(lambda s, j=job_id: load_job(s, j, with_data=j == leader), factory)
                  for job_id in attempts}
        specs = {job_id: JobSpec.model_validate(row[0]) for job_id, row in loaded.items()}
        resume = [resume_from(factory, job_id, attempt, loaded[job_id][5]) for job_id, attempt in attempts.items()]
        _, _, _, sha256, uploaded, _ = loaded[leader]
        data = job_data(specs[leader], sha256, uploaded)  # one pack key: one data set, split and preprocessing
        with factory() as session:
            request = SweepSpec.model_validate(db_sweeps.get_sweep(
                session, None, db_sweeps.sweep_of_job(session, leader)).spec)
        members = []
        for job_id, attempt in attempts.items():
            described = model_metadata(specs[job_id], data.signature, data.preprocessing, data.classes)
            callbacks = MemberCallbacks(factory, job_id, attempt, lease, described, trial=True)
            members.append(Member(job_id, attempt, loaded[job_id][1], callbacks))
        persister = PackPersister(factory, members, lease, request)
        log.info("pack of %d (%s): attempt %s started", len(members), leader, sorted(set(attempts.values())))
        fit_packed([specs[m.job_id] for m in members], data, callbacks=[m.callbacks for m in members],
                   resume=resume, pack=persister)
    except Exception as exc:  # noqa: BLE001 - the members still in the pack fail with a readable reason
        log.exception("pack %s failed", leader)
        ended = persister.outcomes if persister is not None else {}
        for job_id, attempt in attempts.items():
            if job_id not in ended:
                try:
                    with_db_retry(lambda s: db_jobs.finish(s, job_id, attempt, status="failed",
                                                           error=one_line(exc)), factory)
                except db_jobs.Fenced:
                    pass
    finally:
        lease.stop()
    outcomes = persister.outcomes if persister is not None else {}
    log.info("pack of %d (%s) ended: %s", len(attempts), leader,
             {o: sum(v == o for v in outcomes.values()) for o in set(outcomes.values())})
    return "packed"
