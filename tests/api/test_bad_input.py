"""The bad-input corpus: hostile, huge, malformed and wrong specs and files against a live
API process (uvicorn, PostgreSQL, Redis) with a worker running.

Each is refused with a 4xx whose message names the problem (a word per case, not just the
status); nothing reaches the database or the broker, so no worker sees any of it; and the
same API and worker then train a good job. The files are made here, small: a bomb is small
compressed.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import pickle
import struct
import zipfile
import zlib
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from sqlalchemy import create_engine, text

from tests.conftest import iris_spec, service_env, wait_ready, wait_until

DELETE = object()


def spec_with(path: str, value: Any) -> dict[str, Any]:
    """The good Iris spec with one field (dotted path, list indexes as numbers) set or deleted."""
    spec = copy.deepcopy(iris_spec(epochs=2))
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = spec
    for key in parents:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return spec


def layers(*specs: dict[str, Any]) -> dict[str, Any]:
    return spec_with("model.layers", list(specs))


LINEAR3 = {"type": "linear", "units": 3}

# (what, body: a spec dict or raw JSON text, status, a word the message must hold)
SPECS: list[tuple[str, Any, int, str]] = [
    ("empty body", "", 422, "required"),
    ("truncated JSON", '{"dataset": {"builtin": "iris"', 422, "json"),
    ("a JSON array", "[]", 422, "object"),
    ("a JSON string", '"train me"', 422, "object"),
    ("JSON null", "null", 422, "object"),
    ("nested 100k deep", "[" * 100_000 + "]" * 100_000, 400, "parsing"),
    ("a 5000-digit number", json.dumps(iris_spec()).replace('"epochs": 5', '"epochs": ' + "9" * 5000), 400, "parsing"),
    ("NaN literal", spec_with("training.optimizer.lr", float("nan")), 422, "finite"),
    ("Infinity literal", spec_with("training.optimizer.lr", float("inf")), 422, "finite"),
    ("-Infinity literal", spec_with("model.layers.1", {"type": "dropout", "p": float("-inf")}), 422, "finite"),
    ("1e309", json.dumps(iris_spec()).replace('"lr": 0.01', '"lr": 1e309'), 422, "finite"),
    ("a body over 1 MiB", spec_with("name", "x" * 1_100_000), 413, "limit"),
    ("an unknown field", spec_with("trainig", {}), 422, "permitted"),
    ("an unknown nested field", spec_with("training.optimizer.learning_rate", 0.1), 422, "permitted"),
    ("epochs as text", spec_with("training.epochs", "5"), 422, "integer"),
    ("epochs as a fraction", spec_with("training.epochs", 5.5), 422, "integer"),
    ("epochs as true", spec_with("training.epochs", True), 422, "integer"),
    ("epochs 0", spec_with("training.epochs", 0), 422, "greater than"),
    ("epochs 10**30", spec_with("training.epochs", 10**30), 422, "less than"),
    ("a negative learning rate", spec_with("training.optimizer.lr", -0.1), 422, "greater than"),
    ("batch size 0", spec_with("training.batch_size", 0), 422, "greater than"),
    ("compile as 1", spec_with("training.compile", 1), 422, "boolean"),
    ("an unknown optimizer", spec_with("training.optimizer.type", "lbfgs"), 422, "adam"),
    ("nesterov with adam", spec_with("training.optimizer.nesterov", True), 422, "nesterov"),
    ("betas of 1.5", spec_with("training.optimizer.betas", [1.5, 0.9]), 422, "less than 1"),
    ("an unknown device", spec_with("training.device", "tpu"), 422, "pattern"),
    ("a loss that does not fit the task", spec_with("training", {"task": "classification", "loss": "mse"}), 422,
     "does not fit"),
    ("label smoothing for regression", spec_with("training", {"task": "regression", "label_smoothing": 0.1}), 422,
     "classification"),
    ("an unknown early-stopping metric", spec_with("training.early_stopping", {"monitor": "val_f1"}), 422, "val_loss"),
    ("an unknown schedule", spec_with("training.lr_schedule", {"type": "cyclic"}), 422, "cosine"),
    ("no dataset", spec_with("dataset", DELETE), 422, "required"),
    ("an empty dataset", spec_with("dataset", {}), 422, "exactly one"),
    ("two datasets", spec_with("dataset", {"builtin": "iris", "id": "abc"}), 422, "exactly one"),
    ("an unknown builtin", spec_with("dataset.builtin", "cifar10"), 422, "iris"),
    ("an unknown uploaded id", spec_with("dataset", {"id": "no-such-set"}), 422, "upload"),
    ("a path as dataset id", spec_with("dataset", {"id": "../../etc/passwd"}), 422, "pattern"),
    ("10 million synthetic samples", spec_with("dataset", {"synthetic": {"kind": "moons", "n_samples": 10**7}}), 422,
     "less than"),
    ("a synthetic set of 1e9 values",
     spec_with("dataset", {"synthetic": {"kind": "classification", "n_samples": 1_000_000, "n_features": 1000}}), 422,
     "values"),
    ("epochs x samples over the limit",
     spec_with("dataset", {"synthetic": {"kind": "moons", "n_samples": 500_000}}) | {
         "model": {"layers": [{"type": "linear", "units": 2}]}, "training": {"epochs": 10_000}}, 422, "sample passes"),
    ("validation 0.95", spec_with("split.validation", 0.95), 422, "0.9"),
    ("no data left to train on", spec_with("split", {"validation": 0.5, "test": 0.45}), 422, "left to train"),
    ("no layers", layers(), 422, "at least 1"),
    ("65 layers", layers(*[{"type": "relu"}] * 64, LINEAR3), 422, "64"),
    ("a layer without a type", layers({"units": 3}), 422, "type"),
    ("an unknown layer", layers({"type": "transformer"}, LINEAR3), 422, "dense"),  # the Keras words are listed
    # errors that teach: what to change, in the message
    ("a layer typo", layers({"type": "linaer", "units": 3}), 422, "did you mean 'linear'"),
    ("an activation typo", layers({"type": "dense", "units": 3, "activation": "sofmax"}), 422,
     "did you mean 'softmax'"),
    ("an optimizer typo", spec_with("training.optimizer.type", "adma"), 422, "did you mean 'adam'"),
    ("units in quotes", layers({"type": "linear", "units": "3"}), 422, "remove the quotes"),
    ("Keras input_shape", layers({"type": "dense", "units": 3, "input_shape": [4]}), 422, "infers every input size"),
    ("curl -d without @", "spec.json", 422, "-d @spec.json"),
    ("a trailing comma", '{"dataset": {"builtin": "iris"},\n}', 422, "line 2, column 1"),
    ("a trailing comma (cause)", '{"model": {"layers": [{"type": "relu"},]}}', 422, "trailing comma"),
    ("a layer as a string", layers("linear", LINEAR3), 422, "object"),
    ("0 units", layers({"type": "linear", "units": 0}), 422, "greater than"),
    ("a million units", layers({"type": "linear", "units": 10**6}, LINEAR3), 422, "65536"),
    ("100 million parameters", layers({"type": "linear", "units": 10_000}, {"type": "linear", "units": 10_000},
                                      LINEAR3), 422, "limit"),
    ("the wrong output size", layers({"type": "linear", "units": 10}), 422, "3"),
    ("a conv layer on flat data", layers({"type": "conv2d", "filters": 4, "kernel_size": 3}, LINEAR3), 422,
     "reshape"),
    ("a kernel of three sizes", layers({"type": "conv2d", "filters": 4, "kernel_size": [3, 3, 3]}, LINEAR3), 422,
     "kernel_size"),
    ("a reshape to size 0", layers({"type": "reshape", "shape": [0]}, LINEAR3), 422, "positive"),
    ("a name of 10,000 characters", spec_with("name", "n" * 10_000), 422, "200"),
    ("a name with NUL", spec_with("name", "job\x00"), 422, "printable"),
    ("a name with a lone surrogate", json.dumps(iris_spec()).replace('"iris-test"', '"\\ud800"'), 422, "unicode"),
    ("a number as name", spec_with("name", 42), 422, "string"),
]

# (what, path with query, status, word): hostile ids and query parameters
REQUESTS: list[tuple[str, str, int, str]] = [
    ("a NUL byte as job id", "/v1/jobs/%00", 422, "pattern"),
    ("a NUL byte as data-set id", "/v1/datasets/%00", 422, "pattern"),
    ("a 5000-character id", "/v1/jobs/" + "a" * 5000 + "/metrics", 422, "pattern"),
    ("a dotted id", "/v1/jobs/..%2F..%2Fetc/cancel", 404, "no post"),
    ("a page of a million", "/v1/jobs?limit=1000000", 422, "less than"),
    ("a forged cursor", "/v1/jobs?cursor=%00%FF", 422, "cursor"),
    ("an unknown status", "/v1/jobs?status=bogus", 422, "queued"),
]


def npz(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def deflate_bomb(megabytes: int) -> bytes:
    """A valid .npz whose x.npy inflates to `megabytes` MiB of zeros from ~1/1000 of that.
    Written by hand: one fully flushed deflate block of 1 MiB of zeros, repeated, is a valid
    stream, so the bomb takes no time to make."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (megabytes * 2**20 // 8,)})
    zeros, deflate = bytes(2**20), zlib.compressobj(9, zlib.DEFLATED, -15)
    head = deflate.compress(header.getvalue()) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    data = head + block * megabytes + deflate.flush()
    crc = zlib.crc32(header.getvalue())
    for _ in range(megabytes):
        crc = zlib.crc32(zeros, crc)
    size, name = len(header.getvalue()) + megabytes * len(zeros), b"x.npy"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), size, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data), size, len(name),
                          0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    return local + data + central + end


def lying_npz() -> bytes:
    """x.npy declares 10**12 float64s but holds 16 bytes: allocating first would need 8 TB."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(16))
        archive.writestr("y.npy", npz_member(np.arange(2)))
    return buf.getvalue()


def npz_member(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def torch_like_checkpoint() -> bytes:
    """The layout torch.save writes: a zip holding a pickle."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"weight": [1.0, 2.0]}))
        archive.writestr("archive/version", "3\n")
    return buf.getvalue()


class Evil:
    def __reduce__(self) -> tuple:
        return (print, ("unpickled!",))  # harmless, and never run: nothing is unpickled


CSV = b"a,b,label\n1.0,2.0,x\n3.0,4.0,y\n5.0,6.0,x\n"
X, Y = np.zeros((6, 2)), np.arange(6) % 2


def bad_files() -> list[tuple[str, str, bytes, dict[str, str], int, str]]:
    """(what, filename, content, form fields, status, a word the message must hold); made
    when the test runs, not when pytest collects it."""
    return [
        ("a pickle named .csv", "data.csv", pickle.dumps(Evil()), {}, 415, "pickle"),
        ("a pickle named .npz", "data.npz", pickle.dumps({"x": [1, 2]}), {}, 415, "pickle"),
        ("a .pkl file", "model.pkl", pickle.dumps(Evil()), {}, 415, "pickle"),
        ("a .pt file", "model.pt", torch_like_checkpoint(), {}, 415, "pickle"),
        ("a torch checkpoint named .npz", "weights.npz", torch_like_checkpoint(), {}, 415, "torch"),
        ("a zip named .csv", "data.csv", torch_like_checkpoint(), {}, 415, "zip"),
        ("a gzipped CSV", "data.csv", gzip.compress(CSV), {}, 415, "gzip"),
        ("a gzip bomb", "data.csv", gzip.compress(bytes(50 * 2**20), compresslevel=1), {}, 415, "gzip"),
        ("a deflate bomb in an .npz", "bomb.npz", deflate_bomb(600), {}, 422, "decompress"),
        ("an .npz header promising 8 TB", "lie.npz", lying_npz(), {}, 422, "damaged"),
        ("a bare .npy named .npz", "x.npz", npz_member(X), {}, 415, "npy"),
        ("an object array", "objects.npz", npz(x=np.array([{"a": 1}] * 6, dtype=object), y=Y), {}, 422, "objects"),
        ("2 million samples", "many.npz", npz(x=np.zeros((2_000_000, 1), np.uint8), y=np.zeros(2_000_000, np.uint8)),
         {}, 422, "samples"),
        ("a 2000x2000 image", "huge.npz", npz(x=np.zeros((2, 2000, 2000), np.uint8), y=np.arange(2)), {}, 422,
         "per sample"),
        ("images of five dimensions", "img.npz", npz(x=np.zeros((6, 1, 2, 2, 2)), y=Y), {}, 422, "shape"),
        ("test images of another shape", "img.npz",
         npz(x_train=np.zeros((6, 1, 4, 4)), y_train=Y, x_test=np.zeros((2, 1, 5, 5)), y_test=Y[:2]), {}, 422,
         "shape"),
        ("labels out of range", "codes.npz", npz(x=X, y=np.array([0, 1, 2, 3, 0, 1]), classes=np.array(["a", "b"])),
         {}, 422, "class codes"),
        ("NaN features", "nan.npz", npz(x=np.array([[np.nan, 0]] * 6), y=Y), {}, 422, "nan"),
        ("infinite targets", "inf.npz", npz(x=X, y=np.array([0.5, np.inf, 1, 2, 3, 4])), {}, 422, "infinite"),
        ("arrays named otherwise", "other.npz", npz(features=X, labels=Y), {}, 422, "expected x, y"),
        ("complex labels", "complex.npz", npz(x=X, y=Y + 1j), {}, 422, "dtype"),
        ("a damaged zip", "broken.npz", npz(x=X, y=Y)[:-40], {}, 422, "not a valid .npz"),
        ("Latin-1 text", "latin.csv", "a,b,label\n1,2,café\n3,4,thé\n".encode("latin-1"), {}, 422, "utf-8"),
        ("UTF-16 with its BOM", "wide.csv", CSV.decode().encode("utf-16"), {}, 415, "utf-16"),
        ("ragged rows", "ragged.csv", b"a,b,label\n1,2,x\n3,y\n", {}, 422, "fields"),
        ("a header only", "header.csv", b"a,b,label\n", {}, 422, "data row"),
        ("an empty file", "empty.csv", b"", {}, 422, "header row"),
        ("1e309 in a feature", "big.csv", b"a,b,label\n1,1e309,x\n3,4,y\n", {}, 422, "not finite"),
        ("NA in a feature", "na.csv", b"a,b,label\n1,NA,x\n3,4,y\n", {}, 422, "missing value"),
        ("a formula in a feature", "formula.csv", b"a,b,label\n1,=cmd|' /C calc'!A0,x\n3,4,y\n", {}, 422,
         "not a number"),
        ("one class only", "one.csv", b"a,b,label\n1,2,x\n3,4,x\n", {}, 422, "single class"),
        ("a repeated column", "dup.csv", b"a,a,label\n1,2,x\n3,4,y\n", {}, 422, "repeats"),
        ("a 200 kB cell", "cell.csv", b'a,b,label\n1,"' + b"9" * 200_000 + b'",x\n', {}, 422, "field larger"),
        ("1.1 million rows", "rows.csv", b"a,label\n" + b"1,0\n" * 1_100_000, {}, 422, "rows"),
        ("an unknown target column", "t.csv", CSV, {"target": "species"}, 422, "no column"),
        ("a target in the wrong case", "t.csv", CSV, {"target": "Label"}, 422, "use target 'label'"),
        ("a spreadsheet", "data.xlsx", b"PK\x03\x04", {}, 415, ".csv"),
        ("a file over the upload limit", "big.csv", b"a,label\n" + b"1,0\n" * (3 * 2**20), {}, 413, "limit"),
        ("a name with control characters", "ok.csv", CSV, {"name": "a\x1bb"}, 422, "printable"),
        ("a form without a file", "", b"", {"name": "no file"}, 422, "file"),
    ]


MAX_UPLOAD_BYTES = 8 * 2**20  # the API under test: small, so that one upload is over it


@pytest.fixture
def service(pg_url, redis_url, start_api, start_worker):
    env = service_env(pg_url, redis_url, NETFIT_MAX_UPLOAD_BYTES=str(MAX_UPLOAD_BYTES))
    worker = start_worker(env, wait=False)  # warms up while the corpus runs
    return start_api(env), worker


def message_of(response: httpx.Response) -> str:
    assert "Traceback" not in response.text and 'File "' not in response.text
    return response.json()["message"].lower()


@pytest.mark.slow
def test_bad_specs_and_files_are_refused_and_no_worker_sees_them(service, pg_url, redis_url):
    base_url, worker = service
    files = bad_files()
    assert (len(SPECS), len(files)) >= (40, 15)
    misses = []
    with httpx.Client(base_url=base_url, timeout=60) as api:
        for what, body, status, word in SPECS:
            content = body if isinstance(body, str) else json.dumps(body)
            response = api.post("/v1/jobs", content=content, headers={"content-type": "application/json"})
            if response.status_code != status or word.lower() not in message_of(response):
                misses.append(f"spec {what}: {response.status_code} {response.text[:300]}")
        for what, path, status, word in REQUESTS:
            response = api.request("POST" if path.endswith("/cancel") else "GET", path)
            if response.status_code != status or word.lower() not in message_of(response):
                misses.append(f"request {what}: {response.status_code} {response.text[:300]}")
        for what, filename, content, form, status, word in files:
            response = api.post("/v1/datasets", files={"file": (filename, content)} if filename else None, data=form)
            if response.status_code != status or word.lower() not in message_of(response):
                misses.append(f"file {what}: {response.status_code} {response.text[:300]}")
        assert not misses, "\n".join(misses)

        # none of it was stored or sent: no row, no message, nothing in the worker's log
        engine = create_engine(pg_url)
        with engine.connect() as db:
            assert db.execute(text("SELECT count(*) FROM jobs")).scalar() == 0
            assert db.execute(text("SELECT count(*) FROM datasets")).scalar() == 0
        engine.dispose()
        broker = redis.Redis.from_url(redis_url)
        assert (broker.llen("cpu"), broker.llen("gpu")) == (0, 0)
        wait_ready(worker)
        assert "received" not in worker.output()

        # the same API and worker then train a good job
        job = api.post("/v1/jobs", json=iris_spec(epochs=2))
        assert job.status_code == 201, job.text
        assert any("loss 'cross_entropy' chosen" in note for note in job.json()["summary"]["notes"]), job.text
        done = wait_until(lambda: (j := api.get(f"/v1/jobs/{job.json()['id']}").json())["status"]
                          in ("succeeded", "failed") and j, timeout=120, what="the good job to end")
        assert (done["status"], done["epochs_completed"]) == ("succeeded", 2), done
        assert worker.output().count("received") == 1
        # a Last-Event-ID that is no event id ("²" is a digit to Python) replays the job from its start
        with api.stream("GET", f"/v1/jobs/{done['id']}/events", headers={"Last-Event-ID": b"\xb2"}) as events:
            assert events.status_code == 200 and '"status":"queued"' in events.read().decode()


def test_a_body_that_is_not_the_object_says_what_to_send_and_an_upload_names_its_target(client):
    spec = json.dumps(iris_spec(epochs=2))
    # a valid JSON spec, but no content-type: not read as JSON; the reply says which header to send
    bare = client.post("/v1/jobs", content=spec, headers={"content-type": ""})
    assert bare.status_code == 422 and "content-type: application/json" in bare.json()["message"], bare.text
    assert "valid dictionary" not in bare.text
    # /predict with a bare list instead of {"instances": [...]}
    listed = client.post("/v1/jobs/" + "a" * 32 + "/predict", json=[[5.1, 3.5, 1.4, 0.2]])
    assert listed.status_code == 422 and '{"instances": [...]}' in listed.json()["message"], listed.text
    # a CSV without `target`: the reply names the column it took and the classes in it
    csv = b"a,b,species\n" + b"".join(b"%d,%d,%s\n" % (i, i % 3, b"yes" if i % 2 else b"no") for i in range(30))
    up = client.post("/v1/datasets", files={"file": ("points.csv", csv)})
    assert up.status_code == 201, up.text
    assert (up.json()["target"], up.json()["classes"]) == ("species", ["no", "yes"])
    assert client.get(f"/v1/datasets/{up.json()['id']}").json().get("target") is None  # the reply only
