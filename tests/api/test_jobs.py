"""POST/GET /v1/jobs through the app: validation before storage, errors as ErrorBody JSON,
pagination, cancel, 503 when the database is down, enqueue failures recovered."""

from __future__ import annotations

import pytest

from db.session import make_session_factory
from tests.api.conftest import make_client
from tests.conftest import iris_spec
from service.queue import create_celery, enqueue
from worker.reconciler import reconcile_once
from tests.api.conftest import assert_error_body


def test_submit_stores_enqueues_and_returns_queued_job(client, queued_messages):
    response = client.post("/v1/jobs", json=iris_spec())
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "queued" and job["attempts"] == 0 and job["queue"] == "cpu"
    assert job["summary"]["total_params"] == 4 * 16 + 16 + 16 * 3 + 3
    assert queued_messages("cpu") == 1
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
    assert client.get(f"/v1/jobs/{job['id']}/metrics").json() == {"items": [], "next_cursor": None}


def test_device_routes_to_queue_when_the_service_runs_gpu_workers(pg_url, redis_url, queued_messages):
    with make_client(pg_url, redis_url, gpu_jobs=True) as gpu_client:
        assert gpu_client.post("/v1/jobs", json=iris_spec(device="cuda")).json()["queue"] == "gpu"
    assert (queued_messages("gpu"), queued_messages("cpu")) == (1, 0)


def test_cuda_job_without_gpu_workers_is_422_instead_of_queued_forever(pg_url, redis_url, queued_messages):
    with make_client(pg_url, redis_url, gpu_jobs=False) as cpu_only:
        body = assert_error_body(cpu_only.post("/v1/jobs", json=iris_spec(device="cuda:0")), 422, "invalid")
        assert body["details"][0]["loc"] == ["training", "device"]
        assert "'cpu'" in body["details"][0]["msg"] and "GPU" in body["details"][0]["msg"]
        assert cpu_only.get("/v1/jobs").json()["items"] == []
    assert (queued_messages("gpu"), queued_messages("cpu")) == (0, 0)


def test_bad_spec_is_422_naming_the_layer_and_nothing_is_stored(client, queued_messages):
    spec = iris_spec()
    spec["model"] = {"layers": [{"type": "linear", "units": 16}, {"type": "relu"}, {"type": "linear", "units": 10}]}
    body = assert_error_body(client.post("/v1/jobs", json=spec), 422, "invalid")
    assert body["details"][0]["loc"][:3] == ["model", "layers", 2]
    assert "3" in body["details"][0]["msg"]  # says what the output size must be
    assert "layers.2" in body["message"]
    assert client.get("/v1/jobs").json()["items"] == []
    assert queued_messages("cpu") == 0


@pytest.mark.parametrize("mutate, loc", [
    (lambda s: s["model"]["layers"][0].update(units=0), ["model", "layers", 0, "linear", "units"]),
    (lambda s: s["training"].update(epochs=10**6), ["training", "epochs"]),
    (lambda s: s.update(typo=1), ["typo"]),
    (lambda s: s["dataset"].update(builtin="cifar10"), ["dataset", "builtin"]),  # not a built-in
])
def test_pydantic_errors_name_the_field(client, mutate, loc):
    spec = iris_spec()
    mutate(spec)
    body = assert_error_body(client.post("/v1/jobs", json=spec), 422, "invalid")
    assert loc in [d["loc"] for d in body["details"]]


def test_non_finite_numbers_and_big_bodies_are_refused(client):
    raw = '{"dataset": {"builtin": "iris"}, "model": {"layers": [{"type": "linear", "units": 3}]}, "training": {"optimizer": {"lr": NaN}}}'
    body = assert_error_body(client.post("/v1/jobs", content=raw, headers={"content-type": "application/json"}), 422, "invalid")
    assert ["training", "optimizer", "lr"] in [d["loc"] for d in body["details"]]
    huge = {**iris_spec(), "name": "x" * 2_000_000}
    assert_error_body(client.post("/v1/jobs", json=huge), 413, "too_large")


def test_unknown_ids_and_routes_are_json_404s(client):
    body = assert_error_body(client.get("/v1/jobs/nope"), 404, "not_found")
    assert "nope" in body["message"]
    assert_error_body(client.get("/v1/jobs/nope/metrics"), 404, "not_found")
    assert_error_body(client.get("/v1/nothing-here"), 404, "not_found")
    assert_error_body(client.get("/v1/jobs/nope/checkpoints/middle"), 422, "invalid")


def test_wrong_method_is_405_naming_every_allowed_method(client):
    response = client.delete("/v1/jobs")
    body = assert_error_body(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST" and "GET or POST" in body["message"]


def test_list_newest_first_with_cursor_and_status_filter(client):
    ids = [client.post("/v1/jobs", json=iris_spec()).json()["id"] for _ in range(3)]
    first = client.get("/v1/jobs", params={"limit": 2}).json()
    second = client.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [j["id"] for j in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None
    assert client.post(f"/v1/jobs/{ids[0]}/cancel").json()["status"] == "cancelled"
    assert [j["id"] for j in client.get("/v1/jobs", params={"status": "cancelled"}).json()["items"]] == [ids[0]]
    assert_error_body(client.get("/v1/jobs", params={"limit": 500}), 422, "invalid")
    assert_error_body(client.get("/v1/jobs", params={"cursor": "bogus"}), 422, "invalid")


def test_cancel_queued_job_and_no_checkpoint_yet(client):
    job = client.post("/v1/jobs", json=iris_spec()).json()
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel").json()
    assert (cancelled["status"], cancelled["stop_reason"]) == ("cancelled", "cancelled")
    assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"  # idempotent
    assert client.get(f"/v1/jobs/{job['id']}/checkpoints").json() == {"items": [], "next_cursor": None}
    body = assert_error_body(client.get(f"/v1/jobs/{job['id']}/checkpoints/best"), 404, "not_found")
    assert "no 'best' checkpoint" in body["message"]
    assert_error_body(client.get(f"/v1/jobs/{job['id']}/curves.svg"), 404, "not_found")
    # a finished job's event stream replays its history and ends
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
        text = "".join(stream.iter_text())
    assert "event: status" in text and '"status":"cancelled"' in text


def test_database_down_is_503_with_retry_after(redis_url):
    with make_client("postgresql+psycopg://postgres@127.0.0.1:1/none", redis_url) as down:
        response = down.get("/v1/jobs")
        body = assert_error_body(response, 503, "unavailable")
        assert response.headers["retry-after"] == "5" and "database" in body["message"]
        ready = assert_error_body(down.get("/readyz"), 503, "unavailable")
        assert [d["loc"] for d in ready["details"] if d["loc"][0] != "warm_up"] == [["database"]]
    assert down.get("/healthz").status_code == 200


def test_post_with_broker_down_is_kept_and_sent_by_the_reconciler(pg_url, redis_url, queued_messages):
    with make_client(pg_url, "redis://127.0.0.1:1/0") as no_broker:
        job = no_broker.post("/v1/jobs", json=iris_spec())
        assert job.status_code == 201 and job.json()["status"] == "queued"
        ready = assert_error_body(no_broker.get("/readyz"), 503, "unavailable")
        assert [d["loc"] for d in ready["details"] if d["loc"][0] != "warm_up"] == [["broker"]]
    celery = create_celery(redis_url)
    factory = make_session_factory(pg_url)
    counts = reconcile_once(factory, lambda job_id, queue: enqueue(job_id, queue, celery), requeue_after=60)
    assert counts["requeued"] == 1 and queued_messages("cpu") == 1
    # sent recently: the next pass leaves it alone
    assert reconcile_once(factory, lambda *_: None, requeue_after=60)["requeued"] == 0


def test_openapi_docs_show_the_iris_example(client):
    schema = client.get("/openapi.json").json()
    examples = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert examples["iris"]["value"]["dataset"] == {"builtin": "iris"}
    assert client.get("/docs").status_code == 200


def _parse_sse(text: str) -> list[tuple[int, str, dict]]:
    import json

    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return events


def test_event_stream_replays_and_resumes_after_last_event_id(client, pg_url):
    from tests import worker_writes

    job_id = client.post("/v1/jobs", json=iris_spec()).json()["id"]
    factory = make_session_factory(pg_url)
    with factory() as s:
        attempt = worker_writes.claim(s, job_id, "w", lease_seconds=30)
        for epoch in (1, 2):
            worker_writes.record_epoch(s, job_id, attempt, {"epoch": epoch, "train_loss": float("inf"),
                                                            "val_loss": 0.5}, resume_state=b"s")
        worker_writes.finish(s, job_id, attempt, status="succeeded", stop_reason="max_epochs")
    factory.kw["bind"].dispose()
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = _parse_sse("".join(stream.iter_text()))
    assert [(kind, data.get("status", data.get("epoch"))) for _, kind, data in events] == [
        ("status", "queued"), ("waiting", None), ("status", "running"), ("epoch", 1), ("epoch", 2),
        ("status", "succeeded")]
    assert events[3][2]["train_loss"] is None  # inf became null
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": str(events[3][0])}) as stream:
        resumed = _parse_sse("".join(stream.iter_text()))
    assert [e[0] for e in resumed] == [events[4][0], events[5][0]]
    assert_error_body(client.get("/v1/jobs/nope/events"), 404, "not_found")
