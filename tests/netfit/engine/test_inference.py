"""Self-describing checkpoints, netfit.load_model, predict on raw inputs, ONNX export
(compared in onnxruntime with the torch predictions for every layer kind the spec allows)."""

from __future__ import annotations

import json
from typing import Any, get_args

import numpy as np
import pytest
import torch
from torch import nn

import netfit
from netfit.engine.checkpoints import weights_to_bytes
from netfit.engine.data import load_data
from netfit.engine.fit import fit
from netfit.engine.inference import ExportError, InputError, export_onnx, load_model, predict
from netfit.engine.inference import model_metadata
from netfit.engine.layers import summarize
from netfit.spec import ActivationLayer, JobSpec


def trained(spec_doc: dict[str, Any], epochs: int = 3) -> tuple[JobSpec, Any, bytes]:
    """(spec, prepared data, a best checkpoint as the worker writes it)."""
    spec = JobSpec.model_validate({"training": {"epochs": epochs, "device": "cpu", "seed": 0, "batch_size": 16,
                                                "optimizer": {"type": "adam", "lr": 0.02}}, **spec_doc})
    data = load_data(spec)
    result = fit(spec, data)
    meta = {"epoch": result.epochs_completed, **model_metadata(spec, data.signature, data.preprocessing, data.classes)}
    return spec, data, weights_to_bytes(result.last_weights, meta)


IRIS = {"dataset": {"builtin": "iris"}, "preprocess": {"features": "standardize"},
        "split": {"validation": 0.2, "test": 0.2, "seed": 0},
        "model": {"layers": [{"type": "linear", "units": 16}, {"type": "relu"}, {"type": "linear", "units": 3}]}}


def raw_test_rows(data) -> np.ndarray:
    prep = data.preprocessing
    return (data.test.x.numpy() * np.array(prep["std"]) + np.array(prep["mean"])).astype(np.float32)


def test_a_checkpoint_describes_itself_and_load_model_takes_raw_rows(tmp_path):
    spec, data, blob = trained(IRIS, epochs=30)
    path = tmp_path / "best.safetensors"
    path.write_bytes(blob)
    model = netfit.load_model(path)  # no spec, no server, no database
    assert model.classes == ["setosa", "versicolor", "virginica"] and model.task == "classification"
    rows = raw_test_rows(data)
    with torch.inference_mode():
        expected = model.network(data.test.x).argmax(1)
        assert torch.equal(model(torch.from_numpy(rows)).argmax(1), expected)
    out = predict(model, rows.tolist())
    assert out["predictions"] == [model.classes[k] for k in expected.tolist()]
    assert np.allclose(np.array(out["probabilities"]).sum(1), 1.0, atol=1e-6)
    accuracy = np.mean(np.array(out["predictions"]) == np.array(model.classes)[data.test.y.numpy()])
    assert accuracy > 0.8  # a trained model, on held-out rows


def test_an_old_checkpoint_loads_through_the_jobs_spec_and_summary():
    spec, data, _ = trained(IRIS)
    result = fit(spec, data)
    old = weights_to_bytes(result.last_weights, {"epoch": 3, "preprocessing": data.preprocessing})
    with pytest.raises(ValueError, match="Client.load_model"):
        load_model(old)
    summary = summarize(spec, data.signature).model_dump(mode="json")
    model = load_model(old, spec=spec.model_dump(mode="json"), summary=summary)
    assert model.classes == ["0", "1", "2"]  # names were not recorded then
    assert len(predict(model, raw_test_rows(data)[:3].tolist())["predictions"]) == 3


@pytest.mark.parametrize("instances, where, words", [
    ([], ["instances"], "empty"),
    ([[5.1, 3.5, 1.4]], ["instances", 0], "3 values but the model takes 4 features"),
    ([[5.1, 3.5, 1.4, 0.2], [1, 2]], ["instances", 1], "2 values but the model takes 4 features"),
    ([[5.1, 3.5, "wide", 0.2]], ["instances", 0, 2], "not a number"),
    ([[5.1, None, 1.4, 0.2]], ["instances", 0, 1], "not a number"),
    ([[5.1, 3.5, float("nan"), 0.2]], ["instances", 0, 2], "finite"),
    ([[[5.1, 3.5, 1.4, 0.2]]], ["instances", 0], "shape [1, 4]"),
])
def test_bad_instances_name_what_is_wrong_and_the_expected_shape(instances, where, words):
    _, _, blob = trained(IRIS, epochs=1)
    with pytest.raises(InputError) as caught:
        predict(load_model(blob), instances)
    assert caught.value.loc == where and words in str(caught.value)


def test_at_most_ten_thousand_instances():
    _, _, blob = trained(IRIS, epochs=1)
    with pytest.raises(InputError, match="10,000"):
        predict(load_model(blob), [[1.0, 2.0, 3.0, 4.0]] * 10_001)


# --------------------------------------------------------------------------- ONNX

ACTIVATIONS = sorted(set(get_args(ActivationLayer.model_fields["type"].annotation)) - {"activation"})
MLP = {**IRIS, "model": {"layers": [
    {"type": "linear", "units": 12, "activation": "gelu"}, {"type": "batchnorm"}, {"type": "dropout", "p": 0.3},
    *[{"type": a} for a in ACTIVATIONS], {"type": "layernorm"},
    {"type": "linear", "units": 3}, {"type": "softmax"}]}}
CONV = {"dataset": {"builtin": "digits"}, "preprocess": {"features": "scale"}, "split": {"validation": 0.2, "seed": 0},
        "model": {"layers": [
            {"type": "reshape", "shape": [1, 8, 8]}, {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same"},
            {"type": "batchnorm"}, {"type": "relu"}, {"type": "maxpool2d", "pool_size": 2, "padding": "same"},
            {"type": "avgpool2d", "pool_size": 2, "stride": 1, "padding": 1}, {"type": "layernorm"},
            {"type": "dropout", "p": 0.2}, {"type": "flatten"}, {"type": "linear", "units": 10}]}}
REGRESSION = {"dataset": {"synthetic": {"kind": "regression", "n_samples": 200, "n_features": 3, "n_targets": 2}},
              "preprocess": {"features": "minmax"},
              "model": {"layers": [{"type": "linear", "units": 8, "activation": "tanh"}, {"type": "linear", "units": 2}]}}
BINARY = {"dataset": {"synthetic": {"kind": "moons", "n_samples": 200}}, "training": {"task": "binary"},
          "model": {"layers": [{"type": "linear", "units": 8, "activation": "relu"}, {"type": "linear", "units": 1}]}}


def test_the_export_nets_cover_every_layer_kind_the_spec_allows():
    kinds = {layer["type"] for net in (MLP, CONV) for layer in net["model"]["layers"]}
    spec_kinds = {"linear", "conv2d", "maxpool2d", "avgpool2d", "flatten", "reshape", "dropout", "batchnorm",
                  "layernorm", *ACTIVATIONS}
    assert spec_kinds <= kinds


@pytest.mark.slow
@pytest.mark.parametrize("net", [MLP, CONV, REGRESSION, BINARY], ids=["mlp", "conv", "regression", "binary"])
def test_the_onnx_export_computes_what_predict_does_with_its_preprocessing_inside(net):
    import onnx
    import onnxruntime as ort

    doc = {**net, "training": {**net.get("training", {}), "epochs": 2, "device": "cpu", "seed": 0}}
    spec = JobSpec.model_validate(doc)
    data = load_data(spec)
    result = fit(spec, data)
    meta = model_metadata(spec, data.signature, data.preprocessing, data.classes)
    model = load_model(weights_to_bytes(result.last_weights, {"epoch": 2, **meta}))
    blob = export_onnx(model)
    props = {p.key: p.value for p in onnx.load_from_string(blob).metadata_props}
    assert json.loads(props["classes"]) == model.classes and props["task"] == model.task
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    shape = tuple(data.signature.input_shape)
    for n in (1, 7):  # a dynamic batch
        raw = (rng.uniform(0, 16, (n, *shape)) if spec.preprocess.features == "scale"
               else rng.normal(size=(n, *shape))).astype(np.float32)
        got = session.run(None, {"input": raw})[0]
        out = predict(model, raw.tolist())
        expected = out["probabilities"] if "probabilities" in out else np.reshape(out["predictions"], (n, -1))
        np.testing.assert_allclose(got, np.array(expected), atol=1e-5)


class _DataDependent(nn.Module):
    """A module torch.export cannot trace: its branch depends on the values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum().item() > 0 else x


@pytest.mark.slow
def test_a_layer_that_cannot_be_exported_is_named():
    doc = {**IRIS, "model": {"layers": [{"type": "linear", "units": 3}, {"type": "identity"}]}}
    _, _, blob = trained(doc, epochs=1)
    model = load_model(blob)
    model.network[1] = _DataDependent()
    with pytest.raises(ExportError) as caught:
        export_onnx(model)
    message = str(caught.value)
    assert caught.value.layer == 1 and message.startswith("layer 1 (identity) cannot be exported to ONNX: ")
    assert "\x1b" not in message and "\n" not in message
