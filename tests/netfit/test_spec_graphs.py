"""Functional graphs in the spec: what pydantic refuses before any data is seen (names,
order, arity, blocks), each error naming the layer's path and name; sequential specs dump as before."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from netfit.spec import JobSpec
from netfit.spec_graph import expand

RES = {"layers": [{"type": "linear", "units": 32, "name": "fc"}, {"type": "relu"},
                  {"type": "linear", "units": 32, "name": "fc2"}, {"type": "add", "inputs": ["input", "fc2"]}]}


def graph(layers: list[dict], blocks: dict | None = None) -> dict[str, Any]:
    model: dict[str, Any] = {"layers": layers}
    if blocks is not None:
        model["blocks"] = blocks
    return {"dataset": {"builtin": "digits"}, "model": model}


RESIDUAL = graph([{"type": "linear", "units": 32}, {"type": "block", "block": "res", "name": "r1"},
                  {"type": "block", "block": "res", "name": "r2"}, {"type": "linear", "units": 10}], {"res": RES})


def refused(doc: dict) -> str:
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(doc)
    return "\n".join(f"{list(e['loc'])} {e['msg']}" for e in info.value.errors())


def test_a_sequential_spec_is_no_graph_and_dumps_exactly_as_before():
    doc = graph([{"type": "dense", "units": 16, "activation": "relu"}, {"type": "linear", "units": 10}])
    spec = JobSpec.model_validate(doc)
    assert not spec.model.is_graph
    assert spec.model.model_dump(mode="json") == {"layers": [
        {"type": "linear", "units": 16, "activation": "relu", "bias": True},
        {"type": "linear", "units": 10, "activation": None, "bias": True}]}


def test_blocks_expand_into_named_nodes_and_the_block_layer_names_its_output():
    spec = JobSpec.model_validate(RESIDUAL)
    assert spec.model.is_graph
    nodes = expand(spec.model.layers, spec.model.blocks)
    names = [n.name for n in nodes]
    assert names == ["0", "r1.fc", "r1.1", "r1.fc2", "r1", "r2.fc", "r2.1", "r2.fc2", "r2", "3"]
    # r1's add takes the block's input (node "0", slot 1) and its own fc2 (slot 4)
    assert nodes[4].inputs == (1, 4) and nodes[4].block == "res" and nodes[4].loc == ("model", "blocks", "res", "layers", 3)
    assert nodes[5].inputs == (5,)  # r2 takes r1's output
    again = JobSpec.model_validate(spec.model_dump(mode="json") | {"dataset": {"builtin": "digits"}})
    assert again.model == spec.model  # what is stored validates back to the same graph


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["model"]["layers"][2].update(block="rse"), ["model.layers[2] ('r2', block)", "no block 'rse'",
                                                            "did you mean 'res'"]),
    (lambda d: d["model"]["blocks"]["res"]["layers"][3].update(inputs=["input", "fcc2"]),
     ["model.blocks.res.layers[3] (add)", "input 'fcc2' names no earlier layer", "did you mean 'fc2'"]),
    (lambda d: d["model"]["blocks"]["res"]["layers"][0].update(inputs=["fc2"]),
     ["model.blocks.res.layers[0] ('fc', linear)", "'fc2' is model.blocks.res.layers[2], a later layer", "no cycles"]),
    (lambda d: d["model"]["blocks"]["res"]["layers"][2].update(inputs=["fc2"]),
     ["model.blocks.res.layers[2] ('fc2', linear)", "takes itself"]),
    (lambda d: d["model"]["layers"][2].update(name="r1"), ["model.layers[2] ('r1', block)", "already taken by model.layers[1]"]),
    (lambda d: d["model"]["blocks"]["res"]["layers"][3].update(inputs=["input", "fc"]),
     ["model.blocks.res.layers[2] ('fc2', linear)", "never used"]),
    (lambda d: d["model"]["blocks"]["res"]["layers"].append({"type": "block", "block": "res"}),
     ["model.blocks.res", "contains itself (res -> res)"]),
])
def test_graph_mistakes_are_refused_naming_the_layer_and_its_block(edit, words):
    doc = copy.deepcopy(RESIDUAL)
    edit(doc)
    message = refused(doc)
    assert all(w in message for w in words), message


def test_blocks_that_use_each_other_in_a_ring_are_refused():
    a = {"layers": [{"type": "linear", "units": 4}, {"type": "block", "block": "b"}]}
    b = {"layers": [{"type": "block", "block": "a"}]}
    message = refused(graph([{"type": "block", "block": "a"}, {"type": "linear", "units": 10}], {"a": a, "b": b}))
    assert "contains itself (a -> b -> a)" in message


def test_arity_reserved_names_and_expanded_size_are_checked_at_the_layer():
    message = refused(graph([{"type": "linear", "units": 8, "name": "a"}, {"type": "add", "inputs": ["a"]}]))
    assert "['model', 'layers', 1, 'add']" in message and "add joins two or more layers" in message
    message = refused(graph([{"type": "linear", "units": 8, "name": "a"},
                             {"type": "linear", "units": 8, "inputs": ["input", "a"]}]))
    assert "a linear layer takes one input but 'inputs' names 2" in message and "concat" in message
    assert "reserved" in refused(graph([{"type": "linear", "units": 8, "name": "input"}]))
    assert "pattern" in refused(graph([{"type": "linear", "units": 8, "name": "a.b"}]))
    big = {"layers": [{"type": "relu"}] * 60}
    message = refused(graph([{"type": "block", "block": "big"}] * 5, {"big": big}))
    assert "300 layers once its blocks are expanded, more than 256" in message


def test_nested_blocks_that_multiply_are_counted_without_expanding_them():
    # b0 uses b1 60 times, b1 uses b2 60 times, ...: 60**15 layers, refused at once
    blocks = {f"b{k}": {"layers": [{"type": "block", "block": f"b{k + 1}"}] * 60} for k in range(15)}
    blocks["b15"] = {"layers": [{"type": "relu"}]}
    message = refused(graph([{"type": "block", "block": "b0"}, {"type": "linear", "units": 10}], blocks))
    assert "once its blocks are expanded, more than 256" in message
