"""GET /v1/jobs/{id}, its /metrics, /checkpoints and weights carry a strong ETag of their content:
the same tag sent back (If-None-Match) is a 304 with no body; a running job's tag moves with its
epochs; Cache-Control makes a browser revalidate instead of showing a stale copy."""

from __future__ import annotations

from db.session import make_session_factory
from tests import worker_writes
from tests.conftest import iris_spec


def test_a_job_answers_304_to_its_etag_and_a_running_jobs_etag_changes(client, pg_url):
    job_id = client.post("/v1/jobs", json=iris_spec()).json()["id"]
    factory = make_session_factory(pg_url)
    paths = [f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/metrics", f"/v1/jobs/{job_id}/checkpoints/best",
             f"/v1/jobs/{job_id}/checkpoints"]
    try:
        with factory() as s:
            attempt = worker_writes.claim(s, job_id, "w", lease_seconds=30)
            worker_writes.record_epoch(s, job_id, attempt, {"epoch": 1, "train_loss": 0.9, "val_loss": 0.8},
                                 resume_state=b"s", best=b"w1")
        running = {p: client.get(p) for p in paths}
        for path, first in running.items():
            assert first.status_code == 200 and first.headers["etag"].startswith('"'), path
            again = client.get(path, headers={"If-None-Match": first.headers["etag"]})
            assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", first.headers["etag"]), path
            # a browser keeps the body and asks again each time; no shared cache keeps it
            assert first.headers["cache-control"] == again.headers["cache-control"] == "private, no-cache", path

        with factory() as s:  # another epoch: the running job's tags move, the old one gets the new body
            worker_writes.record_epoch(s, job_id, attempt, {"epoch": 2, "train_loss": 0.7, "val_loss": 0.6},
                                 resume_state=b"s", best=b"w2")
        for path, first in running.items():
            moved = client.get(path, headers={"If-None-Match": first.headers["etag"]})
            assert moved.status_code == 200 and moved.headers["etag"] != first.headers["etag"], path
        assert len(moved.json()["items"]) == 1 and moved.json()["items"][0]["epoch"] == 2  # the best checkpoint

        with factory() as s:
            worker_writes.finish(s, job_id, attempt, status="succeeded", stop_reason="max_epochs")
        finished = client.get(f"/v1/jobs/{job_id}/metrics")
        assert [r["epoch"] for r in finished.json()["items"]] == [1, 2]
        for _ in range(2):  # the kept page of a finished job answers with the same tag
            assert client.get(f"/v1/jobs/{job_id}/metrics",
                              headers={"If-None-Match": f'"other", {finished.headers["etag"]}'}).status_code == 304
        assert client.get(f"/v1/jobs/{job_id}/metrics", headers={"If-None-Match": '"other"'}).status_code == 200
    finally:
        factory.kw["bind"].dispose()
