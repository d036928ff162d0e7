"""POST /v1/jobs/{id}/predict and GET /v1/jobs/{id}/export on models a real Celery worker
trained (PostgreSQL + Redis): held-out rows, CSV string labels, images, regression, bad input,
a job without weights, other tenants' jobs."""

from __future__ import annotations

import hashlib
import io
import json
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from netfit.engine.data import load_data
from netfit.models import TERMINAL_STATUSES
from netfit.spec import JobSpec
from tests.api.conftest import make_client
from tests.api.conftest import bearer, new_key
from tests.api.conftest import csv_bytes
from tests.api.conftest import assert_error_body
from tests.conftest import iris_spec, service_env, wait_until


def train(c, spec, headers=None) -> dict:
    job_id = c.post("/v1/jobs", json=spec, headers=headers).json()["id"]
    job = wait_until(lambda: (j := c.get(f"/v1/jobs/{job_id}", headers=headers).json())["status"]
                     in TERMINAL_STATUSES and j, timeout=120, interval=0.2, what="the job to end")
    assert job["status"] == "succeeded", job
    return job


def replace_best(db_url: str, job_id: str, epoch: int) -> None:
    """The job's best checkpoint replaced by its weights with the output layer's rows rolled by one."""
    from sqlalchemy import select, update
    from sqlalchemy.orm import undefer

    from db.models import Checkpoint
    from db.session import make_session_factory
    from netfit.engine.checkpoints import weights_from_bytes, weights_to_bytes

    factory = make_session_factory(db_url)
    with factory() as session:
        best = session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.kind == "best")
                               .options(undefer(Checkpoint.data))).one()
        state, meta = weights_from_bytes(best.data)
        meta.pop("format", None)  # safetensors' own, written again
        # the output layer: the highest-numbered linear layer (the file's tensor order is no guide)
        last = max((name for name, t in state.items() if name.endswith(".weight") and t.ndim == 2),
                   key=lambda name: int(name.split(".")[0]))
        for name in (last, last.removesuffix(".weight") + ".bias"):
            state[name] = torch.roll(state[name], 1, dims=0)
        data = weights_to_bytes(state, meta)
        session.execute(update(Checkpoint).where(Checkpoint.id == best.id).values(
            data=data, epoch=epoch, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()))
        session.commit()
    factory.kw["bind"].dispose()


def raw_test_rows(spec: dict) -> tuple[list[list[float]], list[int]]:
    """The job's held-out test split as a user has it: raw features (no standardization)."""
    prepared = load_data(JobSpec.model_validate(spec))
    prep = prepared.preprocessing
    raw = prepared.test.x * torch.tensor(prep["std"]) + torch.tensor(prep["mean"])
    return raw.tolist(), prepared.test.y.tolist()


@pytest.mark.slow
def test_iris_predicts_held_out_rows_by_name_bad_input_is_422_and_other_tenants_get_404(pg_url, redis_url, start_worker):
    start_worker(service_env(pg_url, redis_url))
    a, b = bearer(new_key(pg_url, "team-a")), bearer(new_key(pg_url, "team-b"))
    spec = iris_spec(epochs=40, early_stopping={"monitor": "val_loss", "patience": 5})
    with make_client(pg_url, redis_url) as c:
        job = train(c, spec, a)
        rows, labels = raw_test_rows(spec)
        response = c.post(f"/v1/jobs/{job['id']}/predict", json={"instances": rows}, headers=a)
        assert response.status_code == 200, response.text
        out = response.json()
        names = ["setosa", "versicolor", "virginica"]
        assert out["classes"] == names and set(out["predictions"]) <= set(names)
        assert out["checkpoint"] == {"kind": "best", "epoch": job["best_epoch"]}
        # the best weights on the held-out rows: exactly the test accuracy the worker recorded
        accuracy = np.mean([p == names[y] for p, y in zip(out["predictions"], labels)])
        assert accuracy == pytest.approx(job["test_metrics"]["test_accuracy"], abs=1e-6)
        assert all(math.isclose(sum(p), 1.0, abs_tol=1e-6) for p in out["probabilities"])
        last = c.post(f"/v1/jobs/{job['id']}/predict?checkpoint=last", json={"instances": rows[:2]}, headers=a).json()
        assert last["checkpoint"] == {"kind": "last", "epoch": job["epochs_completed"]}
        # new best weights (the output layer's classes rolled by one, as a worker writes them): the
        # next /predict uses them, not the model this process keeps
        replace_best(pg_url, job["id"], epoch=job["epochs_completed"] + 1)
        again = c.post(f"/v1/jobs/{job['id']}/predict", json={"instances": rows}, headers=a).json()
        assert again["checkpoint"] == {"kind": "best", "epoch": job["epochs_completed"] + 1}
        np.testing.assert_allclose(again["probabilities"], np.roll(out["probabilities"], 1, axis=1), atol=1e-6)

        url = f"/v1/jobs/{job['id']}/predict"
        for instances, loc, words in (
            ([], ["instances"], "empty"),
            ([[5.1, 3.5, 1.4]], ["instances", 0], "has 3 values but the model takes 4 features"),
            ([[5.1, 3.5, "wide", 0.2]], ["instances", 0, 2], "not a number"),
            ([[5.1, 3.5, 1.4, 0.2]] * 10_001, ["instances"], "10,000"),
        ):
            body = assert_error_body(c.post(url, json={"instances": instances}, headers=a), 422, "invalid")
            assert body["details"][0]["loc"] == loc and words in body["message"]
        nan = c.post(url, content=b'{"instances": [[5.1, NaN, 1.4, 0.2]]}', headers={**a, "content-type": "application/json"})
        assert "finite" in assert_error_body(nan, 422, "invalid")["message"]
        assert_error_body(c.post(url, json={"rows": rows}, headers=a), 422, "invalid")
        assert_error_body(c.post(url, json={"instances": [[1.0] * 4] * 60_000}, headers=a), 413, "too_large")
        assert_error_body(c.post(f"{url}?checkpoint=worst", json={"instances": rows}, headers=a), 422, "invalid")

        # another tenant's job does not exist for it, for predict and export alike
        assert_error_body(c.post(url, json={"instances": rows}, headers=b), 404, "not_found")
        assert_error_body(c.get(f"/v1/jobs/{job['id']}/export?format=onnx", headers=b), 404, "not_found")


def _digits_npz() -> bytes:
    digits = load_digits()
    buf = io.BytesIO()
    np.savez(buf, x=digits.images.astype(np.uint8), y=digits.target)  # (N, 8, 8) grey images, 0..16
    return buf.getvalue()


@pytest.mark.slow
def test_string_labels_images_regression_and_the_onnx_export_agrees_with_predict(pg_url, redis_url, start_worker):
    import onnx
    import onnxruntime as ort

    start_worker(service_env(pg_url, redis_url))
    with make_client(pg_url, redis_url) as c:
        csv_id = c.post("/v1/datasets", files={"file": ("points.csv", csv_bytes(), "text/csv")},
                        data={"target": "label"}).json()["id"]
        images_id = c.post("/v1/datasets", files={"file": ("digits.npz", _digits_npz())}).json()["id"]
        layers = [{"type": "linear", "units": 8}, {"type": "relu"}, {"type": "linear", "units": 2}]
        labelled = train(c, {"dataset": {"id": csv_id}, "model": {"layers": layers},
                             "training": {"epochs": 3, "device": "cpu"}})
        conv = train(c, {"dataset": {"id": images_id}, "preprocess": {"features": "scale"},
                         "model": {"layers": [{"type": "conv2d", "filters": 4, "kernel_size": 3},
                                              {"type": "maxpool2d"}, {"type": "batchnorm"}, {"type": "relu"},
                                              {"type": "flatten"}, {"type": "linear", "units": 10}]},
                         "training": {"epochs": 3, "device": "cpu"}})
        regression = train(c, {"dataset": {"synthetic": {"kind": "linear", "n_samples": 100}},
                               "model": {"layers": [{"type": "linear", "units": 1}]},
                               "training": {"epochs": 3, "device": "cpu"}})

        out = c.post(f"/v1/jobs/{labelled['id']}/predict", json={"instances": [[0.1, -0.2], [1.5, 0.3]]}).json()
        assert out["classes"] == ["no", "yes"] and set(out["predictions"]) <= {"no", "yes"}

        images = load_digits().images[:5]
        grey = c.post(f"/v1/jobs/{conv['id']}/predict", json={"instances": images.tolist()}).json()
        channel = c.post(f"/v1/jobs/{conv['id']}/predict", json={"instances": images[:, None].tolist()}).json()
        assert grey["classes"] == [str(d) for d in range(10)] and grey["probabilities"] == channel["probabilities"]
        small = c.post(f"/v1/jobs/{conv['id']}/predict", json={"instances": [np.zeros((7, 7)).tolist()]})
        assert "shape [1, 8, 8]" in assert_error_body(small, 422, "invalid")["message"]

        values = c.post(f"/v1/jobs/{regression['id']}/predict", json={"instances": [[0.0], [0.5]]}).json()
        assert len(values["predictions"]) == 2 and all(isinstance(v, float) for v in values["predictions"])
        assert "probabilities" not in values and "classes" not in values

        response = c.get(f"/v1/jobs/{conv['id']}/export?format=onnx")
        assert response.status_code == 200 and response.headers["x-netfit-epoch"] == str(conv["best_epoch"])
        model = onnx.load_from_string(response.content)
        assert json.loads({p.key: p.value for p in model.metadata_props}["classes"]) == grey["classes"]
        session = ort.InferenceSession(response.content, providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": images[:, None].astype(np.float32)})[0]  # raw pixels, any batch size
        np.testing.assert_allclose(got, np.array(grey["probabilities"]), atol=1e-5)
        assert_error_body(c.get(f"/v1/jobs/{conv['id']}/export?format=tflite"), 422, "invalid")


def test_a_job_without_weights_is_409_saying_why(pg_url, redis_url):
    with make_client(pg_url, redis_url) as c:  # no worker: the job stays queued
        job_id = c.post("/v1/jobs", json=iris_spec()).json()["id"]
        body = assert_error_body(c.post(f"/v1/jobs/{job_id}/predict", json={"instances": [[1, 2, 3, 4]]}), 409, "conflict")
        assert "queued" in body["message"] and "no 'best' checkpoint yet" in body["message"]
        assert_error_body(c.get(f"/v1/jobs/{job_id}/export"), 409, "conflict")
        assert_error_body(c.post("/v1/jobs/nosuchjob123/predict", json={"instances": [[1, 2, 3, 4]]}), 404, "not_found")
