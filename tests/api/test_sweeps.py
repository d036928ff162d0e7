"""/v1/sweeps on real PostgreSQL and Redis, no worker: validation before anything is stored
(422 naming the parameter and the value), the first trials asked and enqueued at POST,
reads, cancel, the jobs filter, and tenants."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from db.models import Job, Sweep
from db.session import make_session_factory
from tests.api.conftest import make_client
from tests.api.conftest import bearer, new_key
from tests.conftest import iris_spec


def body(**overrides: Any) -> dict[str, Any]:
    return {"name": "s", "spec": iris_spec(epochs=3),
            "parameters": {"model.layers.0.units": {"values": [4, 16]},
                           "training.optimizer.lr": {"values": [0.01, 0.1]}},
            "method": "grid", "max_concurrent": 2, **overrides}


def stored(db_url: str) -> tuple[int, int]:
    factory = make_session_factory(db_url)
    with factory() as session:
        counts = (session.scalar(select(func.count()).select_from(Sweep)),
                  session.scalar(select(func.count()).select_from(Job)))
    factory.kw["bind"].dispose()
    return counts


def test_post_stores_the_sweep_and_enqueues_max_concurrent_trials(client, queued_messages):
    response = client.post("/v1/sweeps", json=body())
    assert response.status_code == 201, response.text
    sweep = response.json()
    assert sweep["status"] == "running" and sweep["max_trials"] == 4  # the whole grid
    assert sweep["objective"] == {"metric": "val_loss", "mode": "min"}  # mode from the metric
    assert sweep["trials"]["queued"] == 2 and queued_messages("cpu") == 2
    page = client.get(f"/v1/sweeps/{sweep['id']}/trials").json()
    assert set(page) == {"items", "next_cursor"} and [t["number"] for t in page["items"]] == [0, 1]
    jobs = client.get("/v1/jobs", params={"sweep": sweep["id"]}).json()["items"]
    assert sorted(j["trial_number"] for j in jobs) == [0, 1]
    assert client.get("/v1/jobs", params={"sweep": "nosuchsweep"}).json()["items"] == []
    listed = client.get("/v1/sweeps").json()
    assert [s["id"] for s in listed["items"]] == [sweep["id"]]


def test_accuracy_objective_is_maximised(client):
    response = client.post("/v1/sweeps", json=body(objective={"metric": "val_accuracy"}))
    assert response.status_code == 201 and response.json()["objective"]["mode"] == "max"


@pytest.mark.parametrize("overrides, where, words", [
    ({"parameters": {"model.layers.0.unitz": {"values": [4]}}}, ["parameters", "model.layers.0.unitz"],
     ["unknown path", "did you mean 'units'"]),
    ({"parameters": {"model.layers.7.units": {"values": [4]}}}, ["parameters", "model.layers.7.units"],
     ["has 3 items"]),
    ({"parameters": {"model.layers.0.units": {"values": [4, "wide"]}}},
     ["parameters", "model.layers.0.units", "values"], ["'model.layers.0.units' = \"wide\"", "integer"]),
    ({"parameters": {"model.layers.0.units": {"values": [4, 0]}}},
     ["parameters", "model.layers.0.units", "values"], ["= 0", "greater than or equal to 1"]),
    # a value that passes the spec's types but not the dry run: the last layer must give 3 outputs
    ({"parameters": {"model.layers.2.units": {"values": [3, 5]}}},
     ["parameters", "model.layers.2.units", "values"], ["= 5"]),
    ({"method": "random", "max_trials": 4,
      "parameters": {"training.optimizer.lr": {"min": 0.001, "max": 1000, "distribution": "log_uniform"}}},
     ["parameters", "training.optimizer.lr", "min/max"], ["= 1000.0", "less than or equal to 100"]),
])
def test_a_space_that_can_give_an_invalid_spec_is_422_naming_parameter_and_value(pg_url, redis_url, overrides,
                                                                                    where, words):
    with make_client(pg_url, redis_url) as client:
        response = client.post("/v1/sweeps", json=body(**overrides))
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["details"][0]["loc"] == where
    for word in words:
        assert word in error["message"], error["message"]
    assert stored(pg_url) == (0, 0)  # nothing stored


@pytest.mark.parametrize("overrides, word", [
    ({"parameters": {"training.optimizer.lr": {"min": 0.001, "max": 0.1}}}, "needs 'values' for every parameter"),
    ({"method": "tpe"}, "needs 'max_trials'"),
    ({"method": "tpe", "max_trials": 5, "parameters": {"training.optimizer.lr": {"min": 0, "max": 0.1,
                                                                                "distribution": "log_uniform"}}},
     "'log_uniform' needs 'min' > 0"),
    ({"parameters": {"model.layers.0.units": {"values": [4, 4]}}}, "duplicates"),
    ({"objective": {"metric": "val_rmse"}}, "not measured on a classification task"),
    ({"max_trials": 5000}, "less than or equal to 1000"),
    ({"pruning": {"type": "hyperband"}}, "'asha', 'median' or 'none'"),
    ({"max_concurrent": 50}, "NETFIT_MAX_ACTIVE_TRIALS"),
])
def test_bad_sweep_requests_are_422_with_what_to_change(client, overrides, word):
    response = client.post("/v1/sweeps", json=body(**overrides))
    assert response.status_code == 422, response.text
    assert word in response.json()["message"], response.json()["message"]


def test_cancel_stops_queued_trials_and_is_idempotent(client):
    sweep = client.post("/v1/sweeps", json=body()).json()
    first = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    assert first.json()["trials"]["cancelled"] == 2 and first.json()["trials"]["queued"] == 0
    again = client.post(f"/v1/sweeps/{sweep['id']}/cancel").json()
    assert again["status"] == "cancelled" and again["finished_at"] == first.json()["finished_at"]
    trials = client.get(f"/v1/sweeps/{sweep['id']}/trials").json()["items"]
    assert {(t["status"], t["stop_reason"]) for t in trials} == {("cancelled", "cancelled")}


def test_another_tenants_sweep_is_404_everywhere(pg_url, redis_url):
    key_a, key_b = new_key(pg_url, "team-a"), new_key(pg_url, "team-b")
    with make_client(pg_url, redis_url) as client:
        sweep = client.post("/v1/sweeps", json=body(), headers=bearer(key_a)).json()
        for method, tail in (("get", ""), ("get", "/trials"), ("get", "/importance"), ("post", "/cancel")):
            response = client.request(method, f"/v1/sweeps/{sweep['id']}{tail}", headers=bearer(key_b))
            assert response.status_code == 404, (tail, response.text)
        assert client.get("/v1/sweeps", headers=bearer(key_b)).json()["items"] == []
        assert client.get("/v1/jobs", params={"sweep": sweep["id"]}, headers=bearer(key_b)).json()["items"] == []
        assert client.get(f"/v1/sweeps/{sweep['id']}", headers=bearer(key_a)).json()["status"] == "running"
