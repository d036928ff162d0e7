"""Liveness (/healthz: the process answers) and readiness (/readyz: the warm-up is done - the
API's and, under `netfit serve`, its worker's - and the database and broker are reachable)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text

from api.errors import error_response
from db import workers as db_workers
from service.queue import QUEUES
from api.responses import errors

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: warmed up, the database and the broker answer", responses=errors(503))
async def readyz(request: Request):  # noqa: ANN201 - a dict or an ErrorBody response
    state = request.app.state
    problems = []
    # warming up: the first job would pay seconds of one-time costs (api.app._warm_engine, worker.tasks.warm_up)
    worker_ready = state.worker_ready
    for name, done in (("api", state.warmed.is_set), ("worker", worker_ready)):
        if done is not None and not done():
            problems.append({"loc": ["warm_up", name], "msg": f"the {name} is warming up"})

    def database() -> None:
        with state.session_factory() as session:
            session.execute(text("SELECT 1"))

    for name, check in (("database", database), ("broker", state.ping_broker)):
        try:
            await run_in_threadpool(check)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            problems.append({"loc": [name], "msg": f"{name} unreachable: {str(exc).splitlines()[0][:200]}"})
    if problems:
        return error_response(503, "unavailable", "not ready: " + "; ".join(p["msg"] for p in problems),
                              problems, headers={"Retry-After": "1" if all(p["loc"][0] == "warm_up" for p in problems) else "5"})
    # the API can serve without workers (they may start later), so none is reported, not a 503
    workers, stranded = await run_in_threadpool(_live_workers, state)
    body: dict[str, object] = {"status": "ready", "database": "ok", "broker": "ok", "workers": workers}
    if stranded:
        body["warnings"] = [f"{'1 job waits' if n == 1 else f'{n} jobs wait'} in queue '{q}' and no live worker serves it (netfit worker --queues {q})"
                            for q, n in stranded.items()]
    return body


def _live_workers(state: Any) -> tuple[dict[str, int], dict[str, int]]:
    """Live workers per queue (db.workers; every queue named, 0 where none serves it), and the
    queued jobs of each queue no live worker serves."""
    with state.session_factory() as session:
        live = db_workers.live_by_queue(session, stale_after=state.settings.lease_seconds)
        queued = db_workers.queued_by_queue(session)
    workers = {q: live.get(q, 0) for q in (*QUEUES, *sorted(set(live) - set(QUEUES)))}
    return workers, {q: n for q, n in queued.items() if n and not workers.get(q)}
