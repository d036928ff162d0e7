"""The Celery task and the worker's Celery signals: the only place where Celery meets the
training code (worker.runner)."""

from __future__ import annotations

import itertools
import logging
import signal
from pathlib import Path
from typing import Any

from celery.signals import worker_ready, worker_shutting_down

from service import sweeps
from service.queue import TRAIN_TASK, app, enqueue
from service.settings import get_settings
from worker import runner
from worker.database import session_factory
from worker.lease import shutting_down

log = logging.getLogger("netfit.worker")
warm_up = runner.warm_up  # worker.main runs it before Celery starts


@worker_shutting_down.connect
def _on_shutdown(**_: Any) -> None:
    shutting_down.set()  # the jobs save their epoch and are released


@worker_ready.connect
def _on_ready(**_: Any) -> None:
    _first_sigterm_only()
    # after warm_up: the worker consumes now (`netfit serve` and the tests wait for this file)
    if get_settings().worker_ready_file:
        Path(get_settings().worker_ready_file).touch()


def _first_sigterm_only() -> None:
    """Celery's warm-shutdown handler, for the first SIGTERM only. Stopping `netfit serve` can
    send several at once (serve's own, its process group's, the parent-death signal), and a
    second one run inside the first handler waited forever for a lock the first held (Celery's
    signal dispatch): the worker never stopped. Later ones change nothing: the shutdown is under
    way. Celery has installed its handlers by the time the worker is ready."""
    handler = signal.getsignal(signal.SIGTERM)
    if not callable(handler):
        return
    # no lock (an Event takes one): a handler runs nested in the same thread when the next signal
    # comes, and one run inside the lock's hold waited for it forever. next() on a count is one
    # C call, which a signal cannot split: exactly one handler gets 0.
    received = itertools.count()

    def first_only(signum: int, frame: Any) -> None:
        if next(received) == 0:
            handler(signum, frame)

    signal.signal(signal.SIGTERM, first_only)


@app.task(name=TRAIN_TASK)
def train_job(job_id: str) -> str:
    outcomes = runner.run(job_id)  # the job trained may be another of the queue (db.schedule)
    ended = [j for j, o in outcomes.items() if o in runner.ENDED]
    if ended:
        try:  # a trial (or a pack's) ended: its sweep asks for the next (the reconciler repairs a lost ask)
            sweeps.after_job(session_factory(), ended[0], enqueue)
        except Exception as exc:  # noqa: BLE001 - the job's outcome is saved; the sweep is repaired later
            log.warning("job %s: the sweep's next trial was not asked (%s)", ended[0], exc)
    return str(outcomes.get(job_id) or next(iter(outcomes.values())))
