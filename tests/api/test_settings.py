"""The settings an app is made with are the ones it runs by (create_app(Settings(...))), not
whatever the process's environment said when a module was imported."""

from __future__ import annotations

from tests.api.conftest import assert_error_body, make_client
from tests.conftest import iris_spec


def _sweep(max_concurrent: int) -> dict:
    return {"name": "s", "spec": iris_spec(epochs=3, device="auto"), "method": "grid", "max_concurrent": max_concurrent,
            "parameters": {"training.optimizer.lr": {"values": [0.01, 0.1]}}}


def test_auto_device_jobs_and_trials_go_to_the_apps_default_queue(pg_url, redis_url, queued_messages):
    with make_client(pg_url, redis_url, default_queue="gpu", gpu_jobs=True) as client:
        job = client.post("/v1/jobs", json=iris_spec(device="auto")).json()
        assert job["queue"] == "gpu"
        sweep = client.post("/v1/sweeps", json=_sweep(2))
        assert sweep.status_code == 201, sweep.text
        trials = client.get("/v1/jobs", params={"sweep": sweep.json()["id"]}).json()["items"]
        assert [client.get(f"/v1/jobs/{t['id']}").json()["queue"] for t in trials] == ["gpu", "gpu"]
    assert (queued_messages("gpu"), queued_messages("cpu")) == (3, 0)


def test_the_apps_trial_limit_is_the_one_enforced(pg_url, redis_url):
    with make_client(pg_url, redis_url, max_active_trials=1) as client:
        body = assert_error_body(client.post("/v1/sweeps", json=_sweep(2)), 422, "invalid")
        assert "1 trials a tenant may run at once" in body["message"]
        assert client.post("/v1/sweeps", json=_sweep(1)).status_code == 201
        body = assert_error_body(client.post("/v1/sweeps", json=_sweep(1)), 429, "too_many_requests")
        assert "you have 1 sweep trials queued or running" in body["message"]
