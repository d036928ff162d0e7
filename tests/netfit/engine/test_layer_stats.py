"""Per-layer statistics every epoch: a deep sigmoid network's first layer learns ~nothing
(vanishing gradients), a ReLU network's does - the lab's "did training get harder as layers
were added?" answered by the numbers."""

from __future__ import annotations

from netfit.engine.data import load_data
from netfit.engine.fit import fit
from netfit.spec import JobSpec


def deep(activation: str, depth: int = 5) -> JobSpec:
    hidden = [layer for _ in range(depth) for layer in ({"type": "linear", "units": 32}, {"type": activation})]
    return JobSpec.model_validate({
        "dataset": {"synthetic": {"kind": "classification", "n_samples": 400, "n_features": 10, "n_informative": 4,
                                  "n_classes": 3}},
        "preprocess": {"features": "standardize"},
        "model": {"layers": [*hidden, {"type": "linear", "units": 3}]},
        "training": {"epochs": 3, "batch_size": 32, "device": "cpu", "seed": 0},
    })


def first_and_last(spec: JobSpec) -> tuple[dict, dict, list]:
    result = fit(spec, load_data(spec), layer_stats=True)
    layers = result.history[-1].layers
    return layers[0], layers[-1], result.history


def test_every_epoch_reports_each_layer_with_parameters():
    spec = deep("relu", depth=2)
    _, _, history = first_and_last(spec)
    assert len(history) == 3
    for report in history:
        assert [layer["index"] for layer in report.layers] == [0, 2, 4]  # linear layers; relus hold nothing
        for layer in report.layers:
            assert layer["type"] == "linear"
            assert 0 < layer["weight_max_abs"] < layer["weight_norm"] and layer["grad_norm"] > 0


def test_a_deep_sigmoid_network_has_vanishing_gradients_and_a_relu_one_not():
    # 5 hidden layers: measured ~11,000x for sigmoid (its slope is at most 1/4 per layer), ~8x for ReLU
    first, last, _ = first_and_last(deep("sigmoid"))
    assert first["grad_norm"] * 100 <= last["grad_norm"], (first, last)
    first, last, _ = first_and_last(deep("relu"))
    assert first["grad_norm"] * 100 > last["grad_norm"], (first, last)
