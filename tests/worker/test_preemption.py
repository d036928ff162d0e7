"""Preemption through exact resume with a real worker process (PostgreSQL + Redis, the API in
process): a priority job takes a busy worker's place at the running job's next epoch end; the
preempted job resumes later with the numbers of an uninterrupted run, every epoch recorded
once. Nothing thrashes: a young attempt or an equal priority is not preempted, and
NETFIT_PREEMPTION=0 turns it off.

The preempted job asks for far more epochs than the test waits for and is cancelled once it
has gone on a few epochs after its resume: how many epochs fit in the preemption's few
seconds depends on the machine's load, and the comparison needs the same epochs either way."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from db import attempts as db_attempts
from db import jobs as db_jobs
from db import workers as db_workers
from db.models import Job, JobEvent, utcnow
from db.session import make_session_factory
from tests.api.conftest import make_client
from tests.conftest import FAST, iris_spec, wait_until
from tests.stack import Stack, own_stack
from tests.worker.promise import job_events

pytestmark = [pytest.mark.slow]

LONG = iris_spec(epochs=10_000, batch_size=4)  # trains until cancelled
AFTER = 6.0  # NETFIT_PREEMPT_AFTER_SECONDS


def _epochs(factory, job_id: str) -> list[int]:
    with factory() as session:
        return [m.epoch for m in db_jobs.list_metrics(session, "default", job_id)]


def _when(factory, job_id: str, kind: str, status: str | None = None) -> datetime:
    """When the job's first event of this kind (a status event: of this status) was recorded."""
    with factory() as session:
        return next(e.created_at for e in session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == kind).order_by(JobEvent.id))
            if status is None or e.data.get("status") == status)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A database, a Redis and ONE worker for the module (idle between its tests)."""
    with own_stack(tmp_path_factory.mktemp("preemption"), **FAST, NETFIT_PREEMPT_AFTER_SECONDS=str(AFTER)) as stack:
        stack.worker()
        yield stack


def _preemptions(client) -> float:
    line = 'netfit_preemptions_total{queue="cpu"} '
    return sum(float(x[len(line):]) for x in client.get("/metrics").text.splitlines() if x.startswith(line))


def test_a_priority_job_preempts_a_long_one_which_resumes_exactly_and_nothing_thrashes(stack):
    """One worker trains a long priority-0 job; an equal-priority job and a priority-10 one are
    queued behind it. The young attempt is spared for NETFIT_PREEMPT_AFTER_SECONDS, then makes
    way for the priority-10 job (never for the equal one), resumes first, and is not preempted
    again while the equal job waits."""
    factory = stack.factory
    with make_client(stack.db_url, stack.broker_url) as client:
        job = lambda j: client.get(f"/v1/jobs/{j}").json()  # noqa: E731
        before = _preemptions(client)
        low = client.post("/v1/jobs", json=LONG).json()["id"]
        wait_until(lambda: job(low)["epochs_completed"] >= 2, timeout=90, what="the low job to train")
        equal = client.post("/v1/jobs", json=iris_spec(epochs=2)).json()["id"]
        urgent = client.post("/v1/jobs", json=iris_spec(epochs=2) | {"priority": 10}).json()["id"]

        [preempted] = wait_until(lambda: job_events(factory, low, "preempted"), timeout=60, what="the preemption")
        assert preempted["by"] == urgent and preempted["after_epoch"] >= 2
        after = preempted["after_epoch"]
        assert (_when(factory, low, "preempted") - _when(factory, low, "status", "running")).total_seconds() >= AFTER
        done = wait_until(lambda: (j := job(urgent))["status"] in ("succeeded", "failed") and j, timeout=90,
                          what="the priority job to run")
        assert done["status"] == "succeeded"
        # the preempted job goes on from its saved epoch, before the equal job, nothing trained twice
        resumed = wait_until(lambda: job_events(factory, low, "resumed"), timeout=60, what="the preempted job to resume")
        assert [(r["epoch"], r["redone"]) for r in resumed] == [(after, 0)]
        # its new attempt grows old enough to be preempted; the equal job still does not preempt it
        wait_until(lambda: (j := job(low))["epochs_completed"] >= after + 3
                   and (utcnow() - _when(factory, low, "resumed")).total_seconds() > AFTER + 2 and j,
                   timeout=90, what="the resumed attempt to be old enough")
        assert job(equal)["status"] == "queued" and len(job_events(factory, low, "preempted")) == 1
        client.post(f"/v1/jobs/{low}/cancel")
        wait_until(lambda: job(low)["status"] == "cancelled", timeout=30, what="the cancel")
        wait_until(lambda: job(equal)["status"] == "succeeded", timeout=90, what="the equal job to run")
        assert _preemptions(client) == before + 1
    epochs = _epochs(factory, low)
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) > after  # every epoch once
    assert [e["epoch"] for e in job_events(factory, low, "epoch")] == epochs

    # the same spec trained without interruption, for as many epochs, gives the same numbers
    from netfit.engine.data import load_data
    from netfit.engine.fit import FitCallbacks, fit
    from netfit.spec import JobSpec

    class StopAt(FitCallbacks):
        def on_epoch_end(self, report, state):
            return "enough" if report.epoch >= len(epochs) else None

    spec = JobSpec.model_validate(LONG)
    reference = fit(spec, load_data(spec), callbacks=StopAt()).history
    with factory() as session:
        rows = db_jobs.list_metrics(session, "default", low)
    for name in ("train_loss", "val_loss", "val_accuracy"):
        assert [getattr(r, name) for r in rows] == pytest.approx([h.metrics[name] for h in reference], rel=1e-6), name


def test_a_pack_is_preempted_whole_and_resumes_as_a_pack(stack):
    """A packing sweep's two trials train as one pack on the one worker; a priority job stops
    both at the same epoch end, and the pack goes on afterwards from that epoch."""
    with make_client(stack.db_url, stack.broker_url) as client:
        sweep = client.post("/v1/sweeps", json={
            "spec": LONG, "method": "grid", "max_trials": 2, "max_concurrent": 2, "packing": True,
            "parameters": {"training.optimizer.lr": {"values": [0.01, 0.02]}}}).json()["id"]

        def trials() -> list[str]:
            return [t["job_id"] for t in client.get(f"/v1/sweeps/{sweep}/trials").json()["items"]]

        members = wait_until(lambda: len(t := trials()) == 2 and all(
            job_events(stack.factory, j, "pack") and client.get(f"/v1/jobs/{j}").json()["epochs_completed"] >= 2
            for j in t) and t, timeout=90, what="the pack to train")
        urgent = client.post("/v1/jobs", json=iris_spec(epochs=2) | {"priority": 10}).json()["id"]
        preempted = [wait_until(lambda j=j: job_events(stack.factory, j, "preempted"), timeout=60,
                                what="the pack's preemption")[0] for j in members]
        assert {p["by"] for p in preempted} == {urgent}
        [after] = {p["after_epoch"] for p in preempted}  # both at the same epoch end
        wait_until(lambda: client.get(f"/v1/jobs/{urgent}").json()["status"] == "succeeded", timeout=60,
                   what="the priority job to run")
        # the pack forms again, both members going on after that epoch, nothing trained twice
        packs = [wait_until(lambda j=j: len(e := job_events(stack.factory, j, "pack")) == 2 and e, timeout=90,
                            what="the pack to resume")[-1] for j in members]
        assert [(p["members"], p["resume_after"]) for p in packs] == [(2, after), (2, after)]
        wait_until(lambda: all(client.get(f"/v1/jobs/{j}").json()["epochs_completed"] > after + 1 for j in members),
                   timeout=60, what="the pack to go on")
        client.post(f"/v1/sweeps/{sweep}/cancel")
        wait_until(lambda: all(client.get(f"/v1/jobs/{j}").json()["status"] == "cancelled" for j in members),
                   timeout=30, what="the cancel")
    for j in members:
        epochs = _epochs(stack.factory, j)
        assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) > after + 1


def test_preemption_off_asks_nothing(pg_url, monkeypatch):
    """The reconciler's pass (no worker process: the rows as one would leave them), off then on."""
    from service.settings import get_settings
    from worker.reconciler import reconcile_once

    factory = make_session_factory(pg_url)
    with factory() as session:
        running = db_jobs.create_job(session, tenant="default", spec=LONG, summary=None, queue="cpu").id
        db_workers.register(session, owner="host:1", host="host", pid=1, queues=["cpu"], device="cpu")
        db_attempts.claim(session, [running], "host:1", lease_seconds=600, max_attempts=3)
        session.execute(update(Job).where(Job.id == running).values(attempt_started_at=utcnow() - timedelta(hours=1)))
        session.commit()
        urgent = db_jobs.create_job(session, tenant="default", spec=iris_spec() | {"priority": 10}, summary=None,
                                    queue="cpu").id

    def asked() -> str | None:
        with factory() as session:
            return session.scalar(select(Job.preempt_requested_by).where(Job.id == running))

    try:
        monkeypatch.setenv("NETFIT_PREEMPTION", "0")
        get_settings.cache_clear()
        assert "preempted" not in reconcile_once(factory, lambda *_: None) and asked() is None
        monkeypatch.setenv("NETFIT_PREEMPTION", "1")
        get_settings.cache_clear()
        assert reconcile_once(factory, lambda *_: None)["preempted"] == 1 and asked() == urgent
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        factory.kw["bind"].dispose()
