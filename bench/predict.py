"""The trained model, used: /predict latency for one Iris row through the embedded API (model
cached), and rows per second for a 10,000-row batch of the MNIST MLP (784-128-10) in the
engine's predict (what /predict runs) beside the same batch in onnxruntime."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import stacks
from bench.report import Report, percentile
from bench.services import submit, wait_done

IRIS = {"dataset": {"builtin": "iris"}, "preprocess": {"features": "standardize"},
        "model": {"layers": [{"type": "linear", "units": 16}, {"type": "relu"}, {"type": "linear", "units": 3}]},
        "training": {"epochs": 5, "device": "cpu"}}
ms = 1000.0


def latency(report: Report, quick: bool, env: dict[str, str]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="netfit-bench-predict-"))
    try:
        with stacks.embedded(tmp, env) as stack:
            job_id, _ = submit(stack.client, IRIS)
            wait_done(stack.client, job_id)
            url, body = f"/v1/jobs/{job_id}/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]}
            for _ in range(20):  # the first call builds and caches the model
                stack.client.post(url, json=body).raise_for_status()
            times = []
            for _ in range(100 if quick else 1000):
                began = time.perf_counter()
                stack.client.post(url, json=body).raise_for_status()
                times.append(time.perf_counter() - began)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report.figure("iris_one_row_p50_ms", percentile(times, 50) * ms, "ms", goal=("<=", 4.0),
                  label="POST /predict, one Iris row, p50")
    report.figure("iris_one_row_p99_ms", percentile(times, 99) * ms, "ms", goal=("<=", 20.0),
                  label="POST /predict, one Iris row, p99")


def batch(report: Report, quick: bool) -> None:
    import onnxruntime as ort
    import torch

    from netfit.engine.checkpoints import weights_to_bytes
    from netfit.engine.data import DataSignature
    from netfit.engine.inference import export_onnx, load_model, model_metadata, predict
    from netfit.engine.layers import build_model
    from netfit.spec import JobSpec

    spec = JobSpec.model_validate({"dataset": {"builtin": "digits"}, "preprocess": {"features": "scale"},
                                   "model": {"layers": [{"type": "linear", "units": 128}, {"type": "relu"},
                                                        {"type": "linear", "units": 10}]}})
    signature = DataSignature((784,), "classification", 10, 1, 70_000, False)
    torch.manual_seed(0)  # speed does not depend on trained values: initial weights will do
    meta = model_metadata(spec, signature, {"features": "scale", "scale": 255.0}, None)
    model = load_model(weights_to_bytes(build_model(spec, signature).state_dict(), meta))
    rows = np.random.default_rng(0).integers(0, 256, (10_000, 784)).astype(np.float32)
    instances = rows.tolist()  # what /predict receives once the JSON is parsed
    session = ort.InferenceSession(export_onnx(model), providers=["CPUExecutionProvider"])
    rounds = 2 if quick else 5
    engine, onnx = [], []
    for _ in range(rounds + 1):  # one warm-up round
        began = time.perf_counter()
        predict(model, instances)
        engine.append(time.perf_counter() - began)
        began = time.perf_counter()
        session.run(None, {"input": rows})
        onnx.append(time.perf_counter() - began)
    report.figure("mnist_mlp_10k_rows_per_s_engine", 10_000 / sorted(engine[1:])[len(engine[1:]) // 2], "rows/s",
                  label="10,000 MNIST rows, engine predict (lists in, as /predict)")
    report.figure("mnist_mlp_10k_rows_per_s_onnxruntime", 10_000 / sorted(onnx[1:])[len(onnx[1:]) // 2], "rows/s",
                  label="10,000 MNIST rows, onnxruntime (float32 array in)")


def run(report: Report, *, quick: bool = False, threads: int | None = None) -> None:
    report.begin("predict", "using the trained model: /predict latency, batch rows/s vs onnxruntime")
    batch(report, quick)
    latency(report, quick, {"OMP_NUM_THREADS": str(threads)} if threads else {})
