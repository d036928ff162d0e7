"""Issue 5's fault tests: real `python -m worker` processes, PostgreSQL and Redis, and the
faults a deployment meets — kill -9, SIGSTOP past the lease, SIGTERM, Redis restarted
without persistence, PostgreSQL stopped mid-training, a job that kills its worker every time.
Tests that kill a server run a private one (tests/worker/servers.py)."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import redis
import pytest

from db import jobs as db_jobs
from db.attempts import resume_checkpoint
from db.sending import mark_enqueued
from db.models import Job
from db.session import make_session_factory
from tests.conftest import (
    FAST, Proc, claimed_redis_db, fresh_pg_database, iris_spec, service_env, start_api_process, wait_ready,
    wait_until,
)
from tests.stack import FINISHED, Stack, own_stack
from tests.worker.promise import assert_recomputed_within, job_events
from tests.worker.servers import private_postgres, private_redis
from tests.worker_writes import claim

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def fault_stack(tmp_path: Path) -> Iterator[Stack]:
    """A database and broker of the test's own and worker processes: each reconciles every half
    second and re-sends a queued job after 2 s (FAST); jobs are created and sent as the API does."""
    with own_stack(tmp_path, **FAST) as stack:
        yield stack


# --------------------------------------------------------------------------- worker faults


def test_sigterm_saves_releases_and_another_worker_finishes(fault_stack):
    fs = fault_stack
    [first] = fs.start_workers(1)
    job_id = fs.create(iris_spec(epochs=30, batch_size=16))
    wait_until(lambda: fs.row(job_id).epochs_completed >= 2, timeout=60, what="two epochs")
    first.signal(signal.SIGTERM)
    wait_until(lambda: not first.alive(), timeout=30, what="the worker to exit after SIGTERM")
    released = fs.row(job_id)
    assert (released.status, released.releases, released.lease_expires_at) == ("queued", 1, None)
    fs.start_workers(1)  # the release re-sent the message: the new worker picks it up
    assert fs.wait_finished(job_id).status == "succeeded"
    assert fs.row(job_id).attempts == 2
    assert fs.epochs(job_id) == list(range(1, 31))


def test_a_job_longer_than_the_visibility_timeout_runs_once(fault_stack):
    """Past the visibility timeout Redis delivers the running job's message again (an hour in
    the stack, so the test sends the same message itself): the idle worker's claim refuses
    it, and the job runs once."""
    fs = fault_stack
    workers = fs.start_workers(2)
    job_id = fs.create(iris_spec(epochs=40, batch_size=4))
    wait_until(lambda: fs.row(job_id).epochs_completed >= 2, timeout=60, what="two epochs")
    trainer = fs.owner(job_id)
    fs.enqueue(job_id, "cpu")  # the re-delivery
    [idle] = [w for w in workers if w is not trainer]
    # the trainer takes no other message while it trains (one at a time, acked late): the idle one has it
    broker = redis.Redis.from_url(fs.broker_url)
    wait_until(lambda: broker.llen("cpu") == 0, timeout=60, what="the idle worker to get the duplicate")
    broker.close()
    done = fs.wait_finished(job_id)
    assert (done.status, done.attempts, fs.owner(job_id)) == ("succeeded", 1, trainer)
    assert fs.epochs(job_id) == list(range(1, 41))


def test_kill_9_mid_job_resumes_on_another_worker_with_identical_results(fault_stack):
    fs = fault_stack
    epochs, checkpoint = 200, 0.1
    spec = iris_spec(epochs=epochs, batch_size=16)  # ~3 ms epochs: many to a flush, dozens to a saved state
    fs.start_workers(2, NETFIT_FLUSH_SECONDS="0.05", NETFIT_CHECKPOINT_SECONDS=str(checkpoint))
    job_id = fs.create(spec)

    def trained() -> float:  # seconds of training recorded so far, once a resume state is saved
        with fs.factory() as session:
            saved = resume_checkpoint(session, job_id)
            return saved is not None and sum(m.seconds for m in db_jobs.list_metrics(session, "default", job_id))

    # well past one checkpoint interval: a lost state would redo far more than the promise allows
    wait_until(lambda: trained() >= 3 * checkpoint, timeout=120, interval=0.01, what="0.3 s of training")
    victim = fs.owner(job_id)
    victim.signal(signal.SIGKILL)
    killed_at = fs.row(job_id).epochs_completed
    done = fs.wait_finished(job_id, timeout=180)
    assert done.status == "succeeded"
    assert done.attempts == 2 and not done.lease_owner.endswith(f":{victim.pid}")
    assert fs.epochs(job_id) == list(range(1, epochs + 1))  # every epoch exactly once
    assert killed_at < epochs
    with fs.factory() as session:
        seconds = {m.epoch: m.seconds for m in db_jobs.list_metrics(session, "default", job_id)}
    assert assert_recomputed_within(fs.factory, job_id, seconds, checkpoint) >= 1  # a saved state was used

    # the same spec trained without interruption gives the same numbers
    from netfit.spec import JobSpec
    from netfit.engine.data import load_data
    from netfit.engine.fit import fit

    reference = fit(JobSpec.model_validate(spec), load_data(JobSpec.model_validate(spec)))
    with fs.factory() as session:
        rows = db_jobs.list_metrics(session, "default", job_id)
    assert [r.val_loss for r in rows] == pytest.approx([h.metrics["val_loss"] for h in reference.history], rel=1e-5)
    assert done.test_metrics["test_accuracy"] == pytest.approx(reference.test_metrics["test_accuracy"])


def test_frozen_worker_past_its_lease_writes_nothing_when_it_wakes(fault_stack):
    # Iris epochs are short, so the freeze often lands inside a transaction that holds the job
    # row's lock; the takeover then relies on PostgreSQL ending that idle session (worker.tasks).
    fs = fault_stack
    fs.start_workers(2)
    job_id = fs.create(iris_spec(epochs=20, batch_size=16))
    wait_until(lambda: fs.row(job_id).epochs_completed >= 2, timeout=60, what="two epochs")
    frozen = fs.owner(job_id)
    frozen.signal(signal.SIGSTOP)
    try:
        finished = fs.wait_finished(job_id)
    finally:
        frozen.signal(signal.SIGCONT)
    # the woken worker notices it lost the job and says so in the job's events (attempt 1 superseded)
    wait_until(lambda: job_events(fs.factory, job_id, "superseded"), timeout=30,
               what="the woken worker to notice it lost the job")
    assert job_events(fs.factory, job_id, "superseded") == [{"attempt": 1}]
    after = fs.row(job_id)
    assert (after.status, after.attempts, after.lease_owner, after.finished_at) == (
        "succeeded", 2, finished.lease_owner, finished.finished_at)
    assert not finished.lease_owner.endswith(f":{frozen.pid}")
    assert fs.epochs(job_id) == list(range(1, 21))


def test_a_worker_frozen_inside_a_transaction_does_not_keep_the_job_row_locked(pg_url, tmp_path):
    """The cause of the takeover above hanging, made certain: a worker process stops while its
    transaction holds the job row's lock. PostgreSQL ends that session after half a lease
    (worker.database), so the next worker's claim goes through instead of waiting for it."""
    from sqlalchemy import text

    factory = make_session_factory(pg_url)
    with factory() as session:
        job_id = db_jobs.create_job(session, tenant="default", spec=iris_spec(), summary=None, queue="cpu").id
        assert claim(session, job_id, "frozen", lease_seconds=0) == 1
    code = f"""
import os, signal
from sqlalchemy import update
from db.models import Job
from worker.database import session_factory
with session_factory()() as session:
    session.execute(update(Job).where(Job.id == {job_id!r}).values(epochs_completed=1))
    print("row locked", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
"""
    frozen = Proc([sys.executable, "-c", code], {"NETFIT_DATABASE_URL": pg_url, "NETFIT_LEASE_SECONDS": "2"},
                  tmp_path / "frozen.log")
    try:
        wait_until(lambda: "row locked" in frozen.output() or not frozen.alive(), timeout=60, what="the row lock")
        with factory() as session:
            session.execute(text("SET lock_timeout = '20s'"))  # without the fix: fail, not hang
            assert claim(session, job_id, "next", lease_seconds=30) == 2
    finally:
        frozen.signal(signal.SIGCONT)
        frozen.stop()
        factory.kw["bind"].dispose()


def test_a_job_that_kills_its_worker_every_time_fails_as_worker_lost(fault_stack):
    """The test plays the OOM killer: whichever worker takes the job is killed -9."""
    fs = fault_stack
    workers = fs.start_workers(3, NETFIT_MAX_ATTEMPTS="2")
    job_id = fs.create(iris_spec(epochs=500, batch_size=4))
    killed: list[Proc] = []

    def oom_kill_until_it_ends() -> Job | None:
        row = fs.row(job_id)
        if row.status == "running" and row.attempts > len(killed) and (victim := fs.owner(job_id)):
            victim.signal(signal.SIGKILL)
            killed.append(victim)
        return row if row.status in FINISHED else None

    failed = wait_until(oom_kill_until_it_ends, timeout=90, interval=0.1, what="the job to give up")
    assert (failed.status, failed.attempts, len(killed)) == ("failed", 2, 2)
    assert failed.error.startswith("worker_lost") and "NETFIT_MAX_ATTEMPTS=2" in failed.error

    # the worker it did not reach is healthy and runs the next job...
    [survivor] = [w for w in workers if w not in killed]
    next_job = fs.create(iris_spec(epochs=3))
    assert fs.wait_finished(next_job).status == "succeeded"
    assert fs.row(next_job).lease_owner.endswith(f":{survivor.pid}") and survivor.alive()
    # ...and the failed job was not taken up again meanwhile
    again = fs.row(job_id)
    assert (again.status, again.attempts) == ("failed", 2)


# --------------------------------------------------------------------------- server faults


def test_redis_restarted_without_persistence_forgets_queued_jobs_and_all_still_run(tmp_path):
    """5 jobs wait in Redis behind a long one; Redis is killed and comes back empty. The worker
    reconnects and goes on with the long job (cancelled then, to free it), and the reconciler
    re-sends the 5."""
    import redis

    with fresh_pg_database() as db_url, private_redis() as server:
        fs = Stack(db_url, server.url, tmp_path, **FAST)
        try:
            fs.start_workers(1)
            long = fs.create(iris_spec(epochs=10_000, batch_size=16))
            wait_until(lambda: fs.row(long).status == "running", timeout=60, what="the long job to start")
            queued = [fs.create(iris_spec(epochs=3, seed=i)) for i in range(5)]
            broker = redis.Redis(port=server.port)
            # each of the 5 waits in Redis (a reconciler's re-send under load may add a copy:
            # harmless, the claim decides)
            waiting = broker.lrange("cpu", 0, -1)
            assert all(any(job_id.encode() in message for message in waiting) for job_id in queued), waiting
            broker.close()
            before = fs.row(long).epochs_completed

            server.kill()
            server.start()  # same port, no data
            wait_until(lambda: fs.row(long).epochs_completed > before, timeout=60, what="the long job to go on")
            with fs.factory() as session:
                db_jobs.request_cancel(session, "default", long)
            assert fs.wait_finished(long).status == "cancelled"
            for job_id in queued:
                done = fs.wait_finished(job_id)
                assert done.status == "succeeded" and fs.epochs(job_id) == [1, 2, 3]
            assert fs.row(long).attempts == 1  # the long job was never taken from its worker
        finally:
            fs.close()


def test_postgres_stopped_during_training_the_job_completes_and_the_api_says_503(tmp_path):
    outage = 10.0
    with private_postgres() as pg, claimed_redis_db() as broker_url:
        fs = Stack(pg.url, broker_url, tmp_path, **FAST)
        api = None
        try:
            worker = fs.worker(wait=False)  # starts while the API does
            api, base_url = start_api_process(service_env(pg.url, broker_url), tmp_path / "api.log")
            wait_ready(worker)
            http = httpx.Client(base_url=base_url, timeout=10)
            posted = http.post("/v1/jobs", json=iris_spec(epochs=15, batch_size=2))
            assert posted.status_code == 201, posted.text
            job_id = posted.json()["id"]
            wait_until(lambda: fs.row(job_id).epochs_completed >= 1, timeout=60, what="the first epoch")

            pg.stop()
            answers = []
            stopped_at = time.monotonic()

            def ask_until_the_outage_is_over() -> bool:
                for response in (http.get(f"/v1/jobs/{job_id}"), http.post("/v1/jobs", json=iris_spec())):
                    answers.append((response.status_code, response.headers.get("retry-after"),
                                    response.json().get("error")))
                return time.monotonic() - stopped_at >= outage
            wait_until(ask_until_the_outage_is_over, timeout=outage + 30, interval=0.5, what="the outage to last")
            pg.start()

            assert answers and set(answers) == {(503, "5", "unavailable")}, answers
            done = fs.wait_finished(job_id)
            assert "database unavailable" in worker.output(), "the job ended before the outage"
            assert done.status == "succeeded" and done.epochs_completed == 15
            assert fs.epochs(job_id) == list(range(1, 16))  # every epoch exactly once
            assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
        finally:
            if api:
                api.stop()
            fs.close()


# --------------------------------------------------------------------------- reconciler


def test_reconciler_resends_lost_work_and_gives_up_after_max_attempts(pg_url):
    from datetime import timedelta

    from sqlalchemy import update

    from db.models import utcnow
    from worker.reconciler import reconcile_once

    factory = make_session_factory(pg_url)
    sent: list[str] = []
    with factory() as s:
        lost = db_jobs.create_job(s, tenant="default", spec=iris_spec(), summary=None, queue="cpu").id
        never_sent = db_jobs.create_job(s, tenant="default", spec=iris_spec(), summary=None, queue="gpu").id
        mark_enqueued(s, lost)

    def expire() -> None:
        with factory() as s:
            s.execute(update(Job).where(Job.id == lost).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
            s.commit()

    def reconcile() -> dict[str, int]:
        return reconcile_once(factory, lambda job_id, queue: sent.append(f"{job_id}@{queue}"),
                              max_attempts=2, requeue_after=0)

    assert reconcile()["requeued"] == 2 and set(sent) == {f"{lost}@cpu", f"{never_sent}@gpu"}
    for attempt in (1, 2):  # a worker claims it and dies, twice
        with factory() as s:
            assert claim(s, lost, "doomed", lease_seconds=30, max_attempts=2) == attempt
        expire()
        counts = reconcile()
        assert counts["resumed" if attempt == 1 else "failed"] == 1
    with factory() as s:
        job = s.get(Job, lost)
        assert job.status == "failed" and job.error.startswith("worker_lost")
    factory.kw["bind"].dispose()
