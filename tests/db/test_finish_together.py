"""A pack's members that stop after the same epoch end in one transaction (db.attempts.finish_all)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db import attempts as db_attempts
from db.fencing import Fenced
from db.models import Checkpoint, Job, JobEvent
from db.sending import new_queued_job
from tests.conftest import engine_events, iris_spec


def _running(session_factory, n: int) -> dict[str, int]:
    with session_factory() as s:
        ids = [new_queued_job(s, tenant="default", spec=iris_spec(epochs=3), queue="cpu").id for _ in range(n)]
        s.commit()
        return db_attempts.claim(s, ids, "w1", lease_seconds=60, max_attempts=3)


def test_members_that_stop_together_end_in_one_commit(session_factory):
    taken = _running(session_factory, 4)
    ends = {job_id: (attempt, db_attempts.Ending(
        "succeeded", stop_reason="early_stopping", epochs_completed=3 + i, best_epoch=2,
        best_metrics={"val_loss": 0.1 * i}, checkpoints=[("last", 3 + i, {"val_loss": 0.2}, b"last")]))
        for i, (job_id, attempt) in enumerate(taken.items())}
    with engine_events(session_factory, "commit") as commits, session_factory() as s:
        db_attempts.finish_all(s, ends)
    assert len(commits) == 1
    with session_factory() as s:
        for i, job_id in enumerate(taken):
            job = s.get(Job, job_id)
            assert (job.status, job.stop_reason, job.epochs_completed) == ("succeeded", "early_stopping", 3 + i)
            assert job.best_metrics == {"val_loss": pytest.approx(0.1 * i)}
            kinds = [e.data.get("status") for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job_id)
                                                             .order_by(JobEvent.id))]
            assert kinds == ["queued", "running", "succeeded"]
            assert s.scalars(select(Checkpoint.kind).where(Checkpoint.job_id == job_id)).all() == ["last"]


def test_one_member_taken_over_refuses_them_all_and_names_it(session_factory):
    taken = _running(session_factory, 3)
    lost = sorted(taken)[1]
    ends = {j: (a + (1 if j == lost else 0), db_attempts.Ending("succeeded", stop_reason="max_epochs"))
            for j, a in taken.items()}
    with session_factory() as s, pytest.raises(Fenced) as refused:
        db_attempts.finish_all(s, ends)
    assert refused.value.job_id == lost
    with session_factory() as s:
        assert set(s.scalars(select(Job.status).where(Job.id.in_(list(taken))))) == {"running"}
