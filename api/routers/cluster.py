"""The shared cluster as a tenant sees it: the live workers (GET /v1/workers) and its own usage
(GET /v1/usage). Another tenant's job ids are never shown."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PrincipalDep, SessionDep, SettingsDep
from api.responses import errors
from db import retention, workers as db_workers
from netfit.models import Page, Usage, WorkerInfo, WorkerJob

router = APIRouter(prefix="/v1", tags=["cluster"], responses=errors(401, 503))


@router.get("/workers", response_model=Page[WorkerInfo], summary="The live workers and what they train")
def list_workers(session: SessionDep, settings: SettingsDep, tenant: PrincipalDep) -> Page[WorkerInfo]:
    """A worker is live while it beats (every NETFIT_HEARTBEAT_SECONDS); one silent for
    NETFIT_LEASE_SECONDS is gone. Jobs of other tenants are shown without their ids."""
    items = [WorkerInfo(id=w.id, host=w.host, pid=w.pid, queues=w.queues, device=w.device, started_at=w.started_at,
                        last_seen_at=w.last_seen_at,
                        jobs=[WorkerJob(id=job_id if owner == tenant else None, epochs_completed=epochs)
                              for job_id, owner, epochs in jobs])
             for w, jobs in db_workers.live_workers(session, stale_after=settings.lease_seconds)]
    return Page[WorkerInfo](items=items)


@router.get("/usage", response_model=Usage, summary="Your jobs running and queued, and the bytes you keep")
def usage(session: SessionDep, tenant: PrincipalDep) -> Usage:
    return Usage(tenant=tenant, **retention.usage(session, tenant))
