"""What a worker writes while it trains, for one job or each member of a pack alike (a job is a
pack of one): each job's epochs kept until the next flush, and one flush decision per epoch for
all of them.

Fast epochs are batched: their rows and events reach the database at least every
NETFIT_FLUSH_SECONDS, every member's in one transaction, and the resume states and best weights
at most every NETFIT_CHECKPOINT_SECONDS (all members' of the same epoch, or none). A sweep's
trial is written before its pruner judges it, at the epochs the pruner judges. A member whose
attempt was superseded leaves; the others go on. A member that stops while its pack trains on
ends with the pack's next flush (at most NETFIT_FLUSH_SECONDS later, as its epochs' rows would
be written): its last epochs, its end and the pack's other rows in one transaction
(worker.runner.conclude), so members that stop together end together, and those that stop a few
epochs apart (early stopping) end in one transaction instead of one each. A pack's last members,
one cancelled or handed back, and ends after slow epochs are written at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db.epochs import EpochRecord, Flush
from db.models import utcnow
from netfit.engine.checkpoints import TrainingState, weights_to_bytes
from netfit.engine.fit import EpochReport, FitCallbacks, FitResult
from netfit.engine.packed import PackCallbacks
from netfit.sweep_spec import SweepSpec
from service import sweeps
from service.settings import get_settings
from worker.lease import Lease
from worker.retry import with_db_retry
from worker.writes import write_flushes


def flush_due(seconds: float, flushed_at: float, saved_at: float) -> tuple[bool, bool]:
    """After an epoch of `seconds`: (write the pending epochs now, with the resume states too).
    Now unless the next epoch end still comes in time (epochs as long as this one)."""
    due = time.monotonic() + seconds
    settings = get_settings()
    return due >= flushed_at + settings.flush_seconds, due >= saved_at + settings.checkpoint_seconds


def checkpoint_bytes(job_id: str, kind: str, epoch: int, metrics: dict[str, Any], weights: dict[str, Any],
                     described: dict[str, Any]) -> bytes:
    # the checkpoint describes itself (spec, data signature, preprocessing statistics, class
    # names): netfit.load_model and /predict use it with no job row and no data set at hand
    return weights_to_bytes(weights, {"job_id": job_id, "kind": kind, "epoch": epoch, "metrics": metrics, **described})


@dataclass(eq=False)
class Member(FitCallbacks):
    """One job as it trains (alone or in a pack): the engine's callbacks for it. Its epochs wait
    here for the Persister's next flush; its stop comes from the lease."""

    job_id: str
    attempt: int
    queue: str
    described: dict[str, Any]  # the checkpoints' self-description (model_metadata)
    lease: Lease
    pending: list[EpochRecord] = field(default_factory=list)
    state: TrainingState | None = None  # the latest epoch's, not yet saved
    best: tuple[int, dict[str, Any]] | None = None  # a best epoch whose weights are not saved yet
    persister: Persister | None = None  # set when it trains alone: it then drives the flushes itself
    stopped_at: datetime | None = None  # when it stopped training: its finish time, though written with a later flush
    _decided: int = 0  # the epoch whose flush was decided (wants_states)

    def wants_states(self, epoch: int, seconds: float) -> bool:
        """Alone: this epoch's flush is decided here, once (its state only when it is saved). In a
        pack, the pack's callbacks decide for all."""
        if self.persister is None:
            return True
        self._decided = epoch
        return self.persister.wants_states(epoch, seconds)

    def on_epoch_end(self, report: EpochReport, state: TrainingState | None) -> str | None:
        self.record(report, state)
        if self.persister is None:  # in a pack: the pack's callbacks flush for all
            return None
        if self._decided != report.epoch:
            self.persister.wants_states(report.epoch, report.seconds)
        return self.persister.on_epoch_end(report.epoch, [0]).get(0)

    def should_stop(self) -> bool:
        return self.lease.should_stop(self.job_id)

    def record(self, report: EpochReport, state: TrainingState | None) -> None:
        """Keep the epoch for the next flush (its row and event; the state to resume from). None,
        an epoch with no checkpoint due: no state newer than the saved one (an older one kept would
        not match the best weights since), so a release saves none and the next attempt resumes
        from the saved one, within the promise."""
        self.pending.append(EpochRecord({"epoch": report.epoch, **report.metrics, "seconds": report.seconds},
                                        report.early_stopping, report.layers))
        self.state = state
        if report.is_best:
            self.best = (report.epoch, report.metrics)

    def take(self, *, checkpoint: bool = False) -> Flush | None:
        """What the next flush writes: the pending epochs; with checkpoint, also the latest state and
        the best weights if a new best came since the last save. None: nothing to write."""
        resume = best = None
        if checkpoint and self.state is not None:
            resume = (self.state.epoch, self.state.to_bytes())
            if self.best is not None and self.state.best_weights is not None:
                epoch, metrics = self.best
                best = (epoch, metrics, checkpoint_bytes(self.job_id, "best", epoch, metrics, self.state.best_weights,
                                                         self.described))
        if not (self.pending or resume):
            return None
        return Flush(self.job_id, self.attempt, self.pending, resume, best)

    def written(self, done: Flush) -> None:
        """`done` (from take()) is in the database."""
        self.pending = self.pending[len(done.epochs):]
        if done.resume is not None:
            self.state = None
            if done.best is not None:
                self.best = None


class Persister(PackCallbacks):
    """The members' flushes: one decision per epoch (wants_states), one transaction for all."""

    def __init__(self, factory: sessionmaker[Session], members: list[Member], lease: Lease,
                 request: SweepSpec | None, end: Any):
        self.factory, self.members, self.lease, self.request = factory, members, lease, request
        # end([(member, result), ...], here, checkpoint) -> {job id: outcome}: how stopped members
        # leave, written with the pending epochs of `here` (the members training on)
        self.end = end
        self.flushed_at = self.saved_at = time.monotonic()
        self.due = (False, False)  # this epoch's (flush, checkpoint), decided once in wants_states
        self.seconds = 0.0  # this epoch's
        self.preempting: str | None = None  # this epoch's preemption request (the queued job's id)
        self.outcomes: dict[str, str] = {}
        self.stopped: list[tuple[Member, FitResult]] = []  # stopped, to end with the next flush
        self.training = len(members)

    def wants_states(self, epoch: int, seconds: float) -> bool:
        self.seconds = seconds
        self.due = flush_due(seconds, self.flushed_at, self.saved_at)
        # read once per epoch: a preempted epoch builds the states its release saves (db.preemption)
        self.preempting = self.lease.preempted_by([m.job_id for m in self.members])
        return self.due[1] or self.preempting is not None  # the states only when this epoch saves them

    def on_epoch_end(self, epoch: int, indexes: list[int]) -> dict[int, str]:
        here = [self.members[i] for i in indexes]
        flush, checkpoint = self.due
        # a sweep's trial: its pruner reads this epoch's rows, so they are written first
        judged = self.request is not None and sweeps.prunes_at(self.request, epoch)
        if flush or judged:
            self.flush(here, checkpoint=checkpoint)
        verdicts = {}
        if judged:  # every member in one read of the sweep and one study
            alive = [m.job_id for m in here if not self.lease.is_lost(m.job_id)]
            pruned = with_db_retry(lambda _: sweeps.prune_decisions(self.factory, alive, epoch), self.factory)
            verdicts = {i: pruned[m.job_id] for i, m in zip(indexes, here) if m.job_id in pruned}
        for i, m in zip(indexes, here):
            # preempted: the whole pack stops after this epoch (not after a job's last: it ends)
            if self.preempting is not None and i not in verdicts and epoch < m.described["spec"]["training"]["epochs"]:
                verdicts[i] = "preempted"
        return verdicts

    def flush(self, here: list[Member], *, checkpoint: bool) -> None:
        """The pending epochs of `here` (the members training on; with checkpoint, their resume
        states) and the ends of the members stopped since the last flush, in one transaction."""
        if self.stopped:
            stopped, self.stopped = self.stopped, []
            self.outcomes.update(self.end(stopped, here, checkpoint))
        else:
            self.write(here, checkpoint=checkpoint)
        if here or not self.training:  # the training members' clock (an end alone leaves their rows waiting)
            self.flushed_at = time.monotonic()
            if checkpoint:
                self.saved_at = self.flushed_at

    def write(self, here: list[Member], *, checkpoint: bool, ending: list[Member] = (),
              ends: dict[str, Any] | None = None) -> None:
        """These members' pending epochs (and with checkpoint, resume states) in one transaction;
        a member whose attempt was superseded is marked lost (it leaves at this epoch's end) and
        the rest written."""
        taken = {m.job_id: (m, f) for m, save in [*((m, checkpoint) for m in here), *((m, False) for m in ending)]
                 if not self.lease.is_lost(m.job_id) and (f := m.take(checkpoint=save)) is not None}
        for f in write_flushes(self.factory, [f for _, f in taken.values()], self.lease.mark_lost, ends):
            taken[f.job_id][0].written(f)

    def on_members_end(self, results: dict[int, FitResult]) -> None:
        now = utcnow()
        for i in results:
            self.members[i].stopped_at = now
        self.stopped += [(self.members[i], result) for i, result in results.items()]
        self.training -= len(results)
        at_once = (not self.training or any(r.stop_reason in ("cancelled", "preempted") for r in results.values())
                   or flush_due(self.seconds, self.flushed_at, self.saved_at)[0])
        if at_once:  # else the next flush ends them, before the next epoch that would be late
            self.flush([], checkpoint=False)

    def end_stopped(self) -> None:
        """The members stopped and not ended yet end now (the pack failed after they stopped)."""
        if self.stopped:
            self.flush([], checkpoint=False)
