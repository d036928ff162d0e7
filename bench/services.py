"""The service's own costs, measured through its HTTP API on real processes.

service     end-to-end overhead of a job: (POST sent -> succeeded) / (the engine's training
            time, the sum of the epoch seconds the job records), for a short Iris job, the
            118-epoch Iris example (examples/iris_two_layers_small.json) and a 5-epoch
            MNIST-shaped job on an uploaded NPZ; POST -> running latency. Embedded and on
            Redis + PostgreSQL. Before them, `netfit serve` from its start to /readyz 200, and
            the first job after that (readiness).
api         GET /v1/jobs/{id}/metrics of a 1,000-epoch job and GET /v1/jobs with 10,000 jobs
            (rows inserted directly), 50 concurrent clients: p50/p99 and requests/s.
throughput  tiny (Iris) jobs completed per minute by 2 workers.

Times come from the same clock: the client's wall clock when the POST was sent, and the
job's started_at/finished_at as the server stamped them.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import stacks
from bench.report import Report, percentile
from netfit.models import TERMINAL_STATUSES
from tests.conftest import IRIS_SPEC, launch_serve, wait_until

ms = 1000.0
SMALL_JOB = json.loads((Path(__file__).parents[1] / "examples" / "iris_two_layers_small.json").read_text())
# the persistence settings pass through to the service processes, to compare with other values
PASSED_ON = ("NETFIT_FLUSH_SECONDS", "NETFIT_CHECKPOINT_SECONDS")


# --------------------------------------------------------------------------- jobs through the API


def mnist_npz(n_train: int, n_val: int, seed: int = 0) -> bytes:
    """MNIST-shaped uint8 images, labelled by a fixed random linear map (learnable)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n_train + n_val, 784), dtype=np.uint8)
    y = ((x / 255.0 - 0.5) @ rng.standard_normal((784, 10))).argmax(1)  # centred: every class occurs
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    return buffer.getvalue()


def mnist_spec(dataset_id: str, n_train: int, n_val: int, epochs: int = 5) -> dict[str, Any]:
    return {
        "name": "bench-mnist", "dataset": {"id": dataset_id},
        "split": {"validation": n_val / (n_train + n_val), "test": 0, "seed": 0},
        "preprocess": {"features": "scale"},
        "model": {"layers": [{"type": "linear", "units": 128}, {"type": "relu"}, {"type": "linear", "units": 10}]},
        "training": {"epochs": epochs, "batch_size": 64, "optimizer": {"type": "adam", "lr": 1e-3}, "seed": 0,
                     "device": "cpu"},
    }


def stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def submit(client: httpx.Client, spec: dict[str, Any]) -> tuple[str, float]:
    """POST a job; returns its id and the wall-clock time the request was sent."""
    sent = time.time()
    response = client.post("/v1/jobs", json=spec)
    if response.is_error:
        raise RuntimeError(f"POST /v1/jobs: {response.status_code} {response.text}")
    return response.json()["id"], sent


def wait_done(client: httpx.Client, job_id: str, timeout: float = 300, poll: float = 0.05) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in TERMINAL_STATUSES else None

    job = wait_until(done, timeout=timeout, interval=poll, what=f"job {job_id} to finish")
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
    return job


def run_job(client: httpx.Client, spec: dict[str, Any], poll: float = 0.05) -> dict[str, float]:
    """One job on an idle service, POST to succeeded; its timings in seconds. They come from the
    server's stamps, so polling slower only delays the next job (and takes less CPU from this one)."""
    job_id, sent = submit(client, spec)
    job = wait_done(client, job_id, poll=poll)
    train = sum(row["seconds"] for row in client.get(f"/v1/jobs/{job_id}/metrics").json()["items"])
    started, finished = stamp(job["started_at"]), stamp(job["finished_at"])
    return {"wall": finished - sent, "train": train, "to_running": started - sent,
            "queued": started - stamp(job["created_at"]), "running": finished - started}


# --------------------------------------------------------------------------- sections


def service(report: Report, stack: stacks.Stack, quick: bool) -> None:
    report.begin(f"service_{stack.key}", f"job overhead through the service, {stack.title}")
    n_train, n_val = (2_000, 500) if quick else (60_000, 10_000)
    upload = stack.client.post("/v1/datasets", files={"file": ("mnist.npz", mnist_npz(n_train, n_val))},
                               data={"name": "bench-mnist"})
    upload.raise_for_status()
    # the first job after a start pays one-time costs (imports, connections): reported apart
    cold = run_job(stack.client, IRIS_SPEC)
    report.figure("first_post_to_running_ms", cold["to_running"] * ms, "ms", label="first job after start: POST -> running")
    iris = [run_job(stack.client, IRIS_SPEC) for _ in range(3 if quick else 30)]
    # the lab's small job: 118 epochs of ~3 ms (early stopping ends the 300 asked), where the
    # per-epoch persistence costs most (NETFIT_FLUSH_SECONDS / NETFIT_CHECKPOINT_SECONDS)
    small = [run_job(stack.client, SMALL_JOB) for _ in range(2 if quick else 10)]
    mnist = [run_job(stack.client, mnist_spec(upload.json()["id"], n_train, n_val), poll=0.5)
             for _ in range(1 if quick else 3)]
    report.record("iris_jobs", iris)
    report.record("iris_118_jobs", small)
    report.record("mnist_jobs", mnist)
    for name, runs, goal in (("iris_5_epochs", iris, None), ("iris_118_epochs", small, ("<=", 1.5)),
                             ("mnist_5_epochs", mnist, ("<=", 1.05))):
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        report.note(f"  {name}: {len(runs)} jobs, median wall {med['wall']:.3f} s = to running "
                    f"{med['to_running'] * ms:.0f} ms + running {med['running']:.3f} s (training {med['train']:.3f} s)")
        report.figure(f"{name}_overhead", statistics.median(r["wall"] / r["train"] for r in runs), "x",
                      goal=goal, label=f"{name}: (POST -> succeeded) / training time")
    # the first reads the upload from the database (the rest map what the machine decoded)
    report.figure("mnist_5_epochs_first_overhead", mnist[0]["wall"] / mnist[0]["train"], "x",
                  label="  the first of them, which reads and decodes the upload")
    to_running = [r["to_running"] * ms for r in iris]
    p50_goal = ("<=", 50.0) if stack.key == "redis_pg" else None
    report.figure("post_to_running_p50_ms", percentile(to_running, 50), "ms", goal=p50_goal, label="POST -> running p50")
    report.figure("post_to_running_p99_ms", percentile(to_running, 99), "ms", label="POST -> running p99")
    report.figure("created_to_running_p50_ms", percentile([r["queued"] * ms for r in iris], 50), "ms",
                  label="  of which stored -> claimed by the worker, p50")


def readiness(report: Report, workdir: Path, env: dict[str, str]) -> None:
    """`netfit serve` from its start: when /readyz first answers 200, then the first job (Iris,
    5 epochs) POSTed at that moment, POST -> succeeded (what a user who waits for ready meets)."""
    report.begin("readiness", "netfit serve: start -> /readyz 200 -> the first job succeeded")
    began = time.monotonic()
    proc, base_url = launch_serve(env, workdir)
    try:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            def ready() -> bool:
                assert proc.alive(), f"serve died at start:\n{proc.output()[-3000:]}"
                try:
                    return client.get("/readyz").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(ready, timeout=120, interval=0.02, what="/readyz")
            report.figure("start_to_readyz_s", time.monotonic() - began, "s", goal=("<=", 10.0),
                          label="netfit serve started -> /readyz 200")
            sent = time.time()
            job = wait_done(client, submit(client, IRIS_SPEC)[0], poll=0.02)
            report.figure("first_job_after_ready_s", stamp(job["finished_at"]) - sent, "s", goal=("<=", 2.0),
                          label="  then the first job: POST -> succeeded")
    finally:
        proc.stop(grace=20)


def insert_jobs(db_url: str, template: dict[str, Any], n_jobs: int, n_epochs: int) -> str:
    """n_jobs finished copies of a real job, and one with n_epochs metric rows; returns its id."""
    from sqlalchemy import insert, text

    from db.models import EpochMetric, Job, new_id
    from db.sending import monitor_of
    from db.session import make_session_factory

    columns = ("spec", "summary", "stop_reason", "epochs", "epochs_completed", "best_epoch", "best_metrics",
               "test_metrics", "attempts", "queue", "device")
    base = {k: template[k] for k in columns} | {"tenant": "default", "status": "succeeded", "name": "bench-bulk",
                                                "monitor": monitor_of(template["spec"])}
    now = datetime.now(timezone.utc)
    rows = [base | {"id": new_id(), "created_at": now - timedelta(seconds=i), "updated_at": now} for i in range(n_jobs)]
    long_id = new_id()
    rows.append(base | {"id": long_id, "name": "bench-long", "epochs": n_epochs, "epochs_completed": n_epochs,
                        "created_at": now - timedelta(days=1), "updated_at": now})
    metrics = [{"job_id": long_id, "epoch": e, "train_loss": 1 / e, "train_accuracy": 1 - 1 / (e + 1),
                "val_loss": 1.1 / e, "val_accuracy": 1 - 1.1 / (e + 1), "lr": 1e-3, "seconds": 0.01}
               for e in range(1, n_epochs + 1)]
    factory = make_session_factory(db_url)
    with factory() as session:
        session.execute(insert(Job), rows)
        session.execute(insert(EpochMetric), metrics)
        session.commit()
        # the planner's statistics as autovacuum soon gives a live database: without them the
        # list sorts all rows instead of walking the (tenant, created_at) index
        session.execute(text("ANALYZE jobs, epoch_metrics"))
        session.commit()
    factory.kw["bind"].dispose()
    return long_id


async def _hammer(base_url: str, path: str, requests: int, concurrency: int,
                  seconds: float = 30) -> tuple[list[float], float]:
    """`concurrency` clients, each sending its next GET when the last one answered, until
    `requests` were sent or `seconds` have passed (a slow server must not stall the run)."""
    latencies: list[float] = []
    left = requests
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        async def one_client() -> None:
            nonlocal left
            while left > 0 and time.perf_counter() < deadline:
                left -= 1
                began = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - began)
                response.raise_for_status()

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        return latencies, time.perf_counter() - began


def api_load(report: Report, stack: stacks.Stack, quick: bool, concurrency: int = 50) -> None:
    report.begin(f"api_{stack.key}", f"API reads under load, {concurrency} concurrent clients, {stack.title}")
    n_jobs, n_epochs, requests, seconds = (500, 100, 200, 5) if quick else (10_000, 1_000, 2_000, 30)
    template = wait_done(stack.client, submit(stack.client, IRIS_SPEC)[0])
    long_id = insert_jobs(stack.db_url, template, n_jobs, n_epochs)
    report.note(f"  {n_jobs} jobs and one {n_epochs}-epoch job inserted; the load generator (httpx.AsyncClient, "
                f"one process) shares the CPU with the API")
    for key, path, goal in ((f"metrics_{n_epochs}_epochs", f"/v1/jobs/{long_id}/metrics", ("<=", 50.0)),
                            (f"list_jobs_{n_jobs}", "/v1/jobs", None)):
        # one client alone first: the time one request costs the server, before any queueing
        alone, _ = asyncio.run(_hammer(stack.base_url, path, requests // 20, 1, seconds))
        report.figure(f"{key}_1_client_p50_ms", percentile([x * ms for x in alone], 50), "ms",
                      label=f"GET {path.replace(long_id, '{id}')}, 1 client, p50")
        asyncio.run(_hammer(stack.base_url, path, concurrency, concurrency))  # warm connections and caches
        latencies, took = asyncio.run(_hammer(stack.base_url, path, requests, concurrency, seconds))
        lat_ms = [x * ms for x in latencies]
        report.figure(f"{key}_p50_ms", percentile(lat_ms, 50), "ms", label=f"  {concurrency} clients, p50")
        report.figure(f"{key}_p99_ms", percentile(lat_ms, 99), "ms", goal=goal, label="  p99")
        report.figure(f"{key}_rps", len(latencies) / took, "req/s", label=f"  requests/s ({len(latencies)} requests)")


def throughput(report: Report, stack: stacks.Stack, quick: bool) -> None:
    report.begin(f"throughput_{stack.key}", f"tiny jobs (Iris, 5 epochs) completed per minute, {stack.title}")
    n = 6 if quick else 60
    submitted = [submit(stack.client, IRIS_SPEC) for _ in range(n)]
    jobs = [wait_done(stack.client, job_id) for job_id, _ in submitted]
    first_sent = min(sent for _, sent in submitted)
    seconds = max(stamp(job["finished_at"]) for job in jobs) - first_sent
    report.note(f"  {n} jobs posted back to back; first POST to last finished: {seconds:.2f} s")
    report.figure("jobs_per_minute", n / seconds * 60, "jobs/min", label=f"jobs per minute, {stack.workers} workers")


SECTIONS: dict[str, Callable[[Report, stacks.Stack, bool], None]] = {
    "service": service, "throughput": throughput, "api": api_load,
}


def own_cache(env: dict[str, str], workdir: Path) -> dict[str, str]:
    """A stack's data set cache of its own: its first MNIST job reads the upload from the
    database, as a machine's first job on a new upload does (uploads are cached by content)."""
    return {**env, "NETFIT_DATASET_DIR": str(workdir / "datasets")}


def run(report: Report, names: list[str], *, quick: bool = False, threads: int | None = None) -> None:
    """Start each stack once and run the chosen sections on it (the API load last: it adds 10k rows).
    The processes' logs are kept if a section fails."""
    tmp = Path(tempfile.mkdtemp(prefix="netfit-bench-"))
    env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    env.update({k: os.environ[k] for k in PASSED_ON if k in os.environ})
    if env:
        report.note(f"service processes' environment: {env}")
    try:
        if "service" in names:
            (tmp / "readiness").mkdir()
            readiness(report, tmp / "readiness", env)
            (tmp / "embedded").mkdir()
            with stacks.embedded(tmp / "embedded", own_cache(env, tmp / "embedded")) as stack:
                service(report, stack, quick)
        (tmp / "redis_pg").mkdir()
        with stacks.redis_pg(tmp / "redis_pg", own_cache(env, tmp / "redis_pg")) as stack:
            for name in ("service", "throughput", "api"):
                if name in names:
                    SECTIONS[name](report, stack, quick)
    except BaseException:
        print(f"the service logs are in {tmp}")
        raise
    shutil.rmtree(tmp, ignore_errors=True)
