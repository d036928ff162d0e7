"""Helpers shared by the test modules of tests/netfit/engine."""

from __future__ import annotations

from typing import Any

from netfit.spec import JobSpec


RES = {"layers": [{"type": "linear", "units": 16, "name": "fc"}, {"type": "relu"},
                  {"type": "linear", "units": 16, "name": "fc2"}, {"type": "add", "inputs": ["input", "fc2"]}]}


# iris: a residual block used twice, then two branches side by side
IRIS_GRAPH = {
    "dataset": {"builtin": "iris"}, "preprocess": {"features": "standardize"},
    "split": {"validation": 0.2, "test": 0.2, "seed": 0},
    "model": {"blocks": {"res": RES}, "layers": [
        {"type": "linear", "units": 16, "name": "stem"},
        {"type": "block", "block": "res", "name": "r1"},
        {"type": "block", "block": "res", "name": "r2"},
        {"type": "linear", "units": 8, "activation": "tanh", "name": "side", "inputs": ["stem"]},
        {"type": "concat", "inputs": ["r2", "side"], "name": "both"},
        {"type": "linear", "units": 3, "activation": "softmax"}]},
    "training": {"epochs": 4, "batch_size": 16, "device": "cpu", "seed": 0, "optimizer": {"type": "adam", "lr": 0.02}},
}


def make_spec(p: float | None = 0.0, dataset: dict | None = None, out: int = 3, **training: Any) -> JobSpec:
    layers: list[dict] = [{"type": "linear", "units": 16}, {"type": "relu"}]
    layers += [{"type": "dropout", "p": p}] if p is not None else []
    layers += [{"type": "linear", "units": out}]
    return JobSpec.model_validate({
        "dataset": dataset or {"builtin": "iris"},
        "split": {"validation": 0.2, "test": 0.2, "seed": 0},
        "preprocess": {"features": "standardize"},
        "model": {"layers": layers},
        "training": {"epochs": 12, "batch_size": 16, "device": "cpu",
                     "optimizer": training.pop("optimizer", {"type": "adam", "lr": 0.01}), **training},
    })
