"""GET /v1/jobs/{id}/layer-stats (paged like the metrics), layers.png|svg, and the statistics in
the SSE epoch events: as a worker records them (tests.worker_writes.record_epoch), per tenant."""

from __future__ import annotations

from db import jobs as db_jobs
from db.session import make_session_factory
from tests import worker_writes
from netfit.sse import EpochEvent, job_event, parse_sse
from tests.api.conftest import make_client
from tests.api.conftest import bearer, new_key
from tests.api.conftest import assert_error_body
from tests.conftest import iris_spec


def stats(epoch: int) -> list[dict]:
    """Two linear layers, the first's gradient 1000x below the last's, as a deep sigmoid net has it."""
    return [{"index": 0, "type": "linear", "weight_max_abs": 0.5 + epoch, "weight_norm": 4.0, "grad_norm": 1e-4 / epoch},
            {"index": 2, "type": "linear", "weight_max_abs": 0.25, "weight_norm": 2.0, "grad_norm": 0.1 / epoch}]


def run_job(db_url: str, tenant: str, epochs: list[list[dict] | None], *, finish: bool = True) -> str:
    """A job that ran `len(epochs)` epochs, recorded as the worker does, each with its statistics."""
    factory = make_session_factory(db_url)
    with factory() as session:
        job_id = db_jobs.create_job(session, tenant=tenant, spec=iris_spec(), summary=None, queue="cpu").id
        attempt = worker_writes.claim(session, job_id, "test-worker", lease_seconds=600)
        for epoch, layers in enumerate(epochs, 1):
            worker_writes.record_epoch(session, job_id, attempt, {"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 0.9},
                                 resume_state=b"resume", layers=layers)
        if finish:
            worker_writes.finish(session, job_id, attempt, status="succeeded", stop_reason="max_epochs",
                           epochs_completed=len(epochs))
    factory.kw["bind"].dispose()
    return job_id


def test_layer_stats_page_by_epoch_per_tenant_with_non_finite_values_as_null(pg_url, redis_url):
    owner, other = bearer(new_key(pg_url, "team-a")), bearer(new_key(pg_url, "team-b"))
    broken = stats(3)
    broken[0]["grad_norm"] = float("nan")  # a diverged step: no JSON number, and never a 500
    job_id = run_job(pg_url, "team-a", [stats(1), stats(2), broken, None])  # epoch 4 measured nothing
    path = f"/v1/jobs/{job_id}/layer-stats"
    with make_client(pg_url, redis_url) as c:
        whole = c.get(path, headers=owner)
        assert whole.status_code == 200, whole.text
        body = whole.json()
        assert ([row["epoch"] for row in body["items"]], body["next_cursor"]) == ([1, 2, 3], None)
        assert body["items"][0] == {"epoch": 1, "layers": stats(1)}
        assert body["items"][2]["layers"][0]["grad_norm"] is None and body["items"][2]["layers"][1] == broken[1]
        first = c.get(path, params={"limit": 2}, headers=owner).json()
        assert ([row["epoch"] for row in first["items"]], first["next_cursor"]) == ([1, 2], "2")
        rest = c.get(path, params={"limit": 2, "cursor": first["next_cursor"]}, headers=owner).json()
        assert ([row["epoch"] for row in rest["items"]], rest["next_cursor"]) == ([3], None)
        body = assert_error_body(c.get(path, params={"cursor": "two"}, headers=owner), 422, "invalid")
        assert body["details"][0]["loc"] == ["query", "cursor"]

        # another tenant's job and an unknown id look the same: 404, nothing leaked
        for url in (path, f"/v1/jobs/{job_id}/layers.png", "/v1/jobs/nosuchjob00/layer-stats"):
            headers = other if "nosuch" not in url else owner
            body = assert_error_body(c.get(url, headers=headers), 404, "not_found")
            assert "grad_norm" not in str(body)

        # the epoch events carry the same statistics (replayed: the job has ended, so the stream ends)
        with c.stream("GET", f"/v1/jobs/{job_id}/events", headers=owner) as stream:
            events = [job_event(raw) for raw in parse_sse(stream.iter_lines())]
        epochs = [e for e in events if isinstance(e, EpochEvent)]
        assert [e.epoch for e in epochs] == [1, 2, 3, 4]
        assert [layer.model_dump() for layer in epochs[0].layers] == stats(1)
        assert epochs[2].layers[0].grad_norm is None and epochs[3].layers is None


def test_layers_plot_as_png_and_svg_and_a_clear_404_before_any_statistics(pg_url, redis_url):
    job_id = run_job(pg_url, "default", [stats(e) for e in range(1, 6)])
    bare = run_job(pg_url, "default", [None], finish=False)
    with make_client(pg_url, redis_url) as c:
        png = c.get(f"/v1/jobs/{job_id}/layers.png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 10_000
        svg = c.get(f"/v1/jobs/{job_id}/layers.svg")
        assert svg.headers["content-type"].startswith("image/svg+xml")
        for series in ("weight_max_abs:0", "weight_max_abs:2", "grad_norm:0", "grad_norm:2"):
            assert f'id="{series}' in svg.text, series
        body = assert_error_body(c.get(f"/v1/jobs/{bare}/layers.svg"), 404, "not_found")
        assert "no layer statistics yet" in body["message"]
        assert c.get(f"/v1/jobs/{bare}/layer-stats").json() == {"items": [], "next_cursor": None}
