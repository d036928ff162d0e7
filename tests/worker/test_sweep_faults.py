"""Issue 12's fault tests: a 20-trial sweep of short Iris trials on real processes (the API
under uvicorn, two `python -m worker` processes, PostgreSQL, a private Redis), and in its
middle a kill -9 of a worker running a trial, of the process that asks Optuna for the next
trial (at three points of the ask), of the API after it stored a sweep and before it asked,
and a Redis restart without persistence. Whatever dies, the sweep ends with exactly max_trials trials, one job per trial
number, every trial's epochs recorded once, and never more than max_concurrent trials queued
or running (a sampler thread reads the count from the database all through the test).

"The process that asks": the API at POST, the worker whose trial just ended
(service.sweeps.after_job) and every worker's reconciler (service.sweeps.repair). To kill it
*inside* an ask, not before or after by luck, the victim runs with a trap: its db.sweeps
functions are wrapped so that, from trial TRAP_AT on, the ask stops at one point (before the
trial row is written; inside that transaction, holding the sweep row's lock; after the commit,
before the message is sent) and prints where. The test waits for that line, then kills it.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from db import sweeps as db_sweeps
from db.models import EpochMetric, Job, Sweep
from db.session import make_session_factory
from tests.conftest import (
    FAST, Proc, fresh_pg_database, free_port, iris_spec, service_env, start_worker_process, wait_healthy, wait_ready,
    wait_until,
)
from tests.worker.servers import PrivateRedis, private_redis

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

TRIALS, CONCURRENT, EPOCHS = 20, 3, 3  # 3 at a time on 2 workers: one trial always waits in Redis

# run as `python -c`: the real worker or API, with the ask stopped at TRAP_POINT from trial TRAP_AT on
TRAP = """
import os, sys, threading
from db import sweeps
point, at = os.environ["TRAP_POINT"], int(os.environ["TRAP_AT"])
create, count, store = sweeps.create_trials, sweeps.count_active, sweeps.create_sweep
asking = threading.local()

def stop_here(what):
    print(f"TRAPPED {point} {what}", flush=True)
    threading.Event().wait(120)  # until the test kills this process

def create_sweep(session, **kw):  # the API's POST: stored, nothing asked yet
    sweep = store(session, **kw)
    if point == "stored":
        stop_here("sweep")
    return sweep

def create_trials(session, sweep, number, trials, **kw):
    asking.number = number
    if point == "before" and number >= at:
        stop_here(f"trial {number}")
    jobs = create(session, sweep, number, trials, **kw)
    if point == "after" and jobs and number >= at:
        stop_here(f"trial {number}")
    return jobs

def count_active(session, sweep_id):  # create_trials calls it after the counter UPDATE, in its transaction
    if point == "locked" and getattr(asking, "number", -1) >= at:
        stop_here(f"trial {asking.number}")
    return count(session, sweep_id)

sweeps.create_trials, sweeps.count_active, sweeps.create_sweep = create_trials, count_active, create_sweep
"""


def sweep_body(seed: int) -> dict[str, Any]:
    return {"name": f"faults-{seed}", "spec": iris_spec(epochs=EPOCHS, batch_size=16),
            "parameters": {"model.layers.0.units": {"values": [4, 8, 16]},
                           "training.optimizer.lr": {"min": 0.005, "max": 0.1, "distribution": "log_uniform"}},
            "method": "tpe", "max_trials": TRIALS, "max_concurrent": CONCURRENT, "seed": seed}


class Sampler:
    """Counts the sweep's queued + running trials in the database every 0.02 s (it samples; it
    synchronises nothing). max_concurrent must hold at every sample. A sweep of these short
    trials can end within 2 s on one torch thread: 0.1 s apart, 15 samples were all it saw."""

    def __init__(self, factory: Any, sweep_id: str):
        self.factory, self.sweep_id, self.samples = factory, sweep_id, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            with self.factory() as session:
                self.samples.append(db_sweeps.count_active(session, self.sweep_id))

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(10)
        return self.samples


class SweepStack:
    """A fresh PostgreSQL database, a private Redis, the API and two workers, kept for the module;
    each test starts with every process alive and no sweep running."""

    def __init__(self, db_url: str, redis: PrivateRedis, logs: Path):
        self.db_url, self.redis, self.logs = db_url, redis, logs
        self.env = service_env(db_url, redis.url, **FAST)
        self.factory = make_session_factory(db_url)
        self.workers: list[Proc] = []
        self.api: Proc | None = None
        self.base_url = ""
        self._n = 0

    def _log(self, what: str) -> Path:
        self._n += 1
        return self.logs / f"{self._n:02d}-{what}.log"

    def worker(self, trap: tuple[str, int] | None = None, wait: bool = True) -> Proc:
        if trap is None:
            proc = start_worker_process(self.env, self._log("worker"), wait=False)
        else:
            code = TRAP + "from worker.main import main; main(['--queues', 'cpu'])"
            log = self._log(f"worker-trap-{trap[0]}")
            proc = Proc([sys.executable, "-c", code], {**self.env, "TRAP_POINT": trap[0], "TRAP_AT": str(trap[1]),
                                                       "NETFIT_WORKER_READY_FILE": str(log.with_suffix(".ready"))}, log)
        self.workers.append(proc)
        if wait:
            wait_ready(proc)
        return proc

    def start_api(self, trap: tuple[str, int] | None = None) -> Proc:
        port = free_port()
        code = (TRAP if trap else "") + f"from launch.server import run_api; run_api('127.0.0.1', {port})"
        env = {**self.env, **({"TRAP_POINT": trap[0], "TRAP_AT": str(trap[1])} if trap else {})}
        self.api = Proc([sys.executable, "-c", code], env, self._log("api" + ("-trap" if trap else "")))
        self.base_url = f"http://127.0.0.1:{port}"
        wait_healthy(self.base_url, self.api)
        return self.api

    def ready(self) -> None:
        """Two healthy, untrapped workers and an untrapped API; no sweep left running."""
        with self.factory() as session:
            for sweep_id in db_sweeps.running_sweeps(session):
                db_sweeps.end_sweep(session, sweep_id, "cancelled")
        for proc in [w for w in self.workers if not w.alive() or "TRAP" in " ".join(w.popen.args)]:
            proc.stop(grace=5)
            self.workers.remove(proc)
        for _ in range(2 - len(self.workers)):
            self.worker(wait=False)
        for proc in self.workers:
            wait_ready(proc)
        if self.api is None or not self.api.alive() or "TRAP" in " ".join(self.api.popen.args):
            if self.api is not None:
                self.api.stop(grace=5)
            self.start_api()

    def row(self, job_id: str) -> Job:
        with self.factory() as session:
            return session.get(Job, job_id)

    def sweep(self, sweep_id: str) -> Sweep:
        with self.factory() as session:
            return session.get(Sweep, sweep_id)

    def trials(self, sweep_id: str) -> list[Job]:
        with self.factory() as session:
            return list(session.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.trial_number)))

    def owner(self, job: Job) -> Proc | None:
        return next((w for w in self.workers if (job.lease_owner or "").endswith(f":{w.pid}")), None)

    def post(self, body: dict[str, Any]) -> str:
        response = httpx.post(f"{self.base_url}/v1/sweeps", json=body, timeout=60)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def ends_well(self, sweep_id: str, sampler: Sampler) -> list[Job]:
        """Wait for the sweep to end; check what the issue asks of it whatever died."""
        try:
            wait_until(lambda: self.sweep(sweep_id).status != "running", timeout=150, interval=0.2,
                       what="the sweep to end")
        finally:
            samples = sampler.stop()
        sweep = self.sweep(sweep_id)
        assert (sweep.status, sweep.error, sweep.trials_asked) == ("succeeded", None, TRIALS)
        trials = self.trials(sweep_id)
        assert [t.trial_number for t in trials] == list(range(TRIALS))  # exactly max_trials, one job each
        assert all((t.status, t.epochs_completed) == ("succeeded", EPOCHS) for t in trials), \
            [(t.trial_number, t.status, t.error, t.epochs_completed) for t in trials]
        with self.factory() as session:
            epochs = session.execute(select(EpochMetric.job_id, func.count(), func.count(EpochMetric.epoch.distinct()),
                                            func.min(EpochMetric.epoch), func.max(EpochMetric.epoch))
                                     .join(Job, Job.id == EpochMetric.job_id).where(Job.sweep_id == sweep_id)
                                     .group_by(EpochMetric.job_id)).all()
        assert len(epochs) == TRIALS and all(tuple(e)[1:] == (EPOCHS, EPOCHS, 1, EPOCHS) for e in epochs), epochs
        assert len(samples) > 20 and max(samples) <= CONCURRENT, samples
        return trials

    def close(self) -> None:
        procs = [*self.workers, *([self.api] if self.api else [])]
        for proc in procs:
            proc.signal(signal.SIGTERM)  # all at once, then wait for each
        for proc in procs:
            proc.stop(grace=5)
        self.factory.kw["bind"].dispose()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SweepStack]:
    with fresh_pg_database() as db_url, private_redis() as redis:
        s = SweepStack(db_url, redis, tmp_path_factory.mktemp("sweep-faults"))
        try:
            yield s
        finally:
            s.close()


@pytest.fixture
def ready(stack: SweepStack) -> SweepStack:
    stack.ready()
    return stack


def _asked(stack: SweepStack, sweep_id: str, n: int) -> bool:
    return stack.sweep(sweep_id).trials_asked >= n


# --------------------------------------------------------------------------- the faults


def test_kill_9_of_a_worker_running_a_trial(ready):
    s = ready
    sweep_id = s.post(sweep_body(seed=1))
    sampler = Sampler(s.factory, sweep_id)
    wait_until(lambda: _asked(s, sweep_id, 6), timeout=60, what="six trials asked")
    victim = wait_until(lambda: next((t for t in s.trials(sweep_id) if t.status == "running"
                                      and 1 <= t.epochs_completed <= EPOCHS - 1 and s.owner(t)), None),
                        timeout=60, interval=0.01, what="a trial mid-way")
    killed = s.owner(victim)
    killed.signal(signal.SIGKILL)
    s.worker(wait=False)  # the lost worker's place (its trial waits for its lease to run out)
    trials = s.ends_well(sweep_id, sampler)
    resumed = next(t for t in trials if t.id == victim.id)
    assert resumed.attempts == 2 and not resumed.lease_owner.endswith(f":{killed.pid}")


def test_kill_9_of_workers_asking_for_the_next_trial(ready):
    """Three more workers, each stopped in its first ask from trial 3 on, at its own point:
    before (Optuna has answered, nothing is written), locked (inside the trial row's
    transaction, holding the sweep row's lock), after (the row committed, its message never
    sent). Each is killed there, with whatever trial it was training."""
    s = ready
    traps = {point: s.worker(trap=(point, 3), wait=False) for point in ("before", "locked", "after")}
    for proc in traps.values():
        wait_ready(proc)
    sweep_id = s.post(sweep_body(seed=2))
    sampler = Sampler(s.factory, sweep_id)
    asked: dict[str, int] = {}  # point -> the trial number it was asking for

    def kill_each_in_its_ask() -> bool:
        for point, proc in traps.items():
            assert proc.alive() or point in asked, proc.output()[-3000:]
            if point not in asked and f"TRAPPED {point} trial " in (out := proc.output()):
                proc.signal(signal.SIGKILL)
                asked[point] = int(out.split(f"TRAPPED {point} trial ")[1].split()[0])
        return len(asked) == len(traps)

    wait_until(kill_each_in_its_ask, timeout=90, interval=0.02, what="each trapped worker to stop in its ask")
    trials = s.ends_well(sweep_id, sampler)
    # the trials they were asking for: asked again by another process (before, locked) or sent
    # by a reconciler (after), and run once
    assert all(trials[number].status == "succeeded" for number in asked.values()), asked


def test_kill_9_of_the_api_between_storing_a_sweep_and_asking_its_first_trials(ready):
    """POST has stored the sweep and dies before it asks: the client gets no answer; the
    workers' reconcilers ask every trial. (The API killed inside an ask is the trapped worker's
    case above: the same code, service.sweeps.fill. Trapped there, the API races the workers'
    reconcilers, which may take the first trials before it.)"""
    s = ready
    s.api.stop(grace=10)
    api = s.start_api(trap=("stored", 0))
    body = sweep_body(seed=5)
    answer: list[Any] = []
    post = threading.Thread(target=lambda: answer.append(_post_or_error(s.base_url, body)), daemon=True)
    post.start()
    wait_until(lambda: "TRAPPED stored sweep" in api.output() or not api.alive(), timeout=60, interval=0.02,
               what="the API to stop in its ask")
    api.signal(signal.SIGKILL)
    post.join(30)
    assert answer and isinstance(answer[0], httpx.HTTPError), answer  # the client saw the API die
    with s.factory() as session:
        [sweep_id] = session.scalars(select(Sweep.id).where(Sweep.name == body["name"])).all()
    sampler = Sampler(s.factory, sweep_id)
    s.ends_well(sweep_id, sampler)
    s.start_api()  # a new API process reads the same sweep
    shown = httpx.get(f"{s.base_url}/v1/sweeps/{sweep_id}", timeout=30).json()
    assert shown["status"] == "succeeded" and shown["trials"]["succeeded"] == TRIALS


def _post_or_error(base_url: str, body: dict[str, Any]) -> Any:
    try:
        return httpx.post(f"{base_url}/v1/sweeps", json=body, timeout=60)
    except httpx.HTTPError as exc:
        return exc


def test_redis_restarted_without_persistence_mid_sweep(ready):
    """A trial waits in Redis (3 at a time, 2 workers) when Redis comes back empty; asks made
    while it is down cannot send. The reconcilers re-send both kinds."""
    import redis

    s = ready
    sweep_id = s.post(sweep_body(seed=6))
    sampler = Sampler(s.factory, sweep_id)
    wait_until(lambda: _asked(s, sweep_id, 6), timeout=60, what="six trials asked")
    client = redis.Redis(port=s.redis.port)
    wait_until(lambda: client.llen("cpu") >= 1, timeout=30, interval=0.01, what="a trial waiting in Redis")
    client.close()
    s.redis.kill()
    s.redis.start()  # same port, no data
    s.ends_well(sweep_id, sampler)


def test_two_processes_asking_at_once_create_exactly_one_next_trial(pg_url, tmp_path):
    """Two separate processes (as two API processes would) call fill on the same sweep at the same
    moment, ten times each; the sweep has room for one trial, and one is created. (Its own
    database: the stack's workers would ask too.)"""
    from netfit.sweep_spec import SweepSpec

    factory = make_session_factory(pg_url)
    request = SweepSpec.model_validate(sweep_body(seed=7) | {"max_concurrent": 1})
    stored = request.model_dump(mode="json") | {"objective": {"metric": "val_loss", "mode": "min"}}
    with factory() as session:  # a sweep stored as the API stores it, with no trial asked yet
        sweep_id = db_sweeps.create_sweep(session, tenant="default", request=stored, method="tpe", metric="val_loss",
                                          mode="min", max_trials=TRIALS, max_concurrent=1).id
    go = tmp_path / "go"
    code = f"""
import os
from db.session import make_session_factory
from service import sweeps
factory = make_session_factory(os.environ["NETFIT_DATABASE_URL"])
print("waiting", flush=True)
while not os.path.exists({str(go)!r}):
    pass  # spin, not sleep: both leave this loop within microseconds of the file appearing
sent = sum(sweeps.fill(factory, {sweep_id!r}, lambda job_id, queue: None) for _ in range(10))
print("sent", sent, flush=True)
"""
    askers = [Proc([sys.executable, "-c", code], {"NETFIT_DATABASE_URL": pg_url}, tmp_path / f"asker-{i}.log")
              for i in range(2)]
    try:
        for p in askers:
            wait_until(lambda: "waiting" in p.output() or not p.alive(), timeout=60, what="the askers to start")
        go.touch()
        for p in askers:
            wait_until(lambda: not p.alive(), timeout=60, what="the askers to finish")
        assert sorted(int(p.output().split("sent ")[1]) for p in askers) == [0, 1], [p.output() for p in askers]
        with factory() as session:
            assert [t.trial_number for t in db_sweeps.trials(session, sweep_id)] == [0]
            assert db_sweeps.sweep_for_worker(session, sweep_id).trials_asked == 1
    finally:
        for p in askers:
            p.stop()
        factory.kw["bind"].dispose()
