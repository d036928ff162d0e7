"""bench/gpu.sh: without CUDA it stops at once and says why; its --dry-run runs the Python parts
on the CPU (the GPU benchmark's code paths that need no GPU) and reports figures."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

SCRIPT = ROOT / "bench" / "gpu.sh"


def run_script(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PY": str(ROOT / ".venv" / "bin" / "python"), "TMPDIR": str(tmp_path)}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: bench/gpu.sh would run for real")
def test_without_cuda_the_script_fails_at_once_saying_why(tmp_path: Path) -> None:
    done = run_script(tmp_path=tmp_path)
    assert done.returncode == 2
    assert "needs a CUDA GPU" in done.stderr and "--dry-run" in done.stderr
    assert "== CUDA tests" not in done.stdout  # nothing ran


@pytest.mark.slow
def test_dry_run_measures_every_cpu_path(tmp_path: Path) -> None:
    done = run_script("--dry-run", tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    section = json.loads((tmp_path / "netfit-gpu-dry-run.json").read_text())["sections"]["gpu"]
    for key in ("b64_engine_fp32/hand", "b256_engine_fp32/engine_bf16", "packed_k4_alone/packed"):
        assert section[key]["value"] > 0, key
    assert "CPU dry run" in done.stdout
