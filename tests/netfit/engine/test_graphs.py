"""Functional graphs in the engine: the dry run's shape errors (naming node and block), the
summary of the graph, the module computing what the graph says, and a trained graph's
load_model / predict / ONNX export agreeing with torch."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from netfit.engine.checkpoints import weights_to_bytes
from netfit.engine.data import load_data
from netfit.engine.errors import SpecError
from netfit.engine.fit import fit
from netfit.engine.graph import GraphNet
from netfit.engine.inference import export_onnx, load_model, model_metadata, predict
from netfit.engine.layers import build_model, summarize
from netfit.spec import JobSpec
from tests.netfit.engine.conftest import IRIS_GRAPH

IMAGE = {"dataset": {"builtin": "digits"}, "preprocess": {"features": "scale"}}


def spec_of(doc: dict[str, Any]) -> JobSpec:
    return JobSpec.model_validate(doc)


def dry_run_errors(doc: dict[str, Any]) -> list[dict]:
    spec = spec_of(doc)
    with pytest.raises(SpecError) as info:
        summarize(spec, load_data(spec).signature)
    return info.value.errors


def test_the_summary_shows_each_node_its_inputs_shape_and_parameters():
    spec = spec_of(IRIS_GRAPH)
    summary = summarize(spec, load_data(spec).signature)
    rows = {row.name: row for row in summary.layers}
    assert list(rows) == ["stem", "r1.fc", "r1.1", "r1.fc2", "r1", "r2.fc", "r2.1", "r2.fc2", "r2", "side", "both", "5"]
    assert rows["r1"].inputs == ["stem", "r1.fc2"] and rows["r1"].type == "add" and rows["r1"].block == "res"
    assert rows["both"].inputs == ["r2", "side"] and rows["both"].output_shape == [24] and rows["both"].params == 0
    assert rows["side"].inputs == ["stem"] and rows["side"].params == 16 * 8 + 8 and rows["side"].block is None
    assert rows["5"].output_shape == [3] and summary.total_params == sum(r.params for r in summary.layers)
    assert summary.total_params == (4 * 16 + 16) + 4 * (16 * 16 + 16) + (16 * 8 + 8) + (24 * 3 + 3)
    assert any("softmax is folded" in note for note in summary.notes)


def test_a_sequential_spec_still_builds_a_plain_sequential_with_unnamed_rows():
    doc = copy.deepcopy(IRIS_GRAPH)
    doc["model"] = {"layers": [{"type": "linear", "units": 8}, {"type": "relu"}, {"type": "linear", "units": 3}]}
    spec = spec_of(doc)
    signature = load_data(spec).signature
    assert type(build_model(spec, signature)) is nn.Sequential
    assert all(row.name is None and row.inputs is None for row in summarize(spec, signature).layers)


def test_the_module_computes_what_the_graph_says():
    spec = spec_of(IRIS_GRAPH)
    net = build_model(spec, load_data(spec).signature)
    assert isinstance(net, GraphNet)
    m = list(net.children())  # numbered as a Sequential: the softmax is folded away
    assert len(m) == 13 and isinstance(m[-1], nn.Linear)

    def res(x, a, relu, b):
        return x + b(relu(a(x)))

    x = torch.randn(5, 4)
    with torch.no_grad():
        stem = m[0](x)
        r2 = res(res(stem, *m[1:4]), *m[5:8])
        side = m[10](m[9](stem))
        expected = m[12](torch.cat([r2, side], dim=1))
        assert torch.allclose(net(x), expected, atol=1e-6)


@pytest.mark.parametrize("edit, loc, words", [
    # the block's add gets its input (8 features) and fc2's 16: block, path and node named
    (lambda d: d["model"]["layers"][0].update(units=8), ["model", "blocks", "res", "layers", 3],
     ["node 'r1' (model.blocks.res.layers[3], add)", "'stem' [8], 'r1.fc2' [16]"]),
    (lambda d: d["model"]["layers"][4].update(type="add"), ["model", "layers", 4],
     ["node 'both' (model.layers[4], add)", "'r2' [16], 'side' [8]", "concat"]),
    (lambda d: d["model"]["layers"][5].update(units=4), ["model", "layers", 5, "units"],
     ["node '5' (model.layers[5], linear) outputs 4 values", "3 classes"]),
])
def test_dry_run_shape_errors_name_the_node_and_its_block(edit, loc, words):
    doc = copy.deepcopy(IRIS_GRAPH)
    edit(doc)
    [error] = dry_run_errors(doc)
    assert error["loc"] == loc and all(w in error["msg"] for w in words), error


def test_image_branches_concat_on_channels_and_mismatched_maps_are_refused():
    branch = {"layers": [{"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": 1, "activation": "relu"}]}
    layers = [{"type": "reshape", "shape": [1, 8, 8], "name": "img"},
              {"type": "block", "block": "branch", "name": "a"},
              {"type": "conv2d", "filters": 6, "kernel_size": 5, "padding": 2, "name": "b", "inputs": ["img"]},
              {"type": "concat", "inputs": ["a", "b"], "name": "cat"}, {"type": "flatten"}, {"type": "linear", "units": 10}]
    doc = {**IMAGE, "model": {"blocks": {"branch": branch}, "layers": layers}}
    spec = spec_of(doc)
    rows = {r.name: r for r in summarize(spec, load_data(spec).signature).layers}
    assert rows["cat"].output_shape == [10, 8, 8] and rows["a"].block == "branch"
    layers[2]["padding"] = 0  # 4x4 maps beside 8x8 ones
    [error] = dry_run_errors(doc)
    assert error["loc"] == ["model", "layers", 3] and "'a' [4, 8, 8], 'b' [6, 4, 4]" in error["msg"]
    doc["model"]["layers"] = [{"type": "block", "block": "branch", "name": "a"}, *layers[4:]]  # conv on flat rows
    [error] = dry_run_errors(doc)
    assert error["loc"] == ["model", "blocks", "branch", "layers", 0]
    assert "node 'a' (model.blocks.branch.layers[0], conv2d) needs image input" in error["msg"]


def test_a_trained_graph_loads_predicts_and_exports_the_same_outputs_as_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec = spec_of(IRIS_GRAPH)
    data = load_data(spec)
    result = fit(spec, data, layer_stats=True)
    assert result.history[-1].metrics["val_loss"] < result.history[0].metrics["val_loss"]  # it learns
    stats = result.history[-1].layers
    assert [s["index"] for s in stats] == [0, 1, 3, 5, 7, 9, 11]  # the linear layers, numbered as the Layers table numbers the spec's layers
    meta = {"epoch": result.epochs_completed, **model_metadata(spec, data.signature, data.preprocessing, data.classes)}
    model = load_model(weights_to_bytes(result.last_weights, meta))
    prep = data.preprocessing
    raw = (data.test.x.numpy() * np.array(prep["std"]) + np.array(prep["mean"])).astype(np.float32)
    with torch.inference_mode():
        logits = model.network(data.test.x)
        expected = torch.softmax(logits, dim=1).numpy()
    out = predict(model, raw.tolist())
    assert np.allclose(out["probabilities"], expected, atol=1e-5)
    assert out["predictions"] == [model.classes[k] for k in expected.argmax(1)]
    session = ort.InferenceSession(export_onnx(model))
    assert np.allclose(session.run(None, {"input": raw})[0], expected, atol=1e-5)


def test_a_graph_packs_with_trials_of_its_shape_only():
    from netfit.packing import pack_key, packable

    assert packable(spec_of(IRIS_GRAPH)) is None
    doc = copy.deepcopy(IRIS_GRAPH)
    doc["model"] = {"layers": [{"type": "linear", "units": 8}, {"type": "relu"}, {"type": "linear", "units": 3}]}
    assert pack_key(spec_of(doc)) != pack_key(spec_of(IRIS_GRAPH))


def test_a_softmax_ending_the_last_block_is_folded_into_the_loss():
    head = {"layers": [{"type": "linear", "units": 3, "name": "out"}, {"type": "softmax"}]}
    doc = copy.deepcopy(IRIS_GRAPH)
    doc["model"]["blocks"]["head"] = head
    doc["model"]["layers"][-1] = {"type": "block", "block": "head", "name": "h"}
    spec = spec_of(doc)
    signature = load_data(spec).signature
    assert any("softmax is folded" in note for note in summarize(spec, signature).notes)
    assert isinstance(list(build_model(spec, signature).children())[-1], nn.Linear)
