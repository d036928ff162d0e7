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


def test_gradients_are_measured_on_at_most_grad_samples_evenly_spaced_steps():
    """An MNIST epoch at batch 64 has 938 steps: 32 of them are measured (the cost bench engine
    reports as engine_stats / engine), spread over the epoch, not its first 32."""
    import torch
    from torch import nn

    from netfit.engine.fit import GRAD_SAMPLES, LayerStats

    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    for batches, measured in ((938, GRAD_SAMPLES), (10, 10)):
        stats = LayerStats(model, batches)
        stats.start_epoch()
        seen = []
        for batch in range(batches):
            model.zero_grad()
            model(torch.full((1, 4), float(batch))).sum().backward()
            before = stats.steps
            stats.add_grads(batch)
            seen += [batch] if stats.steps > before else []
        assert len(seen) == measured and seen[0] == 0 and seen[-1] >= batches - batches // GRAD_SAMPLES - 1
        layers = stats.read()
        assert [layer["index"] for layer in layers] == [0, 2] and all(layer["grad_norm"] > 0 for layer in layers)
