"""The Celery task: the only place where the engine, the database and Celery meet.

train_job(job_id) is thin: claim the job (a duplicate message finds nothing to claim),
load its data, run engine.fit with callbacks that commit its epochs (metrics and events at
least every NETFIT_FLUSH_SECONDS, the resume state and best weights at most every
NETFIT_CHECKPOINT_SECONDS; fenced by the attempt number), renew the lease from a background
thread, and finish with the status, stop reason and the best/last weights.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from celery.signals import worker_ready, worker_shutting_down
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db import datasets as db_datasets
from db import jobs as db_jobs
from netfit.spec import JobSpec
from service.queue import TRAIN_TASK, app, enqueue
from service.settings import get_settings
from service import sweeps
from worker import uploads
from worker.database import LEASE_SECONDS, session_factory
from netfit.engine.checkpoints import TrainingState, weights_to_bytes
from netfit.engine.data import PreparedData, load_data
from netfit.engine.inference import model_metadata
from netfit.engine.errors import DataError, SpecError
from netfit.engine.fit import EpochReport, FitCallbacks, FitResult, fit

log = logging.getLogger("netfit.worker")
T = TypeVar("T")


HEARTBEAT_SECONDS = get_settings().heartbeat_seconds
MAX_ATTEMPTS = get_settings().max_attempts
DB_RETRY_SECONDS = get_settings().db_retry_seconds
CANCEL_POLL_SECONDS = 1.0  # should_stop() reads the database at most this often
FLUSH_SECONDS = get_settings().flush_seconds
CHECKPOINT_SECONDS = get_settings().checkpoint_seconds

# Set when Celery starts its warm shutdown (SIGTERM): the job saves its epoch and is released.
shutting_down = threading.Event()


@worker_shutting_down.connect
def _on_shutdown(**_: Any) -> None:
    shutting_down.set()


@worker_ready.connect
def _on_ready(**_: Any) -> None:
    # after warm_up (worker.main runs it before Celery starts): `netfit serve` is ready now
    if get_settings().worker_ready_file:
        Path(get_settings().worker_ready_file).touch()


def with_db_retry(action: Callable[[Session], T], factory: sessionmaker[Session], *, deadline: float | None = None,
                  done_if_duplicate: bool = False) -> T:
    """Run action(session) in a fresh session, retrying while the database is unreachable.
    done_if_duplicate: a retried insert that hits the unique key had committed before the
    connection dropped, so it counts as done."""
    give_up = time.monotonic() + (DB_RETRY_SECONDS if deadline is None else deadline)
    delay, retried = 0.25, False
    while True:
        try:
            with factory() as session:
                return action(session)
        except IntegrityError:
            if done_if_duplicate and retried:
                return None  # type: ignore[return-value]
            raise
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not (isinstance(exc, OperationalError) or exc.connection_invalidated):
                raise
            if time.monotonic() + delay > give_up:
                raise
            log.warning("database unavailable (%s); retrying in %.1fs", str(exc).splitlines()[0][:120], delay)
            time.sleep(delay)
            delay, retried = min(delay * 2, 5.0), True


class Lease(threading.Thread):
    """Renews the job's lease every HEARTBEAT_SECONDS; notices a lost lease or a cancel."""

    def __init__(self, factory: sessionmaker[Session], job_id: str, attempt: int):
        super().__init__(name=f"lease-{job_id}", daemon=True)
        self.factory, self.job_id, self.attempt = factory, job_id, attempt
        self.lost = threading.Event()
        self.cancelled = threading.Event()
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                with self.factory() as session:
                    if db_jobs.heartbeat(session, self.job_id, self.attempt, lease_seconds=LEASE_SECONDS):
                        self.cancelled.set()
            except db_jobs.Fenced:
                log.warning("job %s: attempt %d lost its lease; stopping", self.job_id, self.attempt)
                self.lost.set()
                return
            except Exception as exc:  # noqa: BLE001 - a DB hiccup: try again next period
                log.warning("job %s: heartbeat failed (%s)", self.job_id, str(exc).splitlines()[0][:120])

    def stop(self) -> None:
        self._stop.set()


class JobCallbacks(FitCallbacks):
    """Persists the epochs (fenced) and tells the loop when to stop. Fast epochs are batched: their
    rows and events reach the database at least every FLUSH_SECONDS in one transaction, the resume
    state and best weights at most every CHECKPOINT_SECONDS; the task flush()es the rest at the end."""

    def __init__(self, factory: sessionmaker[Session], job_id: str, attempt: int, lease: Lease, described: dict[str, Any],
                 trial: bool = False):
        self.factory, self.job_id, self.attempt, self.lease = factory, job_id, attempt, lease
        self.described = described  # the checkpoints' self-description (model_metadata)
        self.trial = trial  # a sweep's trial: an epoch its pruner judges is flushed first (sweeps.judges)
        self._next_check = 0.0
        self.pending: list[db_jobs.EpochRecord] = []
        self.state: TrainingState | None = None  # the latest epoch's, not yet saved
        self.best: tuple[int, dict[str, Any]] | None = None  # a best epoch whose weights are not saved yet
        now = time.monotonic()
        self.flushed_at = self.saved_at = now

    def on_epoch_end(self, report: EpochReport, state: TrainingState | None) -> str | None:
        self.record(report, state)
        flush, checkpoint = flush_due(report.seconds, self.flushed_at, self.saved_at)
        # a sweep's trial whose pruner judges it now: its row is written first, then judged
        judged = self.trial and with_db_retry(lambda _: sweeps.judges(self.factory, self.job_id, report.epoch),
                                              self.factory)
        if judged or flush:
            self.flush(checkpoint=checkpoint)
        if not judged:
            return None
        return with_db_retry(lambda _: sweeps.prune_decision(self.factory, self.job_id, report.epoch), self.factory)

    def record(self, report: EpochReport, state: TrainingState | None) -> None:
        """Keep the epoch for the next flush (its row and event; the state to resume from). None, a
        pack's epoch with no checkpoint due: no state newer than the saved one (an older one kept
        would not match the best weights since), so a release saves none and the next attempt
        resumes from the saved one, within the promise."""
        self.pending.append(db_jobs.EpochRecord({"epoch": report.epoch, **report.metrics, "seconds": report.seconds},
                                                report.early_stopping, report.layers))
        self.state = state
        if report.is_best:
            self.best = (report.epoch, report.metrics)

    def take(self, *, checkpoint: bool = False) -> db_jobs.Flush | None:
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
        return db_jobs.Flush(self.job_id, self.attempt, self.pending, resume, best)

    def written(self, done: db_jobs.Flush, at: float) -> None:
        """`done` (from take()) is in the database."""
        self.pending = self.pending[len(done.epochs):]
        self.flushed_at = at
        if done.resume is not None:
            self.state, self.saved_at = None, at
            if done.best is not None:
                self.best = None

    def flush(self, *, checkpoint: bool = False) -> None:
        """Write the pending epochs in one transaction (see take())."""
        f = self.take(checkpoint=checkpoint)
        if f is None:
            return
        with_db_retry(lambda s: db_jobs.record_epochs(s, f.job_id, f.attempt, f.epochs, resume=f.resume, best=f.best),
                      self.factory, done_if_duplicate=True)
        self.written(f, time.monotonic())

    def should_stop(self) -> bool:
        if shutting_down.is_set() or self.lease.lost.is_set() or self.lease.cancelled.is_set():
            return True
        now = time.monotonic()
        if now >= self._next_check:  # cheap: at most one query a second
            self._next_check = now + CANCEL_POLL_SECONDS
            try:
                with self.factory() as session:
                    if db_jobs.cancel_requested(session, self.job_id):
                        self.lease.cancelled.set()
            except Exception:  # noqa: BLE001 - the DB is down: keep training, ask again later
                pass
        return self.lease.cancelled.is_set()


def flush_due(seconds: float, flushed_at: float, saved_at: float) -> tuple[bool, bool]:
    """After an epoch of `seconds`: (write the pending epochs now, with the resume state too). Now
    unless the next epoch end still comes in time (epochs as long as this one)."""
    due = time.monotonic() + seconds
    return due >= flushed_at + FLUSH_SECONDS, due >= saved_at + CHECKPOINT_SECONDS


def checkpoint_bytes(job_id: str, kind: str, epoch: int, metrics: dict[str, Any], weights: dict[str, Any],
                     described: dict[str, Any]) -> bytes:
    # the checkpoint describes itself (spec, data signature, preprocessing statistics, class
    # names): netfit.load_model and /predict use it with no job row and no data set at hand
    return weights_to_bytes(weights, {"job_id": job_id, "kind": kind, "epoch": epoch, "metrics": metrics, **described})


def one_line(exc: BaseException) -> str:
    """The error a user sees: the exception's first line, no traceback (that goes to the log)."""
    text = (str(exc).strip().splitlines() or [""])[0][:500]
    if isinstance(exc, (SpecError, DataError)):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_job(job_id: str, factory: sessionmaker[Session] | None = None) -> str:
    """Claim and train one job; returns what happened (for logs and tests)."""
    factory = factory or session_factory()
    attempt = with_db_retry(
        lambda s: db_jobs.claim(s, job_id, owner_name(), lease_seconds=LEASE_SECONDS, max_attempts=MAX_ATTEMPTS),
        factory)
    if attempt is None:
        log.info("job %s: nothing to claim (taken, finished or a duplicate message)", job_id)
        return "skipped"
    from worker import packs  # it builds on this module

    members = packs.claim_pack(factory, job_id, attempt)
    if members is not None:  # a packing sweep's trial: it and its siblings train as one pack
        return packs.run_pack(factory, members)
    log.info("job %s: attempt %d started", job_id, attempt)
    lease = Lease(factory, job_id, attempt)
    lease.start()
    try:
        return _train(job_id, attempt, factory, lease)
    except db_jobs.Fenced:
        log.warning("job %s: attempt %d was superseded; its writes were refused", job_id, attempt)
        return "fenced"
    except Exception as exc:  # noqa: BLE001 - any failure ends the job with a readable reason
        log.exception("job %s: attempt %d failed", job_id, attempt)
        try:
            with_db_retry(lambda s: db_jobs.finish(s, job_id, attempt, status="failed", error=one_line(exc)), factory)
        except db_jobs.Fenced:
            pass
        return "failed"
    finally:
        lease.stop()


def load_job(session: Session, job_id: str, *, with_data: bool = True) -> tuple[dict[str, Any], str, bool, str | None,
                                                                             bytes | None, bytes | None]:
    """What training a claimed job needs: (spec, queue, is a trial, the upload's sha256, its bytes
    when this process has not decoded them yet and with_data, the resume state's bytes)."""
    job = db_jobs.job_for_worker(session, job_id)
    spec = job.spec
    dataset_id = spec.get("dataset", {}).get("id")
    sha256 = db_datasets.dataset_sha256(session, job.tenant, dataset_id) if dataset_id and with_data else None
    # the blob only when neither this process nor the machine's cache has decoded the same content
    fresh = sha256 is not None and uploads.found(sha256, _uploads_dir()) is None
    uploaded = db_datasets.dataset_bytes(session, job.tenant, dataset_id) if fresh else None
    resume = db_jobs.get_checkpoint(session, None, job_id, "resume")
    return spec, job.queue, job.sweep_id is not None, sha256, uploaded, resume.data if resume else None


def resume_from(factory: sessionmaker[Session], job_id: str, attempt: int, resume_bytes: bytes | None) -> TrainingState | None:
    """The state to go on from; a later attempt first drops the rows a lost one wrote after it."""
    resume = TrainingState.from_bytes(resume_bytes) if resume_bytes else None
    if attempt > 1:
        # a lost attempt may have recorded epochs after its last saved state: they are trained again
        after = resume.epoch if resume is not None else 0
        dropped = with_db_retry(lambda s: db_jobs.rewind(
            s, job_id, attempt, after, resume.best_epoch if resume else None, resume.best_metrics if resume else None),
            factory)
        log.info("job %s: resuming after epoch %d (%d later epochs recorded by a lost attempt are trained again)",
                 job_id, after, dropped)
    return resume


def _uploads_dir() -> Path:
    return get_settings().downloads().cache_dir / "uploads"


# The last job's data as it trains on it (split, preprocessed: 0.1-0.2 s for MNIST), for the next
# job on the same content, split and preprocessing (a lab's, a sweep's); the engine never
# writes into it. One is kept: an MNIST-sized set is 200 MB of float32.
_prepared: tuple[tuple[str, ...], PreparedData] | None = None


def job_data(spec: JobSpec, sha256: str | None, uploaded: bytes | None) -> PreparedData:
    global _prepared
    key = (sha256 or spec.dataset.model_dump_json(), spec.split.model_dump_json(), spec.preprocess.model_dump_json())
    if _prepared is not None and _prepared[0] == key:
        return _prepared[1]
    _prepared = None  # its memory is free before the next is made
    raw = None if sha256 is None else uploads.decoded(sha256, uploaded, _uploads_dir(),
                                                      get_settings().upload_cache_bytes)
    data = load_data(spec, raw=raw, downloads=get_settings().downloads())
    _prepared = (key, data)
    return data


def _train(job_id: str, attempt: int, factory: sessionmaker[Session], lease: Lease) -> str:
    raw_spec, queue, trial, sha256, uploaded, resume_bytes = with_db_retry(lambda s: load_job(s, job_id), factory)
    spec = JobSpec.model_validate(raw_spec)
    resume = resume_from(factory, job_id, attempt, resume_bytes)
    data = job_data(spec, sha256, uploaded)
    described = model_metadata(spec, data.signature, data.preprocessing, data.classes)
    # per-layer statistics are cheap enough to keep for every job (bench engine: engine_stats / engine)
    callbacks = JobCallbacks(factory, job_id, attempt, lease, described, trial=trial)
    result = fit(spec, data, callbacks=callbacks, resume=resume, layer_stats=True)
    return conclude(factory, job_id, attempt, queue, result, callbacks, lost=lease.lost.is_set(),
                    cancelled=lease.cancelled.is_set())


def conclude(factory: sessionmaker[Session], job_id: str, attempt: int, queue: str, result: FitResult,
             callbacks: JobCallbacks, *, lost: bool, cancelled: bool) -> str:
    """After training (alone, or as a member leaving its pack): write the epochs not written yet,
    then hand the job back (SIGTERM) or finish it with its status and best/last weights."""
    if lost:
        raise db_jobs.Fenced(f"job {job_id}: attempt {attempt} lost its lease", job_id)
    described = callbacks.described
    released = result.stop_reason == "cancelled" and shutting_down.is_set() and not cancelled
    # the epochs not written yet; the resume state only if the job goes on elsewhere (finish drops it)
    callbacks.flush(checkpoint=released)
    if released:
        # SIGTERM, not a user's cancel: the epochs so far are saved; hand the job to another worker
        with_db_retry(lambda s: db_jobs.release(s, job_id, attempt), factory)
        try:
            enqueue(job_id, queue)
            with_db_retry(lambda s: db_jobs.mark_enqueued(s, job_id), factory)
        except Exception as exc:  # noqa: BLE001 - the reconciler re-sends it
            log.warning("job %s: released but not re-sent (%s)", job_id, exc)
        log.info("job %s: released after epoch %d (worker shutting down)", job_id, result.epochs_completed)
        return "released"

    last_metrics = result.history[-1].metrics if result.history else {}
    checkpoints = []
    if result.epochs_completed:
        best_epoch = result.best_epoch or result.epochs_completed
        best_metrics = result.best_metrics or last_metrics
        checkpoints = [
            ("best", best_epoch, best_metrics, checkpoint_bytes(job_id, "best", best_epoch, best_metrics, result.best_weights, described)),
            ("last", result.epochs_completed, last_metrics,
             checkpoint_bytes(job_id, "last", result.epochs_completed, last_metrics, result.last_weights, described)),
        ]
    status = "cancelled" if result.stop_reason == "cancelled" else "succeeded"
    with_db_retry(lambda s: db_jobs.finish(
        s, job_id, attempt, status=status, stop_reason=result.stop_reason,
        epochs_completed=result.epochs_completed, best_epoch=result.best_epoch,
        best_metrics=result.best_metrics or None, test_metrics=result.test_metrics,
        device=result.device, checkpoints=checkpoints), factory)
    log.info("job %s: %s (%s) after %d epochs", job_id, status, result.stop_reason, result.epochs_completed)
    return status


def warm_up() -> None:
    """Pay the one-time costs (torch's meta-device tracing, data set imports, the first
    optimizer step, the database engine and its first connection) when the worker starts,
    not in the first job it trains."""
    spec = JobSpec.model_validate({"dataset": {"builtin": "iris"}, "model": {"layers": [{"type": "linear", "units": 3}]},
                                   "training": {"epochs": 1, "device": "cpu"}})
    fit(spec, load_data(spec))
    # a claim of an id no job has: connects and compiles the claim's statement, changes nothing
    with session_factory()() as session:
        db_jobs.claim(session, "warm-up", owner_name(), lease_seconds=LEASE_SECONDS, max_attempts=MAX_ATTEMPTS)


@app.task(name=TRAIN_TASK)
def train_job(job_id: str) -> str:
    outcome = run_job(job_id)
    if outcome in ("succeeded", "failed", "cancelled", "packed"):
        try:  # a trial (or a pack) ended: its sweep asks for the next (the reconciler repairs a lost ask)
            sweeps.after_job(session_factory(), job_id, enqueue)
        except Exception as exc:  # noqa: BLE001 - the job's outcome is saved; the sweep is repaired later
            log.warning("job %s: the sweep's next trial was not asked (%s)", job_id, exc)
    return outcome

