"""`GET /metrics`: the Prometheus exposition (api.telemetry says what and how).

Not behind tenant API keys: a scraper is no tenant. NETFIT_METRICS_TOKEN, when set, is the
bearer token a scraper must send; tenant names appear only with NETFIT_METRICS_TENANTS=1.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.errors import error_response

router = APIRouter(tags=["monitoring"])


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    token = request.app.state.settings.metrics_token
    if token:
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return error_response(401, "unauthorized",
                                  "send the scrape token as 'Authorization: Bearer <NETFIT_METRICS_TOKEN>'",
                                  headers={"WWW-Authenticate": "Bearer"})
    # the collector queries the database: off the event loop
    body = await run_in_threadpool(generate_latest, request.app.state.metrics_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
