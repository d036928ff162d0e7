"""API figures from `wrk` (a separate C process, so the load generator costs the API little):
requests/s and p50/p99 at 1 and 50 connections for GET /v1/jobs/{id}/metrics of a 1,000-epoch
job, GET /v1/jobs with 10,000 jobs and POST /v1/jobs/{id}/predict (one Iris row), on Redis +
PostgreSQL, the API run with 1 and with 2 processes (NETFIT_API_PROCESSES) side by side; and a
client that revalidates what it holds (If-None-Match → 304), as the SDK and the dashboard do.

What bounds each figure is printed beside it: the CPU the API's processes, wrk and PostgreSQL
(the sessions open on the bench's database) spent per request (µs, from /proc and getrusage), on
the machine's cores that all of them share. Needs
wrk on PATH (scripts/test-tools.sh installs it); the section says so and skips without it. It
sits beside the httpx-based `api` section (bench/services.py), whose figures include its own
Python load generator's share of the CPU."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench import stacks
from bench.report import Report
from bench.services import insert_jobs, submit, wait_done
from tests.conftest import IRIS_SPEC, ROOT, start_api_process, wait_until

SCRIPT = Path(__file__).parent / "wrk" / "report.lua"
PROCESSES = (1, 2)
GOAL = (">=", 1000.0)  # metrics reads, and list pages, per second at 50 connections, the better process count


def cpu_seconds(pid: int) -> float:
    """User + system CPU so far of a process and all its descendants (Linux /proc)."""
    tick, total, todo = os.sysconf("SC_CLK_TCK"), 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14 and 15)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # it ended meanwhile
            continue
    return total


def pg_cpu_seconds(db_url: str | None) -> float:
    """CPU so far of the PostgreSQL sessions open on db_url's database (0 without one): what the
    API's queries cost the server, as long as its pool keeps its connections (it does)."""
    if not db_url or not db_url.startswith("postgresql"):
        return 0.0
    import psycopg

    url = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        pids = [pid for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                               "AND pid <> pg_backend_pid()")]
    return sum(cpu_seconds(pid) for pid in pids)


def wrk(url: str, connections: int, seconds: int, body: str | None = None, headers: dict[str, str] | None = None,
        api_pid: int | None = None, db_url: str | None = None) -> dict[str, float]:
    """One wrk run: its summary line (bench/wrk/report.lua), with the CPU µs per request that the
    API (api_pid and its children), wrk itself and PostgreSQL (db_url's sessions) spent."""
    env = {**os.environ, "NETFIT_WRK_BODY": body or ""}
    args = ["wrk", f"-t{min(connections, 2)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(SCRIPT)]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    api_before = cpu_seconds(api_pid) if api_pid else 0.0
    pg_before = pg_cpu_seconds(db_url)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([*args, url], env=env, capture_output=True, text=True, timeout=seconds + 60, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(x for x in out.stdout.splitlines() if x.startswith("NETFIT "))
    got = json.loads(line[len("NETFIT "):])
    n = max(1, got["requests"])
    got["wrk_cpu_us"] = (after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime) / n * 1e6
    got["api_cpu_us"] = (cpu_seconds(api_pid) - api_before) / n * 1e6 if api_pid else float("nan")
    got["pg_cpu_us"] = (pg_cpu_seconds(db_url) - pg_before) / n * 1e6 if db_url else 0.0
    got["rps"] = got["requests"] / (got["duration_us"] / 1e6)
    return got


def run(report: Report, *, quick: bool = False) -> None:
    report.begin("http", "API requests/s and latency measured by wrk (a separate process), Redis + PostgreSQL")
    if shutil.which("wrk") is None:
        report.note("  skipped: wrk is not installed (bash scripts/test-tools.sh, or Debian: apt-get install -y wrk)")
        return
    n_jobs, n_epochs, seconds = (500, 100, 2) if quick else (10_000, 1_000, 10)
    cores = os.cpu_count()
    tmp = Path(tempfile.mkdtemp(prefix="netfit-bench-http-"))
    with stacks.redis_pg(tmp, {}) as stack, ExitStack() as apis:
        trained = wait_done(stack.client, submit(stack.client, IRIS_SPEC)[0])
        long_id = insert_jobs(stack.db_url, trained, n_jobs, n_epochs)
        # the APIs measured: one process and two behind one port, beside the stack's (idle) own
        servers = {}
        for processes in PROCESSES:
            proc, url = start_api_process({**stack.env, "NETFIT_API_PROCESSES": str(processes)},
                                          tmp / f"api-{processes}.log")
            apis.callback(proc.stop)
            servers[processes] = (proc.pid, url)
        # warmed up (the warm-up thread's CPU is no request's): /readyz 200 four times in a row,
        # each on a new connection, so that each of two processes has likely said so
        for _, url in servers.values():
            wait_until(lambda u=url: all(httpx.get(f"{u}/readyz", timeout=10).status_code == 200 for _ in range(4)),
                       timeout=120, what=f"{url}/readyz")
        report.note(f"  {n_jobs} jobs and one {n_epochs}-epoch job inserted; the API with {' and '.join(map(str, PROCESSES))}"
                    f" uvicorn processes, wrk beside them on the same {cores} cores; each figure's CPU per request"
                    f" (the API's processes + wrk's + PostgreSQL's) bounds it: {cores} cores / that")
        # the tree the API processes run (tests.conftest's: the one `python -m bench` was started
        # in, which comes before PYTHONPATH): a before/after comparison runs each from its own
        report.note(f"  the API's code: {ROOT}")
        metrics_path = f"/v1/jobs/{long_id}/metrics"
        tag = httpx.get(servers[1][1] + metrics_path, timeout=30).headers["etag"]
        predict_body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]})
        best: dict[tuple[str, str], dict[str, float]] = {}
        for key, path, body, headers, what in (
                (f"metrics_{n_epochs}_epochs", metrics_path, None, None, "GET /v1/jobs/{id}/metrics"),
                (f"metrics_{n_epochs}_epochs_304", metrics_path, None, {"If-None-Match": tag},
                 "GET /v1/jobs/{id}/metrics, If-None-Match (304)"),
                (f"list_jobs_{n_jobs}", "/v1/jobs", None, None, "GET /v1/jobs"),
                ("predict_iris_row", f"/v1/jobs/{trained['id']}/predict", predict_body, None, "POST /v1/jobs/{id}/predict")):
            for connections in (1, 50):
                for processes, (pid, url) in servers.items():
                    wrk(url + path, 2, 1, body, headers)  # warm caches and connections
                    got = wrk(url + path, connections, seconds, body, headers, api_pid=pid, db_url=stack.db_url)
                    name = f"{key}_p{processes}_c{connections}"
                    bound = cores / (got["api_cpu_us"] + got["wrk_cpu_us"] + got["pg_cpu_us"]) * 1e6
                    report.figure(f"{name}_rps", got["rps"], "req/s",
                                  label=f"{what}, {processes} proc, {connections} conn: requests/s")
                    report.figure(f"{name}_p50_ms", got["p50_us"] / 1000, "ms", label="  p50")
                    report.figure(f"{name}_p99_ms", got["p99_us"] / 1000, "ms", label="  p99")
                    report.figure(f"{name}_api_cpu_us", got["api_cpu_us"], "µs", label="  CPU per request: the API")
                    report.figure(f"{name}_wrk_cpu_us", got["wrk_cpu_us"], "µs", label="  CPU per request: wrk")
                    report.figure(f"{name}_pg_cpu_us", got["pg_cpu_us"], "µs", label="  CPU per request: PostgreSQL")
                    report.figure(f"{name}_cpu_bound_rps", bound, "req/s",
                                  label=f"  bound: {cores} cores / (API + wrk + PostgreSQL)")
                    if got["errors"] or got["non_2xx"]:
                        report.note(f"  {got['errors']} socket errors, {got['non_2xx']} non-2xx answers")
                    if connections == 50:
                        best.setdefault((key, what), {})[f"{processes} proc"] = got["rps"]
        for key, what in ((f"metrics_{n_epochs}_epochs", "GET /v1/jobs/{id}/metrics"), (f"list_jobs_{n_jobs}", "GET /v1/jobs")):
            figures = best[key, what]
            which = max(figures, key=figures.get)
            report.figure(f"{key}_c50_rps", figures[which], "req/s", goal=GOAL,
                          label=f"{what}, 50 conn, best ({which}): requests/s")
    shutil.rmtree(tmp, ignore_errors=True)
