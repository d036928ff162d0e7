"""`netfit mlflow-export` and Client.to_mlflow against a real MLflow tracking server (`mlflow
server`, SQLite, a local artifact root) that this module starts once; what it logged is read
back with MLflow's own client. The jobs run on the live embedded service."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_iris

from netfit import Client
from netfit.mlflow_export import flatten
from tests.conftest import Proc, free_port, iris_spec, wait_until
from tests.netfit.conftest import netfit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # a tracking server and three trainings on a loaded machine


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    proc = Proc([str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
                 "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
                 "--artifacts-destination", str(folder / "artifacts"), "--workers", "1"],
                {}, folder / "mlflow.log", cwd=folder)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.alive(), f"mlflow server died at start:\n{proc.output()[-3000:]}"
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=300, interval=0.5, what="the MLflow server's /health")  # its imports: ~10 s quiet, minutes loaded
        yield url
    finally:
        proc.stop()


def test_jobs_become_mlflow_runs_with_params_metrics_tags_and_the_onnx_model(
        embedded_service: str, mlflow_server: str, tmp_path: Path) -> None:
    with Client(embedded_service) as client:
        job = client.wait(client.submit({**iris_spec(epochs=4), "name": "mlflow-iris"}).id, timeout=180)
        sweep = client.sweep({"name": "mlflow-sweep", "spec": iris_spec(epochs=2), "method": "grid",
                              "parameters": {"model.layers.0.units": {"values": [8]}}})
        client.wait_sweep(sweep.id, timeout=180)
        (trial,) = client.trials(sweep.id)
        trial_job = client.job(trial.job_id)
        metrics = client.metrics(job.id)
        expected = client.predict(job.id, load_iris().data[:5].tolist())

        result = netfit("mlflow-export", job.id, "--tracking-uri", mlflow_server, "--experiment", "lab",
                        url=embedded_service)
        assert result.returncode == 0, result.stderr
        (run_id,) = re.findall(r"MLflow run (\w+)", result.stdout)
        (trial_run_id,) = client.to_mlflow(trial_job.id, tracking_uri=mlflow_server, experiment="lab")

    mlflow = MlflowClient(tracking_uri=mlflow_server)
    run = mlflow.get_run(run_id)
    assert run.info.experiment_id == mlflow.get_experiment_by_name("lab").experiment_id
    assert run.info.run_name == "mlflow-iris" and run.info.status == "FINISHED"
    assert run.data.params == flatten(job.spec)
    assert run.data.params["model.layers.0.units"] == "16" and run.data.params["training.optimizer.lr"] == "0.01"
    assert run.data.tags["netfit.job_id"] == job.id and run.data.tags["netfit.stop_reason"] == job.stop_reason
    assert "netfit.sweep_id" not in run.data.tags
    for name in ("train_loss", "val_loss", "val_accuracy", "lr"):
        history = sorted(mlflow.get_metric_history(run_id, name), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(m.epoch, getattr(m, name)) for m in metrics], name
    assert run.data.metrics["test_accuracy"] == job.test_metrics["test_accuracy"]

    # the model: ONNX with its preprocessing inside, answering as /predict does on raw rows
    (artifact,) = mlflow.list_artifacts(run_id, "model")
    assert artifact.path == f"model/{job.id}.onnx"
    onnx_path = mlflow.download_artifacts(run_id, artifact.path, str(tmp_path))
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": load_iris().data[:5].astype(np.float32)})[0]
    np.testing.assert_allclose(got, expected["probabilities"], atol=1e-5)

    tagged = mlflow.get_run(trial_run_id).data.tags
    assert tagged["netfit.sweep_id"] == sweep.id and tagged["netfit.trial_number"] == "0"
    assert tagged["netfit.job_id"] == trial_job.id


def test_mlflow_export_of_an_unknown_job_is_one_line(embedded_service: str, mlflow_server: str) -> None:
    result = netfit("mlflow-export", "nosuchjob123", "--tracking-uri", mlflow_server, url=embedded_service)
    assert result.returncode == 1 and "no job with id 'nosuchjob123'" in result.stderr
    assert "Traceback" not in result.stderr
