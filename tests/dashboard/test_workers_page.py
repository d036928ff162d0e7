"""The dashboard's workers page in a real browser (Chromium via Playwright) against `netfit api`
on PostgreSQL + Redis and real worker processes: the empty state says how to start a worker; a
started worker is listed with what it trains (another team's job without its id) and a queued
job says why it waits; the job page tells the job's life (waiting, running, ...). Screenshots
go where test_browser's do (its ARTIFACTS rule)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.api.conftest import bearer, new_key
from tests.dashboard.conftest import watch
from tests.conftest import (FAST, claimed_redis_db, fresh_pg_database, iris_spec, service_env, start_api_process,
                            wait_ready, wait_until)

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"
playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (scripts/test-tools.sh installs it)")]


class Stack:
    def __init__(self, base_url: str, env: dict[str, str], keys: dict[str, str]):
        self.base_url, self.env, self.keys = base_url, env, keys

    def submit(self, team: str, spec: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{self.base_url}/v1/jobs", json=spec, headers=bearer(self.keys[team]), timeout=90)
        assert response.status_code == 201, response.text
        return response.json()

    def workers(self, team: str = "team-a") -> list[dict[str, Any]]:
        return httpx.get(f"{self.base_url}/v1/workers", headers=bearer(self.keys[team]), timeout=10).json()["items"]

    def cancel(self, team: str, job_id: str) -> None:
        httpx.post(f"{self.base_url}/v1/jobs/{job_id}/cancel", headers=bearer(self.keys[team]), timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`netfit api` alone (workers are started by the test that wants one), two teams' keys."""
    with fresh_pg_database() as db, claimed_redis_db() as broker:
        env = service_env(db, broker, **FAST)
        keys = {team: new_key(db, team) for team in ("team-a", "team-b")}
        proc, base_url = start_api_process(env, tmp_path_factory.mktemp("workers-page") / "api.log")
        try:
            # warmed up (the first POST's dry run would pay torch's import): ready with no worker too
            wait_until(lambda: httpx.get(f"{base_url}/readyz", timeout=10).status_code == 200, timeout=90,
                       interval=0.5, what="/readyz")
            yield Stack(base_url, env, keys)
        finally:
            proc.stop(grace=10)


@pytest.fixture(scope="module")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = (Path(os.environ["NETFIT_ARTIFACTS"]) / "dashboard" if os.environ.get("NETFIT_ARTIFACTS")
              else tmp_path_factory.getbasetemp() / "dashboard-screens")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {folder}")
    return folder


@pytest.fixture
def tab(stack: Stack, screens: Path) -> Iterator[Any]:
    """A tab holding team-a's key, axe-core loaded; a console or page error fails the test."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"])
        context = browser.new_context(base_url=stack.base_url, viewport={"width": 1280, "height": 900})
        context.add_init_script(path=str(AXE))
        page = context.new_page()
        problems: list[str] = []
        watch(page, problems)
        page.goto("/#/jobs")
        page.fill("#key-input", stack.keys["team-a"])
        page.click("#key-save")
        page.shots = screens  # type: ignore[attr-defined]
        yield page
        browser.close()
        assert not problems, problems


def check_page(page: Any, name: str, width: int) -> list[str]:
    """What is wrong with the page as shown, in words: a null in its text, sideways scrolling on a
    phone, and axe-core's serious or critical accessibility violations."""
    found = page.evaluate("""() => {
      const bad = [], walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      for (let n = walker.nextNode(); n; n = walker.nextNode()) if (/\\b(null|undefined|NaN)\\b/.test(n.textContent) && !n.parentElement.closest("textarea, script")) bad.push(n.textContent.slice(0, 80));
      return {bad, scroll: [document.documentElement.scrollWidth, innerWidth]};
    }""")
    problems = [f"{name}@{width}: text reads {t!r}" for t in found["bad"]]
    if width <= 420 and found["scroll"][0] > found["scroll"][1]:
        problems.append(f"{name}@{width}: the page scrolls sideways {found['scroll']}")
    violations = page.evaluate("""async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
        .filter((v) => v.impact === "serious" || v.impact === "critical")
        .map((v) => `${v.id}: ${v.help} (${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("; ")})`)""")
    return problems + [f"{name}@{width}: axe {v}" for v in violations]


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(page.shots / f"{name}.png"), full_page=True)


def test_with_no_worker_the_page_says_how_to_start_one_and_the_queued_job_says_why_it_waits(tab, stack):
    wait_until(lambda: stack.workers() == [], timeout=15, what="no live worker")
    job = stack.submit("team-a", {**iris_spec(epochs=3), "name": "waits-for-a-worker"})
    tab.click("nav a[data-nav='workers']")
    tab.wait_for_selector("#workers-empty")
    assert "netfit worker" in tab.inner_text("#workers-empty")
    assert "none" in tab.inner_text("#queues-table tr[data-queue='cpu']")
    row = tab.wait_for_selector(f"#waiting-table tr[data-job-id='{job['id']}']")
    assert "no live worker serves queue 'cpu'" in row.inner_text()
    assert tab.get_attribute("nav a[data-nav='workers']", "class") == "active"
    problems = check_page(tab, "workers-empty", 1280)
    shot(tab, "workers-empty")
    # its page tells the same, and its life so far: queued, then waiting for a worker
    tab.goto(f"/#/jobs/{job['id']}")
    tab.wait_for_selector("#life li[data-kind='waiting']")
    assert "no live worker serves queue 'cpu'" in tab.inner_text("#countdown")
    kinds = tab.locator("#life li").evaluate_all("items => items.map((li) => li.dataset.kind)")
    assert kinds == ["status", "waiting"], kinds
    problems += check_page(tab, "job-waiting", 1280)
    shot(tab, "job-waiting")
    stack.cancel("team-a", job["id"])
    assert not problems, "\n".join(problems)


@pytest.fixture
def worker(stack: Stack, start_worker: Any) -> Any:
    """A worker process, consuming (started before the test's browser: its start is most of the
    test's time, imports and Celery, and slower beside a browser starting)."""
    proc = start_worker(stack.env, wait=False)
    wait_ready(proc)
    return proc


def test_a_worker_is_listed_with_another_teams_job_and_its_queue_count(worker, tab, stack):
    theirs = stack.submit("team-b", {**iris_spec(epochs=5000, batch_size=4), "name": "team-b-long"})
    mine = None
    try:
        tab.click("nav a[data-nav='workers']")
        row = tab.wait_for_selector(f"#workers-table tr[data-pid='{worker.pid}']:has-text(\"another team's job\")")
        text = row.inner_text()
        assert "cpu" in text and "ago" in text and theirs["id"][:8] not in text
        assert "1 worker" in tab.inner_text("#queues-table tr[data-queue='cpu']")
        # the one worker is busy: a job of ours waits in line, and the page says so
        mine = stack.submit("team-a", {**iris_spec(epochs=3), "name": "waits-in-line"})
        row = tab.wait_for_selector(f"#waiting-table tr[data-job-id='{mine['id']}']")
        assert "number 1 in line for queue 'cpu'" in row.inner_text()
        # the list refreshes itself: "last seen" (its full time in the title) follows the beats without a reload
        cell = f"tr[data-pid='{worker.pid}'] .last-seen"
        tab.wait_for_function("([sel, before]) => document.querySelector(sel)?.title !== before",
                              arg=[cell, tab.get_attribute(cell, "title")], timeout=15_000)
        problems = check_page(tab, "workers", 1280)
        shot(tab, "workers")
        tab.set_viewport_size({"width": 420, "height": 900})
        problems += check_page(tab, "workers", 420)
        shot(tab, "workers-420")
        assert not problems, "\n".join(problems)
    finally:
        stack.cancel("team-b", theirs["id"])
        if mine:
            stack.cancel("team-a", mine["id"])


def test_a_jobs_page_tells_its_life_lost_resumed_and_preempted_one_line_each(tab, stack):
    # the events as the worker and the reconciler store them (a preemption too, whose real run
    # needs two priorities and a full cluster), read by the page from the live stream
    from db.models import JobEvent
    from db.session import make_session_factory

    job = stack.submit("team-a", {**iris_spec(epochs=3), "name": "a-life"})
    other = stack.submit("team-a", {**iris_spec(epochs=3), "name": "the-urgent-one"})
    tab.goto(f"/#/jobs/{job['id']}")
    tab.wait_for_selector("#life li[data-kind='waiting']")
    factory = make_session_factory(stack.env["NETFIT_DATABASE_URL"])
    try:
        with factory() as session:
            for kind, data in [("status", {"status": "running", "attempt": 1}), ("lost", {"attempt": 1, "epoch": 4}),
                               ("status", {"status": "running", "attempt": 2}),
                               ("resumed", {"attempt": 2, "epoch": 4, "redone": 0}),
                               ("preempted", {"by": other["id"], "after_epoch": 7}),
                               ("status", {"status": "queued", "released_by_attempt": 2})]:
                session.add(JobEvent(job_id=job["id"], kind=kind, data=data))
            session.commit()
    finally:
        factory.kw["bind"].dispose()
    tab.wait_for_selector("#life li:nth-child(8)")
    lines = [" ".join(li.split()) for li in tab.locator("#life li").all_inner_texts()]
    assert lines[3:] == ["lost the worker stopped beating; taken back after epoch 4",
                         "running again (attempt 2)", "resumed from epoch 4",
                         f"preempted by job {other['id'][:8]} after epoch 7; it saved its state and waits to resume",
                         "queued again (attempt 2 gave it back)"], lines
    assert tab.get_attribute("#life li[data-kind='preempted'] a", "href") == f"#/jobs/{other['id']}"
    problems = check_page(tab, "job-life", 1280)
    shot(tab, "job-life")
    for j in (job, other):
        stack.cancel("team-a", j["id"])
    assert not problems, "\n".join(problems)
