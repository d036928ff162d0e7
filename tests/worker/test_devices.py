"""`netfit worker --devices`: one worker process per GPU, each registered in /v1/workers with its
device, started again if it dies, all stopped by one SIGTERM; without CUDA a one-line error.
This machine has no GPU: NETFIT_STANDIN_DEVICES=2 makes the supervisor find two, whose workers
train on the CPU but register as the GPU they were given. On a GPU machine bench/gpu.sh runs
the `cuda` test here: the real devices, on SQLite and the file broker (no servers needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.api.conftest import make_client
from tests.conftest import ROOT, Proc, _python_env, service_env, wait_until

NETFIT = [sys.executable, "-c", "import sys; from netfit.cli import main; sys.exit(main())"]


def start_devices(env: dict[str, str], log: Path, devices: str = "all") -> Proc:
    return Proc([*NETFIT, "worker", "--devices", devices], env, log)


def live(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def one_worker_per_device(client: Any, supervisor: Proc, devices: set[str]) -> dict[str, dict[str, Any]]:
    """/v1/workers once every device has its worker: {device: worker}; each a child of the supervisor."""
    def listed() -> dict[str, dict[str, Any]] | None:
        assert supervisor.alive(), supervisor.output()[-3000:]
        workers = client.get("/v1/workers").json()["items"]
        return {w["device"]: w for w in workers} if len(workers) == len(devices) else None

    by_device = wait_until(listed, timeout=180, what="one worker per device in /v1/workers")
    assert set(by_device) == devices
    assert all(parent_of(w["pid"]) == supervisor.pid and w["queues"] == ["gpu"] for w in by_device.values())
    return by_device


def stop_all(client: Any, supervisor: Proc, pids: list[int]) -> None:
    """One SIGTERM to the supervisor: every worker stops (and leaves /v1/workers), then it does."""
    supervisor.signal(signal.SIGTERM)
    wait_until(lambda: not supervisor.alive(), timeout=60, what="the supervisor to exit")
    assert supervisor.popen.returncode == 0, supervisor.output()[-3000:]
    assert not [pid for pid in pids if live(pid)]
    wait_until(lambda: client.get("/v1/workers").json()["items"] == [], timeout=15, what="no worker listed")


@pytest.mark.slow  # three real worker starts, the third after the first two
@pytest.mark.postgres
@pytest.mark.redis
def test_two_devices_two_workers_a_killed_one_comes_back_sigterm_stops_all(pg_url, redis_url, tmp_path):
    env = service_env(pg_url, redis_url, NETFIT_STANDIN_DEVICES="2")
    supervisor = start_devices(env, tmp_path / "devices.log")
    try:
        with make_client(pg_url, redis_url, lease_seconds=float(env["NETFIT_LEASE_SECONDS"])) as client:
            first = one_worker_per_device(client, supervisor, {"cuda:0", "cuda:1"})
            killed = first["cuda:1"]["pid"]
            os.kill(killed, signal.SIGKILL)

            def replaced() -> dict[str, Any] | None:
                new = [w for w in client.get("/v1/workers").json()["items"]
                       if w["device"] == "cuda:1" and w["pid"] != killed]
                return new[0] if new else None

            again = wait_until(replaced, timeout=180, what="a new worker on cuda:1")
            assert parent_of(again["pid"]) == supervisor.pid
            assert "exited with status -9" in supervisor.output()  # the operator is told
            # the other device's worker was left alone
            assert [w["pid"] for w in client.get("/v1/workers").json()["items"] if w["device"] == "cuda:0"] \
                == [first["cuda:0"]["pid"]]
            stop_all(client, supervisor, [first["cuda:0"]["pid"], again["pid"]])
    finally:
        supervisor.stop()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: --devices all would start workers")
def test_devices_without_cuda_is_a_one_line_error_naming_the_option() -> None:
    done = subprocess.run([*NETFIT, "worker", "--devices", "all"], env=_python_env({}), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("netfit: --devices all:") and "no CUDA device" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine (bench/gpu.sh runs this on one)")
def test_on_a_gpu_machine_devices_all_lists_one_worker_per_gpu(sqlite_url, tmp_path):
    env = service_env(sqlite_url, f"filesystem://{tmp_path / 'broker'}")
    supervisor = start_devices(env, tmp_path / "devices.log")
    try:
        with make_client(sqlite_url, env["NETFIT_BROKER_URL"], lease_seconds=float(env["NETFIT_LEASE_SECONDS"])) as client:
            expected = {f"cuda:{i}" for i in range(torch.cuda.device_count())}
            if os.environ.get("CUDA_VISIBLE_DEVICES"):  # the machine's indexes of the visible ones
                expected = {f"cuda:{d.strip()}" for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",")
                            if d.strip()}
            workers = one_worker_per_device(client, supervisor, expected)
            print(f"--devices all: {len(workers)} workers: "
                  + ", ".join(f"{d} pid {w['pid']}" for d, w in sorted(workers.items())))
            stop_all(client, supervisor, [w["pid"] for w in workers.values()])
    finally:
        supervisor.stop()
