"""Job state transitions on SQLite and PostgreSQL: claim, fencing, exactly-once epochs, cancel."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from db import jobs
from db.models import Checkpoint, EpochMetric, Job, utcnow
from tests.conftest import iris_spec

LEASE = 30.0


def new_job(session_factory, tenant: str = "default") -> str:
    with session_factory() as s:
        return jobs.create_job(s, tenant=tenant, spec=iris_spec(), summary=None, queue="cpu").id


def expire_lease(session_factory, job_id: str) -> None:
    with session_factory() as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()


def epoch_row(epoch: int, val_loss: float = 0.5) -> dict:
    return {"epoch": epoch, "train_loss": 0.6, "val_loss": val_loss, "train_accuracy": 0.8,
            "val_accuracy": 0.75, "lr": 0.01, "seconds": 0.1}


def test_claim_is_atomic_under_concurrent_claimers(session_factory):
    job_id = new_job(session_factory)
    results: list[int | None] = []
    barrier = threading.Barrier(6)

    def claimer(n: int) -> None:
        with session_factory() as s:
            barrier.wait()
            results.append(jobs.claim(s, job_id, f"w{n}", lease_seconds=LEASE, max_attempts=3))

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=lambda r: r or 0) == [None] * 5 + [1]
    with session_factory() as s:
        job = s.get(Job, job_id)
        assert (job.status, job.attempts, job.started_at is not None) == ("running", 1, True)


def test_stale_attempt_is_fenced_and_writes_nothing(session_factory):
    job_id = new_job(session_factory)
    with session_factory() as s:
        first = jobs.claim(s, job_id, "w1", lease_seconds=LEASE, max_attempts=3)
        jobs.record_epoch(s, job_id, first, epoch_row(1), resume_state=b"state-1", best=b"best-1")
        # a live lease cannot be taken over
        assert jobs.claim(s, job_id, "w2", lease_seconds=LEASE, max_attempts=3) is None
    expire_lease(session_factory, job_id)
    with session_factory() as s:
        second = jobs.claim(s, job_id, "w2", lease_seconds=LEASE, max_attempts=3)
        assert second == 2
        with pytest.raises(jobs.Fenced):
            jobs.record_epoch(s, job_id, first, epoch_row(2), resume_state=b"stale", best=b"stale")
        with pytest.raises(jobs.Fenced):
            jobs.heartbeat(s, job_id, first, lease_seconds=LEASE)
        with pytest.raises(jobs.Fenced):
            jobs.finish(s, job_id, first, status="succeeded", stop_reason="max_epochs")
        jobs.record_epoch(s, job_id, second, epoch_row(2, val_loss=0.7), resume_state=b"state-2")
        jobs.finish(s, job_id, second, status="succeeded", stop_reason="max_epochs",
                    checkpoints=[("last", 2, {"val_loss": 0.7}, b"last-2")])
    with session_factory() as s:
        job = s.get(Job, job_id)
        assert (job.status, job.epochs_completed, job.best_epoch) == ("succeeded", 2, 1)
        assert [m.epoch for m in s.scalars(select(EpochMetric).where(EpochMetric.job_id == job_id))] == [1, 2]
        kept = {c.kind: c.epoch for c in s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id))}
        assert kept == {"best": 1, "last": 2}  # the stale writes left nothing; resume state dropped
        best = jobs.get_checkpoint(s, "default", job_id, "best")
        assert best.data == b"best-1" and best.size_bytes == 6


def test_epoch_is_recorded_once_with_non_finite_metrics_as_null(session_factory):
    job_id = new_job(session_factory)
    with session_factory() as s:
        attempt = jobs.claim(s, job_id, "w", lease_seconds=LEASE, max_attempts=3)
        jobs.record_epoch(s, job_id, attempt, {**epoch_row(1), "val_loss": float("nan")}, resume_state=b"s")
        with pytest.raises(IntegrityError, match="(?i)unique"):  # the unique (job_id, epoch) constraint
            jobs.record_epoch(s, job_id, attempt, epoch_row(1), resume_state=b"s")
        s.rollback()
        rows = jobs.list_metrics(s, "default", job_id)
        assert [(r.epoch, r.val_loss, r.train_loss) for r in rows] == [(1, None, 0.6)]


def test_attempts_are_limited_and_release_is_not_a_lost_attempt(session_factory):
    job_id = new_job(session_factory)
    with session_factory() as s:
        attempt = jobs.claim(s, job_id, "w", lease_seconds=LEASE, max_attempts=2)
        jobs.release(s, job_id, attempt)  # SIGTERM: handed back, still 0 lost attempts
        assert s.get(Job, job_id).status == "queued"
    for expected in (2, 3):
        with session_factory() as s:
            assert jobs.claim(s, job_id, "w", lease_seconds=LEASE, max_attempts=2) == expected
        expire_lease(session_factory, job_id)
    with session_factory() as s:
        assert jobs.claim(s, job_id, "w", lease_seconds=LEASE, max_attempts=2) is None
        assert [(r.id, r.lost) for r in jobs.expired_running(s)] == [(job_id, 2)]
        assert jobs.fail_lost(s, job_id, max_attempts=2, message="worker_lost: gone")
        job = s.get(Job, job_id)
        assert (job.status, job.error) == ("failed", "worker_lost: gone")


def test_cancel_queued_at_once_and_running_by_flag(session_factory):
    queued, running = new_job(session_factory), new_job(session_factory)
    with session_factory() as s:
        attempt = jobs.claim(s, running, "w", lease_seconds=LEASE, max_attempts=3)
        assert jobs.request_cancel(s, "default", queued).status == "cancelled"
        assert jobs.request_cancel(s, "default", running).status == "running"
        assert jobs.heartbeat(s, running, attempt, lease_seconds=LEASE) is True
        assert jobs.cancel_requested(s, running)
        # a cancelled queued job is never claimed
        assert jobs.claim(s, queued, "w", lease_seconds=LEASE, max_attempts=3) is None
        assert jobs.request_cancel(s, "other-tenant", running) is None


def test_list_is_newest_first_paginated_and_tenant_scoped(session_factory):
    ids = [new_job(session_factory) for _ in range(5)]
    other = new_job(session_factory, tenant="other")
    with session_factory() as s:
        seen, cursor = [], None
        while True:
            page, cursor = jobs.list_jobs(s, "default", limit=2, cursor=cursor)
            seen += [j.id for j in page]
            if cursor is None:
                break
        assert seen == ids[::-1]
        assert jobs.get_job(s, "default", other) is None
        assert [j.id for j in jobs.list_jobs(s, "other")[0]] == [other]
        jobs.request_cancel(s, "default", ids[0])
        assert [j.id for j in jobs.list_jobs(s, "default", status="cancelled")[0]] == [ids[0]]
        with pytest.raises(ValueError, match="cursor"):
            jobs.list_jobs(s, "default", cursor="garbage!")


def test_events_replay_in_order(session_factory):
    job_id = new_job(session_factory)
    with session_factory() as s:
        attempt = jobs.claim(s, job_id, "w", lease_seconds=LEASE, max_attempts=3)
        jobs.record_epoch(s, job_id, attempt, epoch_row(1), resume_state=b"s")
        jobs.finish(s, job_id, attempt, status="succeeded", stop_reason="max_epochs")
        events = jobs.events_after(s, job_id, 0)
        assert [(e.kind, e.data.get("status") or e.data["epoch"]) for e in events] == [
            ("status", "queued"), ("status", "running"), ("epoch", 1), ("status", "succeeded")]
        assert [e.id for e in jobs.events_after(s, job_id, events[1].id)] == [events[2].id, events[3].id]


def test_a_batch_of_epochs_is_one_write_and_a_resumed_attempt_drops_what_its_state_does_not_hold(session_factory):
    job_id = new_job(session_factory)
    with session_factory() as s:
        first = jobs.claim(s, job_id, "w1", lease_seconds=LEASE, max_attempts=3)
        jobs.record_epochs(s, job_id, first, [jobs.EpochRecord(epoch_row(e)) for e in (1, 2)],
                           resume=(2, b"state-2"), best=(2, epoch_row(2), b"best-2"))
        # later epochs flushed without a state: the lost attempt's work after epoch 2
        jobs.record_epochs(s, job_id, first, [jobs.EpochRecord(epoch_row(e, val_loss=0.4)) for e in (3, 4, 5)])
    expire_lease(session_factory, job_id)
    with session_factory() as s:
        second = jobs.claim(s, job_id, "w2", lease_seconds=LEASE, max_attempts=3)
        with pytest.raises(jobs.Fenced):  # the lost attempt, awake again, writes nothing
            jobs.record_epochs(s, job_id, first, [jobs.EpochRecord(epoch_row(6))])
        assert jobs.rewind(s, job_id, second, 2, 2, epoch_row(2)) == 3
        job = s.get(Job, job_id)
        assert (job.epochs_completed, job.best_epoch) == (2, 2)
        assert [m.epoch for m in jobs.list_metrics(s, "default", job_id)] == [1, 2]
        resume = jobs.get_checkpoint(s, None, job_id, "resume")
        assert (resume.epoch, resume.data) == (2, b"state-2")
        with pytest.raises(jobs.Fenced):
            jobs.rewind(s, job_id, first, 0, None, None)
        jobs.record_epochs(s, job_id, second, [jobs.EpochRecord(epoch_row(e)) for e in (3, 4)])
        assert [m.epoch for m in jobs.list_metrics(s, "default", job_id)] == [1, 2, 3, 4]  # each once
        kinds = [e.kind for e in jobs.events_after(s, job_id, 0)]
        assert kinds.count("epoch") == 7  # 1-5 by the lost attempt, 3-4 again: followers key them by epoch


def test_a_packs_flush_writes_every_member_or_names_the_one_whose_attempt_was_lost(session_factory):
    members = [new_job(session_factory) for _ in range(3)]
    with session_factory() as s:
        attempts = {j: jobs.claim(s, j, "w1", lease_seconds=LEASE, max_attempts=3) for j in members}

    def flush(job_id: str, epoch: int, *, best: bool) -> jobs.Flush:
        row = epoch_row(epoch, val_loss=1 / epoch)
        return jobs.Flush(job_id, attempts[job_id], [jobs.EpochRecord(row)], resume=(epoch, b"state"),
                          best=(epoch, row, b"best") if best else None)

    with session_factory() as s:
        jobs.record_pack_epochs(s, [flush(j, 1, best=True) for j in members])
        # epoch 2: only the middle member improved; the others keep their best of epoch 1
        jobs.record_pack_epochs(s, [flush(j, 2, best=j == members[1]) for j in members])
    with session_factory() as s:
        rows = {j: s.get(Job, j) for j in members}
        assert [(rows[j].epochs_completed, rows[j].best_epoch) for j in members] == [(2, 1), (2, 2), (2, 1)]
        assert rows[members[0]].best_metrics["val_loss"] == 1.0
    expire_lease(session_factory, members[2])
    with session_factory() as s:
        jobs.claim(s, members[2], "w2", lease_seconds=LEASE, max_attempts=3)
        with pytest.raises(jobs.Fenced) as fenced:
            jobs.record_pack_epochs(s, [flush(j, 3, best=True) for j in members])
        assert fenced.value.job_id == members[2]
    with session_factory() as s:  # the refused flush wrote nothing, for any member
        assert [s.get(Job, j).epochs_completed for j in members] == [2, 2, 2]
        assert [len(jobs.list_metrics(s, "default", j)) for j in members] == [2, 2, 2]
        jobs.record_pack_epochs(s, [flush(j, 3, best=False) for j in members[:2]])  # the rest, written again
    with session_factory() as s:
        assert [s.get(Job, j).epochs_completed for j in members] == [3, 3, 2]
