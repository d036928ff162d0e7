"""`netfit worker --devices all|0,1,...`: one worker process per CUDA device of this machine.

Each child is `python -m worker` with CUDA_VISIBLE_DEVICES set to its one device, so torch in
it sees a single GPU and the registry records that GPU's physical index (worker.registry). The
children consume the gpu queue unless --queues says otherwise. A child that dies is started
again, after a delay that doubles while it keeps dying young, so a worker that cannot start does
not spin. SIGTERM and SIGINT go to every child once (a worker's warm shutdown hands its job
back); the supervisor then waits for them all."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from launch.server import _die_with_parent
from worker.registry import STANDIN_DEVICES

log = logging.getLogger("netfit.devices")

FIRST_DELAY = 2.0  # seconds before a dead child is started again
MAX_DELAY = 60.0  # the cap of the doubling delay
STABLE_SECONDS = 60.0  # a child that lived this long starts the next restart at FIRST_DELAY again
POLL_SECONDS = 0.2


class DeviceError(ValueError):
    """A --devices value this machine cannot honour; its message is the one line the user sees."""


def visible_devices() -> list[str]:
    """The ids to give each child's CUDA_VISIBLE_DEVICES, in torch's device order."""
    standin = os.environ.get(STANDIN_DEVICES)
    if standin:
        if not standin.isdigit():
            raise DeviceError(f"{STANDIN_DEVICES}={standin!r} is not a number of devices")
        return [str(i) for i in range(int(standin))]
    import torch

    count = torch.cuda.device_count()
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is not None:
        # under CUDA_VISIBLE_DEVICES=2,3 torch's devices 0 and 1 are the machine's 2 and 3
        return [d.strip() for d in inherited.split(",") if d.strip()][:count]
    return [str(i) for i in range(count)]


def resolve(spec: str) -> list[str]:
    """--devices's value -> the CUDA_VISIBLE_DEVICES of each child; DeviceError if it cannot be."""
    available = visible_devices()
    if not available:
        import torch

        raise DeviceError(
            f"--devices {spec}: torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no CUDA device "
            "on this machine. Run `netfit worker` without --devices for a CPU worker.")
    if spec.strip() == "all":
        return available
    picked: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part.isdigit():
            raise DeviceError(f"--devices {spec}: '{part}' is not a device index; give `all` or indexes such as 0,1")
        if int(part) >= len(available):
            raise DeviceError(f"--devices {spec}: this machine has {len(available)} CUDA device(s), "
                              f"numbered 0 to {len(available) - 1}")
        if available[int(part)] in picked:
            raise DeviceError(f"--devices {spec}: device {part} is named twice; each device gets one worker")
        picked.append(available[int(part)])
    return picked


@dataclass
class _Child:
    device: str  # its CUDA_VISIBLE_DEVICES
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = FIRST_DELAY
    due: float = 0.0  # when a dead one is started again


def supervise(devices: list[str], queues: list[str] | None = None, loglevel: str = "INFO") -> int:
    """Run one worker per device until SIGTERM/SIGINT; 0 if every child then stopped cleanly."""
    from service.logs import configure_logging

    configure_logging()
    args = [sys.executable, "-m", "worker", f"--queues={','.join(queues or ['gpu'])}", f"--loglevel={loglevel}"]
    children = [_Child(device) for device in devices]
    received: list[int] = []

    def on_signal(sig: int, _frame: object) -> None:
        if not received:
            received.append(sig)  # the loop below passes it on: no child is started after it
        else:  # a second Ctrl-C: the children's own second signal (Celery's cold shutdown)
            _send(children, sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def start(child: _Child) -> None:
        # PCI bus order (unless set): device N is nvidia-smi's N, as the registry reports it
        env = {**os.environ, "CUDA_DEVICE_ORDER": os.environ.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),
               "CUDA_VISIBLE_DEVICES": child.device}
        # its own session: a terminal's Ctrl-C reaches the supervisor, which passes it on once;
        # PDEATHSIG: a supervisor killed outright still stops its workers
        child.process = subprocess.Popen(args, env=env, start_new_session=True, preexec_fn=_die_with_parent)
        child.started = time.monotonic()

    for child in children:
        start(child)
    log.info("netfit worker --devices: %d workers on queues %s: %s", len(children), ",".join(queues or ["gpu"]),
             ", ".join(f"CUDA device {c.device} (pid {c.process.pid})" for c in children if c.process))
    while not received:
        now = time.monotonic()
        for child in children:
            if child.process is None:
                if now >= child.due:
                    start(child)
                    log.info("worker on CUDA device %s started again (pid %d)", child.device, child.process.pid)
                continue
            code = child.process.poll()
            if code is None:
                continue
            lived = now - child.started
            if lived >= STABLE_SECONDS:
                child.delay = FIRST_DELAY
            log.warning("the worker on CUDA device %s (pid %d) exited with status %s after %.0f s; "
                        "starting another in %.0f s", child.device, child.process.pid, code, lived, child.delay)
            child.process, child.due = None, now + child.delay
            child.delay = min(child.delay * 2, MAX_DELAY)
        time.sleep(POLL_SECONDS)

    log.info("stopping %d workers (signal %d): each hands its job back", len(children), received[0])
    _send(children, received[0])
    codes = [child.process.wait() for child in children if child.process is not None]
    clean = (0, -signal.SIGTERM, -signal.SIGINT)
    return 0 if all(code in clean for code in codes) else 1


def _send(children: list[_Child], sig: int) -> None:
    for child in children:
        if child.process is not None and child.process.poll() is None:
            child.process.send_signal(sig)
