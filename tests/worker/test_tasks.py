"""The service end to end on PostgreSQL + Redis with real `python -m worker` processes:
train, follow, download; two workers; cancel; SIGTERM and kill -9 mid-job; latency."""

from __future__ import annotations

import json
import signal
import statistics
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from db import jobs as db_jobs
from db.models import Job
from db.session import make_session_factory
from tests.conftest import (
    Proc, claimed_redis_db, fresh_pg_database, iris_spec, service_env, start_api_process,
    start_worker_process, test_accuracy_of, wait_ready, wait_until,
)
from worker.celery_app import create_celery, enqueue
from worker.reconciler import start_thread

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


class Stack:
    def __init__(self, base_url: str, db_url: str, broker_url: str, workers: list[Proc]):
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.db_url, self.broker_url, self.workers = db_url, broker_url, workers

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        return response.json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self.http.get(f"/v1/jobs/{job_id}").json()

    def wait_status(self, job_id: str, *statuses: str, timeout: float = 90) -> dict[str, Any]:
        return wait_until(lambda: (j := self.job(job_id))["status"] in statuses and j, timeout=timeout,
                          interval=0.1, what=f"job {job_id} to be {'/'.join(statuses)}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """PostgreSQL + Redis + the API under uvicorn + two workers, shared by this module's tests."""
    logs = tmp_path_factory.mktemp("stack")
    with fresh_pg_database() as db_url, claimed_redis_db() as broker_url:
        # GPU jobs accepted (as a stack with GPU workers would), though no worker here takes them
        env = service_env(db_url, broker_url, NETFIT_GPU_JOBS="1")
        workers = [start_worker_process(env, logs / f"worker-{i}.log", wait=False) for i in range(2)]
        api, base_url = start_api_process(env, logs / "api.log")
        try:
            for worker in workers:
                wait_ready(worker)
            yield Stack(base_url, db_url, broker_url, workers)
        finally:
            for proc in [api, *workers]:
                proc.stop()


def sse_events(stack: Stack, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The whole event stream of a job (it ends by itself after the final status)."""
    events, kind = [], None
    with stack.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=90) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    return events


def test_iris_job_runs_end_to_end(stack):
    spec = iris_spec(epochs=8, early_stopping={"patience": 50, "restore_best_weights": True})
    job = stack.submit(spec)
    assert job["status"] == "queued"
    events = sse_events(stack, job["id"])
    statuses = [data["status"] for kind, data in events if kind == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    assert [data["epoch"] for kind, data in events if kind == "epoch"] == list(range(1, 9))

    done = stack.job(job["id"])
    assert (done["stop_reason"], done["epochs_completed"], done["attempts"], done["device"]) == ("max_epochs", 8, 1, "cpu")
    assert done["started_at"] <= done["finished_at"]
    metrics = stack.http.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert [m["epoch"] for m in metrics] == list(range(1, 9))
    assert all(m["train_loss"] is not None and m["val_accuracy"] is not None for m in metrics)

    kinds = {c["kind"]: c for c in stack.http.get(f"/v1/jobs/{job['id']}/checkpoints").json()}
    assert set(kinds) == {"best", "last"} and kinds["best"]["epoch"] == done["best_epoch"]
    best = stack.http.get(f"/v1/jobs/{job['id']}/checkpoints/best")
    assert best.headers["content-type"] == "application/octet-stream"
    assert f"{job['id']}-best.safetensors" in best.headers["content-disposition"]
    # restore_best_weights: the test metrics were measured with the best weights
    assert test_accuracy_of(spec, best.content) == pytest.approx(done["test_metrics"]["test_accuracy"], abs=1e-6)
    last = stack.http.get(f"/v1/jobs/{job['id']}/checkpoints/last")
    assert last.status_code == 200 and kinds["last"]["epoch"] == 8

    svg = stack.http.get(f"/v1/jobs/{job['id']}/curves.svg")
    assert svg.headers["content-type"] == "image/svg+xml" and 'id="val_loss' in svg.text and 'id="train_loss' in svg.text
    png = stack.http.get(f"/v1/jobs/{job['id']}/curves.png")
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")


def test_two_jobs_run_at_once_on_two_workers(stack):
    jobs = [stack.submit(iris_spec(epochs=25, batch_size=8)) for _ in range(2)]
    done = [stack.wait_status(j["id"], "succeeded", "failed") for j in jobs]
    assert [d["status"] for d in done] == ["succeeded", "succeeded"]
    factory = make_session_factory(stack.db_url)
    with factory() as session:
        rows = [session.get(Job, j["id"]) for j in jobs]
        assert rows[0].lease_owner != rows[1].lease_owner  # one job per worker process
        assert rows[0].started_at < rows[1].finished_at and rows[1].started_at < rows[0].finished_at  # overlapped
    factory.kw["bind"].dispose()


def test_metrics_are_visible_while_running_and_cancel_stops_it(stack):
    job = stack.submit(iris_spec(epochs=100, batch_size=4))
    running = wait_until(lambda: (len(stack.http.get(f"/v1/jobs/{job['id']}/metrics").json()) >= 2
                                  and stack.job(job["id"])), timeout=60, what="two epochs while running")
    assert running["status"] == "running" and running["epochs_completed"] >= 2
    assert stack.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    done = stack.wait_status(job["id"], "cancelled", "succeeded", "failed", timeout=30)
    assert (done["status"], done["stop_reason"]) == ("cancelled", "cancelled")
    assert done["epochs_completed"] < 100
    metrics = stack.http.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert [m["epoch"] for m in metrics] == list(range(1, done["epochs_completed"] + 1))
    assert {c["kind"] for c in stack.http.get(f"/v1/jobs/{job['id']}/checkpoints").json()} == {"best", "last"}


def test_cancel_queued_job_is_never_run(stack):
    job = stack.submit(iris_spec(device="cuda"))  # the gpu queue: no worker here consumes it
    assert job["queue"] == "gpu"
    cancelled = stack.http.post(f"/v1/jobs/{job['id']}/cancel").json()
    assert (cancelled["status"], cancelled["attempts"]) == ("cancelled", 0)


def test_post_to_running_latency_on_redis(stack):
    latencies = []
    for _ in range(10):
        posted = datetime.now(timezone.utc)
        job = stack.submit(iris_spec(epochs=1))
        done = stack.wait_status(job["id"], "succeeded")
        latencies.append((datetime.fromisoformat(done["started_at"]) - posted).total_seconds())
    p50 = statistics.median(latencies)
    print(f"\nPOST -> running on Redis: p50 {p50 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms over 10 jobs")
    assert p50 < 1.0


def test_a_job_that_fails_in_the_worker_gets_a_one_line_error(stack):
    # the API would refuse this spec; write it straight to the database as a stale row could be
    spec = iris_spec()
    spec["dataset"] = {"id": "deleted-dataset"}
    factory = make_session_factory(stack.db_url)
    with factory() as session:
        job_id = db_jobs.create_job(session, tenant="default", spec=spec, summary=None, queue="cpu").id
    factory.kw["bind"].dispose()
    enqueue(job_id, "cpu", create_celery(stack.broker_url))
    failed = stack.wait_status(job_id, "failed", "succeeded")
    assert failed["status"] == "failed" and failed["error"] and "\n" not in failed["error"]
    assert "Traceback" not in failed["error"] and len(failed["error"]) < 500


# --------------------------------------------------------------------------- worker faults


@pytest.fixture
def fault_stack(tmp_path) -> Iterator[dict[str, Any]]:
    """Own DB and broker; jobs are created through db.jobs and sent like the API sends them."""
    with fresh_pg_database() as db_url, claimed_redis_db() as broker_url:
        factory = make_session_factory(db_url)
        celery = create_celery(broker_url)
        procs: list[Proc] = []

        def submit(spec: dict[str, Any]) -> str:
            with factory() as session:
                job = db_jobs.create_job(session, tenant="default", spec=spec, summary=None, queue="cpu")
            enqueue(job.id, "cpu", celery)
            return job.id

        def worker(name: str) -> Proc:
            proc = start_worker_process(service_env(db_url, broker_url), tmp_path / f"{name}.log", wait=False)
            procs.append(proc)
            return proc

        def row(job_id: str) -> Job:
            with factory() as session:
                return session.get(Job, job_id)

        def epochs(job_id: str) -> list[int]:
            with factory() as session:
                return [m.epoch for m in db_jobs.list_metrics(session, "default", job_id)]

        try:
            yield {"submit": submit, "worker": worker, "row": row, "epochs": epochs, "factory": factory,
                   "enqueue": lambda job_id, queue: enqueue(job_id, queue, celery)}
        finally:
            for proc in procs:
                proc.stop()
            factory.kw["bind"].dispose()


def _owner(workers: list[Proc], row: Job) -> Proc:
    return next(w for w in workers if row.lease_owner and row.lease_owner.endswith(f":{w.pid}"))


def test_sigterm_saves_releases_and_another_worker_finishes(fault_stack):
    fs = fault_stack
    first = fs["worker"]("first")
    wait_ready(first)
    job_id = fs["submit"](iris_spec(epochs=30, batch_size=16))
    wait_until(lambda: fs["row"](job_id).epochs_completed >= 2, timeout=60, what="two epochs")
    first.signal(signal.SIGTERM)
    wait_until(lambda: not first.alive(), timeout=30, what="the worker to exit after SIGTERM")
    released = fs["row"](job_id)
    assert (released.status, released.releases, released.lease_expires_at) == ("queued", 1, None)
    second = fs["worker"]("second")  # the release re-sent the message: the new worker picks it up
    wait_ready(second)
    wait_until(lambda: fs["row"](job_id).status == "succeeded", timeout=90, what="the job to finish on the second worker")
    assert fs["row"](job_id).attempts == 2
    assert fs["epochs"](job_id) == list(range(1, 31))


def test_kill_9_mid_job_resumes_on_another_worker_with_identical_results(fault_stack):
    fs = fault_stack
    spec = iris_spec(epochs=20, batch_size=16)
    workers = [fs["worker"]("a"), fs["worker"]("b")]
    for w in workers:
        wait_ready(w)
    stop_reconciler = start_thread(fs["factory"], fs["enqueue"], interval=0.5, requeue_after=2.0)
    try:
        job_id = fs["submit"](spec)
        wait_until(lambda: fs["row"](job_id).epochs_completed >= 3, timeout=60, what="three epochs")
        victim = _owner(workers, fs["row"](job_id))
        victim.signal(signal.SIGKILL)
        killed_at = fs["row"](job_id).epochs_completed
        wait_until(lambda: fs["row"](job_id).status == "succeeded", timeout=90, what="the job to finish after kill -9")
    finally:
        stop_reconciler.set()
    done = fs["row"](job_id)
    assert done.attempts == 2 and not done.lease_owner.endswith(f":{victim.pid}")
    assert fs["epochs"](job_id) == list(range(1, 21))  # every epoch exactly once
    assert killed_at < 20

    # the same spec trained without interruption gives the same numbers
    from netfit.spec import JobSpec
    from worker.engine.data import load_data
    from worker.engine.fit import fit

    reference = fit(JobSpec.model_validate(spec), load_data(JobSpec.model_validate(spec)))
    with fs["factory"]() as session:
        rows = db_jobs.list_metrics(session, "default", job_id)
    assert [r.val_loss for r in rows] == pytest.approx([h.metrics["val_loss"] for h in reference.history], rel=1e-5)
    assert done.test_metrics["test_accuracy"] == pytest.approx(reference.test_metrics["test_accuracy"])


@pytest.mark.xfail(strict=False, reason="in the full suite the surviving worker sometimes never takes the job over (see the issue 5 note); passes alone")
def test_frozen_worker_past_its_lease_writes_nothing_when_it_wakes(fault_stack):
    fs = fault_stack
    workers = [fs["worker"]("a"), fs["worker"]("b")]
    for w in workers:
        wait_ready(w)
    stop_reconciler = start_thread(fs["factory"], fs["enqueue"], interval=0.5, requeue_after=2.0)
    try:
        job_id = fs["submit"](iris_spec(epochs=20, batch_size=16))
        wait_until(lambda: fs["row"](job_id).epochs_completed >= 2, timeout=60, what="two epochs")
        frozen = _owner(workers, fs["row"](job_id))
        frozen.signal(signal.SIGSTOP)
        wait_until(lambda: fs["row"](job_id).status == "succeeded", timeout=90,
                   what="the other worker to take over and finish")
    finally:
        stop_reconciler.set()
        frozen.signal(signal.SIGCONT)
    finished = fs["row"](job_id)
    wait_until(lambda: "was superseded" in frozen.output(), timeout=30, what="the woken worker to notice it lost the job")
    after = fs["row"](job_id)
    assert (after.status, after.attempts, after.lease_owner, after.finished_at) == (
        "succeeded", 2, finished.lease_owner, finished.finished_at)
    assert not finished.lease_owner.endswith(f":{frozen.pid}")
    assert fs["epochs"](job_id) == list(range(1, 21))


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
        db_jobs.mark_enqueued(s, lost)

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
            assert db_jobs.claim(s, lost, "doomed", lease_seconds=30, max_attempts=2) == attempt
        expire()
        counts = reconcile()
        assert counts["resumed" if attempt == 1 else "failed"] == 1
    with factory() as s:
        job = s.get(Job, lost)
        assert job.status == "failed" and job.error.startswith("worker_lost")
    factory.kw["bind"].dispose()
