"""Log lines: the worker names the job and the request that created it on each line it logs
while training; NETFIT_LOG_FORMAT=json makes every logged line of the API and the worker one
JSON object. Real API and worker processes on PostgreSQL and Redis."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import iris_spec, service_env, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]  # real worker processes: ~25 s each


def finished(base: str, job_id: str) -> bool:
    return httpx.get(f"{base}/v1/jobs/{job_id}", timeout=10).json()["status"] in ("succeeded", "failed")


def run(base: str, request_id: str) -> str:
    job = httpx.post(f"{base}/v1/jobs", json=iris_spec(epochs=3), headers={"X-Request-ID": request_id},
                     timeout=30).json()
    wait_until(lambda: finished(base, job["id"]), timeout=90, what="the job to finish")
    return job["id"]


def test_json_lines_carry_job_and_request_ids(pg_url, redis_url, start_api, start_worker):
    env = service_env(pg_url, redis_url, NETFIT_LOG_FORMAT="json")
    base = start_api(env)
    worker = start_worker(env)
    job_id = run(base, "req-logs-json-1")
    wait_until(lambda: f"job {job_id}: succeeded" in worker.output(), timeout=20, what="the worker's last line")

    logged = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    # the lines of the attempt the POST started (a duplicate message the reconciler re-sent
    # under load is logged too, with the job's id but no request: nothing to claim)
    about_job = [e for e in logged if job_id in e["message"] and "nothing to claim" not in e["message"]]
    assert len(about_job) >= 2, worker.output()[-3000:]  # "attempt 1 started" ... "succeeded"
    for entry in about_job:
        assert entry["job_id"] == job_id, entry
        assert entry["request_id"] == "req-logs-json-1", entry
        assert {"time", "level", "logger", "message"} <= set(entry)
    # lines outside a job name none
    assert any(e["job_id"] == "-" for e in logged)

    # the API: every logged line is JSON, the access line of the POST with its request id
    api_log = next(p for p in worker.log.parent.glob("api-*.log")).read_text()
    api_lines = [line for line in api_log.splitlines() if line.strip()]
    api_entries = [json.loads(line) for line in api_lines if line.startswith("{")]
    assert len(api_entries) == len(api_lines), [line for line in api_lines if not line.startswith("{")][:5]
    assert any(e["request_id"] == "req-logs-json-1" and "POST /v1/jobs" in e["message"] for e in api_entries)


def test_plain_lines_name_the_job(pg_url, redis_url, start_api, start_worker):
    env = service_env(pg_url, redis_url)
    base = start_api(env)
    worker = start_worker(env)
    job_id = run(base, "req-logs-plain-1")
    wait_until(lambda: f"job {job_id}: succeeded" in worker.output(), timeout=20, what="the worker's last line")
    lines = [line for line in worker.output().splitlines() if f"job {job_id}:" in line and "nothing to claim" not in line]
    assert lines and all(f"[req-logs-plain-1 job={job_id}]" in line for line in lines), lines
