"""/v1/jobs/{id}/predict and /v1/jobs/{id}/export: the trained model, used.

Models are rebuilt from their self-describing checkpoints and kept per process in an LRU
bounded by the bytes of their parameters, keyed by (tenant, job, kind): a tenant never gets
another tenant's entry, and the checkpoint's sha256 is read and compared on every hit (one
indexed row), so a running job's newer "best" replaces the one kept.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.deps import OneThreadRoute, PrincipalDep, SessionDep
from api.errors import ApiError, not_found, render_json
from api.responses import errors
from db import jobs as db_jobs
from db import weights as db_weights
from netfit.lru import BytesLRU
from netfit.models import ErrorBody
from netfit.spec import ID_PATTERN

JobId = Annotated[str, Path(pattern=ID_PATTERN, description="the id that POST /v1/jobs returned")]
Kind = Annotated[Literal["best", "last"], Query(description="which weights: the best epoch's or the last")]
CONFLICT = {409: {"model": ErrorBody, "description": "the job has no such checkpoint yet"}}
router = APIRouter(prefix="/v1/jobs", tags=["models"], responses=errors(401, 404, 422, 503), route_class=OneThreadRoute)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instances: list[Any] = Field(description="raw samples: rows of features, or images in the data set's shape "
                                             "(at most 10,000)", examples=[[[5.1, 3.5, 1.4, 0.2]]])


class CheckpointRef(BaseModel):
    kind: Literal["best", "last"]
    epoch: int


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(description="class names as the data set had them, or values (regression)")
    probabilities: list[list[float]] | None = Field(None, description="per instance, per class (classification)")
    classes: list[str] | None = None
    checkpoint: CheckpointRef


class ModelCache:
    """The models kept for predict and export: netfit.lru.BytesLRU of (sha256, value), so that a
    checkpoint rewritten since is read again rather than served stale."""

    def __init__(self, max_bytes: int) -> None:
        self._lru = BytesLRU(max_bytes)

    def get(self, key: Hashable, sha256: str) -> Any:
        entry = self._lru.get(key)
        return entry[1] if entry is not None and entry[0] == sha256 else None

    def put(self, key: Hashable, sha256: str, value: Any, nbytes: int) -> None:
        self._lru.put(key, (sha256, value), nbytes)


def _cache(request: Request) -> ModelCache:
    state = request.app.state
    cache = getattr(state, "model_cache", None)
    if cache is None:  # made on first use: one per app (tests make many apps in one process)
        with _make_lock:
            cache = getattr(state, "model_cache", None) or ModelCache(state.settings.model_cache_bytes)
            state.model_cache = cache
    return cache


_make_lock = threading.Lock()


def _missing(session: Session, tenant: str, job_id: str, kind: str) -> ApiError:
    """Why there is no model to use: no such job (404) or no such checkpoint yet (409)."""
    job = db_jobs.get_job(session, tenant, job_id)
    if job is None:
        return not_found("job", job_id)
    when = ("when the job ends" if kind == "last" else "after the first epoch that improves")
    hint = " (or use ?checkpoint=best)" if kind == "last" and job.best_epoch else ""
    return ApiError(409, f"job {job_id} is {job.status} and has no '{kind}' checkpoint yet, so there is no "
                         f"model to use; it is saved {when}{hint}")


def trained_model(request: Request, session: Session, tenant: str, job_id: str, kind: str) -> tuple[Any, Any]:
    """(the TrainedModel, its checkpoint's sha256 and epoch): what /predict, /export and /v2 use;
    404/409 as they say. A kept model is checked against the checkpoint's sha256 alone (one
    indexed row); the job's row, spec and weights are read only to build one."""
    from netfit.engine.inference import load_model, model_bytes

    ref = db_weights.checkpoint_ref(session, tenant, job_id, kind)
    if ref is None:
        raise _missing(session, tenant, job_id, kind)
    cache, key = _cache(request), (tenant, job_id, kind)
    model = cache.get(key, ref.sha256)
    if model is None:
        job = db_jobs.get_job(session, tenant, job_id)
        ref = db_jobs.get_checkpoint(session, tenant, job_id, kind)  # a newer one may have landed since
        if job is None or ref is None:
            raise _missing(session, tenant, job_id, kind)
        try:
            model = load_model(ref.data, spec=job.spec, summary=job.summary)
        except ValueError as exc:  # an old checkpoint of a job without a summary
            raise ApiError(409, f"job {job_id}'s '{kind}' checkpoint cannot be rebuilt: {exc}") from None
        cache.put(key, ref.sha256, model, model_bytes(model))
    return model, ref


@router.post("/{job_id}/predict", response_model=PredictResponse, summary="Predict with the trained model",
             responses={**CONFLICT, **errors(413)})
async def predict(job_id: JobId, body: PredictRequest, request: Request, tenant: PrincipalDep,
                  checkpoint: Kind = "best") -> Response:
    """Raw instances in (preprocessing applied as in training); class names and probabilities
    out for classification, values for regression."""
    # one thread for the whole request: a session dependency and a plain `def` were three hops
    return await run_in_threadpool(_predict, request, tenant, job_id, body.instances, checkpoint)


def _predict(request: Request, tenant: str, job_id: str, instances: list[Any], checkpoint: str) -> Response:
    from netfit.engine.inference import InputError, predict as run

    with request.app.state.session_factory() as session:
        model, row = trained_model(request, session, tenant, job_id, checkpoint)
    try:
        out = run(model, instances)
    except InputError as exc:
        detail = {"loc": exc.loc, "msg": str(exc)}
        raise ApiError(422, f"the instances do not fit the model: {exc}", details=[detail]) from None
    out["checkpoint"] = {"kind": checkpoint, "epoch": row.epoch}
    return Response(render_json(out), media_type="application/json")


@router.get("/{job_id}/export", summary="The model as ONNX, its preprocessing inside",
            response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}, **CONFLICT})
def export(job_id: JobId, request: Request, session: SessionDep, tenant: PrincipalDep,
           format: Annotated[Literal["onnx"], Query(description="the file format")] = "onnx",
           checkpoint: Kind = "best") -> Response:
    """Input `input`: raw float32 samples, any batch size; output `output`: probabilities
    (values for regression). The class names are in the model's metadata_props ("classes")."""
    model, row = trained_model(request, session, tenant, job_id, checkpoint)
    cache, key = _cache(request), (tenant, job_id, checkpoint, format)
    content = cache.get(key, row.sha256)
    if content is None:
        try:
            from netfit.engine.inference import ExportError, export_onnx
        except ImportError as exc:  # pragma: no cover - the server extra installs it
            raise ApiError(503, f"ONNX export is not installed on this server (the 'export' extra): {exc}") from None
        try:
            content = export_onnx(model)
        except ImportError as exc:
            raise ApiError(503, f"ONNX export is not installed on this server (the 'export' extra): {exc}") from None
        except ExportError as exc:
            loc = ["model", "layers", exc.layer] if exc.layer is not None else ["model"]
            raise ApiError(422, str(exc), details=[{"loc": loc, "msg": str(exc)}]) from None
        cache.put(key, row.sha256, content, len(content))
    return Response(content, media_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{job_id}-{checkpoint}.onnx"',
        "X-Netfit-Epoch": str(row.epoch)})
