"""Networks built in real Keras (torch backend) and real torch, converted to netfit's model spec:
the engine's dry run of the converted spec has the original's parameters and, layer by layer,
its output shapes; what netfit cannot express is refused by name before anything is uploaded."""

from __future__ import annotations

import json
import os
import zipfile

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
nn = torch.nn
layers = keras.layers

from netfit.convert import ConversionError, convert  # noqa: E402
from netfit.engine.arrays import DataSignature  # noqa: E402
from netfit.engine.layers import summarize  # noqa: E402
from netfit.spec import JobSpec  # noqa: E402


def dry_run(model: dict, input_shape: tuple[int, ...], classes: int):
    spec = JobSpec.model_validate_json(json.dumps({"dataset": {"builtin": "iris"}, "model": model}))
    return summarize(spec, DataSignature(input_shape, "classification", classes, 1, 100, False))


def trainable(model) -> int:
    return sum(int(w.numpy().size) for w in model.trainable_weights)


def channels_first(shape) -> list[int]:
    shape = list(shape[1:])
    return [shape[-1], *shape[:-1]] if len(shape) == 3 else shape


def assert_same_network(model, input_shape: tuple[int, ...], classes: int):
    converted = convert(model)
    summary = dry_run(converted.model, input_shape, classes)
    assert summary.total_params == trainable(model)  # Keras' batchnorm statistics are not parameters
    keras_layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    assert [s.output_shape for s in summary.layers] == [channels_first(layer.output.shape) for layer in keras_layers]
    return converted, summary


def test_a_keras_sequential_cnn_keeps_its_parameters_and_shapes():
    model = keras.Sequential([
        keras.Input((12, 12, 1)), layers.Conv2D(6, 3, padding="same", activation="relu"), layers.BatchNormalization(),
        layers.MaxPooling2D(), layers.Conv2D(8, (3, 3)), layers.Activation("relu"), layers.Flatten(),
        layers.Dropout(0.25), layers.Dense(32), layers.LeakyReLU(negative_slope=0.2), layers.Dense(10, "softmax")])
    converted, summary = assert_same_network(model, (1, 12, 12), 10)
    assert converted.channels_last and "weights are not carried" in converted.notes[0]
    batchnorm = converted.model["layers"][1]
    assert batchnorm == {"type": "batchnorm", "momentum": pytest.approx(0.01), "eps": 0.001}


def test_a_keras_functional_graph_with_add_and_concatenate():
    inputs = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 3, padding="same")(inputs)
    b = layers.ReLU()(a)
    c = layers.Add()([a, b])
    d = layers.Conv2D(2, 1)(inputs)
    e = layers.Concatenate()([c, d])
    f = layers.AveragePooling2D(2)(e)
    out = layers.Dense(5)(layers.Flatten()(f))
    model = keras.Model(inputs, out)
    converted, summary = assert_same_network(model, (3, 8, 8), 5)
    by_type = {layer["type"]: layer for layer in converted.model["layers"]}
    assert by_type["add"]["inputs"] == ["conv2d", "re_lu"] or len(by_type["add"]["inputs"]) == 2
    assert converted.model["layers"][0]["inputs"] == ["input"]


def test_a_keras_2_config_with_batch_input_shape_converts():
    config = {"class_name": "Sequential", "config": {"name": "old", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "name": "in"}},
        {"class_name": "Dense", "config": {"name": "d1", "units": 8, "activation": "tanh", "use_bias": True}},
        {"class_name": "Dense", "config": {"name": "d2", "units": 3, "activation": "linear", "use_bias": False}}]}}
    summary = dry_run(convert(config).model, (4,), 3)
    assert summary.total_params == 4 * 8 + 8 + 8 * 3
    functional = {"name": "f", "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0]], "layers": [
        {"class_name": "InputLayer", "name": "in", "config": {"batch_input_shape": [None, 4]}, "inbound_nodes": []},
        {"class_name": "Dense", "name": "h", "config": {"units": 8}, "inbound_nodes": [[["in", 0, 0, {}]]]},
        {"class_name": "Dense", "name": "out", "config": {"units": 3}, "inbound_nodes": [[["h", 0, 0, {}]]]}]}
    model = convert(functional).model
    assert [layer["inputs"] for layer in model["layers"]] == [["input"], ["h"]]
    assert dry_run(model, (4,), 3).total_params == 4 * 8 + 8 + 8 * 3 + 3


def test_a_keras_file_converts_from_its_config(tmp_path):
    model = keras.Sequential([keras.Input((4,)), layers.Dense(16, activation="relu"), layers.Dense(3)])
    path = tmp_path / "iris.keras"
    model.save(path)
    assert "config.json" in zipfile.ZipFile(path).namelist()
    converted = convert(str(path))
    assert dry_run(converted.model, (4,), 3).total_params == model.count_params()
    assert any("weights are not carried" in note for note in converted.notes)


@pytest.mark.parametrize("make, named", [
    (lambda: keras.Sequential([keras.Input((5, 3)), layers.LSTM(4, name="lstm"), layers.Dense(2)]), "'lstm' (LSTM)"),
    (lambda: keras.Sequential([keras.Input((4,)), layers.Lambda(lambda t: t * 2), layers.Dense(2)]), "(Lambda)"),
])
def test_keras_layers_netfit_cannot_express_are_refused_by_name(make, named):
    with pytest.raises(ConversionError) as refused:
        convert(make())
    message = str(refused.value)
    assert named in message and "layers[" in message and "Dense" in message  # where, what, and what instead


def test_a_torch_sequential_with_nested_sequentials_keeps_its_parameters_and_shapes():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(4, 8, 3), nn.GELU(), nn.Sequential(nn.Flatten(), nn.Dropout(0.1))),
        nn.Linear(8 * 4 * 4, 16), nn.LeakyReLU(0.1), nn.Linear(16, 10))
    converted = convert(model)
    summary = dry_run(converted.model, (1, 12, 12), 10)
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    shapes, x = [], torch.zeros(2, 1, 12, 12)
    for module in (m for m in model.modules() if not isinstance(m, nn.Sequential)):
        x = module(x)
        shapes.append(list(x.shape[1:]))
    assert [s.output_shape for s in summary.layers] == shapes
    assert converted.source == "torch" and not converted.channels_last


def test_torch_modules_netfit_cannot_express_are_refused_by_path():
    with pytest.raises(ConversionError, match=r"model\.1\.0 \(LSTM\).*recurrent.*Linear"):
        convert(nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.LSTM(4, 4))))
    with pytest.raises(ConversionError, match=r"model\.0 \(Conv2d\): dilation=\(2, 2\)"):
        convert(nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2)))
    with pytest.raises(ConversionError, match="custom module's forward"):
        convert(nn.Linear(4, 4))


def test_lists_and_specs_pass_through():
    layers_ = [{"type": "Dense", "units": 8, "activation": "relu"}, {"type": "linear", "units": 3}]
    assert convert(layers_).model == {"layers": layers_}
    whole = {"model": {"layers": layers_}, "training": {"epochs": 3}}
    converted = convert(whole)
    assert converted.model == {"layers": layers_} and converted.spec["training"] == {"epochs": 3}
