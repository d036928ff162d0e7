"""POST/GET /v1/datasets: CSV and NPZ uploads, pickles refused, size cap, use in a job."""

from __future__ import annotations

import io

import numpy as np

from tests.api.conftest import make_client
from tests.api.conftest import assert_error_body
from tests.conftest import iris_spec
from tests.api.conftest import csv_bytes


def npz_bytes() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, x=rng.integers(0, 255, (30, 8, 8)).astype(np.uint8), y=np.arange(30) % 3)
    return buf.getvalue()


def test_csv_upload_is_described_and_usable_in_a_job(client):
    response = client.post("/v1/datasets", files={"file": ("points.csv", csv_bytes(), "text/csv")},
                           data={"name": "points", "target": "label"})
    assert response.status_code == 201, response.text
    ds = response.json()
    assert (ds["format"], ds["n_samples"], ds["input_shape"], ds["task"], ds["n_classes"]) == ("csv", 40, [2], "classification", 2)
    assert client.get(f"/v1/datasets/{ds['id']}").json()["sha256"] == ds["sha256"]
    assert [d["id"] for d in client.get("/v1/datasets").json()["items"]] == [ds["id"]]
    spec = iris_spec()
    spec["dataset"] = {"id": ds["id"]}
    spec["model"] = {"layers": [{"type": "linear", "units": 8}, {"type": "relu"}, {"type": "linear", "units": 2}]}
    assert client.post("/v1/jobs", json=spec).status_code == 201


def test_npz_images_keep_their_shape(client):
    ds = client.post("/v1/datasets", files={"file": ("digits.npz", npz_bytes())}).json()
    assert (ds["format"], ds["input_shape"], ds["n_classes"], ds["name"]) == ("npz", [1, 8, 8], 3, "digits")


def upload_npz(client, **arrays) -> str:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    response = client.post("/v1/datasets", files={"file": ("data.npz", buf.getvalue())})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def job_on(dataset_id: str, *layers: dict, epochs: int = 5) -> dict:
    spec = iris_spec(epochs=epochs)
    spec["dataset"], spec["model"] = {"id": dataset_id}, {"layers": list(layers)}
    return spec


def test_jobs_on_uploads_are_checked_against_what_the_upload_holds(client):
    rng = np.random.default_rng(0)
    images = client.post("/v1/datasets", files={"file": ("digits.npz", npz_bytes())}).json()["id"]  # 3 classes
    job = client.post("/v1/jobs", json=job_on(images, {"type": "flatten"}, {"type": "linear", "units": 3}))
    assert job.status_code == 201, job.text
    assert [layer["output_shape"] for layer in job.json()["summary"]["layers"]] == [[64], [3]]
    body = assert_error_body(client.post("/v1/jobs", json=job_on(images, {"type": "flatten"},
                                                                 {"type": "linear", "units": 4})), 422, "invalid")
    assert body["details"][0]["loc"] == ["model", "layers", 1, "units"] and "3 classes" in body["message"]
    # two real-valued targets: the output size comes from the targets
    targets = upload_npz(client, x=rng.normal(size=(40, 3)), y=rng.normal(size=(40, 2)))
    assert client.post("/v1/jobs", json=job_on(targets, {"type": "linear", "units": 2})).status_code == 201
    body = assert_error_body(client.post("/v1/jobs", json=job_on(targets, {"type": "linear", "units": 1})), 422, "invalid")
    assert "2 targets" in body["message"]
    # epochs x samples is capped by the upload's sample count
    many = upload_npz(client, x=np.zeros((100_001, 1), np.uint8), y=np.arange(100_001) % 2)
    body = assert_error_body(client.post("/v1/jobs", json=job_on(many, {"type": "linear", "units": 2}, epochs=10_000)),
                             422, "invalid")
    assert body["details"][0]["loc"] == ["training", "epochs"] and "100,001 samples" in body["message"]


def test_pickles_and_unknown_formats_are_refused(client):
    body = assert_error_body(client.post("/v1/datasets", files={"file": ("model.pt", b"\x80\x04K\x01.")}), 415,
                             "unsupported_media_type")
    assert "numpy.savez" in body["message"]
    assert_error_body(client.post("/v1/datasets", files={"file": ("data.pkl", b"\x80\x04K\x01.")}), 415, "unsupported_media_type")
    assert_error_body(client.post("/v1/datasets", files={"file": ("data.xlsx", b"PK")}), 415, "unsupported_media_type")
    # a pickled object array inside an .npz is not loaded either
    buf = io.BytesIO()
    np.savez(buf, x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4))
    body = assert_error_body(client.post("/v1/datasets", files={"file": ("evil.npz", buf.getvalue())}), 422, "invalid")
    assert body["details"][0]["loc"] == ["file"]
    assert client.get("/v1/datasets").json() == {"items": [], "next_cursor": None}


def test_bad_csv_names_the_problem(client):
    bad = b"a,b,label\n1,2,x\n3,,y\n"
    body = assert_error_body(client.post("/v1/datasets", files={"file": ("bad.csv", bad)}), 422, "invalid")
    assert "bad.csv" in body["message"]


def test_upload_size_cap_is_413(pg_url, redis_url):
    with make_client(pg_url, redis_url, max_upload_bytes=1000) as c:
        body = assert_error_body(c.post("/v1/datasets", files={"file": ("big.csv", b"a,b\n" + b"1,2\n" * 2000)}),
                                 413, "too_large")
        assert "limit" in body["message"]


def test_unknown_dataset_id_in_a_spec_is_422(client):
    spec = iris_spec()
    spec["dataset"] = {"id": "missing"}
    body = assert_error_body(client.post("/v1/jobs", json=spec), 422, "invalid")
    assert body["details"][0]["loc"] == ["dataset", "id"]


def test_an_npz_with_its_own_validation_set_is_the_jobs_validation_set(client):
    rng = np.random.default_rng(3)
    arrays = {"x_train": rng.normal(size=(40, 4)), "y_train": np.arange(40) % 3,
              "x_val": rng.normal(size=(10, 4)), "y_val": np.arange(10) % 3}
    buf = io.BytesIO()
    np.savez(buf, **arrays, x_test=rng.normal(size=(6, 4)), y_test=np.arange(6) % 3)
    response = client.post("/v1/datasets", files={"file": ("given.npz", buf.getvalue())})
    assert response.status_code == 201, response.text
    ds = response.json()
    assert ds["has_validation_split"] and ds["has_test_split"] and ds["n_samples"] == 56
    assert client.get(f"/v1/datasets/{ds['id']}").json()["has_validation_split"]
    net = ({"type": "linear", "units": 8}, {"type": "relu"}, {"type": "linear", "units": 3})
    # one validation set: a spec that would also draw a share from the training data is told so
    spec = job_on(ds["id"], *net)
    spec["split"]["validation"] = 0.2
    body = assert_error_body(client.post("/v1/jobs", json=spec), 422, "invalid")
    assert body["details"][0]["loc"] == ["split", "validation"]
    assert "its own validation set (x_val, y_val)" in body["message"] and "set split.validation to 0" in body["message"]
    # with split.validation 0 it trains on the given set, early stopping on its val_loss included
    spec["split"]["validation"] = 0
    spec["training"]["early_stopping"] = {"monitor": "val_loss", "patience": 3}
    assert client.post("/v1/jobs", json=spec).status_code == 201
    # without any validation set, a val_ monitor stays refused
    plain = upload_npz(client, x=arrays["x_train"], y=arrays["y_train"])
    spec["dataset"] = {"id": plain}
    body = assert_error_body(client.post("/v1/jobs", json=spec), 422, "invalid")
    assert body["details"][0]["loc"] == ["training", "early_stopping", "monitor"]
    # where the spec does not say, a data set's own set is used, and the stored spec says 0
    spec["dataset"] = {"id": ds["id"]}
    del spec["split"]["validation"]
    created = client.post("/v1/jobs", json=spec)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["split"]["validation"] == 0
    # and a sweep on it may rank its trials by that set's val_loss
    sweep = client.post("/v1/sweeps", json={"spec": spec, "objective": {"metric": "val_loss"}, "method": "grid",
                                            "parameters": {"training.optimizer.lr": {"values": [0.01, 0.1]}}})
    assert sweep.status_code == 201, sweep.text
    assert sweep.json()["spec"]["spec"]["split"]["validation"] == 0  # the request as stored: its base spec


def test_an_npz_validation_set_without_training_arrays_names_what_is_missing(client):
    buf = io.BytesIO()
    np.savez(buf, x_val=np.zeros((4, 2)), y_val=np.arange(4) % 2)
    body = assert_error_body(client.post("/v1/datasets", files={"file": ("val.npz", buf.getvalue())}), 422, "invalid")
    assert body["details"][0]["loc"] == ["file"] and "missing x_train, y_train" in body["message"]
    buf = io.BytesIO()
    np.savez(buf, x_train=np.zeros((4, 2)), y_train=np.arange(4) % 2, x_val=np.zeros((3, 2)), y_val=np.arange(2))
    body = assert_error_body(client.post("/v1/datasets", files={"file": ("val.npz", buf.getvalue())}), 422, "invalid")
    assert "array 'x_val' has 3 samples but array 'y_val' has 2" in body["message"]
    assert client.get("/v1/datasets").json()["items"] == []
