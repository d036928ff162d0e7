"""The quick start as a newcomer meets it: a fresh clone's `make run` until /readyz answers
200 (the install into a new .venv included, with the machine's package caches as they are),
then a second `make run` in the same clone.

The clone is of this checkout's HEAD: uncommitted changes are not in it. `make run` serves on
port 8000, which must be free. Goals: <= 20 s fresh (warm caches), <= 5 s the second time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.report import Report

ROOT = Path(__file__).resolve().parents[1]
URL = "http://127.0.0.1:8000/readyz"


def _ready() -> bool:
    try:
        with urllib.request.urlopen(URL, timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def make_run(clone: Path, log: Path, timeout: float = 600) -> float:
    """Seconds from `make run` to /readyz 200; the service is stopped (Ctrl-C) before returning."""
    began = time.monotonic()
    with log.open("a") as out:
        proc = subprocess.Popen(["make", "run"], cwd=clone, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        while not _ready():
            if proc.poll() is not None:
                raise RuntimeError(f"make run exited ({proc.returncode}); its output: {log}")
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"no /readyz 200 after {timeout:.0f} s; make run's output: {log}")
            time.sleep(0.05)
        return time.monotonic() - began
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run(report: Report) -> None:
    report.begin("firstrun", "a fresh clone's `make run` -> /readyz 200, then a second `make run`")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8000)) == 0:
            report.note("  skipped: port 8000 is in use (make run serves there)")
            return
    workdir = Path(tempfile.mkdtemp(prefix="netfit-firstrun-"))
    try:
        clone = workdir / "netfit"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        log = workdir / "make-run.log"
        report.figure("fresh_make_run_s", make_run(clone, log), "s", goal=("<=", 20.0),
                      label="fresh clone: make run -> /readyz 200 (installs .venv)")
        report.figure("second_make_run_s", make_run(clone, log), "s", goal=("<=", 5.0),
                      label="the second make run -> /readyz 200")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
