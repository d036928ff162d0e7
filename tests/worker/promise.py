"""The recovery promise (README), checked after a worker was lost mid-job: the
resumed attempt trained again at most max(one epoch, NETFIT_CHECKPOINT_SECONDS) of what the lost
one had done."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import JobEvent


def job_events(factory: sessionmaker[Session], job_id: str, kind: str) -> list[dict[str, Any]]:
    """The data of the job's events of this kind, in order (what GET /v1/jobs/{id}/events streams)."""
    with factory() as session:
        return list(session.scalars(select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.kind == kind)
                                    .order_by(JobEvent.id)))


def assert_recomputed_within(factory: sessionmaker[Session], job_id: str, epoch_seconds: dict[int, float],
                             checkpoint_seconds: float) -> int:
    """epoch_seconds: the job's rows (epoch -> seconds) once it finished. Returns the epoch the job
    resumed after. The epochs trained again are those the lost attempt had recorded after its
    saved state (the "resumed" event says how many); the promise is exact for epochs of even
    length, so one epoch more is allowed on a shared machine."""
    resumed = job_events(factory, job_id, "resumed")
    assert resumed, f"job {job_id} has no resumed event"
    after, redone = resumed[-1]["epoch"], resumed[-1]["redone"]
    trained_again = sum(epoch_seconds[e] for e in range(after + 1, after + redone + 1))
    longest = max(epoch_seconds.values())
    assert trained_again <= checkpoint_seconds + longest, (
        f"resumed after epoch {after}: {redone} epochs ({trained_again:.2f} s of training) done again, more than "
        f"max(one epoch, {checkpoint_seconds} s) allows")
    return after
