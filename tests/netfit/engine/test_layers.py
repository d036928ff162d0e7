"""Spec → network: shape inference, heads, summaries and the bad-spec corpus."""

import copy

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from netfit.spec import JobSpec
from netfit.engine.data import DataSignature, load_data, signature_of
from netfit.engine.errors import SpecError
from netfit.engine.layers import CPU_TRACE_PARAMS, MAX_PARAMS, build_model, resolve_head, summarize

IRIS = DataSignature((4,), "classification", 3, 1, 150, False)
BINARY = DataSignature((30,), "classification", 2, 1, 569, False)
FLAT64 = DataSignature((64,), "classification", 10, 1, 1797, False)
IMAGES = DataSignature((1, 28, 28), "classification", 10, 1, 100, False)
REGRESSION = DataSignature((3,), "regression", None, 1, 100, False)


def spec(layers, **kw) -> JobSpec:
    return JobSpec.model_validate({"dataset": {"builtin": "iris"}, "model": {"layers": layers}, **kw})


CONV = [
    {"type": "Conv2D", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "conv2d", "out_channels": 4, "kernel_size": [3, 5], "stride": 2},
    {"type": "batchnorm"},
    {"type": "avgpool2d", "pool_size": 2, "padding": "same"},
    {"type": "flatten"}, {"type": "Dropout", "rate": 0.25}, {"type": "dense", "units": 10},
]


def test_conv_summary_matches_a_hand_built_model():
    hand = nn.Sequential(nn.Conv2d(1, 8, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 4, (3, 5), 2),
                         nn.BatchNorm2d(4), nn.AvgPool2d(2, ceil_mode=True), nn.Flatten(), nn.Dropout(0.25), nn.Linear(4 * 3 * 3, 10))
    summary = summarize(spec(CONV), IMAGES)
    assert summary.total_params == sum(p.numel() for p in hand.parameters())
    assert [layer.output_shape for layer in summary.layers] == [
        [8, 28, 28], [8, 14, 14], [4, 6, 5], [4, 6, 5], [4, 3, 3], [36], [36], [10]]
    assert [layer.params for layer in summary.layers] == [80, 0, 484, 8, 0, 0, 0, 370]
    model = build_model(spec(CONV), IMAGES)
    assert [p.shape for p in model.parameters()] == [p.shape for p in hand.parameters()]
    assert model(torch.randn(5, 1, 28, 28)).shape == (5, 10)


def test_mlp_summary_and_model_on_real_data():
    s = spec([{"type": "dense", "units": 16, "activation": "relu"}, {"type": "layernorm"},
              {"type": "dropout", "p": 0.1}, {"type": "linear", "units": 3}, {"type": "softmax"}])
    data = load_data(s)
    summary = summarize(s, data.signature)
    assert (summary.total_params, summary.task, summary.loss, summary.n_outputs) == (4 * 16 + 16 + 32 + 16 * 3 + 3, "classification", "cross_entropy", 3)
    model = build_model(s, data.signature)
    # the loss applies softmax itself, so the model ends with raw logits
    assert not isinstance(model[-1], nn.Softmax) and resolve_head(s, data.signature).folded == "softmax"
    assert model(data.train.x).shape == (90, 3)


def test_a_layer_too_big_for_a_cpu_trace_is_traced_on_meta():
    """Small layers are traced on the CPU (fast); one over CPU_TRACE_PARAMS on the meta device,
    which allocates nothing: its shape and parameter count come out the same."""
    big = 40_000  # 784 * 40,000 weights: 125 MB that a CPU trace would allocate
    assert 784 * big > CPU_TRACE_PARAMS and 784 * big + big < MAX_PARAMS
    summary = summarize(spec([{"type": "flatten"}, {"type": "linear", "units": big}, {"type": "linear", "units": 10}]),
                        IMAGES)
    assert [layer.params for layer in summary.layers] == [0, 784 * big + big, big * 10 + 10]
    assert [layer.output_shape for layer in summary.layers] == [[784], [big], [10]]


def test_keras_and_pytorch_words_build_the_same_network():
    keras = spec([{"type": "Dense", "units": 8, "activation": "tanh"}, {"type": "BatchNormalization"},
                  {"type": "Activation", "activation": "relu"}, {"type": "Dense", "units": 3, "use_bias": False}])
    torch_words = spec([{"type": "linear", "out_features": 8}, {"type": "tanh"}, {"type": "batchnorm1d"},
                        {"type": "relu"}, {"type": "linear", "units": 3, "bias": False}])
    torch.manual_seed(0)
    a = build_model(keras, IRIS).state_dict()
    torch.manual_seed(0)
    b = build_model(torch_words, IRIS).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_reshape_turns_flat_digits_into_images():
    s = spec([{"type": "reshape", "shape": [1, -1, 8]}, {"type": "conv2d", "filters": 4, "kernel_size": 3},
              {"type": "flatten"}, {"type": "linear", "units": 10}])
    assert [layer.output_shape for layer in summarize(s, FLAT64).layers] == [[1, 8, 8], [4, 6, 6], [144], [10]]
    assert build_model(s, FLAT64)(torch.randn(2, 64)).shape == (2, 10)


@pytest.mark.parametrize("last, task, loss, n, folded", [
    ([{"type": "linear", "units": 1, "activation": "sigmoid"}], "binary", "bce", 1, "sigmoid"),
    ([{"type": "linear", "units": 2}], "classification", "cross_entropy", 2, None),
])
def test_two_classes_head_follows_the_output_size(last, task, loss, n, folded):
    head = resolve_head(spec([{"type": "linear", "units": 4}, *last]), BINARY)
    assert (head.task, head.loss, head.n_outputs, head.folded) == (task, loss, n, folded)
    model = build_model(spec([{"type": "linear", "units": 4}, *last]), BINARY)
    assert isinstance(model[-1], nn.Linear)  # BCEWithLogits applies the sigmoid itself


def test_regression_head_and_explicit_loss():
    assert resolve_head(spec([{"type": "linear", "units": 1}]), REGRESSION).loss == "mse"
    head = resolve_head(spec([{"type": "linear", "units": 1}], training={"loss": "huber"}), REGRESSION)
    assert (head.task, head.loss, head.folded) == ("regression", "huber", None)
    sig = signature_of(JobSpec.model_validate({"dataset": {"synthetic": {"kind": "linear"}}, "model": {"layers": [{"type": "linear", "units": 1}]}}))
    assert summarize(spec([{"type": "linear", "units": 1}]), sig).task == "regression"


# --------------------------------------------------------------------------- bad specs

BASE = {"dataset": {"builtin": "iris"}, "model": {"layers": [{"type": "linear", "units": 3}]}}


@pytest.mark.parametrize("change, loc", [
    ({"model": {"layers": [{"type": "linear", "units": -3}]}}, ("model", "layers", 0, "linear", "units")),
    ({"model": {"layers": [{"type": "dropout", "p": 1.5}, {"type": "linear", "units": 3}]}}, ("model", "layers", 0, "dropout", "p")),
    ({"model": {"layers": []}}, ("model", "layers")),
    ({"model": {"layers": [{"type": "transformer", "heads": 4}]}}, ("model", "layers", 0)),
    ({"model": {"layers": [{"type": "linear", "units": 3, "unit": 4}]}}, ("model", "layers", 0, "linear", "unit")),
    ({"model": {"layers": [{"type": "reshape", "shape": [0, 4]}]}}, ("model", "layers", 0, "reshape", "shape")),
    ({"training": {"optimizer": {"lr": float("nan")}}}, ("training", "optimizer", "lr")),
    ({"training": {"task": "binary", "loss": "mse"}}, ("training",)),
    ({"dataset": {}}, ("dataset",)),
    ({"dataset": {"builtin": "iris", "id": "abc"}}, ("dataset",)),
    ({"split": {"validation": 0.5, "test": 0.45}}, ("split",)),
    ({"epochs": 10}, ("epochs",)),
], ids=["negative-units", "p>1", "no-layers", "unknown-layer", "extra-field", "reshape-zero", "nan-lr",
        "loss-task", "no-dataset", "two-datasets", "split>0.9", "misplaced-field"])
def test_bad_spec_refused_by_the_spec_models(change, loc):
    with pytest.raises(ValidationError) as e:
        JobSpec.model_validate({**copy.deepcopy(BASE), **change})
    assert loc in [err["loc"] for err in e.value.errors()]


@pytest.mark.parametrize("layers, sig, kw, loc, fix", [
    ([{"type": "linear", "units": 4}], IRIS, {}, ["model", "layers", 0, "units"], "layer 0 (linear) outputs 4 values but the data has 3 classes: set units to 3"),
    ([{"type": "linear", "units": 1}], IRIS, {"training": {"task": "classification"}}, ["model", "layers", 0, "units"], "set units to 3"),
    ([{"type": "linear", "units": 1}], BINARY, {"training": {"task": "classification"}}, ["model", "layers", 0, "units"], 'for 1 output use task "binary"'),
    ([{"type": "linear", "units": 10}], IMAGES, {}, ["model", "layers", 0], "add a flatten layer before layer 0"),
    ([{"type": "linear", "units": 8}, {"type": "conv2d", "filters": 2, "kernel_size": 2}], FLAT64, {}, ["model", "layers", 1], "add a reshape layer before layer 1"),
    ([{"type": "conv2d", "filters": 2, "kernel_size": 2}], FLAT64, {}, ["model", "layers", 0], '"shape": [1, 8, 8]'),
    ([{"type": "conv2d", "filters": 2, "kernel_size": 29}], IMAGES, {}, ["model", "layers", 0, "kernel_size"], "kernel 29x29 is larger than its input 28x28"),
    ([{"type": "conv2d", "filters": 2, "kernel_size": 3, "stride": 2, "padding": "same"}], IMAGES, {}, ["model", "layers", 0, "padding"], "needs stride 1"),
    ([{"type": "maxpool2d", "pool_size": 16}, {"type": "maxpool2d", "pool_size": 2}], IMAGES, {}, ["model", "layers", 1, "pool_size"], "larger than its input 1x1"),
    ([{"type": "maxpool2d", "pool_size": 2, "padding": 2}], IMAGES, {}, ["model", "layers", 0, "padding"], "more than half of pool_size"),
    ([{"type": "reshape", "shape": [5, -1]}, {"type": "linear", "units": 3}], IRIS, {}, ["model", "layers", 0, "shape"], "product is 4"),
    ([{"type": "reshape", "shape": [2, 2]}, {"type": "batchnorm"}], IRIS, {}, ["model", "layers", 1], "not [2, 2]"),
    ([{"type": "conv2d", "filters": 3, "kernel_size": 3}], IMAGES, {}, ["model", "layers", 0], "ends with shape [3, 26, 26]"),
    ([{"type": "linear", "units": 1}, {"type": "softmax"}], BINARY, {}, ["model", "layers", 1], "softmax over one output is always 1"),
    ([{"type": "linear", "units": 3}], IRIS, {"training": {"task": "binary"}}, ["training", "task"], "needs 2 classes but the data set has 3"),
    ([{"type": "linear", "units": 1}], IRIS, {"training": {"loss": "mse"}}, ["training", "loss"], "has 3 classes"),
    ([{"type": "linear", "units": 1}], REGRESSION, {"training": {"task": "classification"}}, ["training", "task"], "targets are real numbers"),
    ([{"type": "linear", "units": 1}], REGRESSION, {"training": {"early_stopping": {"monitor": "val_accuracy"}}}, ["training", "early_stopping", "monitor"], "a regression run does not record it"),
    ([{"type": "linear", "units": 3}], IRIS, {"split": {"validation": 0}, "training": {"lr_schedule": {"type": "reduce_on_plateau"}}}, ["training", "lr_schedule", "monitor"], "set split.validation above 0"),
    ([{"type": "flatten"}, {"type": "linear", "units": 65536}, {"type": "linear", "units": 1000}, {"type": "linear", "units": 10}], IMAGES, {}, ["model", "layers"], f"the limit of {MAX_PARAMS:,}"),
])
def test_bad_spec_refused_by_the_dry_run(layers, sig, kw, loc, fix):
    with pytest.raises(SpecError) as e:
        summarize(spec(layers, **kw), sig)
    assert [err["loc"] for err in e.value.errors] == [loc]
    assert fix in e.value.errors[0]["msg"]


def test_dry_run_reports_every_problem_at_once():
    s = spec([{"type": "linear", "units": 7}], training={"loss": "cross_entropy", "early_stopping": {"monitor": "val_rmse"}})
    with pytest.raises(SpecError) as e:
        summarize(s, IRIS)
    assert [err["loc"] for err in e.value.errors] == [["model", "layers", 0, "units"], ["training", "early_stopping", "monitor"]]


def test_build_model_refuses_what_the_summary_refuses():
    with pytest.raises(SpecError, match="add a flatten layer before layer 0"):
        build_model(spec([{"type": "linear", "units": 10}]), IMAGES)
