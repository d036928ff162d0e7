"""`python -m bench scale`: the scheduler's database work at 16, 64 and 256 workers, simulated.

No training: each simulated worker is a thread running the worker's real database code against
PostgreSQL — the claim (the policy's pick, FOR UPDATE SKIP LOCKED, then the conditional UPDATE),
the wake-up of a message whose job was not the pick, the job read, the lease thread's cancel
read every second and renewal every NETFIT_HEARTBEAT_SECONDS, one epoch flush per epoch (with
a small resume state and best weights every NETFIT_CHECKPOINT_SECONDS), the finish with its
best/last weights, the registry's beat and a reconciler pass every NETFIT_RECONCILE_SECONDS —
while epochs are sleeps. The broker is an in-process FIFO of job ids (one message per queued
job, as the API sends them).

10 tenants of different weights and priority caps share 5,000 queued jobs (each tenant's count
in proportion to its weight, a tenth of each tenant's at priority -10, the rest at 0: fair share
is measured among tenants competing at one priority; a tier above that only some tenants filled
would take the workers by design, which is what the priority probes show).
While the workers run, a job of priority 50 is submitted now and then; the time until a worker
starts it is measured. Each second the running jobs per tenant are counted for Jain's index of
running/weight: J = (Σx)² / (n Σx²), 1 when every tenant runs exactly its weight's share.

Each worker count runs in a fresh interpreter (`python -m bench.scale --workers N ...`, which
must not load torch) on a copy of one prepared database. The threads share one connection pool
of at most POOL_CAP connections: PostgreSQL here allows 100, shared with other test runs; 256
worker processes of a real deployment would hold a pool each (see docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import functools
import json
import os
import queue
import random
import secrets
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import Report, percentile

WEIGHTS = (1, 1, 1, 1, 2, 2, 2, 4, 6, 8)
MAX_PRIORITY = (10, 10, 10, 10, 10, None, None, None, None, None)  # caps: admission's, not the claim's
# a tenth at -10 (a backfill tier: it waits while priority-0 work does); jobs above 0 are the
# probes: a higher tier that only some tenants filled would take the workers by design, not share them
PRIORITY_MIX = ((0, 0.9), (-10, 0.1))
PROBE_PRIORITY = 50
PROBE_TENANT = "t9"  # uncapped (MAX_PRIORITY): the API would take its priority-50 job
EPOCH_SECONDS = 2.0
EPOCHS = (2, 5)  # a job trains 2..5 epochs
STATE_BYTES = 16 * 1024  # a small model's weights; the resume state is 3x (weights + Adam's moments)
POOL_CAP = 40
GOAL_CLAIM_P99_MS = 100.0
GOAL_JAIN = 0.95
PREEMPT_AFTER_SECONDS = 5.0  # NETFIT_PREEMPT_AFTER_SECONDS in the preemption run (default 60: longer than it)
ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- the prepared database


def _prepare(url: str, jobs: int, seed: int, epochs: tuple[int, int] = EPOCHS) -> None:
    """Tenants and `jobs` queued jobs: the rows, send stamps and "queued" events that
    db.sending.new_queued_job writes, inserted in batches (one at a time took 46 s on the loaded
    machine), then ANALYZE as autovacuum would after such a change."""
    from sqlalchemy import insert, text

    from db.models import Job, JobEvent, JobSend, new_id, utcnow
    from db.session import make_session_factory
    from db.states import EventKind, Status
    from db.tenants import set_tenant
    from tests.conftest import iris_spec

    rng = random.Random(seed)
    factory = make_session_factory(url)
    with factory() as s:
        for i, (weight, cap) in enumerate(zip(WEIGHTS, MAX_PRIORITY)):
            set_tenant(s, f"t{i}", weight=weight, max_priority=cap)
    total = sum(WEIGHTS)
    counts = [round(jobs * w / total) for w in WEIGHTS]
    counts[-1] += jobs - sum(counts)
    order = [f"t{i}" for i, n in enumerate(counts) for _ in range(n)]
    rng.shuffle(order)  # tenants' submissions interleaved, as many users submit
    priorities, mix = [p for p, _ in PRIORITY_MIX], [w for _, w in PRIORITY_MIX]
    rows, sends, events = [], [], []
    for tenant in order:
        spec = iris_spec(epochs=rng.randint(*epochs))
        spec["priority"] = rng.choices(priorities, mix)[0]
        job_id = new_id()
        rows.append({"id": job_id, "tenant": tenant, "spec": spec, "epochs": spec["training"]["epochs"], "queue": "cpu",
                     "status": Status.QUEUED, "name": spec.get("name"),
                     "priority": spec["priority"], "created_at": utcnow()})
        sends.append({"job_id": job_id, "sent_at": utcnow()})
        events.append({"job_id": job_id, "kind": str(EventKind.STATUS), "data": {"status": str(Status.QUEUED)}})
    with factory() as s:
        for k in range(0, len(rows), 1000):
            s.execute(insert(Job), rows[k:k + 1000])
            s.execute(insert(JobSend), sends[k:k + 1000])
            s.execute(insert(JobEvent), events[k:k + 1000])
        s.commit()
    engine = factory.kw["bind"]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()


def _admin() -> Any:
    from sqlalchemy import create_engine

    from tests.conftest import PG_ADMIN_URL

    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def _copy_of(url: str) -> str:
    """A new database copied from the prepared one (CREATE DATABASE ... TEMPLATE: seconds, not minutes)."""
    from sqlalchemy import text

    template = url.rsplit("/", 1)[1]
    name = f"netfit_scale_{secrets.token_hex(4)}"
    engine = _admin()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    engine.dispose()
    return f"{url.rsplit('/', 1)[0]}/{name}"


def _drop(url: str) -> None:
    from sqlalchemy import text

    engine = _admin()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    engine.dispose()


# --------------------------------------------------------------------------- one simulated worker


@dataclass
class Tally:
    """What the workers measured, appended from many threads (list.append is atomic in CPython)."""

    claims: list[float]
    flushes: list[float]
    epochs: list[float]  # each epoch's wall time, sleep included: EPOCH_SECONDS when the database keeps up
    errors: list[str]
    wakes: list[int]
    finished: list[int]
    resumed: list[int]  # claims of a job whose lease expired: its worker's renewal came too late
    preempted: list[int]  # jobs handed back at an epoch end for a higher-priority one (db.preemption)


class SimWorker(threading.Thread):
    """One worker process's database work: its training thread is this thread (claim, flushes,
    finish, and the registry's beat between epochs); the lease thread (worker.lease.Lease) and the
    reconciler thread (worker.reconciler.start_thread) are the real ones, one each per worker, and
    so are the claim (worker.claims), the flush's transaction and the release (worker.writes)."""

    def __init__(self, index: int, factory: Any, broker: queue.Queue[str], stop: threading.Event, tally: Tally,
                 settings: Any, epoch_seconds: float):
        super().__init__(name=f"sim-{index}", daemon=True)
        self.owner = f"sim-{index}:{os.getpid()}"
        self.factory, self.broker, self.stop_event, self.tally = factory, broker, stop, tally
        self.settings, self.epoch_seconds = settings, epoch_seconds
        self.worker_id = ""
        self.beat_at = time.monotonic() + random.Random(index).uniform(0, settings.heartbeat_seconds)

    def send(self, job_id: str, _queue: str) -> None:
        self.broker.put(job_id)

    def beat(self) -> None:
        """worker.registry's beat (a thread there; a few ms here, between epochs)."""
        from db import workers as db_workers

        if time.monotonic() >= self.beat_at:
            self.beat_at = time.monotonic() + self.settings.heartbeat_seconds
            with self.factory() as s:
                db_workers.beat(s, self.worker_id)
                db_workers.prune(s, older_than=7 * 24 * 3600)

    def run(self) -> None:
        from db import workers as db_workers
        from worker.reconciler import start_thread

        with self.factory() as s:
            self.worker_id = db_workers.register(s, owner=self.owner, host="sim", pid=os.getpid(), queues=["cpu"],
                                                 device="cpu")
        reconciler = start_thread(self.factory, self.send)
        try:
            while not self.stop_event.is_set():
                try:
                    self.beat()
                    try:
                        message = self.broker.get(timeout=0.5)
                    except queue.Empty:
                        continue
                    self.one_message(message)
                except Exception as exc:  # noqa: BLE001 - counted and shown: a worker goes on, as a real one does
                    self.tally.errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        finally:
            reconciler.set()

    def one_message(self, message: str) -> None:
        from db import attempts as db_attempts
        from db.epochs import rewind
        from worker.claims import claim, wake
        from worker.lease import Lease

        began = time.perf_counter()
        with self.factory() as s:  # worker.runner.run's claim, the real one
            claimed = claim(s, message, self.owner, self.settings)
        self.tally.claims.append(time.perf_counter() - began)
        if claimed is None:
            return
        job_id, attempt = claimed
        if job_id != message and wake(self.factory, message, self.send):  # the message's job still waits
            self.tally.wakes.append(1)
        with self.factory() as s:  # worker.runner.load_job's read
            epochs = db_attempts.job_for_worker(s, job_id).epochs
        after = 0
        if attempt > 1:  # worker.runner.resume_from: a lost attempt's later epochs dropped, then on from its state
            with self.factory() as s:
                after = db_attempts.resume_epoch(s, job_id)
                rewind(s, job_id, attempt, after, None, None)
            self.tally.resumed.append(1)
        # the real lease thread: a cancel read every second, the renewal every NETFIT_HEARTBEAT_SECONDS
        self.lease = Lease(self.factory, {job_id: attempt})
        self.lease.start()
        try:
            self.train(job_id, attempt, epochs, after)
        finally:
            self.lease.stop()

    def train(self, job_id: str, attempt: int, epochs: int, after: int) -> None:
        from db import attempts as db_attempts
        from db.epochs import EpochRecord, Flush
        from db.states import Status
        from worker.writes import hand_back, write_flushes

        blob = os.urandom(STATE_BYTES)
        saved_at = time.monotonic()
        metrics: dict[str, Any] = {}
        for epoch in range(after + 1, epochs + 1):
            epoch_began = time.monotonic()
            if self.stop_event.wait(self.epoch_seconds):
                return
            metrics = {"epoch": epoch, "seconds": self.epoch_seconds, "train_loss": 1.0 / epoch, "val_loss": 1.1 / epoch}
            # worker.persist: every epoch flushed (NETFIT_FLUSH_SECONDS is shorter than an epoch here),
            # the resume state and best weights every NETFIT_CHECKPOINT_SECONDS
            checkpoint = time.monotonic() - saved_at >= self.settings.checkpoint_seconds or epoch == epochs
            # worker.persist: a preemption request read at the epoch's end; that epoch saves its state
            by = self.lease.preempted_by([job_id]) if preemption_ready() and epoch < epochs else None
            checkpoint = checkpoint or by is not None
            began = time.perf_counter()
            write_flushes(self.factory, [Flush(job_id, attempt, [EpochRecord(metrics)],
                                               resume=(epoch, blob * 3) if checkpoint else None,
                                               best=(epoch, metrics, blob) if checkpoint else None)],
                          self.lease.mark_lost)
            self.tally.flushes.append(time.perf_counter() - began)
            if self.lease.is_lost(job_id):  # worker.runner.superseded: another worker owns it now
                self.tally.errors.append(f"Fenced: job {job_id}: attempt {attempt} was superseded")
                return
            if checkpoint:
                saved_at = time.monotonic()
            if by is not None:  # worker.runner.conclude and release: this worker then claims `by`
                self.lease.leave(job_id)
                hand_back(self.factory, self.lease, job_id, attempt, "cpu", self.send, after_epoch=epoch,
                          preempted_by=by)
                self.tally.preempted.append(1)
                return
            self.beat()
            self.tally.epochs.append(time.monotonic() - epoch_began)
        self.lease.leave(job_id)  # worker.runner.conclude: not renewed once it ends
        with self.factory() as s:
            db_attempts.finish(s, job_id, attempt, status=Status.SUCCEEDED, stop_reason="max_epochs",
                               epochs_completed=epochs, best_epoch=epochs, best_metrics=metrics,
                               checkpoints=[("best", epochs, metrics, blob), ("last", epochs, metrics, blob)])
        self.tally.finished.append(1)


# --------------------------------------------------------------------------- one run (the child process)


def jain(x: list[float]) -> float:
    """Jain's fairness index of x: 1 when all equal, 1/n when one has everything."""
    total, squares = sum(x), sum(v * v for v in x)
    return 1.0 if squares == 0 else total * total / (len(x) * squares)


def best_jain(workers: int) -> float:
    """About the highest J whole workers allow (few workers cannot match weights 1..8): the policy's
    greedy split, then single moves between tenants while one raises J."""
    running = [0] * len(WEIGHTS)
    for _ in range(workers):
        running[min(range(len(WEIGHTS)), key=lambda t: (running[t] + 1) / WEIGHTS[t])] += 1
    score = lambda r: jain([n / w for n, w in zip(r, WEIGHTS)])
    improved = True
    while improved:
        improved = False
        for a in range(len(WEIGHTS)):
            for b in range(len(WEIGHTS)):
                if a != b and running[a] > 0:
                    moved = list(running)
                    moved[a] -= 1
                    moved[b] += 1
                    if score(moved) > score(running) + 1e-12:
                        running, improved = moved, True
    return score(running)


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU seconds so far of each process (PostgreSQL's backends: readable in /proc by anyone)."""
    import psutil

    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            seconds[pid] = times.user + times.system
        except psutil.Error:
            pass
    return seconds


def _busy_seconds() -> float:
    """The machine's CPU seconds not idle, all cores."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _all_started(factory: Any, job_ids: list[str]) -> bool:
    from sqlalchemy import func, select

    from db.models import Job

    with factory() as s:
        return s.scalar(select(func.count()).where(Job.id.in_(job_ids), Job.started_at.is_not(None))) == len(job_ids)


def simulate(url: str, workers: int, seconds: float, epoch_seconds: float, probes: int,
             probe_epochs: int = EPOCHS[0]) -> dict[str, Any]:
    """Run `workers` simulated workers on `url` for `seconds`; every figure as a dict."""
    from sqlalchemy import create_engine, select, text

    from db.models import Job
    from db.models import utcnow
    from db.sending import new_queued_job
    from db.session import make_session_factory
    from service.settings import get_settings
    from tests.conftest import iris_spec

    settings = get_settings()
    pool = min(workers, POOL_CAP)
    # as db.session.make_engine, with a pool the threads share: pre_ping costs a round trip per checkout
    engine = create_engine(url, pool_pre_ping=True, pool_size=pool, max_overflow=0, pool_timeout=120)
    factory = make_session_factory(engine)
    side = make_session_factory(create_engine(url, pool_size=2, max_overflow=0))  # sampler and prober
    dbname = url.rsplit("/", 1)[1]

    broker: queue.Queue[str] = queue.Queue()
    with side() as s:
        for (job_id,) in s.execute(select(Job.id).where(Job.status == "queued").order_by(Job.created_at, Job.id)):
            broker.put(job_id)
    queued_at_start = broker.qsize()
    with side() as s:  # their messages were sent just now: the reconcilers re-send none before requeue_seconds
        s.execute(text("INSERT INTO job_sends (job_id, sent_at) SELECT id, now() FROM jobs WHERE status = 'queued' "
                       "ON CONFLICT (job_id) DO UPDATE SET sent_at = excluded.sent_at"))
        s.commit()

    tally = Tally([], [], [], [], [], [], [], [])
    stop = threading.Event()
    threads = [SimWorker(i, factory, broker, stop, tally, settings, epoch_seconds) for i in range(workers)]
    samples: list[dict[str, Any]] = []
    probe_ids: list[tuple[str, Any]] = []
    began = time.monotonic()
    warmup = seconds * 0.3  # the first claims fill the workers; fairness and rates are read after

    def stats() -> tuple[int, list[int]]:
        with side() as s:
            xacts = s.execute(text("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :d"),
                              {"d": dbname}).scalar()
            pids = list(s.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": dbname}))
        return int(xacts), pids

    window: dict[str, Any] = {}

    def sampler() -> None:
        probe_times = [began + seconds * (0.35 + 0.5 * k / max(1, probes)) for k in range(probes)]
        next_sample = began + 1.0
        while not stop.is_set():
            now = time.monotonic()
            if probe_times and now >= probe_times[0]:
                probe_times.pop(0)
                with side() as s:  # the API's submit: a queued job stamped as sent, then its message
                    spec = iris_spec(epochs=probe_epochs)
                    spec["priority"] = PROBE_PRIORITY
                    job = new_queued_job(s, tenant=PROBE_TENANT, spec=spec, queue="cpu")
                    s.commit()
                    probe_ids.append((job.id, utcnow()))
                broker.put(job.id)
            if now >= next_sample:
                next_sample += 1.0
                with side() as s:
                    # the shared tier only: a probe's worker is priority's, not fair share's
                    rows = dict(s.execute(text("SELECT tenant, count(*) FROM jobs WHERE status = 'running' "
                                               "AND priority < :p GROUP BY tenant"), {"p": PROBE_PRIORITY}).all())
                samples.append({"t": now - began, "running": [int(rows.get(f"t{i}", 0)) for i in range(len(WEIGHTS))]})
                if "xacts" not in window and now - began >= warmup:
                    xacts, pids = stats()
                    window.update(xacts=xacts, t=now, pg_cpu=_cpu_seconds(pids), busy=_busy_seconds(),
                                  own_cpu=sum(os.times()[:2]), counts={k: len(getattr(tally, k)) for k in
                                                                       ("claims", "flushes", "epochs", "finished")})
            stop.wait(max(0.0, min([next_sample] + probe_times[:1]) - time.monotonic()))

    load_before = os.getloadavg()
    for t in threads:
        t.start()
    sampling = threading.Thread(target=sampler, name="sampler", daemon=True)
    sampling.start()
    time.sleep(max(0.0, began + seconds - time.monotonic()))
    xacts, pids = stats()
    end = time.monotonic()
    pg_cpu = _cpu_seconds(pids)
    own_cpu = sum(os.times()[:2])
    busy = _busy_seconds()
    counted = {k: len(getattr(tally, k)) for k in ("claims", "flushes", "epochs", "finished")}
    # a probe sent late in a short run may wait past its end for the next job to end (jobs that
    # started together end together): its start is waited for, up to the longest job, not taken
    # as never (the rates and fairness above are the run's own; later samples are left out)
    deadline = time.monotonic() + EPOCHS[-1] * epoch_seconds + 2
    while time.monotonic() < deadline and not _all_started(side, [j for j, _ in probe_ids]):
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    sampling.join(timeout=10)

    with side() as s:
        started = dict(s.execute(select(Job.id, Job.started_at).where(Job.id.in_([j for j, _ in probe_ids]))).all())
    waits = [(started[j] - at).total_seconds() if started.get(j) else float("inf") for j, at in probe_ids]
    steady = [x for x in samples if warmup <= x["t"] <= seconds + 0.5]
    indices = [jain([r / w for r, w in zip(x["running"], WEIGHTS)]) for x in steady if any(x["running"])]
    span = end - window["t"] if window else float("nan")
    engine.dispose()
    side.kw["bind"].dispose()
    ms = lambda values: (percentile(values, 50) * 1000, percentile(values, 99) * 1000) if values else (float("nan"),) * 2
    late = [x for x in tally.epochs[window["counts"]["epochs"]:]] if window else []
    return {
        "workers": workers, "pool": pool, "seconds": seconds, "epoch_seconds": epoch_seconds,
        "queued_at_start": queued_at_start,
        "claim_ms": ms(tally.claims), "flush_ms": ms(tally.flushes),
        "claims": len(tally.claims), "wakes": len(tally.wakes), "finished": len(tally.finished),
        "resumed": len(tally.resumed), "preempted": len(tally.preempted),
        "tps": (xacts - window["xacts"]) / span if window else float("nan"),
        "claims_per_s": (counted["claims"] - window["counts"]["claims"]) / span if window else float("nan"),
        "flushes_per_s": (counted["flushes"] - window["counts"]["flushes"]) / span if window else float("nan"),
        "epoch_late": statistics.mean(late) / epoch_seconds if late else float("nan"),
        "jain_mean": statistics.mean(indices) if indices else float("nan"),
        "jain_min": min(indices) if indices else float("nan"), "jain_best": best_jain(workers),
        "busy": statistics.mean(sum(x["running"]) for x in steady) / workers if steady else float("nan"),
        "priority_start_s": waits,
        "own_cores": (own_cpu - window["own_cpu"]) / span if window else float("nan"),
        # a backend opened after the window began counts from its start
        "pg_cores": sum(v - window["pg_cpu"].get(p, 0.0) for p, v in pg_cpu.items()) / span if window else float("nan"),
        "machine_cores": (busy - window["busy"]) / span if window else float("nan"), "cores": os.cpu_count(), "load_before": load_before,
        "errors": len(tally.errors), "error_examples": sorted(set(tally.errors))[:3],
        "torch_loaded": "torch" in sys.modules, "samples": samples,
    }


# --------------------------------------------------------------------------- the section


def _child(url: str, workers: int, seconds: float, epoch_seconds: float, probes: int, probe_epochs: int = EPOCHS[0],
           env: dict[str, str] | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.scale", "--url", url, "--workers", str(workers), "--seconds",
               str(seconds), "--epoch-seconds", str(epoch_seconds), "--probes", str(probes),
               "--probe-epochs", str(probe_epochs)]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, capture_output=True,
                          text=True, timeout=seconds + 300)
    if done.returncode != 0:
        raise RuntimeError(f"the simulation of {workers} workers failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@functools.cache
def preemption_ready() -> bool:
    """Whether the tree has preemption (issue 25 part 2) as this simulation drives it: the lease
    reads requests (Lease.preempted_by) and a release names the job made way for."""
    import inspect

    from db import attempts as db_attempts
    from worker.lease import Lease

    return hasattr(Lease, "preempted_by") and "preempted_by" in inspect.signature(db_attempts.release).parameters


def _pick_alone(url: str, times: int = 15) -> float:
    """The policy's pick (db.schedule.pick_for) with nothing else running, rolled back: its p50 in
    seconds. It orders every claimable job of the queue, so it grows with the queue."""
    from sqlalchemy import select

    from db import attempts as db_attempts
    from db import schedule
    from db.models import Job, utcnow
    from db.session import make_session_factory

    factory = make_session_factory(url)
    took = []
    with factory() as s:
        job_id = s.scalar(select(Job.id).where(Job.status == "queued").limit(1))
        for _ in range(times):
            began = time.perf_counter()
            schedule.pick_for(s, job_id, db_attempts.claimable(utcnow(), 3))
            took.append(time.perf_counter() - began)
            s.rollback()
    factory.kw["bind"].dispose()
    return statistics.median(took)


def _reconciler_passes(url: str, stale: int) -> tuple[float, float, int]:
    """(a quiet pass's seconds, seconds of a pass once `stale` queued jobs' stamps are older than
    NETFIT_REQUEUE_SECONDS, messages that pass sent): worker.reconciler.reconcile_once alone. It
    re-sends and stamps each job in its own commit, so the pass grows with the backlog: the
    full run times 1,000 of them (5,000 took minutes on the loaded machine)."""
    from sqlalchemy import text

    from db.session import make_session_factory
    from service.settings import get_settings
    from worker.reconciler import reconcile_once

    factory = make_session_factory(url)
    sent: list[str] = []
    with factory() as s:
        s.execute(text("INSERT INTO job_sends (job_id, sent_at) SELECT id, now() FROM jobs WHERE status = 'queued' "
                       "ON CONFLICT (job_id) DO UPDATE SET sent_at = excluded.sent_at"))
        s.commit()
    began = time.perf_counter()
    reconcile_once(factory, lambda job_id, _queue: sent.append(job_id))
    quiet = time.perf_counter() - began
    with factory() as s:  # the backlog has waited longer than requeue_seconds since its messages
        s.execute(text("UPDATE job_sends SET sent_at = now() - make_interval(secs => :a) WHERE job_id IN "
                       "(SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at LIMIT :n)"),
                  {"a": get_settings().requeue_seconds + 1, "n": stale})
        s.commit()
    began = time.perf_counter()
    reconcile_once(factory, lambda job_id, _queue: sent.append(job_id))
    backlog = time.perf_counter() - began
    factory.kw["bind"].dispose()
    return quiet, backlog, len(sent)


def _preemption(report: Report, prepared: str, seconds: float) -> None:
    """16 workers busy with jobs far longer than the run, so none frees up: a priority-50 job
    starts only through preemption (the reconcilers' pass asks the lowest-priority running job to
    stop at its next epoch end; its worker saves the epoch, hands the job back and claims again)."""
    from sqlalchemy import create_engine, text

    workers = 16
    url = _copy_of(prepared)
    try:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE jobs SET epochs = 1000 WHERE status = 'queued'"))
        engine.dispose()
        # the priority jobs are long too: the second must preempt, not take the first one's worker
        r = _child(url, workers, seconds, EPOCH_SECONDS, probes=2, probe_epochs=1000,
                   env={"NETFIT_PREEMPT_AFTER_SECONDS": str(PREEMPT_AFTER_SECONDS)})
    finally:
        _drop(url)
    report.record("run_preemption", r)
    report.note(f"  -- preemption: {workers} workers on 1,000-epoch jobs, NETFIT_PREEMPT_AFTER_SECONDS="
                f"{PREEMPT_AFTER_SECONDS:g}; load average {r['load_before'][0]:.2f} when it began")
    if r["errors"]:
        report.note(f"  !! {r['errors']} errors in the simulated workers, e.g. {r['error_examples']}")
    report.figure("preempt_start_s", max(r["priority_start_s"] or [float("inf")]), "s", ("<=", EPOCH_SECONDS + 2),
                  label=f"every worker busy: priority-{PROBE_PRIORITY} submit to start, worst of "
                        f"{len(r['priority_start_s'])}")
    report.note(f"     jobs preempted {r['preempted']} (one per priority job: {len(r['priority_start_s'])})")


def run(report: Report, *, quick: bool = False) -> None:
    from tests.conftest import fresh_pg_database

    counts = (16,) if quick else (16, 64, 256)
    jobs = 300 if quick else 5000
    seconds = 8.0 if quick else 40.0
    report.begin("scale", f"{jobs} queued jobs of 10 tenants, simulated workers on PostgreSQL "
                          f"({EPOCH_SECONDS:g} s epochs, {EPOCHS[0]}-{EPOCHS[1]} per job, {seconds:g} s per count)")
    top = counts[-1]
    with fresh_pg_database() as prepared:
        began = time.monotonic()
        _prepare(prepared, jobs, seed=25)
        report.note(f"  {jobs} jobs prepared in {time.monotonic() - began:.1f} s; load average: "
                    f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        for workers in counts:
            url = _copy_of(prepared)
            try:
                r = _child(url, workers, seconds, EPOCH_SECONDS, probes=2 if quick else 3)
            finally:
                _drop(url)
            report.record(f"run_{workers}", r)
            goal = workers == top
            report.note(f"  -- {workers} workers (the threads share {r['pool']} connections; load average "
                        f"{r['load_before'][0]:.2f} when it began; simulation loaded torch: "
                        f"{'yes' if r['torch_loaded'] else 'no'})")
            if r["errors"]:  # e.g. Fenced: a lease expired while its renewal waited, and another worker took the job
                report.note(f"  !! {r['errors']} errors in the simulated workers, e.g. {r['error_examples']}")
            report.figure(f"claim_p50_ms_{workers}", r["claim_ms"][0], "ms", label=f"{workers} workers: claim p50")
            report.figure(f"claim_p99_ms_{workers}", r["claim_ms"][1], "ms",
                          ("<=", GOAL_CLAIM_P99_MS) if goal else None, label=f"{workers} workers: claim p99")
            report.figure(f"flush_p50_ms_{workers}", r["flush_ms"][0], "ms", label=f"{workers} workers: epoch flush p50")
            report.figure(f"flush_p99_ms_{workers}", r["flush_ms"][1], "ms", label=f"{workers} workers: epoch flush p99")
            report.figure(f"tps_{workers}", r["tps"], "txn/s", label=f"{workers} workers: PostgreSQL transactions/s")
            report.figure(f"jain_mean_{workers}", r["jain_mean"], "", (">=", GOAL_JAIN) if goal else None,
                          label=f"{workers} workers: Jain's index, mean (whole workers allow {r['jain_best']:.3f})")
            report.figure(f"jain_min_{workers}", r["jain_min"], "", label=f"{workers} workers: Jain's index, min")
            report.figure(f"priority_start_s_{workers}", max(r["priority_start_s"] or [float("inf")]), "s",
                          ("<=", EPOCH_SECONDS + 2) if goal else None,
                          label=f"{workers} workers: priority-{PROBE_PRIORITY} submit to start, worst of "
                                f"{len(r['priority_start_s'])}")
            report.figure(f"busy_{workers}", r["busy"], "", label=f"{workers} workers: share of workers training")
            report.figure(f"epoch_late_{workers}", r["epoch_late"], "x",
                          label=f"{workers} workers: an epoch's wall time / its {EPOCH_SECONDS:g} s (1: DB kept up)")
            report.note(f"     claims {r['claims_per_s']:.1f}/s, flushes {r['flushes_per_s']:.1f}/s, wake-ups "
                        f"{r['wakes']}, jobs finished {r['finished']}, taken back after an expired lease {r['resumed']}; CPU cores busy: this process "
                        f"{r['own_cores']:.2f} (the GIL allows one for Python), PostgreSQL {r['pg_cores']:.2f}, "
                        f"machine {r['machine_cores']:.2f} of {r['cores']}")
        if preemption_ready():
            _preemption(report, prepared, seconds=20.0 if quick else 30.0)
        url = _copy_of(prepared)
        try:
            alone = _pick_alone(url)
            quiet, backlog, sent = _reconciler_passes(url, stale=min(jobs, 1000))
        finally:
            _drop(url)
    report.figure("pick_alone_ms", alone * 1000, "ms",
                  label=f"the policy's pick alone, {jobs} queued, nothing else running: p50")
    report.figure("reconcile_quiet_ms", quiet * 1000, "ms", label="one reconciler pass, nothing to re-send")
    report.figure("reconcile_backlog_s", backlog, "s",
                  label=f"one reconciler pass re-sending {sent} queued jobs older than requeue_seconds")
    if not preemption_ready():
        report.note("  preemption (issue 25 part 2) is pending: the priority figure is the time until the next free "
                    "worker takes the job ahead of the whole queue (every worker was busy)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description="one simulated run (bench scale's child)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--epoch-seconds", type=float, default=EPOCH_SECONDS)
    parser.add_argument("--probes", type=int, default=3)
    parser.add_argument("--probe-epochs", type=int, default=EPOCHS[0])
    args = parser.parse_args(argv)
    result = simulate(args.url, args.workers, args.seconds, args.epoch_seconds, args.probes, args.probe_epochs)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
