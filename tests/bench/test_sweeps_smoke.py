"""`python -m bench sweeps --quick` runs end to end: a small sweep's scheduler overhead and the
TPE ask at both parameter counts, ours beside Optuna's alone, each goal judged."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.bench.conftest import assert_judged, figures, run_bench


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_sweeps_section_measures_the_overhead_and_the_ask(tmp_path: Path) -> None:
    stdout, summary = run_bench(["sweeps"], tmp_path / "sweeps.json")
    values = figures(summary["sections"]["sweeps"])
    assert set(values) == {"scheduler_overhead", *(f"tpe_ask_{n}_params{tail}" for n in (16, 3)
                                                   for tail in ("_ms", "_optuna_ms", "_ratio", "_step_ms", "_first_ms")),
                           *(f"packed_ask_{n}{tail}" for n in (32, 128) for tail in ("_ms", "_per_trial_ms", "_commits"))}
    assert all(v > 0 and math.isfinite(v) for v in values.values()), values
    # a packing sweep's trials are asked in one transaction, however many
    assert values["packed_ask_32_commits"] == values["packed_ask_128_commits"] == 1
    # at most 2 trials at once on 2 workers: the sweep can't take less than their time over 2
    assert values["scheduler_overhead"] >= 1
    assert_judged(stdout, summary)
