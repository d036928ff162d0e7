"""GET /v1/jobs/{id}/tensorboard: the job as a TensorBoard event file (netfit.tensorboard)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from sqlalchemy.orm import Session

from api.deps import PrincipalDep, SessionDep
from api.errors import not_found
from api.responses import errors
from db import jobs as db_jobs
from netfit.models import EpochLayerStats, EpochMetrics, Job
from netfit.spec import ID_PATTERN

JobId = Annotated[str, Path(pattern=ID_PATTERN, description="the id that POST /v1/jobs returned")]
router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=errors(401, 404, 422, 503))


@router.get("/{job_id}/tensorboard", summary="The job as a TensorBoard event file", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
def tensorboard(job_id: JobId, session: SessionDep, tenant: PrincipalDep) -> Response:
    """Every epoch's metrics as scalars (loss/train, loss/val, ..., learning_rate), each layer's
    weight and gradient norms (layers/...), the test metrics and the spec as text; step = epoch.
    Put it in a folder of its own under a log directory (`netfit export ID --format tensorboard
    -o DIR` does) and run `tensorboard --logdir DIR`. A running job's file holds the epochs so far."""
    from netfit.tensorboard import event_file, file_name

    job = _job(session, tenant, job_id)
    metrics = [EpochMetrics.model_validate(r, from_attributes=True) for r in db_jobs.list_metrics(session, tenant, job_id)]
    layers = [EpochLayerStats(epoch=epoch, layers=stats) for epoch, stats in db_jobs.layer_rows(session, tenant, job_id)]
    return Response(event_file(job, metrics, layers), media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{file_name(job)}"'})


def _job(session: Session, tenant: str, job_id: str) -> Job:
    row = db_jobs.get_job(session, tenant, job_id)
    if row is None:
        raise not_found("job", job_id)
    return Job.model_validate(row, from_attributes=True)
