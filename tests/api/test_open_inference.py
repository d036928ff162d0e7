"""/v2, the Open Inference Protocol, through Triton's own Python client (tritonclient.http)
against a live API process and a real Celery worker on PostgreSQL + Redis: an Iris MLP and a
digits CNN answer as /predict does, bad inputs are 400s naming the input, and unknown jobs,
jobs without weights and other tenants' jobs answer as the rest of the API."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from sklearn.datasets import load_digits, load_iris
from tritonclient.utils import InferenceServerException

from netfit.models import TERMINAL_STATUSES
from tests.api.conftest import bearer, new_key
from tests.conftest import (
    claimed_redis_db, fresh_pg_database, iris_spec, service_env, start_api_process, start_worker_process, wait_until,
)


pytestmark = pytest.mark.slow
CNN = {"preprocess": {"features": "scale"},  # on the digits as 8x8 grey images (an upload)
       "model": {"layers": [{"type": "conv2d", "filters": 4, "kernel_size": 3}, {"type": "maxpool2d"},
                            {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "units": 10}]},
       "training": {"epochs": 3, "device": "cpu", "seed": 0}}


@dataclass
class Service:
    url: str
    keys: dict[str, str]  # tenant -> API key
    iris: str  # team-a's jobs
    cnn: str
    regression: str
    queued: str  # waits on the gpu queue, which no worker serves: no weights

    @property
    def a(self) -> dict[str, str]:  # a new dict each time: tritonclient adds its own headers to the one passed
        return bearer(self.keys["team-a"])

    @property
    def b(self) -> dict[str, str]:
        return bearer(self.keys["team-b"])

    def triton(self) -> httpclient.InferenceServerClient:
        return httpclient.InferenceServerClient(self.url.removeprefix("http://"))

    def predict(self, job_id: str, instances: list, checkpoint: str = "best") -> dict:
        response = httpx.post(f"{self.url}/v1/jobs/{job_id}/predict?checkpoint={checkpoint}",
                              json={"instances": instances}, headers=self.a, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    logs: Path = tmp_path_factory.mktemp("oip")
    with fresh_pg_database() as pg, claimed_redis_db() as broker:
        env = service_env(pg, broker, NETFIT_GPU_JOBS="1")
        procs = [start_worker_process(env, logs / "worker.log")]
        try:  # the worker is stopped even if the API fails to start
            api, url = start_api_process(env, logs / "api.log")
            procs.append(api)
            keys = {tenant: new_key(pg, tenant) for tenant in ("team-a", "team-b")}
            a = bearer(keys["team-a"])

            def submit(spec: dict) -> str:
                response = httpx.post(f"{url}/v1/jobs", json=spec, headers=a, timeout=30)
                assert response.status_code == 201, response.text
                return response.json()["id"]

            digits = load_digits()
            upload = io.BytesIO()
            np.savez(upload, x=digits.images.astype(np.uint8), y=digits.target)
            images = httpx.post(f"{url}/v1/datasets", files={"file": ("digits.npz", upload.getvalue())}, headers=a,
                                timeout=60).json()["id"]
            iris, cnn = submit(iris_spec(epochs=15)), submit({**CNN, "dataset": {"id": images}})
            regression = submit({"dataset": {"synthetic": {"kind": "linear", "n_samples": 100}},
                                 "model": {"layers": [{"type": "linear", "units": 1}]},
                                 "training": {"epochs": 3, "device": "cpu"}})
            queued = submit(iris_spec(device="cuda"))
            for job_id in (iris, cnn, regression):
                job = wait_until(lambda: (j := httpx.get(f"{url}/v1/jobs/{job_id}", headers=a, timeout=30).json())[
                    "status"] in TERMINAL_STATUSES and j, timeout=180, interval=0.2, what="the job to end")
                assert job["status"] == "succeeded", job
            yield Service(url, keys, iris, cnn, regression, queued)
        finally:
            for proc in reversed(procs):
                proc.stop()


def _input(x: np.ndarray, datatype: str, binary: bool = True, name: str = "input") -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


def test_the_triton_client_sees_the_server_and_the_iris_model_and_infers_as_predict(service: Service) -> None:
    client = service.triton()
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata(service.iris, headers=service.a)
    assert meta["name"] == service.iris and meta["versions"] == ["best", "last"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
                               {"name": "predictions", "datatype": "BYTES", "shape": [-1]}]
    assert meta["parameters"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert client.is_model_ready(service.iris, headers=service.a)
    assert client.is_model_ready(service.iris, "last", headers=service.a)

    x = load_iris().data[::10].astype(np.float32)  # raw features: the preprocessing is the model's
    expected = service.predict(service.iris, x.tolist())
    for binary in (True, False):  # the binary tensor extension (tritonclient's default) and plain JSON
        result = client.infer(service.iris, [_input(x, "FP32", binary)], headers=service.a, outputs=[
            httpclient.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "predictions")])
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=0, atol=1e-6)
        assert [p.decode() if isinstance(p, bytes) else p for p in result.as_numpy("predictions")] == expected["predictions"]
        assert result.get_response()["model_version"] == "best"
    # no outputs named: all of them, in binary (the client's default); the version in the path
    last = client.infer(service.iris, [_input(x[:3], "FP32")], model_version="last", headers=service.a)
    np.testing.assert_allclose(last.as_numpy("probabilities"), service.predict(service.iris, x[:3].tolist(), "last")[
        "probabilities"], rtol=0, atol=1e-6)
    assert last.get_response()["model_version"] == "last"


def test_the_digits_cnn_takes_integer_or_float_pixels_as_predict_does(service: Service) -> None:
    client = service.triton()
    meta = client.get_model_metadata(service.cnn, headers=service.a)
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert "UINT8" in meta["parameters"]["input_datatypes"]
    images = load_digits().images[:6].astype(np.uint8)  # grey 8x8, values 0..16
    expected = service.predict(service.cnn, images[:, None].tolist())
    for x, datatype in ((images[:, None], "UINT8"), (images.astype(np.float32)[:, None], "FP32"),
                        (images, "UINT8")):  # grey images may come without their channel, as to /predict
        result = client.infer(service.cnn, [_input(x, datatype)], headers=service.a)
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=0, atol=1e-6)
        assert [p.decode() for p in result.as_numpy("predictions")] == expected["predictions"]


def test_a_regression_model_gives_its_values(service: Service) -> None:
    client = service.triton()
    meta = client.get_model_metadata(service.regression, headers=service.a)
    assert meta["outputs"] == [{"name": "predictions", "datatype": "FP32", "shape": [-1, 1]}]
    x = np.array([[0.0], [0.5], [1.0]], dtype=np.float32)
    result = client.infer(service.regression, [_input(x, "FP32")], headers=service.a)
    expected = service.predict(service.regression, x.tolist())["predictions"]
    np.testing.assert_allclose(result.as_numpy("predictions")[:, 0], expected, rtol=0, atol=1e-6)


def _refused(call, status: str) -> str:
    with pytest.raises(InferenceServerException) as raised:
        call()
    assert raised.value.status() == status, raised.value
    return raised.value.message()


def test_a_wrong_shape_datatype_or_name_is_a_400_naming_the_input(service: Service) -> None:
    client, job = service.triton(), service.iris
    x = np.ones((2, 4), np.float32)
    message = _refused(lambda: client.infer(job, [_input(x[:, :3], "FP32")], headers=service.a), "400")
    assert "input 'input' has shape [2, 3] but the model takes [-1, 4]" in message
    message = _refused(lambda: client.infer(job, [_input(x.astype(np.float64), "FP64")], headers=service.a), "400")
    assert "input 'input' is FP64; this model takes FP32" in message
    message = _refused(lambda: client.infer(job, [_input(x.astype(np.uint8), "UINT8")], headers=service.a), "400")
    assert "input 'input' is UINT8" in message  # integer pixels are for image models
    message = _refused(lambda: client.infer(job, [_input(x, "FP32", name="features")], headers=service.a), "400")
    assert "one input, 'input'" in message and "'features'" in message
    nan = np.full((1, 4), np.nan, np.float32)
    message = _refused(lambda: client.infer(job, [_input(nan, "FP32")], headers=service.a), "400")
    assert "finite" in message
    message = _refused(lambda: client.infer(job, [_input(x, "FP32")], headers=service.a, outputs=[
        httpclient.InferRequestedOutput("logits")]), "400")
    assert "no output 'logits'" in message
    # a plain JSON body whose data do not fill its shape
    response = httpx.post(f"{service.url}/v2/models/{job}/infer", headers=service.a, timeout=30, json={
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3]}]})
    assert response.status_code == 400 and response.json() == {
        "error": "input 'input' has 3 values in 'data', but its shape [2, 4] takes 8"}


def test_unknown_jobs_jobs_without_weights_and_other_tenants_jobs_answer_as_the_rest_of_the_api(service: Service) -> None:
    client = service.triton()
    x = [_input(np.ones((1, 4), np.float32), "FP32")]

    def v1(job_id: str, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{service.url}/v1/jobs/{job_id}/predict", json={"instances": [[1, 1, 1, 1]]},
                          headers=headers, timeout=30)

    cases = (("nosuchjob123", "team-a", "404"), (service.iris, "team-b", "404"), (service.queued, "team-a", "409"))
    for job_id, tenant, status in cases:
        key = lambda: bearer(service.keys[tenant])  # noqa: E731
        words = v1(job_id, key()).json()["message"]  # /predict's sentence, word for word
        assert _refused(lambda: client.infer(job_id, x, headers=key()), status) == words
        assert _refused(lambda: client.get_model_metadata(job_id, headers=key()), status) == words
        assert not client.is_model_ready(job_id, headers=key())
    assert "no 'best' checkpoint yet" in v1(service.queued, service.a).json()["message"]
    assert "version '7'" in _refused(lambda: client.get_model_metadata(service.iris, "7", headers=service.a), "404")
    # without a key, once keys exist: 401 in the protocol's form; the health calls stay open
    assert "API key" in _refused(lambda: client.get_model_metadata(service.iris), "401")
    assert client.is_server_live()
    response = httpx.get(f"{service.url}/v2/models/{service.iris}/nothing", headers=service.a, timeout=30)
    assert response.status_code == 404 and set(response.json()) == {"error"}
