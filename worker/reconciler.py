"""The reconciler: the database says which jobs should be running; make the broker agree.

- a queued job not (re)sent for settings.requeue_seconds may have lost its message: send it
  again (a duplicate is harmless: the second delivery finds nothing to claim);
- a running job whose lease expired lost its worker: send it again, once per expiry, so another
  worker claims it and resumes from its last saved epoch — or, after settings.max_attempts lost
  attempts, fail it with "worker_lost";
- a running sweep whose next trial was not asked for (the asking process died) is filled;
- a queued job that outranks a running one while no worker is free has the lowest-priority
  running job asked to make way at its next epoch end (db.preemption; NETFIT_PREEMPTION=0: never).

Where it runs: in every worker process, as a daemon thread beside the training loop (docs/production.md).
Jobs can only run where a worker runs, so wherever netfit can train — `netfit serve`, `netfit
api` + any number of `netfit worker`s on SQLite/the file broker or on PostgreSQL/Redis, the
compose stack — the reconciler runs too, with nothing else to start or forget. Every pass is
conditional UPDATEs and idempotent sends, so N workers reconciling at once is safe; each pass
costs a few indexed queries, and the passes are spread by a random phase.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from service.settings import get_settings
from db import expiry
from db.sending import mark_enqueued
from db.models import utcnow
from service import preemption, sweeps
from worker import housekeeping

log = logging.getLogger("netfit.reconciler")


def reconcile_once(session_factory: sessionmaker[Session], enqueue: Callable[[str, str], None], *,
                   max_attempts: int | None = None, requeue_after: float | None = None) -> dict[str, int]:
    settings = get_settings()
    max_attempts = max_attempts or settings.max_attempts
    requeue_after = requeue_after if requeue_after is not None else settings.requeue_seconds
    counts = {"requeued": 0, "resumed": 0, "failed": 0, "cancelled": 0}
    with session_factory() as session:
        now = utcnow()
        recent = now - timedelta(seconds=requeue_after)

        def send(job_id: str, queue: str) -> None:
            enqueue(job_id, queue)
            mark_enqueued(session, job_id, now)

        for job_id, queue in expiry.stale_queued(session, not_sent_since=recent):
            send(job_id, queue)
            counts["requeued"] += 1
        for row in expiry.expired_running(session, now=now):
            if row.cancel_requested:
                counts["cancelled"] += expiry.cancel_expired(session, row.id)
            elif row.lost >= max_attempts:
                message = (f"worker_lost: the worker running this job stopped responding {row.lost} times "
                           f"(NETFIT_MAX_ATTEMPTS={max_attempts}); it may crash the worker, e.g. out of memory")
                counts["failed"] += expiry.fail_lost(session, row.id, max_attempts=max_attempts, message=message)
            # not sent since its lease expired (the dead worker's message is gone: a file broker
            # never redelivers it, Redis only after an hour): taken back, with a "lost" event
            elif row.sent_at is None or row.sent_at < row.lease_expires_at:
                if expiry.take_back(session, row.id, now):  # one reconciler passing at once does
                    enqueue(row.id, row.queue)
                    counts["resumed"] += 1
            elif row.sent_at < recent:  # sent long ago and still unclaimed
                send(row.id, row.queue)
                counts["resumed"] += 1
    if settings.preemption:
        counts["preempted"] = len(preempt(session_factory))
    # sweeps: an ask lost with a killed process, or a trial this pass ended, is asked again here
    counts["trials_asked"] = sweeps.repair(session_factory, enqueue)
    counts.update(housekeeping.retain_if_due(session_factory))  # resume states, keep_best_trials, ...
    if any(counts.values()):
        log.info("reconciled: %s", counts)
    return counts


def preempt(session_factory: sessionmaker[Session]) -> list[tuple[str, str]]:
    """The preemption pass in its own transaction."""
    with session_factory() as session:
        return preemption.run_pass(session, get_settings())


def reconcile_logged(session_factory: sessionmaker[Session], enqueue: Callable[[str, str], None],
                     **options: float) -> None:
    """reconcile_once, a failure logged (DB or broker down: the next pass tries again)."""
    try:
        reconcile_once(session_factory, enqueue, **options)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001
        log.warning("reconcile failed: %s", str(exc).splitlines()[0][:200])


def start_thread(session_factory: sessionmaker[Session], enqueue: Callable[[str, str], None],
                 interval: float | None = None, **options: float) -> threading.Event:
    """Run reconcile_once every `interval` seconds in a daemon thread; set the event to stop."""
    interval = interval or get_settings().reconcile_seconds
    stop = threading.Event()

    def loop() -> None:
        # a random phase: workers started together do not all look at the same moment
        if stop.wait(random.uniform(0, interval)):
            return
        while True:
            reconcile_logged(session_factory, enqueue, **options)
            if stop.wait(interval):
                return

    threading.Thread(target=loop, name="reconciler", daemon=True).start()
    return stop

