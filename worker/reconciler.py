"""The reconciler: the database says which jobs should be running; make the broker agree.

- a queued job not (re)sent for NETFIT_REQUEUE_SECONDS may have lost its message: send it again
  (a duplicate is harmless: the second delivery finds nothing to claim);
- a running job whose lease expired lost its worker: send it again so another worker claims
  it and resumes from its last saved epoch — or, after NETFIT_MAX_ATTEMPTS lost attempts,
  fail it with "worker_lost".
It runs as a thread in `netfit serve` and, in the stack, as the `reconcile` task that Celery
beat schedules every NETFIT_RECONCILE_SECONDS on the `control` queue: the `control` service
consumes it with beat embedded, so a pass never waits behind a training job.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from db import jobs as db_jobs
from db.models import utcnow
from worker import sweeps
from worker.celery_app import RECONCILE_TASK, app, enqueue

log = logging.getLogger("netfit.reconciler")


def reconcile_once(session_factory: sessionmaker[Session], enqueue: Callable[[str, str], None], *,
                   max_attempts: int | None = None, requeue_after: float | None = None) -> dict[str, int]:
    max_attempts = max_attempts or int(os.environ.get("NETFIT_MAX_ATTEMPTS", "3"))
    requeue_after = requeue_after if requeue_after is not None else float(os.environ.get("NETFIT_REQUEUE_SECONDS", "60"))
    counts = {"requeued": 0, "resumed": 0, "failed": 0, "cancelled": 0}
    with session_factory() as session:
        now = utcnow()
        recent = now - timedelta(seconds=requeue_after)

        def send(job_id: str, queue: str) -> None:
            enqueue(job_id, queue)
            db_jobs.mark_enqueued(session, job_id, now)

        for job_id, queue in db_jobs.stale_queued(session, not_enqueued_since=recent):
            send(job_id, queue)
            counts["requeued"] += 1
        for row in db_jobs.expired_running(session, now=now):
            if row.cancel_requested:
                counts["cancelled"] += db_jobs.cancel_expired(session, row.id)
            elif row.lost >= max_attempts:
                message = (f"worker_lost: the worker running this job stopped responding {row.lost} times "
                           f"(NETFIT_MAX_ATTEMPTS={max_attempts}); it may crash the worker, e.g. out of memory")
                counts["failed"] += db_jobs.fail_lost(session, row.id, max_attempts=max_attempts, message=message)
            elif row.enqueued_at is None or row.enqueued_at < recent:
                send(row.id, row.queue)
                counts["resumed"] += 1
    # sweeps: an ask lost with a killed process, or a trial this pass ended, is asked again here
    counts["trials_asked"] = sweeps.repair(session_factory, enqueue)
    if any(counts.values()):
        log.info("reconciled: %s", counts)
    return counts


def start_thread(session_factory: sessionmaker[Session], enqueue: Callable[[str, str], None],
                 interval: float | None = None, **options: float) -> threading.Event:
    """Run reconcile_once every `interval` seconds in a daemon thread; set the event to stop."""
    interval = interval or float(os.environ.get("NETFIT_RECONCILE_SECONDS", "5"))
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                reconcile_once(session_factory, enqueue, **options)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - DB or broker down: try again next time
                log.warning("reconcile failed: %s", str(exc).splitlines()[0][:200])

    threading.Thread(target=loop, name="reconciler", daemon=True).start()
    return stop


@app.task(name=RECONCILE_TASK)
def reconcile() -> dict[str, int]:
    from worker.database import session_factory

    return reconcile_once(session_factory(), enqueue)
