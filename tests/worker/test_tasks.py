"""The service end to end on PostgreSQL + Redis with real `python -m worker` processes:
train, follow, download; two workers; cancel; latency. The fault tests are in test_faults.py."""

from __future__ import annotations

import io
import json
import statistics
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from netfit.sse import parse_sse
from tests.conftest import iris_spec, test_accuracy_of, wait_ready, wait_until
from tests.stack import Stack, own_stack

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """PostgreSQL + Redis + the API under uvicorn + two workers, shared by this module's tests."""
    logs = tmp_path_factory.mktemp("stack")
    # GPU jobs accepted (as a stack with GPU workers would), though no worker here takes them;
    # a data set cache of its own: what it decodes is this module's doing
    with own_stack(logs, NETFIT_GPU_JOBS="1", NETFIT_DATASET_DIR=str(logs / "datasets")) as stack:
        workers = [stack.worker(wait=False) for _ in range(2)]
        stack.start_api()
        for worker in workers:
            wait_ready(worker)
        yield stack


def sse_events(stack: Stack, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The whole event stream of a job (it ends by itself after the final status)."""
    with stack.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=90) as response:
        return [(e.event, json.loads(e.data)) for e in parse_sse(response.iter_lines())]


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
    metrics = stack.http.get(f"/v1/jobs/{job['id']}/metrics").json()["items"]
    assert [m["epoch"] for m in metrics] == list(range(1, 9))
    assert all(m["train_loss"] is not None and m["val_accuracy"] is not None for m in metrics)

    kinds = {c["kind"]: c for c in stack.http.get(f"/v1/jobs/{job['id']}/checkpoints").json()["items"]}
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
    rows = [stack.row(j["id"]) for j in jobs]
    assert rows[0].lease_owner != rows[1].lease_owner  # one job per worker process
    assert rows[0].started_at < rows[1].finished_at and rows[1].started_at < rows[0].finished_at  # overlapped


def test_metrics_are_visible_while_running_and_cancel_stops_it(stack):
    job = stack.submit(iris_spec(epochs=100, batch_size=4))
    running = wait_until(lambda: (len(stack.http.get(f"/v1/jobs/{job['id']}/metrics").json()["items"]) >= 2
                                  and stack.job(job["id"])), timeout=60, what="two epochs while running")
    assert running["status"] == "running" and running["epochs_completed"] >= 2
    assert stack.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    done = stack.wait_status(job["id"], "cancelled", "succeeded", "failed", timeout=30)
    assert (done["status"], done["stop_reason"]) == ("cancelled", "cancelled")
    assert done["epochs_completed"] < 100
    metrics = stack.http.get(f"/v1/jobs/{job['id']}/metrics").json()["items"]
    assert [m["epoch"] for m in metrics] == list(range(1, done["epochs_completed"] + 1))
    assert {c["kind"] for c in stack.http.get(f"/v1/jobs/{job['id']}/checkpoints").json()["items"]} == {"best", "last"}


def test_cancel_stops_a_job_inside_a_long_epoch(stack):
    # one epoch is 180,000 steps of batch 1 (well over 10 s): only the in-epoch check can stop it
    spec = iris_spec(epochs=1, batch_size=1)
    spec["dataset"] = {"synthetic": {"kind": "moons", "n_samples": 300_000}}
    spec["model"]["layers"][-1]["units"] = 2
    job = stack.submit(spec)
    stack.wait_status(job["id"], "running")
    assert stack.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    done = stack.wait_status(job["id"], "cancelled", "succeeded", "failed", timeout=60)
    assert (done["status"], done["stop_reason"], done["epochs_completed"]) == ("cancelled", "cancelled", 0)
    assert stack.http.get(f"/v1/jobs/{job['id']}/metrics").json() == {"items": [], "next_cursor": None}


def test_jobs_on_uploads_train_on_their_own_data_each_time(stack):
    """Workers keep decoded uploads between jobs, in memory and in the machine's cache, and the
    last job's prepared data: repeats of a job on one upload give the same epochs, a job on
    another upload or split gets its own data, and each upload's blob is read from the
    database once, whichever worker trains."""
    def upload(seed: int) -> str:
        rng, buf = np.random.default_rng(seed), io.BytesIO()
        np.savez(buf, x=rng.normal(size=(60, 4)), y=np.arange(60) % 3)
        response = stack.http.post("/v1/datasets", files={"file": (f"set{seed}.npz", buf.getvalue())})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def losses(dataset_id: str, split_seed: int = 0) -> list[float]:
        spec = iris_spec(epochs=3)
        # raw features: a scaled or shifted copy would standardize to the same thing
        spec["dataset"], spec["preprocess"] = {"id": dataset_id}, {"features": "none"}
        spec["split"] = {"validation": 0.2, "seed": split_seed}
        job = stack.submit(spec)
        assert stack.wait_status(job["id"], "succeeded", "failed")["status"] == "succeeded"
        metrics = stack.http.get(f"/v1/jobs/{job['id']}/metrics").json()["items"]
        return [m[key] for m in metrics for key in ("train_loss", "val_loss")]

    a, b = upload(1), upload(2)
    # 3 jobs on `a` over 2 workers: one worker trains on `a` at least twice, from what it kept
    runs = [losses(a), losses(b), losses(a), losses(a)]
    assert runs[2] == pytest.approx(runs[0], rel=1e-6) and runs[3] == pytest.approx(runs[0], rel=1e-6)
    assert runs[1] != pytest.approx(runs[0], rel=1e-3)
    # the same upload split another way is another job's data, even on a worker that kept the first
    assert losses(a, split_seed=1) != pytest.approx(runs[0], rel=1e-3)
    reads = sum(w.output().count("read from the database and decoded") for w in stack.workers)
    assert reads == 2, "each upload's blob read once on this machine"
    assert len(list((Path(stack.env["NETFIT_DATASET_DIR"]) / "uploads").iterdir())) == 2


def test_cancel_queued_job_is_never_run(stack):
    # both workers busy, so the job waits in their queue; once they are free its message is
    # delivered, and the cancelled job must not run
    busy = [stack.submit(iris_spec(epochs=10_000))["id"] for _ in range(2)]
    for job_id in busy:
        stack.wait_status(job_id, "running")
    job = stack.submit(iris_spec(epochs=3))
    assert (job["queue"], stack.job(job["id"])["status"]) == ("cpu", "queued")
    cancelled = stack.http.post(f"/v1/jobs/{job['id']}/cancel").json()
    assert (cancelled["status"], cancelled["attempts"]) == ("cancelled", 0)
    for job_id in busy:
        stack.http.post(f"/v1/jobs/{job_id}/cancel")
        stack.wait_status(job_id, "cancelled")
    # its message is taken by a worker once one is free (one at a time, acked late)
    broker = redis.Redis.from_url(stack.broker_url)
    wait_until(lambda: broker.llen("cpu") == 0, timeout=60, what="the cancelled job's message to reach a worker")
    broker.close()
    after = stack.job(job["id"])
    assert (after["status"], after["attempts"], after["epochs_completed"]) == ("cancelled", 0, 0)


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
    job_id = stack.create(spec)
    failed = stack.wait_status(job_id, "failed", "succeeded")
    assert failed["status"] == "failed" and failed["error"] and "\n" not in failed["error"]
    assert "Traceback" not in failed["error"] and len(failed["error"]) < 500
