"""The dashboard at `/` and the API docs at /docs and /redoc, all served from this process.

Static files and small ES modules (no build step, nothing fetched from another host): the
pages are plain HTML that call the same /v1 API a client does, with the API key the user
pastes (kept in the tab's sessionStorage, sent as a bearer header). Vendored libraries sit
under api/static/vendor with their licences (see the README there)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from api.errors import not_found

STATIC = Path(__file__).resolve().parents[1] / "static"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
router = APIRouter(include_in_schema=False)

DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>netfit API - Swagger UI</title>
<link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">
<link rel="icon" href="/static/favicon.svg"></head>
<body><div id="swagger-ui"></div>
<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/docs/swagger-init.js"></script></body></html>"""

REDOC_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>netfit API - ReDoc</title>
<link rel="icon" href="/static/favicon.svg"></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="/static/vendor/redoc/redoc.standalone.js"></script></body></html>"""


@router.get("/", response_class=FileResponse)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


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


@router.get("/dashboard/examples/{name}")
def example(name: str) -> JSONResponse:
    path = EXAMPLES / f"{name}.json"
    if not name.replace("_", "").replace("-", "").isalnum() or not path.is_file():
        raise not_found("example", name)
    return JSONResponse(json.loads(path.read_text()))


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
