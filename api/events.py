"""Server-Sent Events for a job, by polling the job_events table (works on every backend).

Each event is `id: <row id>`, `event: status|epoch`, `data: <JSON>`. The id grows, so a
client that reconnects with Last-Event-ID gets exactly the events after it. The stream
ends after the job's terminal status event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from api.errors import render_json
from db import jobs as db_jobs
from netfit.models import TERMINAL_STATUSES

POLL_SECONDS = 0.25  # a new epoch shows up within this
KEEPALIVE_SECONDS = 15.0  # a comment line keeps proxies from closing an idle stream

Rows = list[tuple[int, str, dict[str, Any]]]


def format_event(event_id: int, kind: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {render_json(data).decode()}\n\n"


def _event_id(header: str | None) -> int:
    """Last-Event-ID as a row id; anything else ("²", 30 digits, text) replays from the start."""
    value = (header or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else 0


async def job_event_stream(request: Request, tenant: str, job_id: str,
                           last_event_id: str | None) -> AsyncIterator[str] | None:
    """The stream of a job's events after last_event_id; None if the tenant has no such job."""
    factory = request.app.state.session_factory

    def read(after: int) -> tuple[Rows, str | None]:
        with factory() as session:
            job = db_jobs.get_job(session, tenant, job_id)
            if job is None:
                return [], None
            return [(e.id, e.kind, e.data) for e in db_jobs.events_after(session, job_id, after)], job.status

    after = _event_id(last_event_id)
    rows, status = await run_in_threadpool(read, after)
    if status is None:
        return None

    async def stream() -> AsyncIterator[str]:
        nonlocal rows, status, after
        last_sent = time.monotonic()
        yield "retry: 1000\n\n"
        while True:
            for event_id, kind, data in rows:
                yield format_event(event_id, kind, data)
                after, last_sent = event_id, time.monotonic()
                if kind == "status" and data.get("status") in TERMINAL_STATUSES:
                    return
            if not rows:
                if status in TERMINAL_STATUSES or await request.is_disconnected():
                    return  # resumed after the final event, or the client left
                if time.monotonic() - last_sent > KEEPALIVE_SECONDS:
                    last_sent = time.monotonic()
                    yield ": keep-alive\n\n"
            await asyncio.sleep(POLL_SECONDS)
            rows, status = await run_in_threadpool(read, after)

    return stream()
