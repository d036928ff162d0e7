"""API keys and tenants (every endpoint × another tenant's ids), the per-tenant job limit,
security headers and request ids — the app on real PostgreSQL and Redis; the start-up
rules and the access log in real server processes."""

from __future__ import annotations

import re
import sys

import httpx
import pytest
from sqlalchemy import func, select

from db import keys as db_keys
from db import sweeps as db_sweeps
from db.models import Checkpoint, Dataset, EpochMetric, Job, JobEvent
from db.session import make_session_factory
from tests import worker_writes
from tests.api.conftest import make_client
from tests.api.conftest import csv_bytes
from tests.api.conftest import assert_error_body
from tests.conftest import Proc, free_port, iris_spec, service_env, start_api_process, wait_until
from tests.api.conftest import bearer, new_key

SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


def revoke(db_url: str, key: str) -> None:
    factory = make_session_factory(db_url)
    with factory() as session:
        db_keys.revoke_key(session, key)
    factory.kw["bind"].dispose()


# --------------------------------------------------------------------------- keys


def test_auth_is_off_until_the_first_key_and_a_revoked_key_is_refused_at_once(pg_url, redis_url):
    with make_client(pg_url, redis_url) as c:
        assert c.get("/v1/jobs").status_code == 200  # no key yet: open, one tenant
        key = new_key(pg_url, "team-a")  # straight into the database, as `netfit keys create` does
        # "no key yet" is re-checked after at most a second (api.deps.auth_required)
        response = wait_until(lambda: (r := c.get("/v1/jobs")).status_code == 401 and r, timeout=10,
                              what="the first key to lock the API")
        body = assert_error_body(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer" and "Bearer <key>" in body["message"]
        for header in ("Bearer nf_not-a-key", "Basic dXNlcjpwdw==", "Bearer "):
            assert_error_body(c.get("/v1/jobs", headers={"Authorization": header}), 401, "unauthorized")
        assert c.get("/v1/jobs", headers=bearer(key)).status_code == 200
        assert c.get("/healthz").status_code == 200  # probes need no key; /readyz once the warm-up is done
        wait_until(lambda: c.get("/readyz").status_code == 200, timeout=60, what="/readyz without a key")

        revoke(pg_url, key)
        body = assert_error_body(c.get("/v1/jobs", headers=bearer(key)), 401, "unauthorized")
        assert "revoked" in body["message"]
        # every key revoked: the API stays locked, it does not fall open
        assert_error_body(c.get("/v1/jobs"), 401, "unauthorized")


def test_require_auth_locks_the_api_before_any_key_exists(pg_url, redis_url):
    with make_client(pg_url, redis_url, require_auth=True) as c:
        assert_error_body(c.get("/v1/jobs"), 401, "unauthorized")
        assert c.get("/v1/jobs", headers=bearer(new_key(pg_url, "a"))).status_code == 200


def test_keys_are_stored_hashed_and_found_by_prefix(pg_url):
    key = new_key(pg_url, "team-a")
    factory = make_session_factory(pg_url)
    with factory() as session:
        [row] = db_keys.list_keys(session)
        assert key.startswith(row.prefix) and key not in (row.key_hash, row.prefix, row.id)
        assert row.key_hash == db_keys.hash_key(key) and len(key) >= 46  # "nf_" + 256 bits
        assert db_keys.find_key(session, row.prefix[:8]).id == row.id
        with pytest.raises(LookupError, match="no API key"):
            db_keys.find_key(session, "nf_zzzzzzzz")
        with pytest.raises(ValueError, match="tenant"):
            db_keys.create_key(session, tenant="no spaces")
    factory.kw["bind"].dispose()


# --------------------------------------------------------------------------- tenant matrix


def _seed_tenant(c, db_url: str, key: str) -> dict[str, str]:
    """Through the API: a data set and a job; as a worker would: the job runs, with an epoch,
    its best weights and events, so every endpoint has something to leak."""
    dataset = c.post("/v1/datasets", files={"file": ("points.csv", csv_bytes(), "text/csv")},
                     data={"target": "label"}, headers=bearer(key)).json()
    job = c.post("/v1/jobs", json=iris_spec(), headers=bearer(key)).json()
    factory = make_session_factory(db_url)
    with factory() as session:
        attempt = worker_writes.claim(session, job["id"], "test-worker", lease_seconds=600)
        worker_writes.record_epoch(session, job["id"], attempt, {"epoch": 1, "train_loss": 0.9, "val_loss": 0.8},
                             resume_state=b"resume", best=b"weights", layers=[
                                 {"index": 0, "type": "linear", "weight_max_abs": 0.5, "weight_norm": 2.0,
                                  "grad_norm": 0.1}])
        # a sweep without trials (its trials would show in the tenant's job list)
        sweep = db_sweeps.create_sweep(session, tenant=db_keys.tenant_for(session, key), request={
            "spec": iris_spec(), "parameters": {"model.layers.0.units": {"values": [4, 8]}}, "method": "grid",
            "max_trials": 2, "objective": {"metric": "val_loss", "mode": "min"}}, method="grid",
            metric="val_loss", mode="min", max_trials=2, max_concurrent=1)
    factory.kw["bind"].dispose()
    return {"job_id": job["id"], "dataset_id": dataset["id"], "sweep_id": sweep.id}


def _snapshot(db_url: str, ids: dict[str, str]) -> tuple:
    factory = make_session_factory(db_url)
    with factory() as session:
        job = session.get(Job, ids["job_id"])
        counts = [session.scalar(select(func.count()).select_from(t).where(t.job_id == ids["job_id"]))
                  for t in (EpochMetric, Checkpoint, JobEvent)]
        dataset = session.get(Dataset, ids["dataset_id"])
        state = (job.status, job.cancel_requested, job.updated_at, *counts, dataset and dataset.sha256)
    factory.kw["bind"].dispose()
    return state


PATH_VALUES = {"kind": "best", "fmt": "svg", "version": "best"}


BODIES = {"/v1/jobs/{job_id}/predict": {"instances": [[5.1, 3.5, 1.4, 0.2]]}}


def test_every_endpoint_answers_404_for_another_tenants_ids_and_changes_nothing(pg_url, redis_url):
    keys = {"a": new_key(pg_url, "team-a"), "b": new_key(pg_url, "team-b")}
    with make_client(pg_url, redis_url) as c:
        owned = {t: _seed_tenant(c, pg_url, k) for t, k in keys.items()}
        before = {t: _snapshot(pg_url, ids) for t, ids in owned.items()}
        # every documented operation on one resource, so that a new endpoint is covered too
        routes = [(method.upper(), path) for path, item in c.get("/openapi.json").json()["paths"].items()
                  if "{" in path for method in item]
        assert len(routes) >= 8, routes  # get, metrics, events, cancel, checkpoints, download, curves, dataset
        for me, other in (("a", "b"), ("b", "a")):
            for method, path in routes:
                ids = owned[other] | {"name": owned[other]["job_id"]}  # /v2's model name is the job id
                params = set(re.findall(r"{(\w+)}", path))
                assert params <= set(ids) | set(PATH_VALUES), f"add {path}'s parameters to this test"
                url = path.format(**ids, **PATH_VALUES)
                # a well-formed body where the route takes one: the tenant check must be what refuses
                response = c.request(method, url, headers=bearer(keys[me]), json=BODIES.get(path))
                if path.startswith("/v2/"):  # the Open Inference Protocol's own error form
                    assert response.status_code == 404 and set(response.json()) == {"error"}, (url, response.text)
                    continue
                body = assert_error_body(response, 404, "not_found")
                assert owned[other]["job_id"] not in str(body["details"]), url
                # the ids are real: their owner gets them (a running job's event stream never ends)
                if method == "GET" and not url.endswith("/events"):
                    # (409: the owner's job exists but has no weights yet to export)
                    assert c.get(url, headers=bearer(keys[other])).status_code in (200, 409), url
            # lists show only one's own; another tenant's data set cannot be trained on
            jobs = c.get("/v1/jobs", headers=bearer(keys[me])).json()["items"]
            assert [j["id"] for j in jobs] == [owned[me]["job_id"]]
            datasets = c.get("/v1/datasets", headers=bearer(keys[me])).json()["items"]
            assert [d["id"] for d in datasets] == [owned[me]["dataset_id"]]
            spec = iris_spec()
            spec["dataset"] = {"id": owned[other]["dataset_id"]}
            body = assert_error_body(c.post("/v1/jobs", json=spec, headers=bearer(keys[me])), 422, "invalid")
            assert body["details"][0]["loc"] == ["dataset", "id"]
        assert {t: _snapshot(pg_url, ids) for t, ids in owned.items()} == before


# --------------------------------------------------------------------------- limits


def test_active_job_limit_is_429_with_a_retry_hint_and_nothing_stored(pg_url, redis_url, queued_messages):
    keys = {"a": new_key(pg_url, "team-a"), "b": new_key(pg_url, "team-b")}
    with make_client(pg_url, redis_url, max_active_jobs=2) as c:
        first = [c.post("/v1/jobs", json=iris_spec(), headers=bearer(keys["a"])).json() for _ in range(2)]
        response = c.post("/v1/jobs", json=iris_spec(), headers=bearer(keys["a"]))
        body = assert_error_body(response, 429, "too_many_requests")
        assert int(response.headers["retry-after"]) > 0
        assert "2 jobs queued or running" in body["message"] and "cancel" in body["message"]
        assert len(c.get("/v1/jobs", headers=bearer(keys["a"])).json()["items"]) == 2
        assert queued_messages("cpu") == 2
        # the limit is per tenant, and an ended job frees its place
        assert c.post("/v1/jobs", json=iris_spec(), headers=bearer(keys["b"])).status_code == 201
        c.post(f"/v1/jobs/{first[0]['id']}/cancel", headers=bearer(keys["a"]))
        assert c.post("/v1/jobs", json=iris_spec(), headers=bearer(keys["a"])).status_code == 201


def test_page_size_above_the_cap_is_422_naming_limit(client):
    body = assert_error_body(client.get("/v1/jobs", params={"limit": 201}), 422, "invalid")
    assert body["details"][0]["loc"] == ["query", "limit"] and "200" in body["details"][0]["msg"]


# --------------------------------------------------------------------------- headers, request ids


def test_security_headers_on_every_kind_of_response(pg_url, redis_url):
    with make_client(pg_url, redis_url, max_body_bytes=1000) as c:
        responses = {
            "json": c.get("/v1/jobs"), "error": c.get("/v1/jobs/nope"), "unknown path": c.get("/nope"),
            "too large": c.post("/v1/jobs", content=b"x" * 2000, headers={"content-type": "application/json"}),
            "schema": c.get("/openapi.json"), "docs": c.get("/docs"), "probe": c.get("/healthz"),
        }
        for what, response in responses.items():
            for name, value in SECURITY_HEADERS.items():
                assert response.headers.get(name) == value, (what, name)
            assert response.headers["cache-control"] == "no-store", what
        assert responses["json"].headers["content-security-policy"].startswith("default-src 'none'")
        docs_csp = responses["docs"].headers["content-security-policy"]
        # what /docs loads must be allowed, or the page stays blank
        for source in re.findall(r'(?:src|href)="(https://[^/"]+)', responses["docs"].text):
            assert source in docs_csp, source
        assert "frame-ancestors 'none'" in docs_csp


def test_request_id_is_echoed_or_made_and_errors_carry_it(client):
    ok = client.get("/v1/jobs", headers={"X-Request-ID": "trace-42.a_b"})
    assert ok.headers["x-request-id"] == "trace-42.a_b"
    made = [client.get("/v1/jobs/nope").headers["x-request-id"] for _ in range(2)]
    assert made[0] != made[1] and all(re.fullmatch(r"[0-9a-f]{32}", m) for m in made)
    for hostile in ("x" * 65, "a b", "id\"; drop", "ü"):
        response = client.get("/v1/jobs/nope", headers={"X-Request-ID": hostile.encode("utf-8")})
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), hostile
        assert response.json()["request_id"] == response.headers["x-request-id"]
    error = client.get("/v1/jobs/nope", headers={"X-Request-ID": "mine"})
    assert error.json()["request_id"] == "mine"


def test_unhandled_error_is_a_json_500_with_the_request_id_and_headers(client, caplog):
    def boom() -> None:
        raise RuntimeError("secret internals")

    client.app.add_api_route("/v1/boom", boom)
    response = client.get("/v1/boom", headers={"X-Request-ID": "req-500"})
    body = assert_error_body(response, 500, "internal")
    assert body["request_id"] == "req-500" and "req-500" in body["message"]
    assert "secret internals" not in response.text and response.headers["x-request-id"] == "req-500"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)


def test_api_process_logs_request_ids_in_the_access_log_and_says_auth_is_off(pg_url, redis_url, tmp_path):
    proc, base_url = start_api_process(service_env(pg_url, redis_url), tmp_path / "api.log")
    try:
        response = httpx.get(f"{base_url}/v1/jobs/nope", headers={"X-Request-ID": "trace-access-1"})
        assert response.status_code == 404
        line = wait_until(lambda: next((l for l in proc.output().splitlines() if "trace-access-1" in l), None),
                          timeout=10, what="the access log line")
        assert '"GET /v1/jobs/nope HTTP/1.1" 404' in line and "[trace-access-1]" in line
        assert "auth: off" in proc.output()
    finally:
        proc.stop()


def test_serve_refuses_a_non_loopback_address_without_keys(tmp_path):
    code = f"from launch.server import serve; serve('0.0.0.0', {free_port()})"
    proc = Proc([sys.executable, "-c", code], {}, tmp_path / "serve.log", cwd=tmp_path)
    try:
        assert proc.popen.wait(120) != 0
    finally:
        proc.stop()
    output = proc.output()
    assert "refusing to listen on 0.0.0.0" in output and "netfit keys create" in output
    assert "Traceback" not in output and "ready." not in output  # no worker was started


def test_start_up_auth_rules(sqlite_url, monkeypatch):
    from launch.server import check_auth

    monkeypatch.delenv("NETFIT_API_KEYS", raising=False)
    assert "auth: off" in check_auth("127.0.0.1", 8000, sqlite_url, require_auth=False)
    assert "none yet: `netfit keys create" in check_auth("0.0.0.0", 8000, sqlite_url, require_auth=True)
    with pytest.raises(SystemExit, match="refusing"):
        check_auth("::", 8000, sqlite_url, require_auth=False)
    new_key(sqlite_url, "team-a")
    assert "auth: on, 1 active" in check_auth("0.0.0.0", 8000, sqlite_url, require_auth=False)
    monkeypatch.setenv("NETFIT_API_KEYS", "k=team")  # the old variable: refused, not silently ignored
    with pytest.raises(SystemExit, match="NETFIT_API_KEYS is no longer read"):
        check_auth("127.0.0.1", 8000, sqlite_url, require_auth=False)
