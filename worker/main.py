"""`run_worker()`: a Celery worker that trains, one job per process.

The solo pool runs the task in the worker's main process: torch is imported once, CUDA is
initialised in the process that uses it (no fork after CUDA init), and one process trains
one job at a time; a thread beside it runs the reconciler (worker.reconciler). Scale by running more worker processes (`concurrency` starts that many).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys


def hardware_queues() -> str:
    import torch

    return "gpu,cpu" if torch.cuda.is_available() else "cpu"


def run_worker(queues: str | list[str] | None = None, concurrency: int = 1, loglevel: str = "INFO") -> None:
    if isinstance(queues, (list, tuple)):
        queues = ",".join(queues)
    if concurrency > 1:
        return _run_many(queues, concurrency, loglevel)
    queues = queues or hardware_queues()
    import worker.tasks  # registers the tasks; imports torch and the engine once
    from service.queue import app, enqueue
    from worker.database import session_factory
    from worker import registry
    from worker.reconciler import reconcile_logged, start_thread

    try:
        worker.tasks.warm_up()
    except Exception as exc:  # noqa: BLE001 - a slower first job is not a reason to refuse work
        logging.getLogger("netfit.worker").warning("warm-up failed: %s", exc)
    # every worker also reconciles (worker.reconciler says why): a dead worker's job is taken
    # back wherever netfit runs, with no other process to start. One pass before the first
    # message: a pass beside this worker's first claim holds the lost job's row, which the
    # claim's pick skips (SKIP LOCKED), so a fresh job would start before the resumed one
    reconcile_logged(session_factory(), enqueue)
    start_thread(session_factory(), enqueue)
    registry.start(session_factory(), queues.split(","))  # GET /v1/workers, /readyz, a job's `waiting`

    app.worker_main([
        "worker", "--pool=solo", "--concurrency=1", f"--queues={queues}", f"--loglevel={loglevel}",
        f"--hostname=netfit-{os.getpid()}@%h",
        # no gossip/mingle/heartbeat: workers never talk to each other; faster start
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ])


def _run_many(queues: str | None, n: int, loglevel: str) -> None:
    """n single-job worker processes; SIGTERM/SIGINT are passed on and waited for."""
    args = [sys.executable, "-m", "worker", f"--loglevel={loglevel}"] + ([f"--queues={queues}"] if queues else [])
    children = [subprocess.Popen(args) for _ in range(n)]

    def forward(sig: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    sys.exit(max(codes))


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m worker", description=(
        "Run a netfit Celery worker (solo pool: one job per process). Reads NETFIT_DATABASE_URL "
        "and NETFIT_BROKER_URL."))
    parser.add_argument("--queues", "-Q", help="comma-separated: cpu, gpu (default: gpu,cpu with CUDA, else cpu)")
    parser.add_argument("--concurrency", "-c", type=int, default=1, help="worker processes to run (default 1)")
    parser.add_argument("--loglevel", "-l", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_worker(args.queues, args.concurrency, args.loglevel)
