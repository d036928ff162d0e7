"""The two ways the service runs, started for a benchmark: embedded (`launch.server.serve`: SQLite,
file broker, one worker) and Redis + PostgreSQL (`run_api` and `python -m worker` processes
on a fresh PostgreSQL database and a claimed Redis db index). The process and database
helpers are the test suite's, so the benchmark runs exactly what the tests run. `env` is
passed on to every process (OMP_NUM_THREADS when the run sets torch's threads)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import (
    claimed_redis_db, fresh_pg_database, service_env, start_api_process, start_serve_process, start_worker_process,
    wait_ready,
)


@dataclass
class Stack:
    key: str  # embedded | redis_pg
    title: str
    base_url: str
    db_url: str
    workers: int
    client: httpx.Client
    env: dict[str, str] = field(default_factory=dict)  # the processes' settings: start another API with them


@contextmanager
def embedded(workdir: Path, env: dict[str, str]) -> Iterator[Stack]:
    """`netfit serve` as a user runs it, in workdir."""
    proc, base_url = start_serve_process(env, workdir)
    try:
        with httpx.Client(base_url=base_url, timeout=120) as client:
            yield Stack("embedded", "embedded (serve: SQLite + file broker, 1 worker)", base_url,
                        f"sqlite:///{workdir / 'netfit.db'}", 1, client)
    finally:
        proc.stop(grace=20)


@contextmanager
def redis_pg(workdir: Path, env: dict[str, str], workers: int = 2) -> Iterator[Stack]:
    """run_api + `workers` worker processes; the production lease and heartbeat (30 s, 10 s)."""
    with ExitStack() as stack:
        pg = stack.enter_context(fresh_pg_database())
        redis = stack.enter_context(claimed_redis_db())
        env = service_env(pg, redis, NETFIT_LEASE_SECONDS="30", NETFIT_HEARTBEAT_SECONDS="10", **env)
        procs = [start_worker_process(env, workdir / f"worker-{i}.log", wait=False) for i in range(workers)]
        stack.callback(lambda: [p.stop() for p in procs])
        api, base_url = start_api_process(env, workdir / "api.log")
        stack.callback(api.stop)
        for proc in procs:
            wait_ready(proc)
        client = stack.enter_context(httpx.Client(base_url=base_url, timeout=120))
        yield Stack("redis_pg", f"Redis + PostgreSQL (run_api, {workers} workers)", base_url, pg, workers, client, env)
