"""`serve` hands its settings to the app and, through the child's own environment, to its
worker: the process that called it keeps the environment it had."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _python_env

pytestmark = pytest.mark.slow  # one worker process starts (torch) and stops

# serve() with uvicorn replaced by a look at what it would serve: the app's settings, this
# process's environment, and the worker's readiness file (the worker read its settings)
SERVE = """
import json, os, sys, time
from pathlib import Path
import launch.server as server

def look(app, host, port, **options):
    ready = Path(app.state.settings.worker_ready_file)
    deadline = time.monotonic() + 240
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    print("SEEN " + json.dumps({"database": app.state.settings.database_url, "broker": app.state.settings.broker_url,
                      "environment": sorted(k for k in os.environ if k.startswith("NETFIT_")),
                      "worker_ready": ready.exists()}))

server._uvicorn = look
server.serve("127.0.0.1", 0, data_dir=sys.argv[1])
"""


def test_serve_configures_its_worker_without_changing_its_own_environment(tmp_path: Path):
    data = tmp_path / "data"
    env = {k: v for k, v in _python_env({}).items() if not k.startswith("NETFIT_")}
    result = subprocess.run([sys.executable, "-c", SERVE, str(data)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(next(line[5:] for line in result.stdout.splitlines() if line.startswith("SEEN ")))
    assert seen["database"] == f"sqlite:///{data.resolve() / 'netfit.db'}"
    assert seen["broker"] == f"filesystem://{data.resolve() / '.netfit' / 'broker'}"
    assert seen["environment"] == []  # nothing set in the caller's environment
    assert seen["worker_ready"]  # the worker got the database, broker and readiness file as its own
    assert (data / "netfit.db").exists() and not (tmp_path / ".netfit").exists()
