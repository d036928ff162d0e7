"""Server-Sent Events for a job, by polling the job_events table (works on every backend).

Each event is `id: <row id>`, `event: status|epoch`, `data: <JSON>`. The id grows, so a
client that reconnects with Last-Event-ID gets exactly the events after it. The stream
ends after the job's terminal status event.

A sweep's stream reads the same table for all its trials (their status changes and prunings)
and ends with `event: sweep` when the sweep has ended and no trial is active.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.errors import render_json
from db import jobs as db_jobs
from db.models import utcnow
from netfit.models import TERMINAL_STATUSES
from netfit import objective

POLL_SECONDS = 0.25  # a new epoch shows up within this
KEEPALIVE_SECONDS = 15.0  # a comment line keeps proxies from closing an idle stream

Rows = list[tuple[int, str, dict[str, Any]]]


def sse_response(stream: AsyncIterator[str]) -> StreamingResponse:
    """The response of every event stream: never cached (each connection replays from its
    Last-Event-ID), and not buffered by a proxy (nginx holds chunks otherwise)."""
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


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


# --------------------------------------------------------------------------- a sweep's stream

# job_events ids are given out at INSERT and become visible at COMMIT, so on PostgreSQL two
# trials' writers can commit out of id order, and "id > the last one sent" could skip one.
# An event older than GRACE seconds has every lower id committed (inserted before it, and our
# transactions are short), so the cursor moves up to such ids only; younger ones are read
# again each poll and sent once.
GRACE = timedelta(seconds=5)
TRIAL_KINDS = {"queued": "trial_queued", "running": "trial_started"}


class SweepEvents:
    """Turns a sweep's trial rows (db.sweeps.trial_events_after) into its events: trial_queued,
    trial_started, trial_pruned, trial_finished (with the trial's best objective value), and
    best when a finished trial beats every earlier one."""

    def __init__(self, mode: str):
        self.mode, self.best = mode, None

    def events(self, row: Any, value: float | None) -> list[str]:
        base = {"number": row.trial_number, "job_id": row.job_id}
        if row.kind == "pruned":
            return [format_event(row.id, "trial_pruned", {**base, **row.data})]
        status = row.data.get("status")
        if status not in TERMINAL_STATUSES:
            return [format_event(row.id, TRIAL_KINDS.get(status, "trial_status"), {**base, **row.data})]
        better = status == "succeeded" and value is not None and (
            self.best is None or objective.better(value, self.best["value"], self.mode))
        out = [format_event(row.id, "trial_finished", {**base, **row.data, "value": value, "new_best": better})]
        if better:  # the same id as its trial_finished (no row of its own): new_best says it there too
            self.best = {**base, "value": value}
            out.append(format_event(row.id, "best", self.best))
        return out


async def sweep_event_stream(request: Request, tenant: str, sweep_id: str,
                             last_event_id: str | None) -> AsyncIterator[str] | None:
    """The stream of a sweep's trial events after last_event_id, then `event: sweep` (its final
    status and best trial) once it has ended and no trial is active; None if the tenant has no
    such sweep. A resumed stream replays the events up to last_event_id silently, so that
    `best` means the same as on the first connection."""
    from db import sweeps as db_sweeps

    factory = request.app.state.session_factory

    def read(after: int, young: set[int]) -> tuple[Any, list[tuple[Any, float | None]], bool, datetime]:
        with factory() as session:
            sweep = db_sweeps.get_sweep(session, tenant, sweep_id)
            if sweep is None:
                return None, [], False, utcnow()
            # idle first: a trial that ended before this has its events in the rows read after it
            idle = sweep.status != "running" and db_sweeps.count_active(session, sweep_id) == 0
            settled_before = utcnow() - GRACE
            rows = db_sweeps.trial_events_after(session, sweep_id, after, skip=young)
            return sweep, [(r, objective.best(db_sweeps.trial_curve(session, r.job_id, sweep.objective_metric).values(),
                                          sweep.objective_mode)
                            if r.kind == "status" and r.data.get("status") in TERMINAL_STATUSES else None)
                           for r in rows], idle, settled_before

    resume = _event_id(last_event_id)
    first = await run_in_threadpool(read, 0, set())
    if first[0] is None:
        return None
    state = SweepEvents(first[0].objective_mode)

    async def stream() -> AsyncIterator[str]:
        sweep, rows, idle, settled_before = first
        low, young = 0, {}  # the cursor (every id up to it handled); ids above it already sent
        last_sent = time.monotonic()
        yield "retry: 1000\n\n"
        while True:
            for row, value in rows:
                lines = state.events(row, value)
                young[row.id] = row.created_at
                if row.id > resume:  # below: the client had them; replayed for `best` only
                    for line in lines:
                        yield line
                    last_sent = time.monotonic()
            old = [i for i, created in young.items() if created < settled_before]
            if old:
                low = max(low, *old)
                young = {i: c for i, c in young.items() if i > low}
            if not rows and idle:
                final = {"status": sweep.status, "error": sweep.error, "best": state.best}
                yield f"event: sweep\ndata: {render_json(final).decode()}\n\n"
                return
            if not rows:
                if await request.is_disconnected():
                    return
                if time.monotonic() - last_sent > KEEPALIVE_SECONDS:
                    last_sent = time.monotonic()
                    yield ": keep-alive\n\n"
                await asyncio.sleep(POLL_SECONDS)
            sweep, rows, idle, settled_before = await run_in_threadpool(read, low, set(young))

    return stream()
