"""`serve` end to end as a user runs it: SQLite, the file broker, one worker process, no Redis."""

from __future__ import annotations

import json
import statistics
from datetime import datetime, timezone

import httpx
import pytest

from netfit.sse import parse_sse
from tests.conftest import iris_spec, test_accuracy_of, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def http(embedded_service: str) -> httpx.Client:
    with httpx.Client(base_url=embedded_service, timeout=30) as client:
        yield client


def finished(http: httpx.Client, job_id: str, timeout: float = 90) -> dict:
    return wait_until(lambda: (j := http.get(f"/v1/jobs/{job_id}").json())["status"]
                      in ("succeeded", "failed", "cancelled") and j, timeout=timeout, interval=0.1,
                      what=f"job {job_id} to finish")


def test_embedded_service_trains_iris(http):
    assert http.get("/readyz").json()["status"] == "ready"
    spec = iris_spec(epochs=6, early_stopping={"patience": 50})
    job = http.post("/v1/jobs", json=spec).json()
    assert job["status"] == "queued"
    with http.stream("GET", f"/v1/jobs/{job['id']}/events", timeout=90) as stream:
        events = list(parse_sse(stream.iter_lines()))
    kinds = [e.event for e in events]
    statuses = [json.loads(e.data)["status"] for e in events if e.event == "status"]
    assert statuses == ["queued", "running", "succeeded"] and kinds.count("epoch") == 6
    done = http.get(f"/v1/jobs/{job['id']}").json()
    assert [m["epoch"] for m in http.get(f"/v1/jobs/{job['id']}/metrics").json()["items"]] == list(range(1, 7))
    best = http.get(f"/v1/jobs/{job['id']}/checkpoints/best").content
    assert test_accuracy_of(spec, best) == pytest.approx(done["test_metrics"]["test_accuracy"], abs=1e-6)
    # the standardization statistics travel with the weights, so raw inputs can be fed
    from netfit.engine.checkpoints import weights_from_bytes
    preprocessing = weights_from_bytes(best)[1]["preprocessing"]
    assert preprocessing["features"] == spec["preprocess"]["features"] == "standardize"
    assert len(preprocessing["mean"]) == 4


def test_embedded_post_to_running_latency(http):
    latencies = []
    for _ in range(10):
        posted = datetime.now(timezone.utc)
        job = http.post("/v1/jobs", json=iris_spec(epochs=1)).json()
        done = finished(http, job["id"])
        assert done["status"] == "succeeded"
        latencies.append((datetime.fromisoformat(done["started_at"]) - posted).total_seconds())
    p50 = statistics.median(latencies)
    print(f"\nPOST -> running embedded: p50 {p50 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms over 10 jobs")
    assert p50 < 1.0
