"""/v1/compare.{svg,png}: several jobs' validation curves overlaid on one scale."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from api.deps import OneThreadRoute, PrincipalDep, SessionDep
from api.errors import ApiError, invalid, not_found
from api.responses import errors
from db import jobs as db_jobs
from netfit.models import EpochMetrics
from netfit.spec import ID_PATTERN

router = APIRouter(prefix="/v1", tags=["jobs"], responses=errors(401, 404, 422, 503), route_class=OneThreadRoute)
MAX_JOBS = 12  # beyond a dozen lines an overlay is unreadable (and matplotlib's palette repeats)


def job_ids(jobs: str) -> list[str]:
    """'A,B,C' → ['A', 'B', 'C'] in order, repeats dropped; a 422 naming a bad id."""
    ids = list(dict.fromkeys(j.strip() for j in jobs.split(",") if j.strip()))
    if not ids:
        raise invalid({"loc": ["query", "jobs"], "msg": "give job ids separated by commas, e.g. ?jobs=A,B"})
    if len(ids) > MAX_JOBS:
        raise invalid({"loc": ["query", "jobs"], "msg": f"at most {MAX_JOBS} jobs in one plot; got {len(ids)}"})
    bad = next((j for j in ids if not re.match(ID_PATTERN, j)), None)
    if bad is not None:
        raise invalid({"loc": ["query", "jobs"], "msg": f"'{bad[:80]}' is not a job id (letters, digits, _ and -)"})
    return ids


JobsQuery = Annotated[str, Query(description="job ids separated by commas, e.g. A,B,C", max_length=2000)]
IMAGE = {200: {"content": {"image/svg+xml": {}, "image/png": {}}}}


def overlay(fmt: Literal["svg", "png"], session: Session, tenant: str, jobs: str) -> Response:
    """One line per job (its name, else its id), each job's best epoch a dot; jobs of another
    API key are 404 like any job of theirs. A job with no finished epoch yet is left out."""
    from netfit.plots import compare_curves

    series = []
    for job_id in job_ids(jobs):
        job = db_jobs.get_job(session, tenant, job_id)
        if job is None:
            raise not_found("job", job_id)
        rows = [EpochMetrics.model_validate(r, from_attributes=True) for r in db_jobs.list_metrics(session, tenant, job_id)]
        if rows:
            label = f"{job.name} ({job.id})" if job.name else job.id
            series.append((label, rows, job.best_epoch))
    if not series:
        raise ApiError(404, "none of these jobs has a finished epoch yet; curves appear after the first")
    image = compare_curves(series, fmt=fmt)
    return Response(image, media_type="image/svg+xml" if fmt == "svg" else "image/png")


# two fixed paths rather than compare.{fmt}: the ids travel in the query, not the path
@router.get("/compare.svg", summary="Several jobs' validation curves on one scale (SVG)", response_class=Response,
            responses=IMAGE)
def compare_svg(session: SessionDep, tenant: PrincipalDep, jobs: JobsQuery) -> Response:
    return overlay("svg", session, tenant, jobs)


@router.get("/compare.png", summary="Several jobs' validation curves on one scale (PNG)", response_class=Response,
            responses=IMAGE)
def compare_png(session: SessionDep, tenant: PrincipalDep, jobs: JobsQuery) -> Response:
    return overlay("png", session, tenant, jobs)
