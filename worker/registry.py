"""This worker process in the registry (db.workers): registered when it starts, beaten every
NETFIT_HEARTBEAT_SECONDS by a daemon thread, marked stopped when it exits. `GET /v1/workers`,
`/readyz` and a queued job's `waiting` read it; a worker silent for NETFIT_LEASE_SECONDS is gone."""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading

from sqlalchemy.orm import Session, sessionmaker

from db import workers as db_workers
from service.settings import get_settings
from worker.claims import owner_name

log = logging.getLogger("netfit.worker")
FORGET_AFTER_SECONDS = 7 * 24 * 3600  # a gone worker's row is kept this long (the lost-workers count)


# Testing only: NETFIT_STANDIN_DEVICES=N makes `netfit worker --devices` (launch.devices) find N
# CUDA devices on a machine without CUDA; each child then trains on the CPU but registers as the
# device it was given, so the supervisor can be tested where there is no GPU.
STANDIN_DEVICES = "NETFIT_STANDIN_DEVICES"


def device_name() -> str:
    """What this process trains on: cuda:N, N the machine's index of its first visible device
    (a worker of `netfit worker --devices` sees one: torch's cuda:0, nvidia-smi's N), or cpu."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if torch.cuda.is_available():
        return f"cuda:{visible}" if visible.isdigit() else f"cuda:{torch.cuda.current_device()}"
    if os.environ.get(STANDIN_DEVICES) and visible.isdigit():
        return f"cuda:{visible}"
    return "cpu"


def start(factory: sessionmaker[Session], queues: list[str], device: str | None = None) -> threading.Event:
    """Register this process and beat in a daemon thread until the returned event is set (or
    the process exits, which marks it stopped)."""
    settings = get_settings()
    owner = owner_name()  # what the claim writes as a job's lease_owner
    ident = {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(), "queues": list(queues),
             "device": device or device_name()}
    stop_event = threading.Event()
    worker_id: list[str] = []

    def register() -> None:
        with factory() as session:
            worker_id[:] = [db_workers.register(session, **ident)]

    def loop() -> None:
        while True:
            try:
                if not worker_id:
                    register()
                with factory() as session:
                    if not db_workers.beat(session, worker_id[0]):
                        worker_id.clear()  # pruned while we were silent: register again
                    else:  # one indexed DELETE, usually of nothing
                        db_workers.prune(session, older_than=FORGET_AFTER_SECONDS)
            except Exception as exc:  # noqa: BLE001 - the database is away: beat again next period
                log.warning("worker registry: %s", str(exc).splitlines()[0][:200])
            if stop_event.wait(settings.heartbeat_seconds):
                return

    def stopped() -> None:
        stop_event.set()
        if worker_id:
            try:
                with factory() as session:
                    db_workers.stop(session, worker_id[0])
            except Exception:  # noqa: BLE001 - it will be seen as gone after a lease instead
                pass

    try:
        register()  # at once, so that /v1/workers shows it as soon as it consumes
    except Exception as exc:  # noqa: BLE001 - the loop registers it once the database answers
        log.warning("worker registry: %s", str(exc).splitlines()[0][:200])
    atexit.register(stopped)
    threading.Thread(target=loop, name="worker-registry", daemon=True).start()
    return stop_event
