#!/usr/bin/env bash
# The GPU checks, for a machine with a CUDA GPU: every test marked `cuda` (the engine's, packed
# conv nets', then `netfit worker --devices all`: one worker per GPU), then the GPU benchmark
# (bf16 autocast, a CUDA-graphed training step, packed trials and packed conv nets; bench/gpu.py).
#   bash bench/gpu.sh [--rounds N]    on the GPU machine (PY=path/to/python to pick the venv)
#   bash bench/gpu.sh --dry-run       anywhere: the benchmark's CPU code paths at tiny sizes
# Without CUDA (and without --dry-run) it stops at once with exit status 2 and says why.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

if [[ "${1:-}" == "--dry-run" ]]; then
  exec "$PY" -m bench.gpu --dry-run --out "${TMPDIR:-/tmp}/netfit-gpu-dry-run.json"
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  "$PY" -c 'import sys, torch; print(f"bench/gpu.sh needs a CUDA GPU: torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees none here. Run it on a GPU machine, or check the script with: bash bench/gpu.sh --dry-run", file=sys.stderr)'
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "== CUDA tests (every test marked cuda; --devices's next)"
"$PY" -m pytest -m cuda -q -n 0 tests --ignore=tests/worker/test_devices.py
# `netfit worker --devices all` on SQLite and the file broker (no servers needed): /v1/workers
# lists one worker per GPU, each registered as its cuda:N; one SIGTERM stops them all
echo "== netfit worker --devices all: one worker per GPU"
"$PY" -m pytest -m cuda -q -n 0 -s tests/worker/test_devices.py
echo "== GPU benchmark"
"$PY" -m bench.gpu "$@"
