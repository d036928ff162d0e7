"""Every error is netfit.models.ErrorBody JSON: a code, a sentence, per-field details."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_core import to_json
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.logs import request_id

log = logging.getLogger("netfit.api")

STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 409: "conflict", 410: "gone", 413: "too_large", 415: "unsupported_media_type",
                422: "invalid", 429: "too_many_requests", 503: "unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, error: str | None = None,
                 details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.error = error or STATUS_CODES.get(status, "error")
        self.details = details or []
        self.headers = headers


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"no {what} with id '{ident}' (check the id; another API key's {what}s are not visible)")


def render_json(content: Any) -> bytes:
    """The one renderer of every JSON response and event: NaN/inf as null (JSON has no
    spelling for them; stored metrics are already scrubbed, a prediction may not be).
    pydantic's serializer: 6x json.dumps on 1,000 metrics rows; small exponents are spelled
    out (1e-05 -> 0.00001), values are kept."""
    return to_json(content, inf_nan_mode="null")


class SafeJSONResponse(JSONResponse):
    """The app's default response: never fails on a non-finite float."""

    def render(self, content: Any) -> bytes:
        return render_json(content)


def error_response(status: int, error: str, message: str, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> SafeJSONResponse:
    return SafeJSONResponse({"error": error, "message": message, "details": details or [],
                             "request_id": request_id.get()}, status_code=status, headers=headers)


def internal_error() -> SafeJSONResponse:
    """The 500 for an unhandled exception (call it inside `except`): logged with its traceback
    under the request id, which the body gives the user to quote."""
    log.exception("unhandled error")
    return error_response(500, "internal", f"internal error; quote request id {request_id.get()} "
                                           "when reporting it")


def _loc(loc: tuple[Any, ...] | list[Any]) -> list[str | int]:
    # "body" is where FastAPI found the JSON; the rest is the path inside the spec
    parts = list(loc)
    return [p if isinstance(p, int) else str(p) for p in (parts[1:] if parts[:1] == ["body"] else parts)]


def validation_details(errors: list[dict[str, Any]], body: Any = None) -> list[dict[str, Any]]:
    from netfit.spec import teach

    out = []
    for e in errors:
        if e.get("type") == "json_invalid":  # loc ("body", offset): say where, and the usual cause
            out.append({"loc": [], "msg": json_error(body, e.get("loc", (None, 0))[-1], (e.get("ctx") or {}).get("error"))})
        else:
            out.append({"loc": _loc(e.get("loc", ())), "msg": teach(e)})
    return out


def json_error(body: Any, pos: Any, why: str | None) -> str:
    """'not valid JSON at line L, column C (why)' and the likely cause of it."""
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body or "")
    pos = pos if isinstance(pos, int) and 0 <= pos <= len(text) else 0
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    before = text[:pos].rstrip()
    stripped = text.strip()
    if stripped and stripped[0] not in "{[\"" and not stripped[0].isdigit() and stripped[:4] not in ("true", "fals", "null"):
        cause = (f"the body starts with '{stripped[:40]}', not '{{': with curl, send a file as -d @{stripped.split()[0].lstrip('@')[:40]} "
                 "(the @ makes curl read the file; without it curl sends the name itself)")
    elif before.endswith(",") and text[pos:pos + 1] in ("}", "]"):
        cause = "a trailing comma before a closing } or ]: JSON allows none; remove it"
    elif text[pos:pos + 1] == "'":
        cause = "JSON strings and names take double quotes (\"), not single quotes"
    elif pos >= len(text.rstrip()):
        cause = "the JSON ends early: a closing } or ] or a quote is missing"
    else:
        cause = f"check the JSON near '{text[max(0, pos - 20):pos + 20].strip()}'"
    return f"the body is not valid JSON at line {line}, column {column} ({why or 'decode error'}): {cause}"


def body_hint(request: Request, errors: list[dict[str, Any]], body: Any) -> str | None:
    """What to send, when the body as a whole is not the object a route takes (pydantic's own
    words, "Input should be a valid dictionary or object to extract fields from" at loc [],
    say neither why nor what to send)."""
    if not any(e.get("type") in ("model_attributes_type", "dict_type") and list(e.get("loc", ())) == ["body"]
               for e in errors):
        return None
    ctype = request.headers.get("content-type") or ""
    if "json" not in ctype.lower():
        sent = f"content-type {ctype.split(';')[0]}" if ctype else "no content-type"
        return (f"the body was sent with {sent}, so it was not read as JSON: send the header "
                "content-type: application/json (curl: -H 'content-type: application/json'; the SDK and CLI do)")
    if isinstance(body, list) and request.url.path.endswith("/predict"):
        return ('the body is a bare list: send an object, {"instances": [...]}, with one item per sample, '
                'e.g. {"instances": [[5.1, 3.5, 1.4, 0.2]]}')
    if isinstance(body, list):
        return "the body is a JSON list: send a JSON object ({...})"
    return None


def describe(details: list[dict[str, Any]], prefix: str) -> str:
    first = details[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(details) - 1} more problem{'s' * (len(details) > 2)})" if len(details) > 1 else ""
    return f"{prefix}: {where + ': ' if where else ''}{first['msg']}{more}"


def invalid(details: dict[str, Any] | list[dict[str, Any]], what: str = "the request is invalid") -> ApiError:
    """The 422 of every router: the message names the first problem's field and what to do,
    `details` keeps every problem ({"loc": [...], "msg": ...})."""
    details = [details] if isinstance(details, dict) else details
    return ApiError(422, describe(details, what), details=details)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path (Starlette's own 405 names only the
    first matching route's, e.g. GET alone on /v1/jobs, which also takes POST)."""
    return [method for method in ("DELETE", "GET", "PATCH", "POST", "PUT")
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                   for route in request.app.router.routes)]


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        body = getattr(exc, "body", None)
        hint = body_hint(request, list(exc.errors()), body)
        details = [{"loc": [], "msg": hint}] if hint else validation_details(list(exc.errors()), body)
        return error_response(422, "invalid", describe(details, "the request is invalid"), details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 404 and isinstance(exc.detail, str) and exc.detail == "Not Found":
            message = f"there is no {request.method} {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            allowed = allowed_methods(request)
            message = f"{request.method} is not allowed on {request.url.path}; use {' or '.join(allowed)}"
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, STATUS_CODES.get(exc.status_code, "error"), message, headers=headers)

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", str(exc).splitlines()[0])
        return error_response(503, "unavailable", "the database is unavailable; retry in a few seconds",
                              headers={"Retry-After": "5"})

    # unhandled exceptions: api.middleware.RequestContext answers with internal_error()
