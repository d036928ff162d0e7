"""Helpers shared by the test modules of tests/bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT


def run_bench(args: list[str], out: Path) -> tuple[str, dict[str, Any]]:
    # one torch thread: two would spin against the suite's other processes on a small machine
    command = [sys.executable, "-m", "bench", *args, "--quick", "--threads", "1", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout, json.loads(out.read_text())


def figures(section: dict[str, Any]) -> dict[str, float]:
    return {key: entry["value"] for key, entry in section.items() if isinstance(entry, dict) and "value" in entry}


def assert_judged(stdout: str, summary: dict[str, Any]) -> None:
    assert summary["goals"], "no goal was judged"
    for goal in summary["goals"]:
        verdict = "PASS" if goal["passed"] else "MISS"
        assert f"{verdict}  {goal['section']}: {goal['key']}" in stdout
