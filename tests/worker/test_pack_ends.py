"""A pack's members that stop a few epochs apart (early stopping, their own epochs) end with the
pack's next flush: their last epochs, their ends and the pack's other rows in one transaction,
not two transactions each (worker.persist, db.attempts.finish_all). The worker's own training
path (worker.runner.train) on SQLite and PostgreSQL, without a worker process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select, update

from db import attempts as db_attempts
from db.models import Checkpoint, EpochMetric, Job, JobEvent, utcnow
from db.sending import new_queued_job
from service.settings import get_settings
from tests.conftest import engine_events, iris_spec
from worker.lease import Lease
from worker.runner import Outcome, train

EPOCHS = (3, 5, 6, 8, 11, 12)  # each member stops after its own


@pytest.fixture
def flush_seconds(monkeypatch: pytest.MonkeyPatch) -> Iterator[callable]:
    def set_to(seconds: float) -> None:
        monkeypatch.setenv("NETFIT_FLUSH_SECONDS", str(seconds))
        monkeypatch.setenv("NETFIT_CHECKPOINT_SECONDS", "600")
        get_settings.cache_clear()

    yield set_to
    monkeypatch.undo()
    get_settings.cache_clear()


def claimed_pack(session_factory) -> dict[str, int]:
    with session_factory() as s:
        ids = [new_queued_job(s, tenant="default", spec=iris_spec(epochs=n, seed=n), queue="cpu").id for n in EPOCHS]
        s.commit()
        taken = db_attempts.claim(s, ids, "w1", lease_seconds=600, max_attempts=3)
    return {j: taken[j] for j in ids}  # in EPOCHS' order


def assert_ended_as_trained(session_factory, attempts: dict[str, int]) -> None:
    """Each member succeeded after its own epochs, with one row per epoch, its best and last
    weights, no resume state, and its "succeeded" event after its last epoch's."""
    with session_factory() as s:
        for job_id, epochs in zip(attempts, EPOCHS):
            job = s.get(Job, job_id)
            assert (job.status, job.stop_reason, job.epochs_completed) == ("succeeded", "max_epochs", epochs)
            rows = s.scalars(select(EpochMetric.epoch).where(EpochMetric.job_id == job_id)
                             .order_by(EpochMetric.epoch)).all()
            assert rows == list(range(1, epochs + 1))
            assert sorted(s.scalars(select(Checkpoint.kind).where(Checkpoint.job_id == job_id))) == ["best", "last"]
            events = [(e.kind, e.data.get("epoch"), e.data.get("status")) for e in
                      s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))]
            assert events[-2:] == [("epoch", epochs, None), ("status", None, "succeeded")]


def test_members_stopping_epochs_apart_end_in_one_transaction_with_the_packs_flush(session_factory, flush_seconds):
    flush_seconds(60)  # no flush by time in this short pack: its members' ends wait for its last
    attempts = claimed_pack(session_factory)
    with engine_events(session_factory, "commit") as commits:
        outcomes = train(session_factory, attempts, Lease(session_factory, attempts), packed=True)
    assert outcomes == {j: Outcome.SUCCEEDED for j in attempts}
    # before: each member's last epochs, then its end: two transactions for each of the six
    assert len(commits) == 1
    assert_ended_as_trained(session_factory, attempts)
    with session_factory() as s:  # each finished when it stopped, not when its end was written
        finished = [s.get(Job, job_id).finished_at for job_id in attempts]
        ended = dict(s.execute(select(JobEvent.job_id, JobEvent.created_at).where(
            JobEvent.job_id.in_(list(attempts)), JobEvent.kind == "status",
            JobEvent.data["status"].as_string() == "succeeded")).all())
    assert finished == sorted(set(finished)), finished  # in the order of EPOCHS, none at the same time
    assert [ended[job_id] for job_id in attempts] == finished  # the "succeeded" event says so too


def test_with_every_epoch_flushed_a_member_ends_at_the_epoch_it_stops(session_factory, flush_seconds):
    flush_seconds(0)  # the tests' setting: nothing waits for a flush
    attempts = claimed_pack(session_factory)
    outcomes = train(session_factory, attempts, Lease(session_factory, attempts), packed=True)
    assert outcomes == {j: Outcome.SUCCEEDED for j in attempts}
    assert_ended_as_trained(session_factory, attempts)
    first, last = list(attempts)[0], list(attempts)[-1]
    with session_factory() as s:
        ended = s.scalar(select(JobEvent.id).where(JobEvent.job_id == first, JobEvent.kind == "status",
                                                   JobEvent.data["status"].as_string() == "succeeded"))
        after = s.scalar(select(JobEvent.id).where(JobEvent.job_id == last, JobEvent.kind == "epoch",
                                                   JobEvent.data["epoch"].as_integer() == EPOCHS[0] + 1))
    assert ended < after  # written before the pack's next epoch


def test_a_member_taken_over_is_refused_and_the_others_end_in_the_same_flush(session_factory, flush_seconds):
    flush_seconds(60)
    attempts = claimed_pack(session_factory)
    lost = list(attempts)[2]
    with session_factory() as s:  # another worker claims it once this one's lease has run out
        s.execute(update(Job).where(Job.id == lost).values(lease_expires_at=utcnow()))
        s.commit()
        assert db_attempts.claim(s, [lost], "w2", lease_seconds=600, max_attempts=3) == {lost: 2}
    outcomes = train(session_factory, attempts, Lease(session_factory, attempts), packed=True)
    assert outcomes == {j: Outcome.FENCED if j == lost else Outcome.SUCCEEDED for j in attempts}
    with session_factory() as s:
        job = s.get(Job, lost)
        assert (job.status, job.attempts, job.epochs_completed) == ("running", 2, 0)
        assert s.scalar(select(EpochMetric.epoch).where(EpochMetric.job_id == lost)) is None
        assert [s.get(Job, j).status for j in attempts if j != lost] == ["succeeded"] * (len(EPOCHS) - 1)
