"""One lease thread for what a worker trains, one job or a pack's members: every lease renewed
in one transaction every NETFIT_HEARTBEAT_SECONDS, their cancel flags read in one query every
CANCEL_POLL_SECONDS in between. The training loop asks should_stop(job) and never reads the
database itself: a cancel is noticed here, once. A member that leaves is dropped.

A preemption request (db.preemption) is read with the cancels but is not a stop: should_stop
stays False (it is asked inside epochs too); the persister asks preempted_by() at each epoch's
end, so a preempted job stops there, with that epoch's state saved."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.orm import Session, sessionmaker

from db import attempts as db_attempts
from service.settings import get_settings

log = logging.getLogger("netfit.worker")

CANCEL_POLL_SECONDS = 1.0  # how soon a cancel is noticed (one indexed read of the leased rows)

# Set when Celery starts its warm shutdown (SIGTERM): each job saves its epoch and is released.
shutting_down = threading.Event()


class Lease(threading.Thread):
    """Holds {job id: attempt}; `cancelled` and `lost` flags per job, changed under one lock by
    this thread (what the database says) and by the persister (a write found the job taken over)."""

    def __init__(self, factory: sessionmaker[Session], attempts: dict[str, int]):
        super().__init__(name=f"lease-{next(iter(attempts))}", daemon=True)
        self.factory = factory
        self._attempts = dict(attempts)
        self._cancelled: set[str] = set()
        self._lost: set[str] = set()
        self._preempted: dict[str, str] = {}  # job id -> the queued job it is asked to make way for
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def should_stop(self, job_id: str) -> bool:
        """The engine's question after each epoch and inside long ones: no database read."""
        if shutting_down.is_set():
            return True
        with self._lock:
            return job_id in self._lost or job_id in self._cancelled

    def preempted_by(self, job_ids: list[str]) -> str | None:
        """The queued job that one of these (a job, or a pack's members: preempted whole) is asked
        to make way for at this epoch's end; None to train on."""
        with self._lock:
            return next((self._preempted[j] for j in job_ids if j in self._preempted and j not in self._lost), None)

    def is_lost(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._lost

    def mark_lost(self, job_id: str) -> None:
        """A fenced write found another attempt owning the job: it stops and writes nothing more."""
        with self._lock:
            if job_id not in self._lost:
                log.warning("job %s: this attempt lost its lease (another owns the job); stopping", job_id)
            self._lost.add(job_id)

    def leave(self, job_id: str) -> tuple[bool, bool]:
        """The job stops being renewed (it ends, or is released): its (lost, cancelled) flags."""
        with self._lock:
            self._attempts.pop(job_id, None)
            return job_id in self._lost, job_id in self._cancelled

    def run(self) -> None:
        heartbeat = get_settings().heartbeat_seconds
        lease_seconds = get_settings().lease_seconds
        renew_at = time.monotonic() + heartbeat
        while not self._stop.wait(min(heartbeat, CANCEL_POLL_SECONDS)):
            with self._lock:
                attempts = {j: a for j, a in self._attempts.items() if j not in self._lost}
            if not attempts:
                continue
            renew = time.monotonic() >= renew_at
            preempted: dict[str, str] = {}
            try:
                with self.factory() as session:
                    cancelled, lost = db_attempts.heartbeat(session, attempts, lease_seconds=lease_seconds if renew else None,
                                                            preempted=preempted)
            except Exception as exc:  # noqa: BLE001 - a DB hiccup: try again next period
                log.warning("%s: heartbeat failed (%s)", self.name, str(exc).splitlines()[0][:120])
                continue
            if renew:
                renew_at = time.monotonic() + heartbeat
            with self._lock:
                self._cancelled |= cancelled
                self._preempted = preempted  # as the database says now: a dropped request is gone
            for job_id in lost:
                self.mark_lost(job_id)

    def stop(self) -> None:
        self._stop.set()
