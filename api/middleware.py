"""RequestContext: the outermost middleware. It gives each request its id (echoed in
X-Request-ID, put in error bodies and log lines), adds the security headers to every
response, and turns an unhandled exception into the JSON 500 — here rather than in
Starlette's ServerErrorMiddleware, which would send it without these headers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from api import errors
from service.logs import accept_request_id, request_id as current_request

log = logging.getLogger("netfit.api")

SECURITY_HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
}
# The API serves JSON, SSE, weights and images: nothing of it may run script or be framed
# (an SVG served with this policy cannot run script either).
API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
# /docs, /redoc and the dashboard (`/`, /static) run only this origin's scripts, from files
# (no inline script). Styles may be inline: Swagger UI and ReDoc set style attributes and
# ReDoc injects <style> at run time; uPlot sizes its canvas by style attributes. ReDoc's
# search runs in a blob: worker.
DOCS_CSP = (b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            b"img-src 'self' data: blob:; font-src 'self'; worker-src 'self' blob:; connect-src 'self'; "
            b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'")
DOCS_PATHS = ("/docs", "/redoc", "/static/", "/dashboard/")


class RequestContext:
    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = dict(scope.get("headers") or []).get(b"x-request-id")
        request_id = accept_request_id(incoming.decode("latin-1") if incoming is not None else None)
        current_request.set(request_id)
        csp = DOCS_CSP if scope["path"] == "/" or scope["path"].startswith(DOCS_PATHS) else API_CSP
        started = False

        async def send_with_headers(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS.items() if k not in present]
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", csp))
                if b"cache-control" not in present:  # tenants' data: never kept by a shared cache
                    headers.append((b"cache-control", b"no-store"))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if started:  # a stream broke half-way: nothing can be sent any more
                raise
            response = errors.internal_error()
            await response(scope, receive, send_with_headers)
