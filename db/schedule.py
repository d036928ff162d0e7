"""Which queued job a free worker runs: the scheduler's policy, in one place.

    1. the highest `priority` first (-100..100; a tenant may be capped);
    2. among equals, a job resumed after a lost worker or a hand-back (it has had an attempt)
       before fresh ones: its epochs so far are not trained again behind the queue;
    3. then the tenant with the least running work for its weight (weighted fair share;
       `netfit tenants set NAME --weight W`, default 1), skipping tenants at their max_running;
    4. among tenants of equal share, the one whose last start is oldest (they take turns: with
       short jobs a tenant's running work is often 0 at each pick, and the share alone would
       fall back to age, which is first come, first served across tenants); starts older than
       a minute do not count;
    5. then age (oldest first), then id.

`pick` applies it inside the claim's transaction: on PostgreSQL the candidate row is locked
with FOR NO KEY UPDATE SKIP LOCKED, so concurrent claims take different jobs without waiting for
each other; SQLite's single writer serialises them (and a claim that lost the race asks again).
A re-send's stamp (db.sending) is written to job_sends, not the job row, so it holds no lock
that would make a pick pass the job over.
`waiting` explains a queued job's wait from the same rule."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, and_, case, cast, func, select
from sqlalchemy.orm import Session

from db import workers as db_workers
from db.models import Job, JobEvent, Tenant, utcnow
from db.states import EventKind


TURN_WINDOW = timedelta(minutes=1)


def _running_by_tenant() -> Any:
    return (select(Job.tenant.label("tenant"), func.count().label("n")).where(Job.status == "running")
            .group_by(Job.tenant).subquery("running_work"))


def _recent_starts_by_tenant(now: datetime) -> Any:
    """Each tenant's latest start within TURN_WINDOW (none: it goes first among equal shares).
    An index range over the window's starts, read once a pick: a tenant's whole history, or a
    probe per waiting tenant joined to every candidate row, cost 3-10x the pick at 5,000 queued."""
    return (select(Job.tenant.label("tenant"), func.max(Job.attempt_started_at).label("at"))
            .where(Job.attempt_started_at > now - TURN_WINDOW).group_by(Job.tenant).subquery("recent_starts"))


def resumed() -> Any:
    """A job that has had an attempt (lost, handed back, preempted) goes first among its priority."""
    return case((Job.attempts > 0, 0), else_=1)


def pick(session: Session, queue: str, claimable: Any) -> str | None:
    """The id of the job the policy runs next from `queue` among those matching `claimable`
    (db.jobs' condition), locked on PostgreSQL; None if none may start now."""
    running = _running_by_tenant()
    work = func.coalesce(running.c.n, 0)
    share = cast(work, Float) / func.coalesce(Tenant.weight, 1.0)
    last = _recent_starts_by_tenant(utcnow())
    query = (select(Job.id).outerjoin(running, running.c.tenant == Job.tenant)
             .outerjoin(Tenant, Tenant.name == Job.tenant).outerjoin(last, last.c.tenant == Job.tenant)
             .where(Job.queue == queue, claimable, (Tenant.max_running.is_(None)) | (work < Tenant.max_running))
             .order_by(Job.priority.desc(), resumed(), share, last.c.at.asc().nulls_first(), Job.created_at, Job.id)
             .limit(1))
    if session.get_bind().dialect.name == "postgresql":
        # FOR NO KEY UPDATE: a concurrent claim's lock is skipped, but not the key-share lock that
        # adding any row referencing the job takes (its waiting event, written by the API right
        # after the job's message is sent): a FOR UPDATE pick skipped that job and its message was lost
        query = query.with_for_update(of=Job, skip_locked=True, key_share=True)
    return session.scalar(query)


def pick_for(session: Session, job_id: str, claimable: Any) -> str | None:
    """What a message about `job_id` makes a free worker take: nothing if that job is not
    claimable (a duplicate, ended, taken), else the policy's pick from its queue (often itself)."""
    queue = session.scalar(select(Job.queue).where(Job.id == job_id, claimable))
    return None if queue is None else pick(session, queue, claimable)


def waiting(session: Session, job: Any, *, stale_after: float) -> dict[str, Any] | None:
    """Why a queued job waits: {reason, position, workers, message}. reason: "no_worker" (no
    live worker serves its queue), "max_running" (its tenant runs its most at once), or "queue"
    (its position in line by priority, resumed-first and age; fair share may reorder tenants)."""
    if job.status != "queued":
        return None
    workers = db_workers.live_by_queue(session, stale_after=stale_after).get(job.queue, 0)
    ahead = session.scalar(select(func.count()).select_from(Job).where(
        Job.status == "queued", Job.queue == job.queue, Job.id != job.id,
        (Job.priority > job.priority) | and_(Job.priority == job.priority, resumed() < (0 if job.attempts else 1))
        | and_(Job.priority == job.priority, resumed() == (0 if job.attempts else 1), Job.created_at < job.created_at)))
    position = int(ahead or 0) + 1
    if workers == 0:
        return {"reason": "no_worker", "position": position, "workers": 0,
                "message": f"no live worker serves queue '{job.queue}'; start one (netfit worker --queues {job.queue})"}
    cap = session.scalar(select(Tenant.max_running).where(Tenant.name == job.tenant))
    if cap is not None and session.scalar(select(func.count()).select_from(Job).where(
            Job.tenant == job.tenant, Job.status == "running")) >= cap:
        return {"reason": "max_running", "position": position, "workers": workers,
                "message": f"tenant '{job.tenant}' runs {cap} jobs at once, its max_running; it starts when one ends"}
    return {"reason": "queue", "position": position, "workers": workers,
            "message": f"number {position} in line for queue '{job.queue}' "
                       f"({'1 live worker serves' if workers == 1 else f'{workers} live workers serve'} it)"}


def note_waiting(session: Session, job: Any, *, stale_after: float) -> dict[str, Any] | None:
    """waiting(), also stored as the job's `waiting` event."""
    why = waiting(session, job, stale_after=stale_after)
    if why is not None:
        session.add(JobEvent(job_id=job.id, kind=str(EventKind.WAITING), data=why))
        session.commit()
    return why
