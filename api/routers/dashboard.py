"""The dashboard at `/` and the API docs at /docs and /redoc, all served from this process.

Static files and small ES modules (no build step, nothing fetched from another host): the
pages are plain HTML that call the same /v1 API a client does, with the API key the user
pastes (kept in the tab's sessionStorage, sent as a bearer header). Vendored libraries sit
under api/static/vendor with their licences (see the README there).

Caching: a vendored library's folder is named by its version, so its files are kept for a year
without asking again; the page and the app's own modules are revalidated on every load (no-cache
+ ETag: a 304 when unchanged), so a deploy shows at once."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from api.errors import invalid, not_found

STATIC = Path(__file__).resolve().parents[1] / "static"
VENDOR = STATIC / "vendor"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
router = APIRouter(include_in_schema=False)
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>netfit API - Swagger UI</title>
<link rel="stylesheet" href="/static/vendor/swagger-ui-5.35.0/swagger-ui.css">
<link rel="icon" href="/static/favicon.svg"></head>
<body><div id="swagger-ui"></div>
<script src="/static/vendor/swagger-ui-5.35.0/swagger-ui-bundle.js"></script>
<script src="/static/docs/swagger-init.js"></script></body></html>"""

REDOC_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>netfit API - ReDoc</title>
<link rel="icon" href="/static/favicon.svg"></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="/static/vendor/redoc-2.5.4/redoc.standalone.js"></script></body></html>"""


class Assets(StaticFiles):
    """StaticFiles (ETag, Last-Modified, 304) with the cache rule above."""

    def file_response(self, full_path: Any, stat_result: os.stat_result, scope: Any, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = IMMUTABLE if Path(full_path).is_relative_to(VENDOR) else REVALIDATE
        return response


ASSETS = Assets(directory=STATIC)


@router.get("/", response_class=FileResponse)
def index(request: Request) -> Response:
    path = STATIC / "index.html"
    return ASSETS.file_response(path, path.stat(), request.scope)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui() -> HTMLResponse:
    return HTMLResponse(DOCS_HTML)


@router.get("/redoc", response_class=HTMLResponse)
def redoc() -> HTMLResponse:
    return HTMLResponse(REDOC_HTML)


@router.get("/dashboard/examples")
def examples() -> JSONResponse:
    """The lab's example specs (examples/*.json) for the editor to start from, read at
    request time so that an edited example shows without a restart."""
    found = {}
    for path in sorted(EXAMPLES.glob("*.json")) if EXAMPLES.is_dir() else []:
        try:
            found[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a half-written file is skipped, not a 500
    return JSONResponse(found)


@router.get("/dashboard/metric-names")
def metric_names() -> JSONResponse:
    """Every metric a job may record (netfit.spec's one list): the job page shows these among a
    job's best metrics and leaves out what else the row holds (lr, seconds)."""
    from netfit.spec import ALL_METRICS

    return JSONResponse(list(ALL_METRICS))


@router.post("/dashboard/spec-diff")
def spec_diff(body: dict[str, Any] = Body(...)) -> JSONResponse:
    """The compare page's spec differences: {"specs": [2-10 job specs]} -> {"rows": [{"field",
    "values"}]}, one row per field whose values differ. A stored spec holds every default; the
    diff is of what the users wrote (defaults left out), and layers are aligned (a dropout layer
    one job has is one row, not a shift of every later layer)."""
    specs = body.get("specs")
    if not isinstance(specs, list) or not 2 <= len(specs) <= 10 or not all(isinstance(x, dict) for x in specs):
        raise invalid({"loc": ["specs"], "msg": "send {\"specs\": [...]} with 2 to 10 job specs"})
    from api.spec_diff import differences

    return JSONResponse({"rows": [{"field": f, "values": v} for f, v in differences(specs)]})


@router.get("/dashboard/examples/{name}")
def example(name: str) -> JSONResponse:
    path = EXAMPLES / f"{name}.json"
    if not name.replace("_", "").replace("-", "").isalnum() or not path.is_file():
        raise not_found("example", name)
    return JSONResponse(json.loads(path.read_text()))


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", ASSETS, name="static")
