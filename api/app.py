"""The FastAPI app factory: `create_app(settings)`."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api import errors
from netfit.lru import BytesLRU
from api.middleware import RequestContext
from api.routers import cluster, compare, dashboard, datasets, health, jobs, sweeps
from api.routers import prometheus
from service.settings import Settings, get_settings
from db.session import make_session_factory

log = logging.getLogger("netfit.api")

DESCRIPTION = """`model.fit` as a service: POST a network, a data set and a training recipe as
JSON; a worker trains it with PyTorch; fetch every epoch's metrics and the best/last weights.
Errors are JSON `{"error", "message", "details": [{"loc", "msg"}], "request_id"}`.
With API keys (`netfit keys create`) every call but /healthz, /readyz and /v2's server and health calls needs
`Authorization: Bearer <key>` and sees only its tenant's jobs and data sets."""


class BodyLimit:
    """413 for bodies over the cap, before anything parses them (uploads have their own cap)."""

    def __init__(self, app: Any, settings: Settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        upload = scope["path"].startswith("/v1/datasets")
        # multipart framing adds a little to the file itself
        limit = self.settings.max_upload_bytes + 64 * 1024 if upload else self.settings.max_body_bytes
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            what = "upload" if upload else "request body"
            response = errors.error_response(413, "too_large", f"the {what} is larger than the {limit // 1024} KiB limit")
            return await response(scope, receive, send)
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise errors.ApiError(413, f"the request body is larger than the {limit // 1024} KiB limit")
            return message

        return await self.app(scope, counted, send)


def _warm_engine(done: threading.Event) -> None:
    """Dry-run a tiny conv net once: a process's first check of a spec takes seconds (imports,
    the first trace), which the first POST would pay otherwise. Runs in a
    thread so that /healthz answers at once; /readyz says 503 until `done` is set."""
    try:
        from netfit.spec import JobSpec
        from netfit.engine.data import DataSignature
        from netfit.engine.layers import summarize

        spec = JobSpec.model_validate({"dataset": {"builtin": "digits"}, "model": {"layers": [
            {"type": "conv2d", "filters": 2, "kernel_size": 3}, {"type": "maxpool2d"}, {"type": "flatten"},
            {"type": "linear", "units": 3}]}})
        summarize(spec, DataSignature((1, 8, 8), "classification", 3, 1, 30, False))
    except Exception as exc:  # noqa: BLE001 - only a warm-up; the POST reports what is wrong
        log.warning("could not warm up job validation (%s); the first POST will be slower", exc)
    finally:
        _settle_gc()
        done.set()


GC_YOUNG_THRESHOLD = 10_000
_gc_settled = False


def _settle_gc() -> None:
    """Once a process, when its imports are done: what exists now (modules, torch's ~350k
    objects) is left out of every later collection, and young collections run less often. With
    50 requests in flight the defaults ran a young collection every few requests and a full one
    over every imported object (~180 ms) every ~1,000: ~200 µs of CPU a request."""
    global _gc_settled
    if _gc_settled:  # tests make many apps in one process; their objects are not frozen
        return
    _gc_settled = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def create_app(settings: Settings | None = None) -> FastAPI:
    from service.queue import create_celery, enqueue, ping

    settings = settings or get_settings()
    session_factory = make_session_factory(settings.database_url)
    celery = create_celery(settings.broker_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        warm_up = threading.Thread(target=_warm_engine, args=(app.state.warmed,), name="netfit-warm-up", daemon=True)
        warm_up.start()
        yield
        # a process that exits while torch still traces in this thread aborts ("terminate called
        # without an active exception"): an app stopped within seconds of its start waits for it
        await asyncio.to_thread(warm_up.join, 30)
        session_factory.kw["bind"].dispose()

    # /docs and /redoc are served by api.routers.dashboard from vendored files (work offline)
    app = FastAPI(title="netfit", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  default_response_class=errors.SafeJSONResponse, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.warmed = threading.Event()  # the warm-up is done (api.routers.health.readyz)
    app.state.worker_ready = None  # serve: a callable saying whether its worker has warmed up
    app.state.auth_on = settings.require_auth  # api.deps.auth_required: becomes True with the first key
    app.state.auth_checked_at = float("-inf")
    app.state.metrics_cache = BytesLRU(settings.metrics_cache_bytes)  # finished jobs' GET .../metrics bodies
    app.state.session_factory = session_factory
    app.state.enqueue = lambda job_id, queue: enqueue(job_id, queue, celery)
    app.state.ping_broker = lambda: ping(celery)
    errors.install(app)
    from prometheus_client import CollectorRegistry

    from api.telemetry import ClusterCollector, HttpMetrics, JobCollector, http_registry
    app.state.metrics_registry = registry = CollectorRegistry(auto_describe=False)  # per app: tests make many
    registry.register(JobCollector(session_factory, tenants=settings.metrics_tenants))
    registry.register(ClusterCollector(session_factory, stale_after=settings.lease_seconds,
                                       tenants=settings.metrics_tenants))
    app.include_router(prometheus.router)
    from api.routers import models  # predict and export
    for router in (jobs.router, models.router, sweeps.router, datasets.router, health.router, cluster.router):
        app.include_router(router)
    app.include_router(compare.router)  # /v1/compare.{svg,png}: several jobs' curves on one scale
    from api.routers import inference_protocol  # /v2: the Open Inference Protocol
    app.include_router(inference_protocol.router)
    from api.routers import tensorboard  # /v1/jobs/{id}/tensorboard: the job as an event file
    app.include_router(tensorboard.router)
    dashboard.install(app)  # `/`, /static, /docs, /redoc
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(HttpMetrics, registry=http_registry(registry))
    app.add_middleware(RequestContext)  # its headers and id reach every response
    app.add_middleware(inference_protocol.ProtocolErrors)  # outermost: /v2's errors in the protocol's form, the 500 too
    return app
