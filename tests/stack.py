"""One stack for the tests that run the service's processes: a database and a broker of their
own, worker processes, the API when a test wants one, and what those tests read and wait on.

    with own_stack(logs, **FAST) as stack:      # a fresh PostgreSQL database and Redis index
        stack.start_workers(2)
        job_id = stack.create(iris_spec())       # as the API creates and sends it, without one
        stack.wait_finished(job_id)

A test that kills a server passes its own URLs to Stack (tests/worker/servers.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import select

from db import jobs as db_jobs
from db.models import Job
from db.session import make_session_factory
from tests.conftest import (
    Proc, claimed_redis_db, fresh_pg_database, service_env, start_api_process, start_worker_process, wait_ready,
    wait_until,
)

FINISHED = ("succeeded", "failed", "cancelled")


class Stack:
    def __init__(self, db_url: str, broker_url: str, logs: Path, **settings: str):
        self.db_url, self.broker_url, self.logs = db_url, broker_url, logs
        self.env = service_env(db_url, broker_url, **settings)  # every process's NETFIT_* settings
        self.factory = make_session_factory(db_url)
        self.workers: list[Proc] = []
        self.api: Proc | None = None
        self.http: httpx.Client | None = None
        self._celery: Any = None

    # ------------------------------------------------------------------ processes

    def start_api(self) -> str:
        """The API under uvicorn; `http` is a client of it. Returns its base URL."""
        self.api, base_url = start_api_process(self.env, self.logs / "api.log")
        self.http = httpx.Client(base_url=base_url, timeout=60)
        return base_url

    def worker(self, wait: bool = True, **env: str) -> Proc:
        """`python -m worker` with the stack's settings (and env's); wait=False: start several,
        then wait_ready each (start_workers)."""
        proc = start_worker_process({**self.env, **env}, self.logs / f"worker-{len(self.workers)}.log", wait=wait)
        self.workers.append(proc)
        return proc

    def start_workers(self, n: int, **env: str) -> list[Proc]:
        workers = [self.worker(wait=False, **env) for _ in range(n)]
        for w in workers:
            wait_ready(w)
        return workers

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        for proc in [*self.workers, *([self.api] if self.api else [])]:
            proc.stop(grace=10)
        self.factory.kw["bind"].dispose()

    # ------------------------------------------------------------------ jobs without the API

    def create(self, spec: dict[str, Any]) -> str:
        """A job created and sent the way the API does it (for stacks without one)."""
        with self.factory() as session:
            job = db_jobs.create_job(session, tenant="default", spec=spec, summary=None, queue="cpu")
        self.enqueue(job.id, "cpu")
        return job.id

    def enqueue(self, job_id: str, queue: str) -> None:
        from service.queue import create_celery, enqueue

        self._celery = self._celery or create_celery(self.broker_url)
        enqueue(job_id, queue, self._celery)

    def row(self, job_id: str) -> Job:
        with self.factory() as session:
            return session.get(Job, job_id)

    def epochs(self, job_id: str) -> list[int]:
        with self.factory() as session:
            return [m.epoch for m in db_jobs.list_metrics(session, "default", job_id)]

    def trials(self, sweep_id: str) -> list[Job]:
        with self.factory() as session:
            return list(session.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.trial_number)))

    def owner(self, job_id: str) -> Proc | None:
        """The worker process holding the job's lease."""
        owner = self.row(job_id).lease_owner or ""
        return next((w for w in self.workers if owner.endswith(f":{w.pid}")), None)

    def wait_finished(self, job_id: str, timeout: float = 90) -> Job:
        return wait_until(lambda: (r := self.row(job_id)).status in FINISHED and r, timeout=timeout,
                          interval=0.1, what=f"job {job_id} to finish")

    # ------------------------------------------------------------------ through the API

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        return response.json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self.http.get(f"/v1/jobs/{job_id}").json()

    def wait_status(self, job_id: str, *statuses: str, timeout: float = 90) -> dict[str, Any]:
        return wait_until(lambda: (j := self.job(job_id))["status"] in statuses and j, timeout=timeout,
                          interval=0.1, what=f"job {job_id} to be {'/'.join(statuses)}")


S = TypeVar("S", bound=Stack)


@contextmanager
def own_stack(logs: Path, kind: type[S] = Stack, **settings: str) -> Iterator[S]:
    """A Stack (or a module's subclass of it) on a fresh PostgreSQL database and a Redis index of
    its own; every process stopped and both dropped at the end."""
    with fresh_pg_database() as db_url, claimed_redis_db() as broker_url:
        stack = kind(db_url, broker_url, logs, **settings)
        try:
            yield stack
        finally:
            stack.close()
