"""GET /v1/compare.{svg,png}?jobs=A,B: several jobs' validation curves overlaid, per tenant."""

from __future__ import annotations

from db import jobs as db_jobs
from db.session import make_session_factory
from tests import worker_writes
from tests.api.conftest import make_client
from tests.api.conftest import bearer, new_key
from tests.api.conftest import assert_error_body
from tests.conftest import iris_spec


def trained_job(db_url: str, tenant: str, name: str, epochs: int, turn: int) -> str:
    """A job with `epochs` epochs recorded as a worker records them: validation loss lowest at `turn`."""
    factory = make_session_factory(db_url)
    with factory() as session:
        job = db_jobs.create_job(session, tenant=tenant, spec=iris_spec() | {"name": name}, summary=None, queue="cpu")
        attempt = worker_writes.claim(session, job.id, "test-worker", lease_seconds=600)
        for e in range(1, epochs + 1):
            val = 0.3 + abs(e - turn) / 10
            worker_writes.record_epoch(session, job.id, attempt, {"epoch": e, "train_loss": 1 / e, "val_loss": val,
                                 "train_accuracy": 1 - 0.5 / e, "val_accuracy": 0.9 - val / 10},
                                 resume_state=b"state", best=b"weights" if e <= turn else None)
        job_id = job.id
    factory.kw["bind"].dispose()
    return job_id


def test_compare_overlays_the_tenants_jobs_and_hides_another_tenants(pg_url, redis_url):
    mine, theirs = new_key(pg_url, "team-a"), new_key(pg_url, "team-b")
    a = trained_job(pg_url, "team-a", "small", 12, turn=6)
    b = trained_job(pg_url, "team-a", "large", 8, turn=3)
    other = trained_job(pg_url, "team-b", "secret", 5, turn=2)
    with make_client(pg_url, redis_url) as c:
        svg = c.get(f"/v1/compare.svg?jobs={a},{b}", headers=bearer(mine))
        assert svg.status_code == 200, svg.text
        assert svg.headers["content-type"].startswith("image/svg+xml")
        text = svg.text
        for gid in (f"loss:small ({a})", f"loss:large ({b})", f"best:small ({a})", f"accuracy:large ({b})"):
            assert f'id="{gid}' in text, gid
        png = c.get(f"/v1/compare.png?jobs={a}", headers=bearer(mine))
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        # another tenant's job is a 404 naming it, as on every job route; nothing of it is drawn
        body = assert_error_body(c.get(f"/v1/compare.svg?jobs={a},{other}", headers=bearer(mine)), 404, "not_found")
        assert other in body["message"]
        assert c.get(f"/v1/compare.svg?jobs={other}", headers=bearer(theirs)).status_code == 200
        # bad lists are 422s that say what to send
        for query, word in (("jobs=", "comma"), ("jobs=../x", "not a job id"), ("jobs=" + ",".join("abcdefghijklm"), "at most")):
            body = assert_error_body(c.get(f"/v1/compare.svg?{query}", headers=bearer(mine)), 422, "invalid")
            assert word in body["message"], body
