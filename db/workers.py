"""The worker registry: each worker process registers, beats, and marks itself stopped; a worker
not seen for `stale_after` seconds is gone (killed, its host lost). What a worker trains is read
from the jobs it leases (jobs.lease_owner == workers.owner), so training writes nothing here."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from db.models import Job, Worker, new_id, utcnow


def register(session: Session, *, owner: str, host: str, pid: int, queues: list[str], device: str) -> str:
    now = utcnow()
    worker_id = new_id()
    session.add(Worker(id=worker_id, owner=owner, host=host, pid=pid, queues=list(queues), device=device,
                       started_at=now, last_seen_at=now))
    session.commit()
    return worker_id


def beat(session: Session, worker_id: str) -> bool:
    """The worker is alive; False if its row is gone (pruned after a long silence: register again)."""
    done = session.execute(update(Worker).where(Worker.id == worker_id)
                           .values(last_seen_at=utcnow(), stopped_at=None)).rowcount
    session.commit()
    return bool(done)


def stop(session: Session, worker_id: str) -> None:
    session.execute(update(Worker).where(Worker.id == worker_id).values(stopped_at=utcnow()))
    session.commit()


def _alive(now: datetime, stale_after: float) -> Any:
    return (Worker.stopped_at.is_(None)) & (Worker.last_seen_at >= now - timedelta(seconds=stale_after))


def live_workers(session: Session, *, stale_after: float) -> list[tuple[Worker, list[tuple[str, str, int]]]]:
    """The live workers, oldest first, each with what it trains: (job id, tenant, epochs completed)."""
    now = utcnow()
    workers = list(session.scalars(select(Worker).where(_alive(now, stale_after))
                                   .order_by(Worker.started_at, Worker.id)))
    owners = {w.owner for w in workers}
    training: dict[str, list[tuple[str, str, int]]] = {}
    if owners:
        for owner, job_id, tenant, epochs in session.execute(
                select(Job.lease_owner, Job.id, Job.tenant, Job.epochs_completed)
                .where(Job.status == "running", Job.lease_owner.in_(owners)).order_by(Job.id)):
            training.setdefault(owner, []).append((job_id, tenant, epochs))
    return [(w, training.get(w.owner, [])) for w in workers]


def live_by_queue(session: Session, *, stale_after: float) -> dict[str, int]:
    """How many live workers serve each queue."""
    counts: dict[str, int] = {}
    for (queues,) in session.execute(select(Worker.queues).where(_alive(utcnow(), stale_after))):
        for queue in queues or ():
            counts[queue] = counts.get(queue, 0) + 1
    return counts


def queued_by_queue(session: Session) -> dict[str, int]:
    return dict(session.execute(select(Job.queue, func.count()).where(Job.status == "queued")
                                .group_by(Job.queue)).all())


def lost_count(session: Session, *, stale_after: float) -> int:
    """Workers that stopped beating without saying they stopped (killed, host lost)."""
    now = utcnow()
    return session.scalar(select(func.count()).select_from(Worker).where(
        Worker.stopped_at.is_(None), Worker.last_seen_at < now - timedelta(seconds=stale_after))) or 0


def prune(session: Session, *, older_than: float) -> int:
    """Forget workers not seen for `older_than` seconds (the registry does not grow for ever)."""
    gone = session.execute(delete(Worker).where(
        Worker.last_seen_at < utcnow() - timedelta(seconds=older_than))).rowcount
    session.commit()
    return gone or 0
