"""The SDK's predict and export, and netfit.load_model on a downloaded checkpoint, against a
live embedded service (`netfit serve`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris

import netfit
from netfit import Client, NetfitError
from tests.conftest import iris_spec


@pytest.fixture(scope="module")
def client(embedded_service: str):
    with Client(embedded_service) as c:
        yield c


@pytest.mark.slow
def test_predict_export_and_load_model_agree_on_new_flowers(client: Client, tmp_path: Path):
    import onnxruntime as ort

    job = client.wait(client.submit(iris_spec(epochs=30)).id, timeout=120)
    flowers = np.array([[5.0, 3.4, 1.5, 0.2], [6.4, 3.2, 4.5, 1.5], [7.7, 3.0, 6.1, 2.3]])  # raw centimetres
    out = client.predict(job.id, flowers)  # a numpy array is sent as lists
    assert out["classes"] == list(load_iris().target_names) and len(out["predictions"]) == 3
    assert out["checkpoint"]["kind"] == "best"

    # the same checkpoint downloaded and loaded here: no server involved
    model = netfit.load_model(client.download_checkpoint(job.id, "best", tmp_path / "best.safetensors"))
    import torch

    with torch.inference_mode():
        assert model.predict(torch.tensor(flowers)) == out["predictions"]
        np.testing.assert_allclose(model.predict_proba(torch.tensor(flowers)).numpy(), out["probabilities"], atol=1e-6)

    path = client.export(job.id, tmp_path / "iris.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": flowers.astype(np.float32)})[0]
    np.testing.assert_allclose(got, out["probabilities"], atol=1e-5)

    with pytest.raises(NetfitError) as caught:
        client.predict(job.id, [[1.0, 2.0]])
    assert caught.value.status_code == 422 and "4 features" in str(caught.value)
    with pytest.raises(ValueError, match="checkpoint"):
        client.predict(job.id, flowers, checkpoint="worst")
