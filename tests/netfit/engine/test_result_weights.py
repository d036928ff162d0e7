"""Which weights are the job's result: the best epoch's, with or without early stopping; the
test metrics, /predict and the export all use them. The summary and the layer statistics
number layers alike, and a Keras Dense's activation shows in the summary."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from netfit.engine.data import load_data
from netfit.engine.fit import fit
from netfit.engine.layers import build_model, summarize
from netfit.spec import JobSpec


def make_spec(layers: list[dict], dataset: dict | None = None, **training: Any) -> JobSpec:
    return JobSpec.model_validate({
        "dataset": dataset or {"builtin": "iris"}, "split": {"validation": 0.2, "test": 0.2, "seed": 0},
        "preprocess": {"features": "standardize"}, "model": {"layers": layers},
        "training": {"epochs": 30, "batch_size": 16, "optimizer": {"type": "adam", "lr": 0.01}, "device": "cpu", **training},
    })

BIG = [{"type": "linear", "units": 64}, {"type": "relu"}, {"type": "linear", "units": 64}, {"type": "relu"},
       {"type": "linear", "units": 2}]
NOISY = {"synthetic": {"kind": "classification", "n_samples": 80, "n_features": 10, "flip_y": 0.3, "seed": 1}}


def test_without_early_stopping_the_test_metrics_are_the_best_weights_not_the_last():
    spec = make_spec(BIG, dataset=NOISY, epochs=40, batch_size=16, optimizer={"type": "adam", "lr": 0.01})
    assert spec.training.early_stopping is None
    data = load_data(spec)
    result = fit(spec, data)
    assert result.best_epoch < result.epochs_completed  # it over-fits: the best and the last weights differ

    def test_loss(weights):
        model = build_model(spec, data.signature)
        model.load_state_dict(weights)
        model.eval()
        with torch.inference_mode():
            return nn.functional.cross_entropy(model(data.test.x), data.test.y).item()

    best, last = test_loss(result.best_weights), test_loss(result.last_weights)
    assert best != pytest.approx(last, rel=1e-3)
    assert result.test_metrics["test_loss"] == pytest.approx(best, rel=1e-5)


def test_a_dense_activation_shows_and_layer_statistics_number_layers_as_the_summary():
    spec = make_spec([{"type": "Dense", "units": 8, "activation": "relu"}, {"type": "dropout", "p": 0.1},
                      {"type": "Dense", "units": 3}], epochs=2)
    data = load_data(spec)
    summary = summarize(spec, data.signature)
    assert [(l.index, l.type, l.activation) for l in summary.layers] == [(0, "linear", "relu"), (1, "dropout", None),
                                                                        (2, "linear", None)]
    result = fit(spec, data, layer_stats=True)
    assert [layer["index"] for layer in result.history[-1].layers] == [0, 2]  # not the modules' 0, 3


def test_no_early_stopping_is_a_note():
    spec = make_spec(BIG, dataset=NOISY, epochs=500)
    notes = summarize(spec, load_data(spec).signature).notes
    assert any("no early stopping" in n and "over-fitted" in n for n in notes), notes
    stopped = make_spec(BIG, dataset=NOISY, epochs=500, early_stopping={"patience": 5})
    assert not any("no early stopping" in n for n in summarize(stopped, load_data(stopped).signature).notes)
