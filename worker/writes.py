"""A worker's fenced writes about a claimed job, without the training code (torch): the epoch
flush's transaction and the hand-back of a released job. `python -m bench scale` runs these very
functions in its simulated workers."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from db import attempts as db_attempts
from db.epochs import Flush, record_epochs
from db.fencing import Fenced
from db.sending import mark_enqueued
from worker.lease import Lease
from worker.retry import with_db_retry

log = logging.getLogger("netfit.worker")


def write_flushes(factory: sessionmaker[Session], flushes: list[Flush], lost: Callable[[str], None],
                  ends: dict[str, tuple[int, db_attempts.Ending]] | None = None) -> list[Flush]:
    """One job's flush or a pack's members' in one transaction (db.epochs.record_epochs), riding
    out a database restart; with `ends`, those jobs are ended in it too (db.attempts.finish_all:
    their last epochs are among the flushes). A job whose attempt was superseded is named to
    lost() (it leaves at this epoch's end; one in `ends` is removed from it) and the others are
    written again. Returns the flushes written."""
    ends = ends if ends is not None else {}
    while flushes or ends:
        try:
            if ends:
                with_db_retry(lambda s: db_attempts.finish_all(s, ends, flushes), factory)
            else:
                with_db_retry(lambda s: record_epochs(s, flushes), factory, done_if_duplicate=True)
            return flushes
        except Fenced as exc:
            job_id = exc.job_id if exc.job_id in ends or any(f.job_id == exc.job_id for f in flushes) else \
                next(iter(ends), None) or flushes[0].job_id
            lost(job_id)
            flushes = [f for f in flushes if f.job_id != job_id]
            ends.pop(job_id, None)
    return []


def hand_back(factory: sessionmaker[Session], lease: Lease, job_id: str, attempt: int, queue: str,
              send: Callable[[str, str], None], *, after_epoch: int, preempted_by: str | None = None) -> None:
    """Release a job whose epochs so far are written (worker shutting down, or preempted for the
    queued job `preempted_by`): queued again, then its message re-sent on `queue`. Fenced if a
    write found another attempt owning it: then it is not this worker's to hand back."""
    if lease.is_lost(job_id):
        raise Fenced(f"job {job_id}: attempt {attempt} lost its lease", job_id)
    with_db_retry(lambda s: db_attempts.release(s, job_id, attempt, preempted_by=preempted_by,
                                                after_epoch=after_epoch), factory)
    try:
        send(job_id, queue)
        with_db_retry(lambda s: mark_enqueued(s, job_id), factory)
    except Exception as exc:  # noqa: BLE001 - the reconciler re-sends it
        log.warning("job %s: released but not re-sent (%s)", job_id, exc)
    log.info("job %s: released after epoch %d (%s)", job_id, after_epoch,
             f"preempted by job {preempted_by}" if preempted_by else "worker shutting down")
