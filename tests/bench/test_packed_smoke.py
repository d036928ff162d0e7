"""`python -m bench packed --quick` runs end to end: every pack size timed both ways (the engine's MLPs
and conv nets, and an 8-trial sweep through the service with packing off and on), the goals judged."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.bench.conftest import assert_judged, figures, run_bench


@pytest.mark.slow
def test_packed_section_times_both_ways_and_judges_the_goal(tmp_path: Path) -> None:
    stdout, summary = run_bench(["packed"], tmp_path / "packed.json")
    packed = summary["sections"]["packed"]
    for k in (8, 32):
        seconds = packed[f"k{k}_seconds"]
        assert all(0 < s < 120 for s in seconds["alone"] + seconds["packed"]), seconds
    values = figures(packed)
    assert set(values) == {"k8_alone/packed", "k32_alone/packed"}
    assert all(v > 0 and math.isfinite(v) for v in values.values()), values
    conv = figures(summary["sections"]["packed_conv"])
    # quick: 8 trials of each conv net (32 CNNs one at a time would double the test)
    assert set(conv) == {"conv_k8_vmap/grouped", "two_branch_k8_alone/packed", "mnist_cnn_k8_alone/packed"}, conv
    assert all(v > 0 and math.isfinite(v) for v in conv.values()), conv
    service = summary["sections"]["packed_service"]
    assert all(0 < s < 120 for s in service["k8_seconds"]["alone"] + service["k8_seconds"]["packed"]), service
    assert set(figures(service)) == {"k8_alone/packed"} and figures(service)["k8_alone/packed"] > 0
    assert_judged(stdout, summary)
