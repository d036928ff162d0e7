"""Sweeps end to end with real processes: the API under uvicorn, `python -m worker` processes,
PostgreSQL + Redis, and embedded mode (`netfit serve`: SQLite + the file broker). The next
trial is asked by the worker when a trial ends; max_concurrent is checked from the database
through the whole run."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import iris_spec, service_env, wait_until

pytestmark = [pytest.mark.slow]


def sweep_body(**overrides: Any) -> dict[str, Any]:
    return {"name": "iris-sweep", "spec": iris_spec(epochs=5),
            "parameters": {"model.layers.0.units": {"values": [4, 8, 16]},
                           "training.optimizer.lr": {"min": 0.001, "max": 0.1, "distribution": "log_uniform"}},
            "method": "random", "max_trials": 6, "max_concurrent": 2, "seed": 1, **overrides}


@pytest.fixture(params=["postgres", "sqlite"])
def service(request: pytest.FixtureRequest) -> str:
    """A running service's base URL: PG + Redis + API + 2 workers, or embedded mode."""
    if request.param == "sqlite":
        return request.getfixturevalue("embedded_service")
    env = service_env(request.getfixturevalue("pg_url"), request.getfixturevalue("redis_url"))
    start_worker = request.getfixturevalue("start_worker")
    workers = [start_worker(env, wait=False) for _ in range(2)]
    base_url = request.getfixturevalue("start_api")(env)
    from tests.conftest import wait_ready

    for worker in workers:
        wait_ready(worker)
    return base_url


def _active(http: httpx.Client, sweep_id: str) -> int:
    jobs = http.get("/v1/jobs", params={"sweep": sweep_id, "limit": 200}).json()["items"]
    return sum(j["status"] in ("queued", "running") for j in jobs)


def test_a_small_sweep_runs_max_trials_once_each_within_max_concurrent(service):
    http = httpx.Client(base_url=service, timeout=30)
    response = http.post("/v1/sweeps", json=sweep_body())
    assert response.status_code == 201, response.text
    sweep = response.json()
    seen_active: list[int] = []

    def ended() -> bool:
        seen_active.append(_active(http, sweep["id"]))  # read from the database, every poll
        return http.get(f"/v1/sweeps/{sweep['id']}").json()["status"] != "running"

    wait_until(ended, timeout=180, interval=0.2, what="the sweep to end")
    assert max(seen_active) <= 2
    final = http.get(f"/v1/sweeps/{sweep['id']}").json()
    assert final["status"] == "succeeded", final
    assert final["trials"]["succeeded"] == 6 and final["best"]["value"] is not None
    trials = http.get(f"/v1/sweeps/{sweep['id']}/trials").json()["items"]
    assert sorted(t["number"] for t in trials) == list(range(6))
    assert all(t["epochs_completed"] == 5 for t in trials)
    values = [t["value"] for t in trials]
    assert values == sorted(values)  # best (lowest val_loss) first
    jobs = http.get("/v1/jobs", params={"sweep": sweep["id"]}).json()["items"]
    assert {j["id"] for j in jobs} == {t["job_id"] for t in trials}
    assert all(j["sweep_id"] == sweep["id"] for j in jobs)
    # each trial trained with its own sampled values
    job = http.get(f"/v1/jobs/{trials[0]['job_id']}").json()
    assert job["spec"]["model"]["layers"][0]["units"] == trials[0]["params"]["model.layers.0.units"]
    assert job["spec"]["training"]["optimizer"]["lr"] == trials[0]["params"]["training.optimizer.lr"]
    importance = http.get(f"/v1/sweeps/{sweep['id']}/importance").json()
    assert importance["trials_used"] == 6


def _one_worker(pg_url: str, redis_url: str, start_worker: Any, start_api: Any,
                body: dict[str, Any]) -> tuple[httpx.Client, str]:
    """One worker and the API on PostgreSQL + Redis, and the sweep `body` posted: (client, its id)."""
    env = service_env(pg_url, redis_url)
    start_worker(env)
    http = httpx.Client(base_url=start_api(env), timeout=30)
    response = http.post("/v1/sweeps", json=body)
    assert response.status_code == 201, response.text
    return http, response.json()["id"]


def _wait_ended(http: httpx.Client, sweep_id: str, timeout: float) -> None:
    wait_until(lambda: http.get(f"/v1/sweeps/{sweep_id}").json()["status"] != "running", timeout=timeout,
               interval=0.2, what="the sweep to end")


@pytest.mark.postgres
@pytest.mark.redis
def test_asha_prunes_trials_with_a_hopeless_learning_rate(pg_url, redis_url, start_worker, start_api):
    # one at a time, so that the rungs are compared in the order the trials ran; lr 1e-6 barely
    # moves the loss, lr 0.05 brings it far down: at the rungs (epochs 2 and 4) the slow ones
    # that come after a fast one are in the bottom half and are pruned
    body = sweep_body(method="grid", max_trials=None, max_concurrent=1, spec=iris_spec(epochs=6),
                      parameters={"model.layers.0.units": {"values": [8, 16, 32]},
                                  "training.optimizer.lr": {"values": [0.05, 0.000001]}},
                      pruning={"type": "asha", "min_epochs": 2, "reduction_factor": 2})
    http, sweep_id = _one_worker(pg_url, redis_url, start_worker, start_api, body)
    _wait_ended(http, sweep_id, timeout=180)
    trials = http.get(f"/v1/sweeps/{sweep_id}/trials").json()["items"]
    assert len(trials) == 6
    pruned = [t for t in trials if t["stop_reason"] == "pruned"]
    assert pruned, trials
    for t in pruned:
        assert t["status"] == "succeeded" and t["epochs_completed"] in (2, 4) and t["pruned_rung"] in (0, 1)
    # ASHA keeps the top 1/reduction_factor at each rung: a hopeless trial is among the pruned
    # (a fast one may be too, when it is in the bottom half of those that reached the rung)
    assert any(t["params"]["training.optimizer.lr"] == 0.000001 for t in pruned)
    assert trials[0]["stop_reason"] != "pruned" and trials[0]["params"]["training.optimizer.lr"] == 0.05
    sweep = http.get(f"/v1/sweeps/{sweep_id}").json()
    assert sweep["status"] == "succeeded" and sweep["trials"]["pruned"] == len(pruned)


@pytest.mark.postgres
@pytest.mark.redis
def test_cancel_stops_queued_and_running_trials_and_asks_no_more(pg_url, redis_url, start_worker, start_api):
    http, sweep_id = _one_worker(pg_url, redis_url, start_worker, start_api,
                                 sweep_body(spec=iris_spec(epochs=5000), max_trials=10))
    jobs = lambda: http.get("/v1/jobs", params={"sweep": sweep_id}).json()["items"]  # noqa: E731
    wait_until(lambda: any(j["status"] == "running" for j in jobs()), timeout=60, what="a trial to run")
    cancelled = http.post(f"/v1/sweeps/{sweep_id}/cancel").json()
    assert cancelled["status"] == "cancelled"
    wait_until(lambda: all(j["status"] == "cancelled" for j in jobs()), timeout=30, what="the trials to stop")
    assert http.post(f"/v1/sweeps/{sweep_id}/cancel").json()["status"] == "cancelled"  # idempotent
    assert len(jobs()) == 2  # the worker's end-of-trial hook asked for nothing after the cancel


def _events(base_url: str, sweep_id: str, last_event_id: str | None = None) -> list[tuple[str | None, str, dict]]:
    """The sweep's SSE stream read to its end: (id, event, data)."""
    import json

    from netfit.sse import parse_sse

    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with httpx.stream("GET", f"{base_url}/v1/sweeps/{sweep_id}/events", headers=headers,
                      timeout=httpx.Timeout(30, read=120)) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        return [(e.id, e.event, json.loads(e.data)) for e in parse_sse(response.iter_lines())]


def test_a_sweeps_event_stream_tells_each_trial_start_prune_finish_and_each_new_best(service):
    http = httpx.Client(base_url=service, timeout=30)
    assert http.get("/v1/sweeps/nosuchsweep0/events").status_code == 404
    # the ASHA sweep above: pruned trials on the way
    body = sweep_body(method="grid", max_trials=None, max_concurrent=2, spec=iris_spec(epochs=6),
                      parameters={"model.layers.0.units": {"values": [8, 32]},
                                  "training.optimizer.lr": {"values": [0.05, 0.000001]}},
                      pruning={"type": "asha", "min_epochs": 2, "reduction_factor": 2})
    response = http.post("/v1/sweeps", json=body)
    assert response.status_code == 201, response.text
    sweep_id = response.json()["id"]
    events = _events(service, sweep_id)  # live: the sweep has just started

    *trial_events, (_, last, final) = events
    assert last == "sweep" and final["status"] == "succeeded"
    trials = {t["number"]: t for t in http.get(f"/v1/sweeps/{sweep_id}/trials").json()["items"]}
    assert sorted(trials) == [0, 1, 2, 3]
    for number, trial in trials.items():
        kinds = [kind for _, kind, data in trial_events if data["number"] == number and kind != "best"]
        pruned = trial["stop_reason"] == "pruned"
        assert kinds == ["trial_queued", "trial_started", *(["trial_pruned"] if pruned else []), "trial_finished"]
        [finished] = [d for _, k, d in trial_events if k == "trial_finished" and d["number"] == number]
        assert (finished["status"], finished["stop_reason"], finished["value"]) == (
            "succeeded", trial["stop_reason"], pytest.approx(trial["value"]))
    assert any(t["stop_reason"] == "pruned" for t in trials.values())
    # each best beats the one before; the last is the leaderboard's first
    bests = [d for _, k, d in trial_events if k == "best"]
    assert bests and all(b["value"] < a["value"] for a, b in zip(bests, bests[1:]))
    leader = http.get(f"/v1/sweeps/{sweep_id}").json()["best"]
    assert final["best"] == bests[-1] and bests[-1]["number"] == leader["number"]
    assert len({(i, k) for i, k, _ in trial_events}) == len(trial_events)  # each sent once
    assert [d["number"] for _, k, d in trial_events if k == "trial_finished" and d["new_best"]] == \
        [b["number"] for b in bests]

    # resumed after a middle event: exactly the rest, `best` judged on the whole history (a
    # `best` shares its trial_finished's id, so resume where the next event has an id of its own)
    k = next(i for i in range(4, len(trial_events) - 1) if trial_events[i][0] != trial_events[i + 1][0])
    assert _events(service, sweep_id, last_event_id=trial_events[k][0]) == events[k + 1:]


@pytest.mark.postgres
@pytest.mark.redis
def test_a_sweep_whose_trials_fail_by_their_spec_ends_failed_after_max_concurrent(pg_url, redis_url, start_worker,
                                                                               start_api):
    """The API accepts GPU jobs (NETFIT_GPU_JOBS=1) and the only worker serves the gpu queue
    without a GPU: every trial fails on its spec's device. The sweep stops after max_concurrent
    such failures in a row and says why; the trial asked after the first failure is cancelled
    while it waits."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: a cuda trial would train")
    from tests.conftest import wait_ready

    env = service_env(pg_url, redis_url)
    worker = start_worker(env, queues="gpu", wait=False)  # starts while the API does
    http = httpx.Client(base_url=start_api({**env, "NETFIT_GPU_JOBS": "1"}), timeout=30)
    wait_ready(worker)
    response = http.post("/v1/sweeps", json=sweep_body(spec=iris_spec(epochs=5, device="cuda"), max_trials=8))
    assert response.status_code == 201, response.text
    sweep_id = response.json()["id"]
    _wait_ended(http, sweep_id, timeout=90)
    sweep = http.get(f"/v1/sweeps/{sweep_id}").json()
    assert sweep["status"] == "failed", sweep
    assert "2 trials in a row failed (max_concurrent=2)" in sweep["error"] and "no CUDA GPU" in sweep["error"]
    trials = http.get(f"/v1/sweeps/{sweep_id}/trials").json()["items"]
    assert sorted(t["status"] for t in trials) == ["cancelled", "failed", "failed"], trials
