"""A functional graph through the embedded service (`netfit serve`: real Celery worker,
SQLite): refused with a 422 naming the node and block, trained, predicted and exported,
the service's answers equal to torch's on the same checkpoint."""

from __future__ import annotations

import copy

import httpx
import numpy as np
import pytest
import torch

from netfit.client import Client
from netfit.engine.data import load_data
from netfit.spec import JobSpec
from tests.api.conftest import assert_error_body
from tests.netfit.engine.conftest import IRIS_GRAPH


@pytest.mark.slow  # a job trained and exported by the worker (~25 s quiet)
def test_a_graph_is_checked_trained_predicted_and_exported_by_the_service(embedded_service: str, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec = copy.deepcopy(IRIS_GRAPH)
    spec["training"] = {**spec["training"], "device": "auto", "epochs": 5}
    with httpx.Client(base_url=embedded_service, timeout=30) as http:
        shapes = copy.deepcopy(spec)
        shapes["model"]["layers"][0]["units"] = 8  # the residual block adds 8 to 16 features
        body = assert_error_body(http.post("/v1/jobs?dry_run=true", json=shapes), 422, "invalid")
        assert body["details"][0]["loc"] == ["model", "blocks", "res", "layers", 3]
        assert "node 'r1' (model.blocks.res.layers[3], add)" in body["message"]
        names = copy.deepcopy(spec)
        names["model"]["layers"][4]["inputs"] = ["r2", "sides"]
        body = assert_error_body(http.post("/v1/jobs", json=names), 422, "invalid")
        assert "model.layers[4] ('both', concat): input 'sides' names no earlier layer; did you mean 'side'?" in body["message"]

    with Client(base_url=embedded_service) as client:
        job = client.wait(client.submit(spec).id, timeout=180)
        assert job.status == "succeeded", job.error
        rows = {row.name: row for row in job.summary.layers}
        assert rows["both"].inputs == ["r2", "side"] and rows["r1"].block == "res"
        assert job.spec["model"]["blocks"]["res"]["layers"][3] == {"inputs": ["input", "fc2"], "type": "add"}

        data = load_data(JobSpec.model_validate(spec))
        prep = data.preprocessing
        raw = (data.test.x.numpy() * np.array(prep["std"]) + np.array(prep["mean"])).astype(np.float32)
        model = client.load_model(job.id)  # the best checkpoint, rebuilt here by torch
        with torch.inference_mode():
            expected = model.predict_proba(torch.from_numpy(raw)).numpy()
        out = client.predict(job.id, raw.tolist())
        assert np.allclose(out["probabilities"], expected, atol=1e-5)
        assert out["predictions"] == [model.classes[k] for k in expected.argmax(1)]
        onnx = client.export(job.id, tmp_path / "graph.onnx")
        session = ort.InferenceSession(str(onnx))
        assert np.allclose(session.run(None, {"input": raw})[0], expected, atol=1e-5)
