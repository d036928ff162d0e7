"""`python -m bench scale --quick` runs end to end: simulated workers claim, flush and finish
jobs on PostgreSQL through the real db code without loading torch, and every figure is printed,
the goals judged PASS or MISS."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.bench.conftest import assert_judged, figures, run_bench


@pytest.mark.slow
@pytest.mark.postgres
def test_scale_section_prints_every_figure_and_judges_its_goals(tmp_path: Path) -> None:
    stdout, summary = run_bench(["scale"], tmp_path / "scale.json")
    section = summary["sections"]["scale"]
    values = figures(section)
    kinds = ("claim_p50_ms", "claim_p99_ms", "flush_p50_ms", "flush_p99_ms", "tps", "jain_mean", "jain_min",
             "priority_start_s", "busy", "epoch_late")
    # the preemption run is there once the tree has preemption (db.preemption, the lease's requests)
    preemption = {"preempt_start_s"} if "run_preemption" in section else set()
    assert set(values) == ({f"{kind}_16" for kind in kinds} | preemption
                           | {"pick_alone_ms", "reconcile_quiet_ms", "reconcile_backlog_s"})
    assert all(math.isfinite(v) and v >= 0 for v in values.values()), values
    run = section["run_16"]
    assert not run["torch_loaded"], "the simulated workers loaded torch"
    assert run["errors"] == 0, run["error_examples"]
    # the workers really trained: jobs were claimed, flushed and finished, and the priority jobs started
    assert run["finished"] > 0 and values["busy_16"] > 0.5
    assert 0 < values["jain_min_16"] <= values["jain_mean_16"] <= 1
    assert {g["key"] for g in summary["goals"]} == {"claim_p99_ms_16", "jain_mean_16", "priority_start_s_16"} | preemption
    if preemption:  # every worker was busy: each priority job started by preempting one
        assert section["run_preemption"]["preempted"] >= len(section["run_preemption"]["priority_start_s"]) > 0
        assert section["run_preemption"]["errors"] == 0, section["run_preemption"]["error_examples"]
    assert_judged(stdout, summary)
    assert "preemption" in stdout  # says which priority figure it measured (or that preemption is pending)
