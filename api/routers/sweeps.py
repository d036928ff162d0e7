"""/v1/sweeps: a search over a base spec (examples/README.md, "Sweeps"). Trials are jobs (GET /v1/jobs?sweep=ID).

POST validates everything before anything is stored: the request's shape, the base spec (a
job's full dry run), every parameter's path, and the spec each categorical value / each end
of a range gives (validated exactly as a job is). Then it stores the sweep and asks for the
first max_concurrent trials; later trials are asked when trials end (worker) and by the
reconciler (service.sweeps).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.deps import CursorDep, LimitQuery, OneThreadRoute, PrincipalDep, SessionDep, SettingsDep
from api.errors import ApiError, invalid, not_found
from api.events import sse_response, sweep_event_stream
from api.responses import errors
from api.routers.jobs import check_active_limit, check_priority, validate_spec
from service.settings import Settings
from db import datasets as db_datasets
from db import retention
from db import sweeps as db_sweeps
from netfit.models import Page, Sweep, SweepImportance, Trial
from netfit import objective
from netfit.packing import MEMBER_PATHS, pack_key, packable
from netfit.spec import ID_PATTERN, JobSpec, metric_names
from netfit.sweep_spec import SweepSpec, apply, resolve

log = logging.getLogger("netfit.api")
SweepId = Annotated[str, Path(pattern=ID_PATTERN, description="the id that POST /v1/sweeps returned")]
router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"], responses=errors(401, 404, 422, 503), route_class=OneThreadRoute)

SWEEP_EXAMPLE = {
    "name": "iris-width-lr",
    "spec": {"dataset": {"builtin": "iris"}, "preprocess": {"features": "standardize"},
             "model": {"layers": [{"type": "linear", "units": 16}, {"type": "relu"}, {"type": "linear", "units": 3}]},
             "training": {"epochs": 9}},
    "parameters": {"model.layers.0.units": {"values": [4, 16, 64]},
                   "training.optimizer.lr": {"min": 0.0001, "max": 0.1, "distribution": "log_uniform"}},
    "method": "tpe", "objective": {"metric": "val_loss"}, "max_trials": 12, "max_concurrent": 2, "seed": 0,
    "pruning": {"type": "asha", "min_epochs": 1, "reduction_factor": 3},
}


def _invalid(loc: list[Any], msg: str) -> ApiError:
    detail = {"loc": loc, "msg": msg}
    return invalid(detail, "the sweep is invalid")


def _short(value: Any) -> str:
    import json

    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_spec(session: Session, settings: Settings, tenant: str, raw: dict[str, Any], where: list[Any],
                what: str) -> Any:
    """Validate a (base or varied) spec exactly as POST /v1/jobs does; 422 at `where`."""
    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first.get("loc", ()))
        raise _invalid(where, f"{what} gives an invalid spec: {path}: {first['msg']}") from None
    try:
        return spec, validate_spec(session, settings, tenant, spec)
    except ApiError as exc:
        raise _invalid(where, f"{what} gives an invalid spec: {exc.message}") from None


def _brings_validation(session: Session, tenant: str, spec: Any) -> bool:
    row = db_datasets.get_dataset(session, tenant, spec.dataset.id) if spec.dataset.id else None
    return bool(row and row.has_validation_split)


def validate_sweep(session: Session, settings: Settings, tenant: str, request: SweepSpec) -> dict[str, Any]:
    """The request as it is stored: the base spec with its defaults filled in, the objective's
    mode resolved and max_trials set (the whole grid when absent)."""
    base, summary = _check_spec(session, settings, tenant, request.spec, ["spec"], "the base spec")
    full = base.model_dump(mode="json")
    metric = request.objective.metric
    # a share drawn from the training data, or the data set's own validation set
    validation = full["split"]["validation"] > 0 or _brings_validation(session, tenant, base)
    recorded = metric_names(summary.task, validation)
    if metric not in recorded:
        why = ("needs a validation split; the base spec has split.validation 0 (set it, or use a train_* "
               "metric)" if metric.startswith("val_") and not validation and metric in metric_names(summary.task)
               else f"is not measured on a {summary.task} task")
        raise _invalid(["objective", "metric"], f"'{metric}' {why}; use one of {list(recorded)}")
    key = _packing_key(base) if request.packing else None
    for path, parameter in request.parameters.items():
        why = resolve(full, path)
        if why is not None:
            raise _invalid(["parameters", path], f"unknown path '{path}': {why}")
        field = "values" if parameter.values is not None else "min/max"
        for value in parameter.probes():
            varied, _ = _check_spec(session, settings, tenant, apply(full, {path: value}), ["parameters", path, field],
                                    f"parameter '{path}' = {_short(value)}")
            if key is not None and _packing_key(varied, ["parameters", path, field]) != key:
                raise _invalid(["parameters", path], f"parameter '{path}' = {_short(value)} changes the network's "
                               f"shape or the training's layout, so its trials cannot train in one pack; with "
                               f"'packing': true vary only {', '.join(MEMBER_PATHS)} (or set 'packing': false)")
    stored = request.model_dump(mode="json")
    stored.update(spec=full, max_trials=request.trials,
                  objective={"metric": metric, "mode": request.objective.direction})
    return stored


def _packing_key(spec: JobSpec, where: list[Any] | None = None) -> str:
    """The pack key of a packing sweep's spec; 422 if such a spec cannot train packed at all."""
    why = packable(spec)
    if why is not None:
        raise _invalid(where or ["packing"], f"'packing': true, but {why} (or set 'packing': false)")
    return pack_key(spec)


def trial_rows(session: Session, sweep: Any) -> list[Trial]:
    """Every trial ranked by its best objective value, best first; trials without a value last."""
    mode = sweep.objective_mode
    curves = db_sweeps.objective_curves(session, sweep.id, sweep.objective_metric)
    out = [Trial(number=r.trial_number, job_id=r.id, params=r.params or {}, status=r.status,
                 stop_reason=r.stop_reason, value=objective.best(curves.get(r.id, {}).values(), mode),
                 epochs_completed=r.epochs_completed, pruned_rung=r.pruned_rung)
           for r in db_sweeps.trials(session, sweep.id)]
    return sorted(out, key=lambda t: (objective.rank(t.value, mode), t.number))


def to_wire(session: Session, sweep: Any) -> Sweep:
    ranked = trial_rows(session, sweep)
    counts = db_sweeps.status_counts(session, sweep.id)
    elapsed = db_sweeps.elapsed(sweep)
    ended = counts["succeeded"] + counts["failed"] + counts["cancelled"]
    best = ranked[0] if ranked and ranked[0].value is not None else None
    return Sweep(id=sweep.id, name=sweep.name, status=sweep.status, error=sweep.error, method=sweep.method,
                 objective={"metric": sweep.objective_metric, "mode": sweep.objective_mode},
                 max_trials=sweep.max_trials, max_concurrent=sweep.max_concurrent, trials=counts, best=best,
                 created_at=sweep.created_at, finished_at=sweep.finished_at, elapsed_seconds=round(elapsed, 3),
                 trials_per_minute=round(ended / elapsed * 60, 3) if elapsed > 0 else None, spec=sweep.spec)


def _owned(session: Session, tenant: str, sweep_id: str) -> Any:
    sweep = db_sweeps.get_sweep(session, tenant, sweep_id)
    if sweep is None:
        raise not_found("sweep", sweep_id)
    return sweep


@router.post("", status_code=201, response_model=Sweep, summary="Start a sweep", responses=errors(400, 413, 429))
def create_sweep(
    request_body: Annotated[SweepSpec, Body(openapi_examples={"iris": {"value": SWEEP_EXAMPLE}})],
    request: Request, session: SessionDep, settings: SettingsDep, tenant: PrincipalDep,
) -> Sweep:
    from service.sweeps import fill

    limit = settings.max_active_trials
    if request_body.max_concurrent > limit:
        raise _invalid(["max_concurrent"], f"max_concurrent {request_body.max_concurrent} is above the "
                                           f"{limit} trials a tenant may run at once "
                                           "(NETFIT_MAX_ACTIVE_TRIALS); lower it")
    check_active_limit(session, tenant, settings.max_active_jobs)
    check_priority(session, tenant, request_body.priority, ["priority"])
    if db_sweeps.count_active_trials(session, tenant) >= limit:
        raise ApiError(429, f"you have {limit} sweep trials queued or running, the most allowed "
                            "at once (NETFIT_MAX_ACTIVE_TRIALS); wait for a sweep to end or cancel one "
                            "(POST /v1/sweeps/{id}/cancel)", headers={"Retry-After": "30"})
    stored = validate_sweep(session, settings, tenant, request_body)
    sweep = db_sweeps.create_sweep(session, tenant=tenant, request=stored, method=request_body.method,
                                   metric=stored["objective"]["metric"], mode=stored["objective"]["mode"],
                                   max_trials=stored["max_trials"], max_concurrent=request_body.max_concurrent)
    try:
        fill(request.app.state.session_factory, sweep.id, request.app.state.enqueue, settings)
    except Exception as exc:  # noqa: BLE001 - the sweep is stored; the reconciler asks again
        log.warning("sweep %s: first trials not asked (%s); the reconciler will", sweep.id, exc)
    session.expire_all()
    return to_wire(session, sweep)


@router.get("", response_model=Page[Sweep], summary="List sweeps, newest first")
def list_sweeps(
    session: SessionDep, tenant: PrincipalDep,
    cursor: CursorDep, limit: LimitQuery = 50,
) -> Page[Sweep]:
    rows, next_cursor = db_sweeps.list_sweeps(session, tenant, limit=limit, cursor=cursor)
    return Page[Sweep](items=[to_wire(session, s) for s in rows], next_cursor=next_cursor)


@router.get("/{sweep_id}", response_model=Sweep, summary="A sweep's status, counts and best trial")
def get_sweep(sweep_id: SweepId, session: SessionDep, tenant: PrincipalDep) -> Sweep:
    return to_wire(session, _owned(session, tenant, sweep_id))


@router.get("/{sweep_id}/trials", response_model=Page[Trial], summary="The leaderboard, best first")
def list_trials(sweep_id: SweepId, session: SessionDep, tenant: PrincipalDep) -> Page[Trial]:
    """Every trial, ranked by its best objective value (pruned trials flagged by their
    stop_reason); one page holds them all (a sweep has at most 1,000)."""
    return Page[Trial](items=trial_rows(session, _owned(session, tenant, sweep_id)), next_cursor=None)


@router.get("/{sweep_id}/importance", response_model=SweepImportance, summary="Each parameter's importance")
def importance(sweep_id: SweepId, session: SessionDep, tenant: PrincipalDep) -> SweepImportance:
    from service.sweeps import importance as compute

    sweep = _owned(session, tenant, sweep_id)
    evaluator, values, used, note = compute(session, sweep)
    return SweepImportance(sweep_id=sweep.id, evaluator=evaluator, importances=values, trials_used=used, note=note)


@router.get("/{sweep_id}/events", summary="Live trial events (Server-Sent Events)",
            response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def events(
    sweep_id: SweepId, request: Request, tenant: PrincipalDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """`trial_queued`, `trial_started` (again with `attempt` when a lost trial resumes),
    `trial_pruned` (epoch, rung), `trial_finished` (status, stop_reason, error, `value`: the
    trial's best objective value, `new_best`) and `best` (a finished trial beat every earlier one), each
    with the trial's `number` and `job_id` and an `id:`; reconnect with `Last-Event-ID` to
    resume after it. The stream replays the history first and ends with `event: sweep` (status,
    error, best) once the sweep has ended and none of its trials is queued or running."""
    stream = await sweep_event_stream(request, tenant, sweep_id, last_event_id)
    if stream is None:
        raise not_found("sweep", sweep_id)
    return sse_response(stream)


@router.post("/{sweep_id}/cancel", response_model=Sweep, summary="Stop a sweep and its trials")
def cancel_sweep(sweep_id: SweepId, session: SessionDep, tenant: PrincipalDep) -> Sweep:
    """Queued trials end `cancelled` at once, running ones within an epoch or ~2 s; an ended
    sweep is returned unchanged (idempotent)."""
    sweep = db_sweeps.request_cancel(session, tenant, sweep_id)
    if sweep is None:
        raise not_found("sweep", sweep_id)
    return to_wire(session, sweep)


@router.delete("/{sweep_id}", status_code=204, summary="Delete an ended sweep with its trials",
               responses=errors(409))
def delete_sweep(sweep_id: SweepId, session: SessionDep, tenant: PrincipalDep) -> Response:
    """A running sweep, or one whose trials still run, is a 409 (cancel it first). Afterwards the
    sweep and its trials are 404s and their space is free."""
    try:
        found = retention.delete_sweep(session, tenant, sweep_id)
    except retention.InUse as exc:
        raise ApiError(409, str(exc)) from None
    if not found:
        raise not_found("sweep", sweep_id)
    return Response(status_code=204)
