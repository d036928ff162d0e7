"""The shared cluster through the API (in process, PostgreSQL + Redis, no worker): a tenant's
priority cap, a queued job that says why it waits, deletes that refuse what is in use and give
the space back, retention's 410, usage."""

from __future__ import annotations

import io
import os

import numpy as np
from sqlalchemy import select, text, update

from db import retention
from db import tenants as db_tenants
from db.migrate import upgrade
from db.models import Checkpoint, Job, JobEvent, utcnow
from db.session import make_session_factory
from tests.api.conftest import assert_error_body, csv_bytes, make_client
from tests.conftest import iris_spec


def _session(url: str):
    return make_session_factory(url)()


def test_a_priority_above_the_tenants_cap_is_a_422_naming_the_field_and_the_cap(client, pg_url):
    assert client.post("/v1/jobs", json=iris_spec() | {"priority": 100}).status_code == 201  # no cap yet
    with _session(pg_url) as session:
        db_tenants.set_tenant(session, "default", max_priority=10)
    body = assert_error_body(client.post("/v1/jobs", json=iris_spec() | {"priority": 11}), 422, "invalid")
    assert body["details"][0]["loc"] == ["priority"] and "max_priority 10" in body["details"][0]["msg"]
    assert client.post("/v1/jobs", json=iris_spec() | {"priority": 10}).json()["priority"] == 10
    sweep = {"spec": iris_spec(), "parameters": {"model.layers.0.units": {"values": [4, 8]}}, "method": "grid",
             "priority": 50}
    body = assert_error_body(client.post("/v1/sweeps", json=sweep), 422, "invalid")
    assert body["details"][0]["loc"] == ["priority"] and "max_priority 10" in body["message"]
    out_of_range = assert_error_body(client.post("/v1/jobs", json=iris_spec() | {"priority": 101}), 422, "invalid")
    assert out_of_range["details"][0]["loc"][-1] == "priority"


def test_a_queued_job_says_why_it_waits(client, pg_url):
    first = client.post("/v1/jobs", json=iris_spec()).json()
    second = client.post("/v1/jobs", json=iris_spec() | {"priority": 5}).json()
    # no worker runs: said on the job, in its event stream and by /readyz
    assert second["waiting"]["reason"] == "no_worker" and "queue 'cpu'" in second["waiting"]["message"]
    # the higher priority goes first in line
    assert client.get(f"/v1/jobs/{second['id']}").json()["waiting"]["position"] == 1
    assert client.get(f"/v1/jobs/{first['id']}").json()["waiting"]["position"] == 2
    with _session(pg_url) as session:  # the event, for `netfit submit --follow` and the dashboard
        kinds = session.scalars(select(JobEvent.kind).where(JobEvent.job_id == first["id"])).all()
    assert kinds == ["status", "waiting"]
    ready = client.get("/readyz").json()
    assert ready["workers"]["cpu"] == 0 and any("queue 'cpu'" in w for w in ready["warnings"])


def test_deletes_refuse_what_is_in_use_then_free_it(client):
    response = client.post("/v1/datasets", files={"file": ("d.csv", csv_bytes(), "text/csv")}, data={"target": "label"})
    assert response.status_code == 201, response.text
    upload = response.json()
    spec = iris_spec() | {"dataset": {"id": upload["id"]}}
    spec["model"]["layers"][-1]["units"] = 2  # the upload's two classes
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    job = response.json()
    body = assert_error_body(client.delete(f"/v1/jobs/{job['id']}"), 409, "conflict")
    assert f"POST /v1/jobs/{job['id']}/cancel" in body["message"]
    body = assert_error_body(client.delete(f"/v1/datasets/{upload['id']}"), 409, "conflict")
    assert job["id"] in body["message"]
    response = client.post("/v1/sweeps", json={"spec": iris_spec(), "parameters": {"model.layers.0.units": {
        "values": [4, 8]}}, "method": "grid"})
    assert response.status_code == 201, response.text
    sweep = response.json()
    assert "cancel it first" in assert_error_body(client.delete(f"/v1/sweeps/{sweep['id']}"), 409, "conflict")["message"]

    assert client.get("/v1/usage").json()["dataset_bytes"] == upload["size_bytes"]
    client.post(f"/v1/jobs/{job['id']}/cancel")
    client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    trials = [t["id"] for t in client.get("/v1/jobs", params={"sweep": sweep["id"]}).json()["items"]]
    for path in (f"/v1/jobs/{job['id']}", f"/v1/datasets/{upload['id']}", f"/v1/sweeps/{sweep['id']}"):
        assert client.delete(path).status_code == 204, path
        assert_error_body(client.get(path), 404, "not_found")
        assert_error_body(client.delete(path), 404, "not_found")
    for trial in trials:
        assert_error_body(client.get(f"/v1/jobs/{trial}"), 404, "not_found")
    assert client.get("/v1/usage").json() | {"tenant": "default"} == {
        "tenant": "default", "running_jobs": 0, "queued_jobs": 0, "checkpoint_bytes": 0, "dataset_bytes": 0,
        "datasets": 0}


def _npz(megabytes: int) -> bytes:
    rng = np.random.default_rng(0)
    rows = megabytes * 1024 * 1024 // (4 * 64)
    buffer = io.BytesIO()
    np.savez(buffer, x=rng.normal(size=(rows, 64)).astype(np.float32), y=rng.integers(0, 3, rows))
    return buffer.getvalue()


def _disk(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def test_sqlite_gives_a_deleted_data_sets_bytes_back_to_the_file_system(tmp_path, redis_url):
    path = str(tmp_path / "netfit.db")
    url = f"sqlite:///{path}"
    upgrade(url)
    blob = _npz(24)
    with make_client(url, redis_url, max_upload_bytes=64 * 1024 * 1024) as c:
        empty = _disk(path)
        upload = c.post("/v1/datasets", files={"file": ("big.npz", blob, "application/octet-stream")})
        assert upload.status_code == 201, upload.text
        kept = upload.json()["size_bytes"]
        full = _disk(path)
        assert full - empty >= kept  # the bytes are on disk...
        assert c.delete(f"/v1/datasets/{upload.json()['id']}").status_code == 204
        after = _disk(path)
    # ...and go back: what stays is a small fraction of what was kept (free pages and the -wal truncated)
    assert after - empty < 0.05 * kept, (empty, full, after, kept)


def test_postgresql_reuses_a_deleted_data_sets_space(client, pg_url):
    blob = _npz(8)
    engine = make_session_factory(pg_url).kw["bind"]

    def table_bytes() -> int:
        with engine.connect() as conn:
            return conn.execute(text("SELECT pg_total_relation_size('datasets')")).scalar()

    def vacuum() -> None:  # what autovacuum does on its own schedule
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM datasets"))

    first = client.post("/v1/datasets", files={"file": ("a.npz", blob, "application/octet-stream")}).json()
    once = table_bytes()
    assert client.delete(f"/v1/datasets/{first['id']}").status_code == 204
    vacuum()
    client.post("/v1/datasets", files={"file": ("b.npz", blob, "application/octet-stream")})
    # the second upload went into the first one's freed pages: the table did not grow by another copy
    assert table_bytes() < once + 0.2 * first["size_bytes"], (once, table_bytes(), first["size_bytes"])


def test_retention_removes_old_failed_weights_and_resume_states_and_their_download_is_a_410(client, pg_url):
    failed = client.post("/v1/jobs", json=iris_spec()).json()["id"]
    recent = client.post("/v1/jobs", json=iris_spec()).json()["id"]
    cancelled = client.post("/v1/jobs", json=iris_spec()).json()["id"]
    with _session(pg_url) as session:
        old = utcnow().replace(year=2020)
        for job_id, status, updated in ((failed, "failed", old), (recent, "failed", utcnow()),
                                        (cancelled, "cancelled", utcnow())):
            session.execute(update(Job).where(Job.id == job_id).values(status=status, updated_at=updated))
            for kind in ("best", "last") + (("resume",) if job_id == cancelled else ()):
                session.add(Checkpoint(job_id=job_id, kind=kind, epoch=1, metrics={}, data=b"w" * 1000,
                                       size_bytes=1000, sha256="0" * 64))
        session.commit()
        assert client.get("/v1/usage").json()["checkpoint_bytes"] == 7000
        removed = retention.retain(session, keep_failed_days=30)
        assert removed == {"resume": 1, "keep_best_trials": 0, "NETFIT_KEEP_FAILED_DAYS": 2}
        assert retention.retain(session, keep_failed_days=30) == {"resume": 0, "keep_best_trials": 0,
                                                                  "NETFIT_KEEP_FAILED_DAYS": 0}
    body = assert_error_body(client.get(f"/v1/jobs/{failed}/checkpoints/best"), 410, "gone")
    assert "NETFIT_KEEP_FAILED_DAYS" in body["message"]
    assert client.get(f"/v1/jobs/{recent}/checkpoints/best").status_code == 200  # younger than the rule
    assert client.get(f"/v1/jobs/{cancelled}/checkpoints/last").status_code == 200  # only its resume state went
    assert client.get("/v1/usage").json()["checkpoint_bytes"] == 4000
