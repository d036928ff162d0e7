"""The dashboard in Debian's Chromium against an embedded service holding 100,000 jobs:
first paint of the jobs list (navigation start -> the first page's 50 rows in the DOM),
goal <= 1 s; and a 1,000-epoch chart's redraw when one more point arrives (uPlot setData
until the next task, i.e. after its draw), goal <= 50 ms. Medians."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from bench.report import Report

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
SMALL_JOB = {"name": "dashboard-bench", "dataset": {"builtin": "iris"}, "preprocess": {"features": "standardize"},
             "model": {"layers": [{"type": "linear", "units": 8}, {"type": "relu"}, {"type": "linear", "units": 3}]},
             "training": {"epochs": 3, "device": "cpu"}}
# runs in the page: a chart of n epochs, then `rounds` redraws each with one more point
REDRAW_JS = """async ([n, rounds]) => {
  const { lineChart } = await import("/static/js/charts.js");
  const el = document.createElement("div"); document.body.append(el);
  const chart = lineChart(el, { title: "bench", labels: ["train_loss", "val_loss"], width: 600 });
  const xs = [], a = [], b = [];
  for (let e = 1; e <= n; e++) { xs.push(e); a.push(1 / e); b.push(1.1 / e + 0.001 * e); }
  chart.set(xs, [a, b]);
  await new Promise((r) => setTimeout(r, 50));
  const times = [];
  for (let i = 0; i < rounds; i++) {
    const e = xs.length + 1; xs.push(e); a.push(1 / e); b.push(1.1 / e + 0.001 * e);
    const t0 = performance.now();
    chart.set(xs, [a, b]);
    await new Promise((r) => setTimeout(r, 0));  // uPlot draws in a microtask: done by the next task
    times.push(performance.now() - t0);
  }
  return times;
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _insert_jobs(db_url: str, job_id: str, n: int) -> None:
    from sqlalchemy import insert, select

    from db.models import Job, new_id
    from db.session import make_session_factory

    factory = make_session_factory(db_url)
    with factory() as session:
        template = session.scalars(select(Job).where(Job.id == job_id)).one()
        keep = ("tenant", "status", "spec", "summary", "stop_reason", "epochs", "epochs_completed", "best_epoch",
                "best_metrics", "test_metrics", "attempts", "queue", "device", "monitor")
        base = {k: getattr(template, k) for k in keep}
        now = datetime.now(timezone.utc)
        session.execute(insert(Job), [base | {"id": new_id(), "name": f"bulk-{i:05d}", "updated_at": now,
                                              "created_at": now - timedelta(seconds=i + 1)} for i in range(n)])
        session.commit()
    factory.kw["bind"].dispose()


def run(report: Report, quick: bool = False) -> None:
    report.begin("dashboard", "the dashboard in Chromium (embedded service, 100,000 jobs)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        report.note("  skipped: playwright is not installed (pip install -e '.[dev]')")
        return
    if not Path(CHROMIUM).exists():
        report.note(f"  skipped: no {CHROMIUM} (bash scripts/test-tools.sh installs it)")
        return
    n_jobs = 1_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="netfit-bench-dashboard-") as workdir:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("NETFIT_")} | {"PYTHONPATH": str(ROOT)}
        log = open(Path(workdir) / "serve.log", "wb")
        proc = subprocess.Popen([sys.executable, "-c", f"from launch.server import serve; serve('127.0.0.1', {port})"],
                                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    job = httpx.post(f"{base}/v1/jobs", json=SMALL_JOB, timeout=30).json()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"the embedded service did not start; see {log.name}") from None
                    time.sleep(0.2)
            while httpx.get(f"{base}/v1/jobs/{job['id']}", timeout=10).json()["status"] not in ("succeeded", "failed"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the template job did not finish")
                time.sleep(0.2)
            _insert_jobs(f"sqlite:///{Path(workdir) / 'netfit.db'}", job["id"], n_jobs)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                    "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync"])
                paints, apis = [], []
                for _ in range(2 if quick else 7):
                    context = browser.new_context()
                    page = context.new_page()
                    page.goto(f"{base}/#/jobs")
                    page.wait_for_selector("#jobs-body tr:nth-child(50)")  # (a function string would be eval: the CSP refuses it)
                    paints.append(page.evaluate("performance.now()") / 1000)
                    # the share of it spent waiting for GET /v1/jobs (the API and the database)
                    apis.append(page.evaluate("performance.getEntriesByType('resource').filter((e) => "
                                              "e.name.includes('/v1/jobs?')).map((e) => e.responseEnd - e.startTime)[0]") / 1000)
                    context.close()
                page = browser.new_page()
                page.goto(f"{base}/#/datasets")
                redraws = page.evaluate(REDRAW_JS, [1000, 5 if quick else 40])
                browser.close()
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
            log.close()
    report.figure("list_first_paint_s", statistics.median(paints[1:] or paints), "s", goal=("<=", 1.0),
                  label=f"jobs list, first page rendered at {n_jobs:,} jobs (median)")
    report.figure("list_api_s", statistics.median(apis[1:] or apis), "s",
                  label="  of which GET /v1/jobs?limit=50 (median)")
    report.figure("chart_redraw_1000_epochs_ms", statistics.median(redraws), "ms", goal=("<=", 50.0),
                  label="1,000-epoch chart redrawn with one more point (median)")


if __name__ == "__main__":
    r = Report()
    run(r, quick="--quick" in sys.argv)
    r.summary()
