"""/v2: the Open Inference Protocol (KServe V2, Triton; REST) over a job's trained model.

The model name is a job id, the version `best` or `last` (without one: the weights the job
keeps as its result, `best` unless its spec says restore_best_weights false). One input,
`input`: raw samples, batch first, FP32 (image models also take integer pixels); outputs
`probabilities` (FP32) and `predictions` (BYTES: class names), or `predictions` (FP32 values)
for regression. The model is /predict's (api.routers.models.trained_model), so are the
answers to an unknown job, a job without weights and another tenant's job; errors are the
protocol's {"error": "..."} (ProtocolErrors).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from api.deps import PrincipalDep
from api.errors import ApiError, not_found, render_json
from api.open_inference import (
    InferRequest, ProtocolError, TensorMetadata, bad_request, inline_schema, read_request, wants_binary, write_response,
)
from api.routers.models import trained_model
from db import jobs as db_jobs
from netfit.spec import ID_PATTERN

VERSIONS = ("best", "last")
PIXELS = ("UINT8", "UINT16", "INT8", "INT16", "INT32")  # what an image model also takes, besides FP32
INPUT = "input"

Name = Annotated[str, Path(description="a job id (the id that POST /v1/jobs returned)")]
Version = Annotated[str, Path(description="'best' (the best epoch's weights) or 'last'")]


def _protocol_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ProtocolError, "description": why} for code, why in (
        (400, "the request does not fit the model (the message names the input)"),
        (401, "a valid API key is required"), (404, "no such job (or version) for this API key"),
        (409, "the job has no such weights yet"), (413, "the body is larger than the limit"),
        (503, "not ready, or the database is unavailable")) if code in codes}


router = APIRouter(prefix="/v2", tags=["open inference protocol"], responses=_protocol_errors(503))


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any]


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any]
    outputs: list[dict[str, Any]]


# --------------------------------------------------------------------------- server


@router.get("", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": "netfit", "version": request.app.version, "extensions": ["binary_tensor_data"]}


@router.get("/health/live", summary="Liveness (as /healthz)")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Readiness (as /readyz)")
async def ready(request: Request) -> Any:
    from api.routers.health import readyz

    answer = await readyz(request)
    return answer if isinstance(answer, Response) else {"ready": True}


# --------------------------------------------------------------------------- models


def _resolve(request: Request, session: Any, tenant: str, name: str, version: str | None) -> tuple[Any, Any, str]:
    """(model, checkpoint ref, version); 404/409 as /predict answers them. The job's row is read
    only without a version (its spec says which weights are its result) or with a wrong one."""
    if not re.match(ID_PATTERN, name):
        raise not_found("job", name)
    kind = version
    if version not in VERSIONS:
        job = db_jobs.get_job(session, tenant, name)
        if job is None:
            raise not_found("job", name)
        if version is not None:
            raise ApiError(404, f"job {name} has no version '{version}': its versions are 'best' (the best "
                                "epoch's weights) and 'last'")
        # the job's result: what fit() keeps with restore_best_weights (the default)
        kind = "best" if (job.spec.get("training") or {}).get("restore_best_weights", True) else "last"
    model, ref = trained_model(request, session, tenant, name, kind)
    return model, ref, kind


def _outputs(model: Any) -> list[dict[str, Any]]:
    if model.task == "regression":
        return [{"name": "predictions", "datatype": "FP32", "shape": [-1, model.signature.n_targets]}]
    return [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(model.classes)]},
            {"name": "predictions", "datatype": "BYTES", "shape": [-1]}]


def _metadata(request: Request, tenant: str, name: str, version: str | None) -> Response:
    with request.app.state.session_factory() as session:
        model, row, kind = _resolve(request, session, tenant, name, version)
        versions = sorted(c.kind for c in db_jobs.list_checkpoints(session, tenant, name))
    image = len(model.signature.input_shape) == 3
    return _json({"name": name, "versions": versions, "platform": "pytorch",
                  "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, *model.signature.input_shape]}],
                  "outputs": _outputs(model),
                  "parameters": {"version": kind, "epoch": row.epoch, "task": model.task, "classes": model.classes,
                                 "input_datatypes": ["FP32", *(PIXELS if image else ())]}})


def _ready(request: Request, tenant: str, name: str, version: str | None) -> Response:
    with request.app.state.session_factory() as session:
        _, _, kind = _resolve(request, session, tenant, name, version)
    return _json({"name": name, "version": kind, "ready": True})


def _model_input(model: Any, arrays: dict[str, np.ndarray], datatypes: dict[str, str]) -> np.ndarray:
    """The one input as float32 (N, *input_shape), or a 400 naming what is wrong (as /predict's
    422 does: the shape the model takes, finite numbers only)."""
    from netfit.engine.inference import MAX_INSTANCES

    unknown = [n for n in arrays if n != INPUT]
    if unknown or INPUT not in arrays:
        raise bad_request(f"the model has one input, '{INPUT}'; got {', '.join(repr(n) for n in arrays)}")
    x, datatype = arrays[INPUT], datatypes[INPUT]
    shape = tuple(model.signature.input_shape)
    image = len(shape) == 3
    allowed = ("FP32", *(PIXELS if image else ()))
    if datatype not in allowed:
        raise bad_request(f"input '{INPUT}' is {datatype}; this model takes {' or '.join(allowed)}"
                          + (" (cast with x.astype(np.float32))" if datatype == "FP64" else ""))
    accepted = [shape] + ([shape[1:]] if image and shape[0] == 1 else [])
    if x.ndim == 0 or x.shape[1:] not in accepted or x.shape[0] == 0:
        also = f" (or [-1, {', '.join(map(str, shape[1:]))}] for grey images)" if len(accepted) > 1 else ""
        raise bad_request(f"input '{INPUT}' has shape {list(x.shape)} but the model takes {[-1, *shape]}{also}: "
                          "the batch first, at least one sample")
    if x.shape[0] > MAX_INSTANCES:
        raise bad_request(f"input '{INPUT}' has {x.shape[0]:,} samples, more than {MAX_INSTANCES:,} per request; "
                          "send them in batches")
    if datatype == "FP32" and not np.isfinite(x).all():
        raise bad_request(f"input '{INPUT}' holds NaN or infinity; send finite numbers")
    return np.ascontiguousarray(x.reshape((len(x), *shape)), dtype=np.float32)


def _infer(request: Request, tenant: str, name: str, version: str | None, body: bytes) -> Response:
    import torch

    from netfit.engine.inference import outputs

    if request.headers.get("content-encoding", "identity") != "identity":
        raise bad_request("compressed infer requests are not supported; send the body uncompressed")
    with request.app.state.session_factory() as session:
        model, row, kind = _resolve(request, session, tenant, name, version)
    infer, arrays = read_request(body, request.headers.get("inference-header-content-length"))
    x = _model_input(model, arrays, {t.name: t.datatype for t in infer.inputs})
    with torch.inference_mode():  # as /predict (netfit.engine.inference.predict), from an array
        out = outputs(model, model.predict_proba(torch.from_numpy(x)))
    n = len(x)
    if model.task == "regression":
        tensors = [("predictions", "FP32", np.asarray(out["predictions"], dtype=np.float32).reshape(n, -1))]
    else:
        tensors = [("probabilities", "FP32", np.asarray(out["probabilities"], dtype=np.float32)),
                   ("predictions", "BYTES", np.asarray(out["predictions"], dtype=object))]
    names = [t[0] for t in tensors]
    if infer.outputs is not None:
        missing = [o.name for o in infer.outputs if o.name not in names]
        if missing:
            raise bad_request(f"the model has no output {missing[0]!r}; its outputs are {', '.join(map(repr, names))}")
        tensors = [t for t in tensors if t[0] in {o.name for o in infer.outputs}]
    head = {"model_name": name, "model_version": kind, **({"id": infer.id} if infer.id is not None else {}),
            "parameters": {"epoch": row.epoch}}
    content, headers, media = write_response(head, tensors, {t[0] for t in tensors if wants_binary(infer, t[0])})
    return Response(content, media_type=media, headers=headers)


INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": inline_schema(InferRequest)},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                 "description": "the binary tensor data extension"}}}}
METADATA = {"response_model": ModelMetadata, "summary": "Model metadata: its input and outputs",
            "responses": _protocol_errors(401, 404, 409)}
READY = {"summary": "Whether the model's weights can be used", "responses": _protocol_errors(401, 404, 409)}
INFER = {"response_model": InferResponse, "summary": "Inference",
         "responses": {200: {"content": {"application/octet-stream": {}}}, **_protocol_errors(400, 401, 404, 409, 413)},
         "openapi_extra": INFER_BODY}


def _with_and_without_version(tail: str, work: Callable[..., Response], names: tuple[str, str], *,
                              method: str = "GET", **options: Any) -> None:
    """The route pair of one answer: /models/{name}{tail} (the weights the job keeps as its
    result) and /models/{name}/versions/{version}{tail}. work(request, tenant, name, version)
    runs in a thread; an infer's body is read first and passed after them."""

    async def answer(request: Request, tenant: str, name: str, version: str | None) -> Response:
        body = (await request.body(),) if method == "POST" else ()
        return await run_in_threadpool(work, request, tenant, name, version, *body)

    async def result(name: Name, request: Request, tenant: PrincipalDep) -> Response:
        return await answer(request, tenant, name, None)

    async def versioned(name: Name, version: Version, request: Request, tenant: PrincipalDep) -> Response:
        return await answer(request, tenant, name, version)

    for path, endpoint, route_name in ((f"/models/{{name}}{tail}", result, names[0]),
                                       (f"/models/{{name}}/versions/{{version}}{tail}", versioned, names[1])):
        router.add_api_route(path, endpoint, methods=[method], name=route_name, **options)


# the names are the routes' (their OpenAPI operation ids)
_with_and_without_version("", _metadata, ("model_metadata", "model_version_metadata"), **METADATA)
_with_and_without_version("/ready", _ready, ("model_ready", "model_version_ready"), **READY)
_with_and_without_version("/infer", _infer, ("infer", "infer_version"), method="POST", **INFER)


def _json(content: Any) -> Response:
    return Response(render_json(content), media_type="application/json")


# --------------------------------------------------------------------------- errors


class ProtocolErrors:
    """Under /v2, an error body is the protocol's {"error": "<message>"}: the sentence of
    netfit's body (api.errors), whichever part of the app answered (auth, routing, a route,
    the body limit, a 500). Other paths pass through untouched."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/v2" or path.startswith("/v2/")):
            return await self.app(scope, receive, send)
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def rewrite(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held until the body is complete
                return
            if start is None:
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = _protocol_body(b"".join(chunks))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)


def _protocol_body(body: bytes) -> bytes:
    import json

    try:
        doc = json.loads(body)
        message = doc["message"] if isinstance(doc, dict) and isinstance(doc.get("message"), str) else doc["error"]
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace") or "error"
    return render_json({"error": message})
