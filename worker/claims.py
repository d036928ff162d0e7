"""A worker's claim on a message, without the training code (torch): the message wakes the
worker, the scheduler's policy (db.schedule) picks the job. `python -m bench scale` runs these
very functions in its simulated workers."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from db import attempts as db_attempts
from db import schedule
from db.models import utcnow
from db.sending import mark_enqueued, queue_if_queued
from service.settings import Settings, get_settings

log = logging.getLogger("netfit.worker")


def owner_name() -> str:
    """What the claim writes as a job's lease_owner: this process's host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(session: Session, job_id: str, owner: str | None = None,
          settings: Settings | None = None) -> tuple[str, int] | None:
    """This worker's claim on a message about `job_id`: (the job it takes, its attempt), or None.
    The policy picks the job from that job's queue, often the job itself. A pick another worker
    took first is asked again (SQLite; PostgreSQL's claims skip each other's locked rows)."""
    settings = settings or get_settings()
    for _ in range(3):
        chosen = schedule.pick_for(session, job_id, db_attempts.claimable(utcnow(), settings.max_attempts))
        if chosen is None:
            session.rollback()
            return None
        attempt = db_attempts.claim(session, [chosen], owner or owner_name(), lease_seconds=settings.lease_seconds,
                                    max_attempts=settings.max_attempts).get(chosen)
        if attempt is not None:
            return chosen, attempt
    return None


def wake(factory: sessionmaker[Session], job_id: str, send: Callable[[str, str], None]) -> bool:
    """Send a queued job's message again: a message whose worker took the policy's other pick
    leaves its job waiting, and the job taken may have had no message of its own (a lost
    worker's). A duplicate finds nothing to claim. True if it was sent."""
    try:
        with factory() as session:
            queue = queue_if_queued(session, job_id)
            if queue is None:
                return False
            send(job_id, queue)
            mark_enqueued(session, job_id)
            return True
    except Exception as exc:  # noqa: BLE001 - the reconciler sends it after requeue_seconds
        log.warning("job %s: its message was not sent again (%s)", job_id, str(exc).splitlines()[0][:200])
        return False
