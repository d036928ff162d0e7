"""The server side of the dashboard, without a browser: /docs and /redoc work offline (every
asset from this service), POST /v1/jobs?dry_run=true stores nothing, the name filter."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sqlalchemy import func, select

from api.routers.dashboard import STATIC
from db.models import Job
from db.session import make_session_factory
from tests.api.conftest import make_client
from tests.conftest import iris_spec


def test_docs_and_redoc_reference_no_other_host_and_their_assets_answer(client):
    for page in ("/docs", "/redoc", "/"):
        response = client.get(page)
        assert response.status_code == 200, page
        refs = re.findall(r'(?:src|href|spec-url)="([^"]+)"', response.text)
        assert refs, page
        for ref in refs:
            assert not urlsplit(ref).netloc, f"{page} loads {ref} from another host"
            assert client.get(ref).status_code == 200, (page, ref)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "http" not in csp, csp
    # the Swagger UI starter names the schema this app serves
    assert "/openapi.json" in client.get("/static/docs/swagger-init.js").text
    assert client.get("/openapi.json").status_code == 200


def test_dry_run_summarises_and_stores_nothing_and_a_bad_spec_is_the_same_422(pg_url, redis_url, queued_messages):
    with make_client(pg_url, redis_url) as c:
        dry = c.post("/v1/jobs", params={"dry_run": "true"}, json=iris_spec(epochs=7))
        assert dry.status_code == 200, dry.text
        body = dry.json()
        assert body["dry_run"] is True and body["epochs"] == 7
        assert body["summary"]["layers"][-1]["output_shape"] == [3]
        assert body["summary"]["total_params"] == 4 * 16 + 16 + 16 * 3 + 3
        assert body["spec"]["training"]["early_stopping"] is not None or "early_stopping" in body["spec"]["training"]
        bad = iris_spec()
        bad["model"]["layers"][-1]["units"] = 5  # iris has 3 classes
        dry_bad = c.post("/v1/jobs", params={"dry_run": "true"}, json=bad)
        real_bad = c.post("/v1/jobs", json=bad)
        assert dry_bad.status_code == real_bad.status_code == 422
        assert dry_bad.json()["details"] == real_bad.json()["details"]
        assert dry_bad.json()["details"][0]["loc"][:2] == ["model", "layers"]
        typo = c.post("/v1/jobs", params={"dry_run": "true"}, json={**iris_spec(), "trainig": {}})
        assert typo.status_code == 422 and typo.json()["details"][0]["loc"] == ["trainig"]
    factory = make_session_factory(pg_url)
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    factory.kw["bind"].dispose()
    assert queued_messages() == 0


def test_list_filters_by_name_substring(client):
    for name in ("iris-small", "IRIS-large", "digits"):
        assert client.post("/v1/jobs", json={**iris_spec(), "name": name}).status_code == 201
    names = {j["name"] for j in client.get("/v1/jobs", params={"name": "iris"}).json()["items"]}
    assert names == {"iris-small", "IRIS-large"}
    assert client.get("/v1/jobs", params={"name": "%"}).json()["items"] == []  # a literal, not a wildcard


def test_vendored_files_are_kept_and_the_apps_own_files_revalidate(client):
    # a vendored library's folder is named by its VERSION: a new version is a new path
    vendor = STATIC / "vendor"
    for folder in (p for p in vendor.iterdir() if p.is_dir()):
        assert folder.name.endswith("-" + (folder / "VERSION").read_text().strip()), folder.name
    kept = client.get("/static/vendor/uplot-1.6.32/uPlot.esm.js")
    assert kept.status_code == 200 and "immutable" in kept.headers["cache-control"]
    assert "max-age=31536000" in kept.headers["cache-control"]
    for path in ("/", "/static/js/app.js", "/static/js/jobs.js", "/static/app.css"):
        first = client.get(path)
        assert first.status_code == 200 and first.headers["cache-control"] == "no-cache", path
        # unchanged: a 304 without the body; the browser keeps showing its copy
        again = client.get(path, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b"", path
        assert again.headers["cache-control"] == "no-cache"
    # the tenants' data keeps its own rule: never stored
    assert client.get("/v1/jobs").headers["cache-control"] == "no-store"


def test_the_compare_pages_spec_diff_is_what_users_wrote_with_layers_aligned(client):
    import json

    from api.routers.dashboard import EXAMPLES
    from netfit.spec import JobSpec

    # as stored: every default filled in (negative_slope, nine early_stopping fields, ...)
    names = ("overfitting_large_no_es", "overfitting_large_dropout", "overfitting_large_es")
    stored = [JobSpec.model_validate(json.loads((EXAMPLES / f"{n}.json").read_text())).model_dump(mode="json") for n in names]
    response = client.post("/dashboard/spec-diff", json={"specs": stored})
    assert response.status_code == 200, response.text
    rows = {r["field"]: r["values"] for r in response.json()["rows"]}
    # the two dropout layers are two rows (not every later layer), and only the fields someone set
    assert set(rows) == {"name", "training.early_stopping.patience", "training.early_stopping.start_from_epoch",
                         "model.layers.2", "model.layers.5"}, sorted(rows)
    assert rows["model.layers.2"] == [None, {"index": 2, "type": "dropout", "p": 0.3}, None]
    assert rows["training.early_stopping.patience"] == [None, None, 100]
    bad = client.post("/dashboard/spec-diff", json={"specs": [stored[0]]})
    assert bad.status_code == 422 and "2 to 10" in bad.json()["message"]
