"""`python -m bench ... --quick` runs end to end and reports every figure it promises.

Timings are not judged here (speed goals live in the benchmark's own PASS/MISS lines); what
is checked is that each section ran and measured something real: positive, finite figures,
and a PASS or MISS printed for every goal.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.bench.conftest import assert_judged, figures, run_bench

# `make test` installs the bench extras, so `make bench` can't rot unnoticed


@pytest.mark.slow
def test_engine_section_times_every_contender(tmp_path: Path) -> None:
    stdout, summary = run_bench(["engine"], tmp_path / "engine.json")
    engine = summary["sections"]["engine"]
    for setup in ("128_b64", "128_b256", "512-256_dropout_b256"):
        seconds = engine[f"{setup}_seconds"]["median"]
        assert set(seconds) == {"engine", "engine_stats", "hand_fused", "hand_plain", "tutorial", "lightning", "keras"}
        assert all(0 < s < 60 for s in seconds.values()), seconds
    values = figures(engine)
    assert values and all(v > 0 and math.isfinite(v) for v in values.values()), values
    # achieved GFLOP/s can't beat the measured peak by much (a factor of 2 allows for noise)
    assert values["128_b256_engine_gflops"] < 2 * values["matmul_peak_gflops"]
    assert_judged(stdout, summary)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(600)  # three stacks start in turn (readiness, embedded, PostgreSQL + Redis)
def test_service_sections_report_every_figure(tmp_path: Path) -> None:
    stdout, summary = run_bench(["service", "api", "throughput"], tmp_path / "services.json")
    sections = summary["sections"]
    assert set(sections) == {"service_embedded", "service_redis_pg", "readiness", "throughput_redis_pg",
                             "api_redis_pg"}
    for name, section in sections.items():
        values = figures(section)
        assert values and all(v > 0 and math.isfinite(v) for v in values.values()), (name, values)
    for stack in ("embedded", "redis_pg"):
        # the service can't train faster than the engine it runs
        assert sections[f"service_{stack}"]["mnist_5_epochs_overhead"]["value"] >= 1
    assert_judged(stdout, summary)


@pytest.mark.slow
def test_predict_section_times_the_api_and_both_batch_runtimes(tmp_path: Path) -> None:
    stdout, summary = run_bench(["predict"], tmp_path / "predict.json")
    found = figures(summary["sections"]["predict"])
    for key in ("iris_one_row_p50_ms", "iris_one_row_p99_ms", "mnist_mlp_10k_rows_per_s_engine",
                "mnist_mlp_10k_rows_per_s_onnxruntime"):
        assert math.isfinite(found[key]) and found[key] > 0, key
    assert found["iris_one_row_p50_ms"] <= found["iris_one_row_p99_ms"]
    assert_judged(stdout, summary)
