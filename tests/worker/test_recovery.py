"""A dead worker's job is taken back in every topology the README documents (docs/production.md):
`netfit serve`; `netfit api` + workers on SQLite and the file broker; `netfit api` + workers
on PostgreSQL and Redis — with no reconciler process anywhere: every worker reconciles.
(The compose stack's containers: tests/test_containers.py.)

Each test kills the worker running a job with SIGKILL after its third epoch and checks that the
job finishes with every epoch recorded exactly once, resumed (attempt 2) within a lease + 15 s
(+ a worker's start where no other runs), having trained again at most max(one epoch,
NETFIT_CHECKPOINT_SECONDS) (tests/worker/promise.py).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sqlalchemy import select

from db.models import EpochMetric, Job
from db.session import make_session_factory
from tests.conftest import (
    FAST, Proc, free_port, iris_spec, service_env, start_api_process, start_worker_process, wait_healthy, wait_ready,
    wait_until,
)
from tests.worker.promise import assert_recomputed_within, job_events

pytestmark = pytest.mark.slow

LEASE = 4.0  # service_env's NETFIT_LEASE_SECONDS
# tests.conftest.FAST: each epoch written as it ends (the kill comes after the third of a short
# job); the resume state every 5 s (the default), so the lost epochs are dropped and trained again
EPOCHS = 30
SPEC = iris_spec(epochs=EPOCHS, batch_size=4)
CHECKPOINT = 5.0  # the default NETFIT_CHECKPOINT_SECONDS


def _pid_of(owner: str | None) -> int | None:
    return int(owner.rsplit(":", 1)[1]) if owner else None


def kill_mid_job_and_recover(base_url: str, db_url: str, restart: float = 0.0) -> float:
    """POST a job, SIGKILL its worker after epoch 3; return seconds from the kill to the resumed
    attempt's claim, after checking the outcome and what its events tell. restart: what starting
    a new worker took here, where none other is running (a loaded machine takes longer)."""
    factory = make_session_factory(db_url)
    http = httpx.Client(base_url=base_url, timeout=30)
    try:
        job_id = http.post("/v1/jobs", json=SPEC).raise_for_status().json()["id"]

        def row() -> Job:
            with factory() as session:
                return session.get(Job, job_id)

        running = wait_until(lambda: (r := row()).epochs_completed >= 3 and r, timeout=120, interval=0.02,
                             what="three epochs")
        victim = _pid_of(running.lease_owner)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        resumed = wait_until(lambda: (r := row()).attempts >= 2 and r.status != "queued" and r, timeout=120,
                             interval=0.1, what="another worker to take the job back")
        recovery = time.monotonic() - killed_at
        done = wait_until(lambda: (j := http.get(f"/v1/jobs/{job_id}").json())["status"]
                          in ("succeeded", "failed", "cancelled") and j, timeout=120, what="the job to finish")
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 2 and _pid_of(resumed.lease_owner) != victim
        with factory() as session:
            epochs = list(session.scalars(select(EpochMetric.epoch).where(EpochMetric.job_id == job_id)
                                          .order_by(EpochMetric.epoch)))
            seconds = dict(session.execute(select(EpochMetric.epoch, EpochMetric.seconds)
                                           .where(EpochMetric.job_id == job_id)).all())
        assert epochs == list(range(1, EPOCHS + 1))  # every epoch exactly once
        assert_recomputed_within(factory, job_id, seconds, CHECKPOINT)
        # the user reads it too: attempt 1 lost at its epoch 3 or later, and where attempt 2 went on
        [lost] = job_events(factory, job_id, "lost")
        assert lost["attempt"] == 1 and lost["epoch"] >= 3, lost
        assert [e["attempt"] for e in job_events(factory, job_id, "resumed")] == [2]
        assert recovery <= LEASE + 15 + restart, f"recovered after {recovery:.1f} s (a worker starts in {restart:.1f} s)"
        print(f"recovered {recovery:.1f} s after kill -9 (lease {LEASE:.0f} s)")
        return recovery
    finally:
        http.close()
        factory.kw["bind"].dispose()


def test_serve_restarts_its_dead_worker_and_the_job_resumes(tmp_path: Path):
    port = free_port()
    env: dict[str, Any] = {"NETFIT_LEASE_SECONDS": str(LEASE), "NETFIT_HEARTBEAT_SECONDS": "1", **FAST}
    began = time.monotonic()
    proc = Proc([sys.executable, "-c", f"from launch.server import serve; serve('127.0.0.1', {port})"], env,
                tmp_path / "serve.log", cwd=tmp_path)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(base_url, proc)
        # serve's worker writes this file when it consumes (launch.server names it)
        wait_until(lambda: (tmp_path / ".netfit" / "worker-ready").exists(), timeout=90, what="the embedded worker")
        # the only worker is killed: the job waits for serve to start another, as long as the first took
        kill_mid_job_and_recover(base_url, f"sqlite:///{tmp_path / 'netfit.db'}", restart=time.monotonic() - began)
        assert "the worker exited" in proc.output()  # serve noticed and started another
    finally:
        proc.stop(grace=20)


def recover_on_api_and_workers(db_url: str, broker_url: str, tmp_path: Path, n: int = 2) -> None:
    """`netfit api` + n workers (no reconciler process): kill the job's worker, see it resume."""
    env = service_env(db_url, broker_url, **FAST)
    api, base_url = start_api_process(env, tmp_path / "api.log")
    procs = [api, *(start_worker_process(env, tmp_path / f"worker-{i}.log", wait=False) for i in range(n))]
    try:
        for w in procs[1:]:
            wait_ready(w)
        kill_mid_job_and_recover(base_url, db_url)
    finally:
        for p in procs:
            p.stop()


def test_api_and_workers_on_sqlite_and_the_file_broker(tmp_path: Path, sqlite_url: str):
    recover_on_api_and_workers(sqlite_url, f"filesystem://{tmp_path / 'broker'}", tmp_path)


@pytest.mark.postgres
@pytest.mark.redis
def test_api_and_workers_on_postgres_and_redis_without_a_control_process(tmp_path: Path, pg_url: str,
                                                                         redis_url: str):
    recover_on_api_and_workers(pg_url, redis_url, tmp_path)
