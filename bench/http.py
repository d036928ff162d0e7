"""API figures from `wrk` (a separate C process, so the load generator costs the API little):
requests/s and p50/p99 at 1 and 50 connections for GET /v1/jobs/{id}/metrics of a 1,000-epoch
job, GET /v1/jobs with 10,000 jobs and POST /v1/jobs/{id}/predict (one Iris row), on Redis +
PostgreSQL (run_api). Needs wrk on PATH (Debian: apt-get install -y wrk); the section says so
and skips without it. It sits beside the httpx-based `api` section (bench/services.py), whose
figures include its own Python load generator's share of the CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench import stacks
from bench.report import Report
from bench.services import insert_jobs, submit, wait_done
from tests.conftest import IRIS_SPEC

SCRIPT = Path(__file__).parent / "wrk" / "report.lua"


def wrk(url: str, connections: int, seconds: int, body: str | None = None) -> dict[str, float]:
    """One wrk run; its summary line (bench/wrk/report.lua)."""
    env = {**os.environ, "NETFIT_WRK_BODY": body or ""}
    out = subprocess.run(["wrk", f"-t{min(connections, 2)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                          "-s", str(SCRIPT), url], env=env, capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("NETFIT "))
    return json.loads(line[len("NETFIT "):])


def run(report: Report, *, quick: bool = False) -> None:
    report.begin("http", "API requests/s and latency measured by wrk (a separate process), Redis + PostgreSQL")
    if shutil.which("wrk") is None:
        report.note("  skipped: wrk is not installed (Debian: apt-get install -y wrk)")
        return
    n_jobs, n_epochs, seconds = (500, 100, 3) if quick else (10_000, 1_000, 10)
    tmp = Path(tempfile.mkdtemp(prefix="netfit-bench-http-"))
    with stacks.redis_pg(tmp, {}) as stack:
        trained = wait_done(stack.client, submit(stack.client, IRIS_SPEC)[0])
        long_id = insert_jobs(stack.db_url, trained, n_jobs, n_epochs)
        report.note(f"  {n_jobs} jobs and one {n_epochs}-epoch job inserted; one API process (uvicorn), wrk beside it "
                    f"on the same {os.cpu_count()} cores")
        predict_body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]})
        for key, path, body, goal in (
                (f"metrics_{n_epochs}_epochs", f"/v1/jobs/{long_id}/metrics", None, (">=", 1000.0)),
                (f"list_jobs_{n_jobs}", "/v1/jobs", None, None),
                ("predict_iris_row", f"/v1/jobs/{trained['id']}/predict", predict_body, None)):
            shown = path.replace(long_id, "{id}").replace(trained["id"], "{id}")
            wrk(stack.base_url + path, 2, 1, body)  # warm caches and connections
            for connections in (1, 50):
                got = wrk(stack.base_url + path, connections, seconds, body)
                rps = got["requests"] / (got["duration_us"] / 1e6)
                report.figure(f"{key}_c{connections}_rps", rps, "req/s", goal=goal if connections == 50 else None,
                              label=f"{'POST' if body else 'GET'} {shown}, {connections} conn: requests/s")
                report.figure(f"{key}_c{connections}_p50_ms", got["p50_us"] / 1000, "ms", label="  p50")
                report.figure(f"{key}_c{connections}_p99_ms", got["p99_us"] / 1000, "ms", label="  p99")
                if got["errors"] or got["non_2xx"]:
                    report.note(f"  {got['errors']} socket errors, {got['non_2xx']} non-2xx answers")
    shutil.rmtree(tmp, ignore_errors=True)
