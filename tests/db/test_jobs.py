"""Job state transitions on SQLite and PostgreSQL: claim, fencing, exactly-once epochs, cancel, the
reconciler's take-back, and reads scoped by tenant."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from db import attempts as db_attempts
from db import epochs, expiry, job_lists, jobs
from db import sweeps as db_sweeps
from db.epochs import EpochRecord, Flush
from db.fencing import Fenced
from db.models import Checkpoint, EpochMetric, Job, utcnow
from db.sending import mark_enqueued
from tests.conftest import iris_spec
from tests.worker_writes import claim, record_epoch

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
            results.append(claim(s, job_id, f"w{n}", lease_seconds=LEASE, max_attempts=3))

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
        first = claim(s, job_id, "w1", lease_seconds=LEASE, max_attempts=3)
        record_epoch(s, job_id, first, epoch_row(1), resume_state=b"state-1", best=b"best-1")
        # a live lease cannot be taken over
        assert claim(s, job_id, "w2", lease_seconds=LEASE, max_attempts=3) is None
    expire_lease(session_factory, job_id)
    with session_factory() as s:
        second = claim(s, job_id, "w2", lease_seconds=LEASE, max_attempts=3)
        assert second == 2
        with pytest.raises(Fenced):
            record_epoch(s, job_id, first, epoch_row(2), resume_state=b"stale", best=b"stale")
        assert db_attempts.heartbeat(s, {job_id: first}, lease_seconds=LEASE) == (set(), {job_id})  # lost
        with pytest.raises(Fenced):
            db_attempts.finish(s, job_id, first, status="succeeded", stop_reason="max_epochs")
        record_epoch(s, job_id, second, epoch_row(2, val_loss=0.7), resume_state=b"state-2")
        db_attempts.finish(s, job_id, second, status="succeeded", stop_reason="max_epochs",
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
        attempt = claim(s, job_id, "w", lease_seconds=LEASE, max_attempts=3)
        record_epoch(s, job_id, attempt, {**epoch_row(1), "val_loss": float("nan")}, resume_state=b"s")
        with pytest.raises(IntegrityError, match="(?i)unique"):  # the unique (job_id, epoch) constraint
            record_epoch(s, job_id, attempt, epoch_row(1), resume_state=b"s")
        s.rollback()
        rows = jobs.list_metrics(s, "default", job_id)
        assert [(r.epoch, r.val_loss, r.train_loss) for r in rows] == [(1, None, 0.6)]


def test_attempts_are_limited_and_release_is_not_a_lost_attempt(session_factory):
    job_id = new_job(session_factory)
    with session_factory() as s:
        attempt = claim(s, job_id, "w", lease_seconds=LEASE, max_attempts=2)
        db_attempts.release(s, job_id, attempt)  # SIGTERM: handed back, still 0 lost attempts
        assert s.get(Job, job_id).status == "queued"
    for expected in (2, 3):
        with session_factory() as s:
            assert claim(s, job_id, "w", lease_seconds=LEASE, max_attempts=2) == expected
        expire_lease(session_factory, job_id)
    with session_factory() as s:
        assert claim(s, job_id, "w", lease_seconds=LEASE, max_attempts=2) is None
        assert [(r.id, r.lost) for r in expiry.expired_running(s)] == [(job_id, 2)]
        assert expiry.fail_lost(s, job_id, max_attempts=2, message="worker_lost: gone")
        job = s.get(Job, job_id)
        assert (job.status, job.error) == ("failed", "worker_lost: gone")


def test_cancel_queued_at_once_and_running_by_flag(session_factory):
    queued, running = new_job(session_factory), new_job(session_factory)
    with session_factory() as s:
        attempt = claim(s, running, "w", lease_seconds=LEASE, max_attempts=3)
        assert jobs.request_cancel(s, "default", queued).status == "cancelled"
        assert jobs.request_cancel(s, "default", running).status == "running"
        # the lease's renewal and its read in between both say so
        assert db_attempts.heartbeat(s, {running: attempt}, lease_seconds=LEASE) == ({running}, set())
        assert db_attempts.heartbeat(s, {running: attempt}, lease_seconds=None) == ({running}, set())
        # a cancelled queued job is never claimed
        assert claim(s, queued, "w", lease_seconds=LEASE, max_attempts=3) is None
        assert jobs.request_cancel(s, "other-tenant", running) is None


def test_list_is_newest_first_paginated_and_tenant_scoped(session_factory):
    ids = [new_job(session_factory) for _ in range(5)]
    other = new_job(session_factory, tenant="other")
    with session_factory() as s:
        seen, cursor = [], None
        while True:
            page, cursor = job_lists.list_jobs(s, "default", limit=2, cursor=cursor)
            seen += [j["id"] for j in page]
            if cursor is None:
                break
        assert seen == ids[::-1]
        assert jobs.get_job(s, "default", other) is None
        assert [j["id"] for j in job_lists.list_jobs(s, "other")[0]] == [other]
        jobs.request_cancel(s, "default", ids[0])
        assert [j["id"] for j in job_lists.list_jobs(s, "default", status="cancelled")[0]] == [ids[0]]
        with pytest.raises(ValueError, match="cursor"):
            job_lists.list_jobs(s, "default", cursor="garbage!")


def test_events_replay_in_order(session_factory):
    job_id = new_job(session_factory)
    with session_factory() as s:
        attempt = claim(s, job_id, "w", lease_seconds=LEASE, max_attempts=3)
        record_epoch(s, job_id, attempt, epoch_row(1), resume_state=b"s")
        db_attempts.finish(s, job_id, attempt, status="succeeded", stop_reason="max_epochs")
        events = jobs.events_after(s, job_id, 0)
        assert [(e.kind, e.data.get("status") or e.data["epoch"]) for e in events] == [
            ("status", "queued"), ("status", "running"), ("epoch", 1), ("status", "succeeded")]
        assert [e.id for e in jobs.events_after(s, job_id, events[1].id)] == [events[2].id, events[3].id]


def test_a_batch_of_epochs_is_one_write_and_a_resumed_attempt_drops_what_its_state_does_not_hold(session_factory):
    job_id = new_job(session_factory)
    with session_factory() as s:
        first = claim(s, job_id, "w1", lease_seconds=LEASE, max_attempts=3)
        epochs.record_epochs(s, [Flush(job_id, first, [EpochRecord(epoch_row(e)) for e in (1, 2)],
                                       resume=(2, b"state-2"), best=(2, epoch_row(2), b"best-2"))])
        # later epochs flushed without a state: the lost attempt's work after epoch 2
        epochs.record_epochs(s, [Flush(job_id, first, [EpochRecord(epoch_row(e, val_loss=0.4)) for e in (3, 4, 5)])])
    expire_lease(session_factory, job_id)
    with session_factory() as s:
        second = claim(s, job_id, "w2", lease_seconds=LEASE, max_attempts=3)
        with pytest.raises(Fenced):  # the lost attempt, awake again, writes nothing
            epochs.record_epochs(s, [Flush(job_id, first, [EpochRecord(epoch_row(6))])])
        assert epochs.rewind(s, job_id, second, 2, 2, epoch_row(2)) == 3
        job = s.get(Job, job_id)
        assert (job.epochs_completed, job.best_epoch) == (2, 2)
        assert [m.epoch for m in jobs.list_metrics(s, "default", job_id)] == [1, 2]
        resume = db_attempts.resume_checkpoint(s, job_id)
        assert (resume.epoch, resume.data) == (2, b"state-2")
        with pytest.raises(Fenced):
            epochs.rewind(s, job_id, first, 0, None, None)
        epochs.record_epochs(s, [Flush(job_id, second, [EpochRecord(epoch_row(e)) for e in (3, 4)])])
        assert [m.epoch for m in jobs.list_metrics(s, "default", job_id)] == [1, 2, 3, 4]  # each once
        events = jobs.events_after(s, job_id, 0)
        kinds = [e.kind for e in events]
        assert kinds.count("epoch") == 7  # 1-5 by the lost attempt, 3-4 again: followers key them by epoch
        # the user reads where the second attempt went on from, and how much it trains again
        assert [e.data for e in events if e.kind == "resumed"] == [{"attempt": 2, "epoch": 2, "redone": 3}]


def test_a_packs_flush_writes_every_member_or_names_the_one_whose_attempt_was_lost(session_factory):
    members = [new_job(session_factory) for _ in range(3)]
    with session_factory() as s:
        attempts = {j: claim(s, j, "w1", lease_seconds=LEASE, max_attempts=3) for j in members}

    def flush(job_id: str, epoch: int, *, best: bool) -> Flush:
        row = epoch_row(epoch, val_loss=1 / epoch)
        return Flush(job_id, attempts[job_id], [EpochRecord(row)], resume=(epoch, b"state"),
                          best=(epoch, row, b"best") if best else None)

    with session_factory() as s:
        epochs.record_epochs(s, [flush(j, 1, best=True) for j in members])
        # epoch 2: only the middle member improved; the others keep their best of epoch 1
        epochs.record_epochs(s, [flush(j, 2, best=j == members[1]) for j in members])
    with session_factory() as s:
        rows = {j: s.get(Job, j) for j in members}
        assert [(rows[j].epochs_completed, rows[j].best_epoch) for j in members] == [(2, 1), (2, 2), (2, 1)]
        assert rows[members[0]].best_metrics["val_loss"] == 1.0
    expire_lease(session_factory, members[2])
    with session_factory() as s:
        claim(s, members[2], "w2", lease_seconds=LEASE, max_attempts=3)
        with pytest.raises(Fenced) as fenced:
            epochs.record_epochs(s, [flush(j, 3, best=True) for j in members])
        assert fenced.value.job_id == members[2]
    with session_factory() as s:  # the refused flush wrote nothing, for any member
        assert [s.get(Job, j).epochs_completed for j in members] == [2, 2, 2]
        assert [len(jobs.list_metrics(s, "default", j)) for j in members] == [2, 2, 2]
        epochs.record_epochs(s, [flush(j, 3, best=False) for j in members[:2]])  # the rest, written again
    with session_factory() as s:
        assert [s.get(Job, j).epochs_completed for j in members] == [3, 3, 2]


def test_a_read_by_tenant_never_skips_the_filter_and_the_worker_reads_by_name(session_factory):
    """An API read given no tenant sees nothing (it used to skip the filter and see every
    tenant's); the worker's own reads are functions of their own."""
    job_id = new_job(session_factory, tenant="team-a")
    with session_factory() as s:
        attempt = claim(s, job_id)
        record_epoch(s, job_id, attempt, epoch_row(1), resume_state=b"state", best=b"best")
        sweep = db_sweeps.create_sweep(s, tenant="team-a", request={"name": "x"}, method="random", metric="val_loss",
                                       mode="min", max_trials=1, max_concurrent=1)
        for kind in ("resume", "best"):
            assert jobs.get_checkpoint(s, None, job_id, kind) is None
            assert jobs.get_checkpoint(s, "team-b", job_id, kind) is None
        assert jobs.get_checkpoint(s, "team-a", job_id, "best").data == b"best"
        assert (jobs.get_job(s, None, job_id), jobs.job_status(s, None, job_id), jobs.list_metrics(s, None, job_id),
                jobs.list_checkpoints(s, None, job_id), job_lists.list_jobs(s, None)[0]) == (None, None, [], [], [])
        assert db_sweeps.get_sweep(s, None, sweep.id) is None and db_sweeps.get_sweep(s, "team-b", sweep.id) is None
        # the worker's: the job it claimed, its resume state, the sweep of its trial
        assert db_attempts.job_for_worker(s, job_id).tenant == "team-a"
        assert db_attempts.resume_checkpoint(s, job_id).data == b"state"
        assert db_sweeps.sweep_for_worker(s, sweep.id).tenant == "team-a"


def test_a_lost_worker_is_taken_back_once_with_a_lost_event(session_factory):
    job_id = new_job(session_factory)
    with session_factory() as s:
        attempt = claim(s, job_id)
        record_epoch(s, job_id, attempt, epoch_row(1), resume_state=b"s")
        record_epoch(s, job_id, attempt, epoch_row(2))
        mark_enqueued(s, job_id, utcnow() - timedelta(hours=1))  # sent an hour ago, its lease expired since
    expire_lease(session_factory, job_id)
    with session_factory() as s:
        now = utcnow()
        # two reconcilers passing at once: one takes it back (and sends its message)
        assert [expiry.take_back(s, job_id, now), expiry.take_back(s, job_id, now)] == [True, False]
        lost = [e.data for e in jobs.events_after(s, job_id, 0) if e.kind == "lost"]
        assert lost == [{"attempt": 1, "epoch": 2}]
        assert claim(s, job_id, "w2") == 2


def test_a_release_in_the_fenced_batch_form_counts_the_hand_back(session_factory):
    """release's `releases + 1` is an SQL expression of the row, in the one fenced UPDATE."""
    job_id = new_job(session_factory)
    for attempt in (1, 2):
        with session_factory() as s:
            assert claim(s, job_id, max_attempts=1) == attempt
            db_attempts.release(s, job_id, attempt)
    with session_factory() as s:
        job = s.get(Job, job_id)
        assert (job.status, job.attempts, job.releases, job.lease_owner) == ("queued", 2, 2, None)
        with pytest.raises(Fenced):  # a stale attempt's release changes nothing
            db_attempts.release(s, job_id, 1)
        assert s.get(Job, job_id).releases == 2
