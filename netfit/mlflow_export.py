"""Jobs as MLflow runs (`netfit mlflow-export`, Client.to_mlflow): the flattened spec as params,
every epoch's metrics at their step, tags (job id, sweep, status, stop reason) and the model
as an ONNX artifact with its preprocessing inside (GET /v1/jobs/{id}/export).

MLflow is imported here only: the `mlflow` extra (mlflow-skinny, the client without MLflow's
server) is needed by this module alone. Each call logs a new run per job.
"""

from __future__ import annotations

import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netfit.client import Client
    from netfit.models import Job

INSTALL = "pip install 'netfit[mlflow]'"
# MLflow's own bounds (mlflow.utils.validation): a batch's params and metrics, a param's value
PARAMS_PER_BATCH, METRICS_PER_BATCH, MAX_PARAM_VALUE = 100, 1000, 6000
RUN_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """{"training": {"optimizer": {"lr": 0.01}}} -> {"training.optimizer.lr": "0.01"}; list items
    by index (model.layers.0.type); empty lists and dicts as they are."""
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value:
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        return {prefix: text[:MAX_PARAM_VALUE]}
    out: dict[str, str] = {}
    for key, item in items:
        key = re.sub(r"[^\w\-. /]", "_", str(key))  # MLflow's key alphabet (a class name may hold any)
        out.update(flatten(item, f"{prefix}.{key}" if prefix else key))
    return out


def _ms(when: datetime | None) -> int | None:
    return int(when.timestamp() * 1000) if when else None


def tags(job: Job) -> dict[str, str]:
    found = {"netfit.job_id": job.id, "netfit.status": job.status, "netfit.stop_reason": job.stop_reason,
             "netfit.sweep_id": job.sweep_id, "netfit.trial_number": job.trial_number,
             "netfit.best_epoch": job.best_epoch, "netfit.device": job.device}
    return {key: str(value) for key, value in found.items() if value is not None}


def to_mlflow(client: Client, job_ids: list[str], tracking_uri: str, experiment: str = "netfit") -> list[str]:
    """Log each job as a run of `experiment` (made if missing) at `tracking_uri`; the run ids."""
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ImportError(f"MLflow is not installed ({exc}); {INSTALL}") from None

    jobs = [client.job(job_id) for job_id in job_ids]  # an unknown id stops it before anything is logged
    mlflow = MlflowClient(tracking_uri=tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else mlflow.create_experiment(experiment)
    run_ids = []
    for job in jobs:
        start = _ms(job.started_at or job.created_at)
        run = mlflow.create_run(experiment_id, start_time=start, run_name=job.name or job.id,
                                tags={**tags(job), "mlflow.source.name": "netfit"})
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in flatten(job.spec).items()]
        for i in range(0, len(params), PARAMS_PER_BATCH):
            mlflow.log_batch(run_id, params=params[i:i + PARAMS_PER_BATCH])
        metrics, elapsed, last = [], 0.0, 0
        for row in client.metrics(job.id):
            elapsed += row.seconds or 0.0
            last = row.epoch
            metrics += [Metric(name, value, start + int(elapsed * 1000), row.epoch)
                        for name, value in row.model_dump(exclude={"epoch"}).items() if value is not None]
        metrics += [Metric(name, value, start + int(elapsed * 1000), last)
                    for name, value in (job.test_metrics or {}).items() if value is not None]
        for i in range(0, len(metrics), METRICS_PER_BATCH):
            mlflow.log_batch(run_id, metrics=metrics[i:i + METRICS_PER_BATCH])
        why_not = _log_model(client, mlflow, run_id, job)
        if why_not:
            mlflow.log_batch(run_id, tags=[RunTag("netfit.model", why_not)])
        if job.status in RUN_STATUS:
            mlflow.set_terminated(run_id, RUN_STATUS[job.status], end_time=_ms(job.finished_at))
        run_ids.append(run_id)
    return run_ids


def _log_model(client: Client, mlflow: Any, run_id: str, job: Job) -> str | None:
    """The ONNX model as the artifact model/<job id>.onnx; None, or why there is none."""
    from netfit.errors import NetfitError

    with tempfile.TemporaryDirectory(prefix="netfit-mlflow-") as folder:
        try:
            path = client.export(job.id, Path(folder) / f"{job.id}.onnx")
        except NetfitError as exc:  # no weights yet (409), or a layer ONNX cannot express (422)
            return f"no ONNX model: {exc.message}"[:MAX_PARAM_VALUE]
        mlflow.log_artifact(run_id, str(path), artifact_path="model")
    return None
