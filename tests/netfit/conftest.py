"""Helpers shared by the test modules of tests/netfit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT


NETFIT = ROOT / ".venv" / "bin" / "netfit"


def netfit(*args: str, url: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETFIT_")}
    if url:
        env["NETFIT_API_URL"] = url
    return subprocess.run([str(NETFIT), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr
