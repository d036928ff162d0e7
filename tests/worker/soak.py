"""Soak test (not collected by pytest): many short jobs while workers are killed at random.

    .venv/bin/python -m tests.worker.soak --jobs 60 --workers 4 --faults 200 --interval 1.5 \
        --stop-share 0.75 --term-share 0.05

Uses a fresh PostgreSQL database and a Redis database index like the tests do, N
`python -m worker` processes, and the reconciler in this process. Every --interval seconds
it hits a worker that holds a running job: SIGKILL, SIGTERM (--term-share) or SIGSTOP
(--stop-share; SIGCONT after 1.5 leases, so it wakes up fenced if another worker took
over). Exited workers are replaced. At the end it reports jobs lost (not succeeded) and
jobs whose epochs are not exactly 1..N once each. NETFIT_MAX_ATTEMPTS is raised so that
repeated faults never exhaust a job. On a small machine a replacement worker takes many
seconds to start, which bounds how fast SIGKILL/SIGTERM faults can come; SIGSTOP needs none.
"""

from __future__ import annotations

import argparse
import random
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from db import jobs as db_jobs
from db.models import EpochMetric, Job
from db.session import make_session_factory
from tests.conftest import Proc, claimed_redis_db, fresh_pg_database, iris_spec, service_env, start_worker_process
from service.queue import create_celery, enqueue
from worker.reconciler import start_thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--faults", type=int, default=200, help="stop injecting after this many")
    parser.add_argument("--fault-seconds", type=float, default=900, help="...or after this long")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between faults")
    parser.add_argument("--term-share", type=float, default=0.2, help="share of faults that are SIGTERM")
    parser.add_argument("--stop-share", type=float, default=0.3, help="share of faults that are SIGSTOP")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="netfit-soak-"))
    rng = random.Random(0)

    with fresh_pg_database() as db_url, claimed_redis_db() as broker_url:
        env = service_env(db_url, broker_url, NETFIT_MAX_ATTEMPTS="1000")
        frozen_for = 1.5 * float(env["NETFIT_LEASE_SECONDS"])  # past its lease: another worker may take over
        factory = make_session_factory(db_url)
        celery = create_celery(broker_url)
        send = lambda job_id, queue: enqueue(job_id, queue, celery)  # noqa: E731
        stop_reconciler = start_thread(factory, send, interval=0.5, requeue_after=3.0, max_attempts=1000)
        started = 0

        def new_worker() -> Proc:
            nonlocal started
            started += 1
            return start_worker_process(env, logs / f"worker-{started}.log", wait=False)

        workers = [new_worker() for _ in range(args.workers)]
        ids = []
        for i in range(args.jobs):
            with factory() as s:
                spec = iris_spec(epochs=rng.randint(5, 25), batch_size=16, seed=i)
                ids.append(db_jobs.create_job(s, tenant="default", spec=spec, summary=None, queue="cpu").id)
            send(ids[-1], "cpu")

        faults: Counter[str] = Counter()
        frozen: dict[int, tuple[Proc, float]] = {}  # pid -> (worker, when to SIGCONT it)
        began = last_report = time.monotonic()
        injecting = True
        try:
            while time.monotonic() - began < args.timeout:
                with factory() as s:
                    pending = s.scalar(select(func.count()).where(Job.id.in_(ids), Job.status.in_(("queued", "running"))))
                    owners = [o for (o,) in s.execute(select(Job.lease_owner).where(Job.id.in_(ids), Job.status == "running"))]
                if not pending:
                    break
                injecting = injecting and sum(faults.values()) < args.faults and time.monotonic() - began < args.fault_seconds
                if time.monotonic() - last_report > 30:
                    last_report = time.monotonic()
                    print(f"{time.monotonic() - began:.0f}s: {pending} jobs pending, faults {dict(faults)}", flush=True)
                for pid, (proc, wake_at) in list(frozen.items()):
                    if time.monotonic() >= wake_at:
                        proc.signal(signal.SIGCONT)
                        del frozen[pid]
                if injecting and owners:
                    pids = {int(o.rsplit(":", 1)[1]) for o in owners if o}
                    victims = [w for w in workers if w.pid in pids and w.alive() and w.pid not in frozen]
                    if victims:
                        victim = rng.choice(victims)
                        draw = rng.random()
                        kind = ("SIGTERM" if draw < args.term_share else
                                "SIGSTOP" if draw < args.term_share + args.stop_share else "SIGKILL")
                        victim.signal(getattr(signal, kind))
                        if kind == "SIGSTOP":
                            frozen[victim.pid] = (victim, time.monotonic() + frozen_for)
                        faults[kind] += 1
                workers = [w for w in workers if w.alive()]
                workers += [new_worker() for _ in range(args.workers - len(workers))]
                time.sleep(args.interval)  # pacing of fault injection, not synchronisation
        finally:
            stop_reconciler.set()
            for w in workers:
                w.signal(signal.SIGCONT)
                w.stop()

        with factory() as s:
            statuses = Counter(s.scalars(select(Job.status).where(Job.id.in_(ids))))
            attempts = Counter(s.scalars(select(Job.attempts).where(Job.id.in_(ids))))
            bad_epochs = 0
            for job in s.scalars(select(Job).where(Job.id.in_(ids))):
                recorded = list(s.scalars(select(EpochMetric.epoch).where(EpochMetric.job_id == job.id).order_by(EpochMetric.epoch)))
                bad_epochs += recorded != list(range(1, job.epochs_completed + 1))
        factory.kw["bind"].dispose()
    print(f"faults injected: {dict(faults)} (total {sum(faults.values())}); worker processes started: {started}")
    print(f"jobs: {args.jobs}; statuses: {dict(statuses)}; lost (not succeeded): {args.jobs - statuses['succeeded']}")
    print(f"jobs whose epochs are not exactly 1..N once each: {bad_epochs}; attempts per job: {dict(sorted(attempts.items()))}")
    print(f"took {time.monotonic() - began:.0f}s; worker logs in {logs}")


if __name__ == "__main__":
    main()
