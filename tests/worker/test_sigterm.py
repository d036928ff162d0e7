"""A worker stops on a burst of SIGTERMs: stopping `netfit serve` sends several at once (serve's
own, its process group's, the parent-death signal), and each one that comes while a handler
runs runs its own handler nested inside it. The worker's wrapper of Celery's warm-shutdown
handler (worker.tasks._first_sigterm_only) must pass the first on and return at once from the
others, taking no lock a nested handler could wait on forever.

Celery's handler stands in here as a function that takes a lock (its signal dispatch does): a
real worker takes seconds to start, and a burst catches the bad moment about a third of the
time (the wrapper that used a threading.Event hung in 3 of 10 bursts), so each test tries ten."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

CHILD = """
import signal, sys, threading, time
from worker.tasks import _first_sigterm_only
lock, calls = threading.Lock(), []

def celery_like(signum, frame):
    with lock:
        time.sleep(0.0002)
        calls.append(signum)

signal.signal(signal.SIGTERM, celery_like)
_first_sigterm_only()
print("ready", flush=True)
while not calls:
    time.sleep(0.001)
time.sleep(0.05)  # the burst's last signals land
print(len(calls), flush=True)
"""


def test_a_burst_of_sigterms_runs_celerys_handler_once_and_the_worker_stops(tmp_path: Path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    for attempt in range(10):
        child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            assert child.stdout.readline().strip() == "ready"
            for _ in range(30):
                try:
                    os.kill(child.pid, signal.SIGTERM)
                except ProcessLookupError:
                    break
                for _ in range(2000):  # a few microseconds apart: signals sent closer merge into one
                    pass
            out, _ = child.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"burst {attempt + 1}: the process hung in its SIGTERM handlers")
        finally:
            child.kill()
            child.wait()
        assert child.returncode == 0 and out.split() == ["1"], (attempt, child.returncode, out)
