"""worker.writes, the worker's fenced writes without torch, on SQLite and PostgreSQL: a pack's
flush writes every member whose attempt still owns its job and names the one that lost it; a
release queues the job again and re-sends it, unless the lease was lost."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from db import jobs
from db.epochs import EpochRecord, Flush
from db.fencing import Fenced
from db.models import Job, JobSend, utcnow
from tests.conftest import iris_spec
from tests.worker_writes import claim
from worker.lease import Lease
from worker.writes import hand_back, write_flushes


def new_jobs(session_factory, n: int) -> dict[str, int]:
    """n jobs claimed by this worker: {job id: attempt}."""
    with session_factory() as s:
        ids = [jobs.create_job(s, tenant="default", spec=iris_spec(), summary=None, queue="cpu").id for _ in range(n)]
        return {j: claim(s, j, "w1") for j in ids}


def take_over(session_factory, job_id: str) -> None:
    """Another worker claims the job once this one's lease has run out."""
    with session_factory() as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
        assert claim(s, job_id, "w2") == 2


def test_a_packs_flush_writes_the_members_still_owned_and_names_the_lost_one(session_factory):
    attempts = new_jobs(session_factory, 3)
    members = list(attempts)
    take_over(session_factory, members[1])
    lost: list[str] = []
    flushes = [Flush(j, a, [EpochRecord({"epoch": 1, "train_loss": 0.5, "seconds": 0.1})], resume=(1, b"state"))
               for j, a in attempts.items()]
    written = write_flushes(session_factory, flushes, lost.append)
    assert lost == [members[1]]
    assert [f.job_id for f in written] == [members[0], members[2]]
    with session_factory() as s:
        assert [s.get(Job, j).epochs_completed for j in members] == [1, 0, 1]
        assert [len(jobs.list_metrics(s, "default", j)) for j in members] == [1, 0, 1]


def test_a_release_queues_the_job_again_and_resends_it_unless_its_lease_was_lost(session_factory):
    attempts = new_jobs(session_factory, 2)
    kept, taken = attempts
    lease = Lease(session_factory, attempts)  # not started: its flags are what this test sets
    sent: list[tuple[str, str]] = []
    hand_back(session_factory, lease, kept, attempts[kept], "cpu", lambda j, q: sent.append((j, q)), after_epoch=3)
    with session_factory() as s:
        job, stamp = s.get(Job, kept), s.get(JobSend, kept)
        assert (job.status, job.releases, job.lease_owner, stamp is not None) == ("queued", 1, None, True)
    assert sent == [(kept, "cpu")]

    lease.mark_lost(taken)  # a write found another attempt owning it
    with pytest.raises(Fenced):
        hand_back(session_factory, lease, taken, attempts[taken], "cpu", lambda j, q: sent.append((j, q)),
                  after_epoch=3)
    with session_factory() as s:
        assert (s.get(Job, taken).status, s.get(Job, taken).releases) == ("running", 0)
    assert sent == [(kept, "cpu")]
