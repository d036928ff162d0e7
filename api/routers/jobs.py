"""/v1/jobs: submit, list, inspect, follow, cancel, download weights, plot curves."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.deps import CursorDep, LimitQuery, OneThreadRoute, PrincipalDep, SessionDep, SettingsDep
from api.errors import ApiError, invalid, not_found, render_json
from api.etags import Tagged, etagged
from api.events import job_event_stream, sse_response
from api.examples import JOB_EXAMPLES
from api.responses import errors, link
from service import preemption
from service.settings import Settings
from db import datasets as db_datasets
from db import job_lists
from db import jobs as db_jobs
from db import retention, schedule
from db import tenants as db_tenants
from db import sending
from netfit.models import (
    TERMINAL_STATUSES, Checkpoint, Waiting, EpochLayerStats, EpochMetrics, Job, JobItem, JobStatus, ModelSummary, Page,
)
from netfit.spec import ID_PATTERN, MAX_EPOCHS, JobSpec

log = logging.getLogger("netfit.api")
JobId = Annotated[str, Path(pattern=ID_PATTERN, description="the id that POST /v1/jobs returned")]
router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=errors(401, 404, 422, 503), route_class=OneThreadRoute)
# what a client can do with the job a POST returns (schemathesis' stateful phase follows these)
JOB_LINKS = {name: link(f"/v1/jobs/{{job_id}}{tail}", method, job_id="$response.body#/id") for name, tail, method in (
    ("GetJob", "", "get"), ("GetMetrics", "/metrics", "get"), ("FollowEvents", "/events", "get"),
    ("CancelJob", "/cancel", "post"), ("ListCheckpoints", "/checkpoints", "get"),
    ("DownloadCheckpoint", "/checkpoints/{kind}", "get"), ("PlotCurves", "/curves.{fmt}", "get"),
    ("GetLayerStats", "/layer-stats", "get"), ("PlotLayers", "/layers.{fmt}", "get"))}

# pages of a job's epochs (metrics, layer statistics): the cursor is the last epoch seen
EpochCursor = Annotated[int | None, Query(ge=0, le=MAX_EPOCHS, description="next_cursor of the previous page (an epoch)")]
EpochLimit = Annotated[int, Query(ge=1, le=MAX_EPOCHS, description="at most this many epochs; the default holds any job")]


def to_wire(job: Any) -> Job:
    return Job.model_validate(job, from_attributes=True)


def _owned(session: Session, tenant: str, job_id: str) -> Any:
    job = db_jobs.get_job(session, tenant, job_id)
    if job is None:
        raise not_found("job", job_id)
    return job


def gpu_jobs_accepted(settings: Settings) -> bool:
    if settings.gpu_jobs is not None:
        return settings.gpu_jobs
    import torch

    return torch.cuda.is_available()


def validate_spec(session: Session, settings: Settings, tenant: str, spec: JobSpec) -> ModelSummary:
    """Dry-run the spec against its data (shapes, output size, parameter count): a bad spec
    is a 422 naming the layer or field, and never reaches the database or a worker."""
    from netfit.engine.data import DataSignature, signature_of
    from netfit.engine.errors import DataError, SpecError
    from netfit.engine.layers import summarize

    if spec.training.device.startswith("cuda") and not gpu_jobs_accepted(settings):
        detail = {"loc": ["training", "device"],
                  "msg": f"'{spec.training.device}' needs a GPU worker and this service has none; "
                         "use 'auto' (a GPU when the worker has one) or 'cpu'"}
        raise invalid(detail, "the job spec is invalid")
    uploaded = stored = None
    if spec.dataset.id is not None:
        row = db_datasets.get_dataset(session, tenant, spec.dataset.id)  # without its blob
        if row is None:
            detail = {"loc": ["dataset", "id"],
                      "msg": f"no uploaded data set with id '{spec.dataset.id}'; upload one with POST /v1/datasets"}
            raise invalid(detail, "the job spec is invalid")
        if row.task == "classification":  # the row holds all a classifier's signature needs
            stored = DataSignature(tuple(row.input_shape), "classification", row.n_classes, 1, row.n_samples,
                                   row.has_test_split, has_validation_split=row.has_validation_split)
        else:  # the row does not record how many targets a regression set has: read it
            uploaded = db_datasets.dataset_bytes(session, tenant, spec.dataset.id)
    try:
        signature = signature_of(spec, uploaded, stored)
        if signature.has_validation_split and "validation" not in spec.split.model_fields_set:
            spec.split.validation = 0.0  # not written: the data set's own validation set, and the stored spec says so
        if signature.has_validation_split and spec.split.validation > 0:
            # one validation set: a share the user asked to draw is not silently dropped
            raise SpecError.at(["split", "validation"], f"data set '{spec.dataset.id}' brings its own validation set "
                               f"(x_val, y_val), which is used as is; set split.validation to 0 (it is "
                               f"{spec.split.validation:g}, a share to draw from the training data), or upload the "
                               "data set without x_val, y_val to draw one")
        return summarize(spec, signature)
    except SpecError as exc:
        details = [{"loc": list(e.get("loc", [])), "msg": e.get("msg", str(exc))} for e in exc.errors]
        raise invalid(details, "the job spec is invalid") from None
    except DataError as exc:
        detail = {"loc": ["dataset"], "msg": str(exc)}
        raise invalid(detail, "the job's data set cannot be used") from None


def check_active_limit(session: Session, tenant: str, limit: int) -> None:
    """429 once the tenant has `limit` jobs queued or running. Counted without a lock: submits
    racing each other may pass the limit by how many run at once, which a soft cap allows."""
    if db_jobs.count_active(session, tenant) >= limit:
        raise ApiError(429, f"you have {limit} jobs queued or running, the most allowed at once "
                            "(NETFIT_MAX_ACTIVE_JOBS); wait for some to finish or cancel some "
                            "(POST /v1/jobs/{id}/cancel), then submit again", headers={"Retry-After": "30"})


def _waiting(why: dict[str, Any] | None) -> Waiting | None:
    return None if why is None else Waiting.model_validate(why)


def check_priority(session: Session, tenant: str, priority: int, loc: list[str]) -> None:
    """422 naming the field and the tenant's cap when `priority` is above it."""
    refusal = db_tenants.priority_refusal(session, tenant, priority)
    if refusal is not None:
        raise invalid({"loc": loc, "msg": refusal})


class DryRun(BaseModel):
    """What POST /v1/jobs?dry_run=true answers: the spec as it would run, nothing stored."""

    dry_run: Literal[True] = True
    spec: dict[str, Any] = Field(description="the spec with every default filled in, as the job would run it")
    summary: ModelSummary = Field(description="every layer's output shape and parameter count")
    epochs: int
    queue: str = Field(description="the worker queue the job would go to")


@router.post("", status_code=201, response_model=Job, summary="Submit a training job",
             responses={201: {"links": JOB_LINKS},
                        200: {"model": DryRun, "description": "with dry_run=true: the spec checked and summarised; "
                                                              "nothing stored or queued"},
                        **errors(400, 413, 429)})
def submit_job(
    spec: Annotated[JobSpec, Body(openapi_examples=JOB_EXAMPLES)],
    request: Request, session: SessionDep, settings: SettingsDep, tenant: PrincipalDep,
    dry_run: Annotated[bool, Query(description="validate and summarise only: 200 with the summary, "
                                               "nothing stored or queued (the same 422s as a submit)")] = False,
) -> Any:
    """Validate the spec completely (a dry run of the network on its data), store the job,
    then enqueue it. If the broker is down the job stays queued and the reconciler sends it."""
    from service.queue import queue_for

    if dry_run:  # the dashboard's editor checks as the user types: no row, no message, no 429
        summary = validate_spec(session, settings, tenant, spec)
        body = DryRun(spec=spec.model_dump(mode="json"), summary=summary, epochs=spec.training.epochs,
                      queue=queue_for(spec.training.device, settings))
        return Response(render_json(body.model_dump(mode="json")), media_type="application/json")
    check_active_limit(session, tenant, settings.max_active_jobs)
    check_priority(session, tenant, spec.priority, ["priority"])
    summary = validate_spec(session, settings, tenant, spec)
    queue = queue_for(spec.training.device, settings)
    job = db_jobs.create_job(session, tenant=tenant, spec=spec.model_dump(mode="json"),
                             summary=summary.model_dump(mode="json"), queue=queue)
    try:
        request.app.state.enqueue(job.id, queue)
    except Exception as exc:  # noqa: BLE001 - the row is committed; the reconciler will send it
        log.warning("could not enqueue job %s (%s); the reconciler will retry", job.id, exc)
        sending.mark_unsent(session, job.id)
    wire = to_wire(job)
    # why it waits, on the job and in its event stream (`netfit submit --follow` shows it)
    wire.waiting = _waiting(schedule.note_waiting(session, job, stale_after=settings.lease_seconds))
    if wire.waiting is not None and wire.waiting.reason == "queue":  # it may outrank a running job
        preemption.run_pass(session, settings)
    return wire


@router.get("", response_model=Page[JobItem], summary="List jobs, newest first (light items)")
def list_jobs(
    session: SessionDep, tenant: PrincipalDep, cursor: CursorDep,
    status: JobStatus | None = None,
    limit: LimitQuery = 50,
    sweep: Annotated[str | None, Query(pattern=ID_PATTERN, description="only this sweep's trials")] = None,
    name: Annotated[str | None, Query(max_length=200, description="only jobs whose name contains this (any case)")] = None,
) -> Response:
    """An item holds what a list shows: status, epochs, the best and test metrics, the sweep and
    the times; the spec and model summary are the job's own read."""
    items, next_cursor = job_lists.list_jobs(session, tenant, status=status, limit=limit, cursor=cursor,
                                             sweep=sweep, name=name)
    # the database's rows as they are: typed columns, nothing to validate
    return Response(render_json({"items": items, "next_cursor": next_cursor}), media_type="application/json")


@router.get("/{job_id}", response_model=Job, summary="A job's status and results (ETag: 304 if unchanged)")
def get_job(job_id: JobId, request: Request, session: SessionDep, settings: SettingsDep,
            tenant: PrincipalDep) -> Response:
    row = _owned(session, tenant, job_id)
    job = to_wire(row)
    if job.status == "queued":  # why it waits: its place in line, or no worker for its queue
        job.waiting = _waiting(schedule.waiting(session, row, stale_after=settings.lease_seconds))
    return etagged(request, render_json(job.model_dump(mode="json")))


@router.delete("/{job_id}", status_code=204, summary="Delete an ended job: its metrics, events and weights",
               responses=errors(409))
def delete_job(job_id: JobId, request: Request, session: SessionDep, tenant: PrincipalDep) -> Response:
    """A queued or running job is a 409 (cancel it first); a trial of a running sweep too.
    Afterwards the id is a 404 and the space is free."""
    try:
        found = retention.delete_job(session, tenant, job_id)
    except retention.InUse as exc:
        raise ApiError(409, str(exc)) from None
    if not found:
        raise not_found("job", job_id)
    request.app.state.metrics_cache.discard(lambda key: key[:2] == (tenant, job_id))
    return Response(status_code=204)


@router.get("/{job_id}/metrics", response_model=Page[EpochMetrics], summary="One row per finished epoch (ETag: 304 if unchanged)")
async def get_metrics(
    job_id: JobId, request: Request, tenant: PrincipalDep,
    cursor: EpochCursor = None, limit: EpochLimit = MAX_EPOCHS,
) -> Response:
    """Plain rows straight to JSON (ORM objects and models cost ~20x the query). A finished
    job's metrics never change, so its pages are kept with their ETag; the status is read
    first, so a kept page is always complete, and a running job's rows are read anew each
    time. A kept entry answers on the event loop without the database or a thread (the hot
    path of a polling client): its key holds the tenant that owned the job, and a job never
    changes tenant nor is deleted."""
    cache = request.app.state.metrics_cache
    key = (tenant, job_id, cursor or 0, limit)
    page = cache.get(key)
    if page is None:
        found = await run_in_threadpool(_metrics_page, request.app.state.session_factory, tenant, job_id, cursor, limit)
        if found is None:
            raise not_found("job", job_id)
        page, finished = found
        if finished:
            cache.put(key, page, len(page.body))
    return etagged(request, page)


def _metrics_page(factory: Any, tenant: str, job_id: str, cursor: int | None, limit: int) -> tuple[Tagged, bool] | None:
    """(the page with its tag, whether the job has ended), or None if the tenant has no such job."""
    with factory() as session:
        status = db_jobs.job_status(session, tenant, job_id)
        if status is None:
            return None
        rows = [dict(zip(db_jobs.METRIC_ROW, row))
                for row in db_jobs.metric_rows(session, tenant, job_id, after=cursor or 0, limit=limit + 1)]
    more = len(rows) > limit
    rows = rows[:limit]
    body = render_json({"items": rows, "next_cursor": str(rows[-1]["epoch"]) if more else None})
    return Tagged.of(body), status in TERMINAL_STATUSES


@router.get("/{job_id}/layer-stats", response_model=Page[EpochLayerStats],
            summary="Per epoch, each layer's weight and gradient norms")
def get_layer_stats(
    job_id: JobId, session: SessionDep, tenant: PrincipalDep,
    cursor: EpochCursor = None, limit: EpochLimit = MAX_EPOCHS,
) -> Page[EpochLayerStats]:
    """For each layer with parameters: max |w| and ||w|| at the epoch's end, and the gradient's
    norm during it (see the fields). Epochs recorded without statistics are left out."""
    _owned(session, tenant, job_id)
    rows = db_jobs.layer_rows(session, tenant, job_id, after=cursor or 0, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[EpochLayerStats](items=[EpochLayerStats(epoch=epoch, layers=layers) for epoch, layers in rows],
                                 next_cursor=str(rows[-1][0]) if more else None)


@router.get("/{job_id}/layers.{fmt}", summary="Per-layer max |w| and gradient norm vs epoch",
            response_class=Response, responses={200: {"content": {"image/svg+xml": {}, "image/png": {}}}})
def layers_plot(job_id: JobId, fmt: Literal["svg", "png"], session: SessionDep, tenant: PrincipalDep) -> Response:
    from netfit.plots import layer_curves

    job = _owned(session, tenant, job_id)
    rows = [EpochLayerStats(epoch=epoch, layers=layers) for epoch, layers in db_jobs.layer_rows(session, tenant, job_id)]
    if not rows:
        raise ApiError(404, f"job {job_id} ({job.status}) has no layer statistics yet; they are recorded with each epoch")
    image = layer_curves(rows, fmt=fmt, title=job.name or job.id)
    return Response(image, media_type="image/svg+xml" if fmt == "svg" else "image/png")


@router.post("/{job_id}/cancel", response_model=Job, summary="Stop a queued or running job")
def cancel_job(job_id: JobId, session: SessionDep, tenant: PrincipalDep) -> Job:
    """A queued job ends `cancelled` at once; a running one within an epoch or ~2 s. A job
    that already ended is returned unchanged."""
    job = db_jobs.request_cancel(session, tenant, job_id)
    if job is None:
        raise not_found("job", job_id)
    return to_wire(job)


@router.get("/{job_id}/checkpoints", response_model=Page[Checkpoint], summary="The saved weights (best, last; ETag)")
def list_checkpoints(job_id: JobId, request: Request, session: SessionDep, tenant: PrincipalDep) -> Response:
    _owned(session, tenant, job_id)
    page = Page[Checkpoint](items=[Checkpoint.model_validate(c, from_attributes=True)
                                   for c in db_jobs.list_checkpoints(session, tenant, job_id)])
    return etagged(request, render_json(page.model_dump(mode="json")))


@router.get("/{job_id}/checkpoints/{kind}", summary="Download weights as safetensors",
            response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}, **errors(410)})
def download_checkpoint(job_id: JobId, kind: Literal["best", "last"], request: Request, session: SessionDep,
                        tenant: PrincipalDep) -> Response:
    job = _owned(session, tenant, job_id)
    checkpoint = db_jobs.get_checkpoint(session, tenant, job_id, kind)
    if checkpoint is None:
        rule = retention.removed_by(session, tenant, job_id)
        if rule is not None:
            raise ApiError(410, f"job {job_id}'s weights were removed by a retention rule ({rule})")
        when = "when the job ends" if kind == "last" else "after the first epoch that improves"
        raise ApiError(404, f"job {job_id} ({job.status}) has no '{kind}' checkpoint yet; it is saved {when}")
    # tagged by the weights' sha256: a client holding them gets a 304 instead of the bytes again
    return etagged(request, checkpoint.data, "application/octet-stream", tag=f'"{checkpoint.sha256}"', headers={
        "Content-Disposition": f'attachment; filename="{job_id}-{kind}.safetensors"',
        "X-Netfit-Epoch": str(checkpoint.epoch)})


@router.get("/{job_id}/curves.{fmt}", summary="Learning curves (train vs validation)",
            response_class=Response, responses={200: {"content": {"image/svg+xml": {}, "image/png": {}}}})
def curves(job_id: JobId, fmt: Literal["svg", "png"], session: SessionDep, tenant: PrincipalDep) -> Response:
    from netfit.plots import learning_curves

    job = _owned(session, tenant, job_id)
    rows = [EpochMetrics.model_validate(r, from_attributes=True) for r in db_jobs.list_metrics(session, tenant, job_id)]
    if not rows:
        raise ApiError(404, f"job {job_id} ({job.status}) has no finished epoch yet; curves appear after the first")
    stop_epoch = job.epochs_completed if job.stop_reason and job.stop_reason != "max_epochs" else None
    image = learning_curves(rows, best_epoch=job.best_epoch, stop_epoch=stop_epoch, fmt=fmt, title=job.name or job.id)
    return Response(image, media_type="image/svg+xml" if fmt == "svg" else "image/png")


@router.get("/{job_id}/events", summary="Live events (Server-Sent Events)",
            response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def events(
    job_id: JobId, request: Request, tenant: PrincipalDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """`event: status` (data: status, stop_reason, error, …) and `event: epoch` (data: the
    metrics row), each with an `id:`; reconnect with `Last-Event-ID` to resume after it.
    The stream replays the job's history first and ends after its final status."""
    stream = await job_event_stream(request, tenant, job_id, last_event_id)
    if stream is None:
        raise not_found("job", job_id)
    return sse_response(stream)
