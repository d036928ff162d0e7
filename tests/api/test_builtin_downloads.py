"""`{"builtin": "mnist"}` through the service: checked at once without a download, trained by a
real worker from a local mirror (tests/idx_mirror), and offline a failed job that says what to do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import make_client
from tests.conftest import start_serve_process, wait_until
from tests.idx_mirror import FILES, Mirror, make_set, write_manifest


def mnist_spec(name: str = "mnist", units: int = 10, epochs: int = 15) -> dict:
    return {"dataset": {"builtin": name}, "preprocess": {"features": "scale"},
            "split": {"validation": 0.2},
            "model": {"layers": [{"type": "flatten"}, {"type": "linear", "units": 32}, {"type": "relu"},
                                 {"type": "linear", "units": units}]},
            "training": {"epochs": epochs, "batch_size": 16, "optimizer": {"type": "adam", "lr": 0.01},
                         "early_stopping": None}}


def test_a_spec_on_mnist_is_checked_without_downloading(pg_url, redis_url, tmp_path):
    cache = tmp_path / "cache"
    with make_client(pg_url, redis_url, dataset_dir=str(cache), dataset_mirror="http://127.0.0.1:9",
                     dataset_mirror_only=True) as c:
        dry = c.post("/v1/jobs", params={"dry_run": "true"}, json=mnist_spec("fashion_mnist"))
        assert dry.status_code == 200, dry.text
        layers = dry.json()["summary"]["layers"]
        assert layers[0]["output_shape"] == [784] and layers[-1]["output_shape"] == [10]
        wrong = c.post("/v1/jobs", json=mnist_spec(units=7))  # 10 classes, known without the files
        assert wrong.status_code == 422 and wrong.json()["details"][0]["loc"][:2] == ["model", "layers"]
    assert not cache.exists()


@pytest.fixture(scope="module")
def mirrored_service(tmp_path_factory) -> Iterator[tuple[str, Mirror, Path]]:
    """`netfit serve` whose worker fetches from a local mirror that has mnist but not fashion_mnist."""
    workdir = tmp_path_factory.mktemp("mirrored")
    files, _ = make_set()
    with Mirror(files, sets=("mnist",)) as mirror:
        env = {"NETFIT_DATASET_DIR": str(workdir / "cache"), "NETFIT_DATASET_MIRROR": mirror.url(),
               "NETFIT_DATASET_MIRROR_ONLY": "1",
               "NETFIT_DATASET_MANIFEST": str(write_manifest(workdir / "manifest.json", files))}
        proc, base_url = start_serve_process(env, workdir)
        try:
            yield base_url, mirror, workdir / "cache"
        finally:
            proc.stop(grace=20)


def finished(http: httpx.Client, job_id: str) -> dict:
    return wait_until(lambda: (j := http.get(f"/v1/jobs/{job_id}").json())["status"]
                      in ("succeeded", "failed", "cancelled") and j, timeout=90, interval=0.1,
                      what=f"job {job_id} to finish")


@pytest.mark.slow
def test_a_job_on_builtin_mnist_downloads_once_and_trains(mirrored_service):
    base_url, mirror, cache = mirrored_service
    with httpx.Client(base_url=base_url, timeout=30) as http:
        first = finished(http, http.post("/v1/jobs", json=mnist_spec()).json()["id"])
        assert first["status"] == "succeeded", first.get("error")
        assert first["test_metrics"]["test_accuracy"] >= 0.9  # 20 test images of 10 easy classes
        again = finished(http, http.post("/v1/jobs", json=mnist_spec(epochs=2)).json()["id"])
        assert again["status"] == "succeeded", again.get("error")
    assert mirror.served() == dict.fromkeys(FILES, 1)
    assert sorted(p.name for p in (cache / "mnist").glob("*.gz")) == sorted(FILES)


@pytest.mark.slow
def test_offline_a_job_fails_saying_where_the_files_go_and_how_to_upload(mirrored_service):
    base_url, _, cache = mirrored_service
    with httpx.Client(base_url=base_url, timeout=30) as http:
        job = finished(http, http.post("/v1/jobs", json=mnist_spec("fashion_mnist")).json()["id"])
    assert job["status"] == "failed"
    error = job["error"]
    assert str(cache / "fashion_mnist") in error and "POST /v1/datasets" in error and ".npz" in error
    assert all(f in error for f in FILES) and "Traceback" not in error
