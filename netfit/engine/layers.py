"""Spec layers → torch.nn.Sequential, with every input size inferred from the data.

The network is first traced (shapes and parameter counts, on the "meta" device where a layer
is too big to run on the CPU), which is how the API validates a spec before it is queued; the
real model is then built from the same plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from netfit.models import LayerSummary, ModelSummary
from netfit.spec import JOINS, TASK_LOSSES, JobSpec, Loss, metric_names
from netfit.spec_graph import INPUT, Node, expand

from .data import DataSignature
from .errors import SpecError
from .graph import Add, Concat, GraphNet

MAX_PARAMS = 50_000_000
# a trailing activation the loss applies itself (CrossEntropy: log-softmax; BCEWithLogits: sigmoid)
FOLDABLE = {"classification": ("softmax", "log_softmax"), "binary": ("sigmoid",)}


@dataclass(frozen=True)
class Head:
    task: Literal["classification", "binary", "regression"]
    loss: Loss
    n_outputs: int
    folded: str | None  # the dropped trailing activation, for predictions


class Reshape(nn.Module):
    """Per-sample reshape (the batch dimension is kept)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


def _activation(name: str, negative_slope: float = 0.01) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    if name in ("softmax", "log_softmax"):
        return (nn.Softmax if name == "softmax" else nn.LogSoftmax)(dim=1)
    return {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU, "sigmoid": nn.Sigmoid,
            "tanh": nn.Tanh, "softplus": nn.Softplus, "identity": nn.Identity, "linear": nn.Identity}[name]()


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class _Bad(Exception):
    """One layer's problem: (field or None, message)."""


def _modules(layer: Any, shape: tuple[int, ...], i: int, where: str | None = None) -> list[nn.Module]:
    """The modules for one spec layer given its per-sample input shape; _Bad if they cannot work.
    `where` names it in messages (a graph's node: its name and path); default "layer i (type)"."""
    t, where = layer.type, where or f"layer {i} ({layer.type})"
    if t == "linear":
        if len(shape) != 1:
            raise _Bad(None, f"{where} needs a flat input but gets shape {list(shape)}: add a flatten layer before layer {i}")
        mods = [nn.Linear(shape[0], layer.units, bias=layer.bias)]
    elif t == "conv2d":
        _image(shape, where, i)
        k, s = _pair(layer.kernel_size), _pair(layer.stride)
        pad = 0 if layer.padding == "valid" else layer.padding
        if pad == "same" and s != (1, 1):
            raise _Bad("padding", f"{where}: padding \"same\" needs stride 1 in PyTorch; use stride 1 or an integer padding")
        if pad != "same" and any(k[d] > shape[1 + d] + 2 * pad for d in (0, 1)):
            raise _Bad("kernel_size", f"{where}: kernel {k[0]}x{k[1]} is larger than its input {shape[1]}x{shape[2]}"
                       f"{f' padded by {pad}' if pad else ''}; use a smaller kernel_size, padding, or fewer pooling layers before it")
        mods = [nn.Conv2d(shape[0], layer.filters, k, s, pad, bias=layer.bias)]
    elif t in ("maxpool2d", "avgpool2d"):
        _image(shape, where, i)
        k = _pair(layer.pool_size)
        s = k if layer.stride is None else _pair(layer.stride)
        # "same" = ceil_mode: ceil(H / stride) outputs when stride == pool_size, as in Keras
        pad, ceil = (0, True) if layer.padding == "same" else (0 if layer.padding == "valid" else layer.padding, False)
        if 2 * pad > min(k):
            raise _Bad("padding", f"{where}: padding {pad} is more than half of pool_size {k[0]}x{k[1]}; lower it")
        if any(k[d] > shape[1 + d] + 2 * pad for d in (0, 1)):
            raise _Bad("pool_size", f"{where}: pool {k[0]}x{k[1]} is larger than its input {shape[1]}x{shape[2]}; "
                       "use a smaller pool_size or remove this layer")
        cls = nn.MaxPool2d if t == "maxpool2d" else nn.AvgPool2d
        mods = [cls(k, s, pad, ceil_mode=ceil)]
    elif t == "flatten":
        mods = [nn.Flatten()]
    elif t == "reshape":
        total, known = math.prod(shape), math.prod(d for d in layer.shape if d != -1)
        target = [total // known if d == -1 else d for d in layer.shape]
        if math.prod(target) != total:
            raise _Bad("shape", f"{where}: shape {layer.shape} does not hold the {total} values of its input "
                       f"{list(shape)}; use sizes whose product is {total}")
        mods = [Reshape(tuple(target))]
    elif t == "dropout":
        mods = [nn.Dropout(layer.p)]
    elif t == "batchnorm":
        if len(shape) not in (1, 3):
            raise _Bad(None, f"{where} works on (features,) or (channels, height, width), not {list(shape)}")
        cls = nn.BatchNorm1d if len(shape) == 1 else nn.BatchNorm2d
        mods = [cls(shape[0], eps=layer.eps, momentum=layer.momentum)]
    elif t == "layernorm":
        mods = [nn.LayerNorm(shape[-1], eps=layer.eps)]
    else:
        mods = [_activation(t, layer.negative_slope)]
    if getattr(layer, "activation", None) not in (None, "linear", "identity"):
        mods.append(_activation(layer.activation))
    return mods


def _image(shape: tuple[int, ...], where: str, i: int) -> None:
    if len(shape) == 3:
        return
    hint = f"add a flatten layer before layer {i}" if len(shape) > 3 else f"add a reshape layer before layer {i}"
    side = math.isqrt(math.prod(shape))
    if len(shape) == 1 and side * side == shape[0]:
        hint += f", e.g. {{\"type\": \"reshape\", \"shape\": [1, {side}, {side}]}}"
    raise _Bad(None, f"{where} needs image input (channels, height, width) but gets shape {list(shape)}: {hint}")


@dataclass
class _Traced:
    index: int
    type: str
    in_shape: tuple[int, ...]
    shape: tuple[int, ...]
    params: int
    node: Node | None = None  # a graph's node (None in a sequence)
    inputs: list[str] | None = None  # a graph node's input names

    @property
    def loc(self) -> list[str | int]:
        return list(self.node.loc) if self.node else ["model", "layers", self.index]

    @property
    def where(self) -> str:
        return self.node.where if self.node else f"layer {self.index} ({self.type})"


# Up to this many parameters (64 MB) a layer is traced on the CPU: a process's first forward on
# the meta device imports torch's decompositions and sympy (820 modules, ~1 s of CPU in every
# API and worker process); the CPU costs microseconds. Bigger layers stay on meta: no memory.
CPU_TRACE_PARAMS = 1 << 24


def _traced_layer(layer: Any, shape: tuple[int, ...], i: int, where: str) -> tuple[tuple[int, ...], int]:
    """One layer's output shape and parameter count (_Bad, or torch's error). Built on the meta
    device, which allocates nothing; run on the CPU when small (uninitialised weights, zeros in)."""
    with torch.device("meta"):
        block = nn.Sequential(*_modules(layer, shape, i, where)).eval()
    params = sum(p.numel() for p in block.parameters())
    device = "cpu" if params <= CPU_TRACE_PARAMS and math.prod(shape) <= CPU_TRACE_PARAMS else "meta"
    if device == "cpu":
        block.to_empty(device="cpu")
    with torch.no_grad():
        y = block(torch.zeros((2, *shape), device=device))
    return tuple(y.shape[1:]), params


def _join_shape(node: Node, shapes: list[tuple[int, ...]], names: list[str]) -> tuple[int, ...]:
    got = ", ".join(f"'{n}' {list(s)}" for n, s in zip(names, shapes))
    if node.layer.type == "add":
        if len(set(shapes)) > 1:
            raise _Bad(None, f"{node.where}: add needs inputs of one shape but gets {got}; give the branches equal "
                       "sizes (e.g. units) or use concat")
        return shapes[0]
    if len({len(s) for s in shapes}) > 1 or len({s[1:] for s in shapes}) > 1:
        raise _Bad(None, f"{node.where}: concat joins on the features (channels) axis, so every other size must "
                   f"match, but gets {got}; flatten the inputs, or pool/pad them to one height and width")
    return (sum(s[0] for s in shapes), *shapes[0][1:])


def _trace(spec: JobSpec, signature: DataSignature, errors: list[dict]) -> list[_Traced] | None:
    """Per-layer output shapes and parameter counts; None after a layer error."""
    if spec.model.is_graph:
        return _trace_graph(spec, signature, errors)
    shape, out = tuple(signature.input_shape), []
    for i, layer in enumerate(spec.model.layers):
        loc: list[str | int] = ["model", "layers", i]
        try:
            y_shape, params = _traced_layer(layer, shape, i, f"layer {i} ({layer.type})")
        except _Bad as bad:
            field, msg = bad.args
            errors.append({"loc": loc + ([field] if field else []), "msg": msg})
            return None
        except (RuntimeError, ValueError) as e:  # anything torch refuses that the checks above missed
            errors.append({"loc": loc, "msg": f"layer {i} ({layer.type}) cannot take input of shape {list(shape)}: {e}"})
            return None
        out.append(_Traced(i, layer.type, shape, y_shape, params))
        shape = out[-1].shape
    return out


def _trace_graph(spec: JobSpec, signature: DataSignature, errors: list[dict]) -> list[_Traced] | None:
    """A graph's nodes (blocks expanded) traced in order; every error names the node and its path."""
    nodes = expand(spec.model.layers, spec.model.blocks)
    shapes, labels, out = [tuple(signature.input_shape)], [INPUT] + [n.name for n in nodes], []
    for k, node in enumerate(nodes):
        ins, names = [shapes[i] for i in node.inputs], [labels[i] for i in node.inputs]
        try:
            if node.layer.type in JOINS:
                shape, params = _join_shape(node, ins, names), 0
            else:
                shape, params = _traced_layer(node.layer, ins[0], int(node.loc[-1]), node.where)
        except _Bad as bad:
            field, msg = bad.args
            errors.append({"loc": list(node.loc) + ([field] if field else []), "msg": msg})
            return None
        except (RuntimeError, ValueError) as e:
            errors.append({"loc": list(node.loc), "msg": f"{node.where} cannot take input of shape {list(ins[0])}: {e}"})
            return None
        out.append(_Traced(k, node.layer.type, ins[0], shape, params, node, names))
        shapes.append(shape)
    return out


def _last_activation(spec: JobSpec) -> str | None:
    last = spec.model.layers[-1]
    if spec.model.is_graph:  # the output node: a last block's last layer
        last = expand(spec.model.layers, spec.model.blocks)[-1].layer
    if last.type in ("linear", "conv2d"):
        return last.activation
    return last.type if last.type in {"softmax", "log_softmax", "sigmoid"} else None


def _head(spec: JobSpec, signature: DataSignature, traced: list[_Traced] | None, errors: list[dict]) -> Head | None:
    t = spec.training
    task = t.task or next((k for k, v in TASK_LOSSES.items() if t.loss in v), None)  # a loss implies its task
    field = "task" if t.task else "loss"
    n = signature.n_classes or signature.n_targets
    if signature.task == "regression" and task not in (None, "regression"):
        wrong = "the data set's targets are real numbers, not classes: use task regression (loss mse, mae or huber)"
    elif signature.task == "classification" and task == "regression":
        wrong = f"the data set has {n} classes: use task classification or binary (loss cross_entropy or bce)"
    elif task == "binary" and n != 2:
        wrong = f"task binary (loss bce) needs 2 classes but the data set has {n}: use classification (cross_entropy)"
    else:
        wrong = None
    if wrong:
        errors.append({"loc": ["training", field], "msg": f"training.{field} '{getattr(t, field)}' does not fit: "
                       f"{wrong}, or leave it out"})
        return None
    if signature.task == "regression":
        task = "regression"
    elif task == "binary" or (task is None and n == 2 and traced is not None and traced[-1].shape == (1,)):
        task, n = "binary", 1
    else:
        task = "classification"
    if t.label_smoothing and task != "classification":
        # known only now that the task is inferred from the data and the network's last layer
        errors.append({"loc": ["training", "label_smoothing"], "msg": f"label_smoothing applies to "
                       f"classification with cross_entropy only; this is a {task} job: remove label_smoothing"})
        return None
    folded = _last_activation(spec)
    return Head(task, t.loss or TASK_LOSSES[task][0], n, folded if folded in FOLDABLE.get(task, ()) else None)


def _check_output(spec: JobSpec, signature: DataSignature, traced: list[_Traced], head: Head, errors: list[dict]) -> None:
    sizing = [t for t in traced if t.type in ("linear", "conv2d", "flatten", "reshape")] or traced
    last, got = sizing[-1], traced[-1].shape
    what = {"classification": f"the data has {head.n_outputs} classes",
            "binary": "a binary task has one output (the logit)",
            "regression": f"the data has {head.n_outputs} target{'s' if head.n_outputs > 1 else ''}"}[head.task]
    fix = "set units to" if last.type == "linear" else "end with a linear layer of"
    if len(got) != 1:
        errors.append({"loc": traced[-1].loc, "msg": f"the network ends with shape {list(got)} but "
                       f"{what}: add a flatten layer and a linear layer with units {head.n_outputs}"})
    elif got[0] != head.n_outputs:
        if head.task == "classification" and signature.n_classes == 2 and got[0] == 1:
            what += " (for 1 output use task \"binary\")"
        loc = last.loc + (["units"] if last.type == "linear" else [])
        errors.append({"loc": loc, "msg": f"{last.where} outputs {got[0]} values but {what}: "
                       f"{fix} {head.n_outputs}"})
    last_act = _last_activation(spec)
    if last_act == "softmax" and got == (1,):
        errors.append({"loc": ["model", "layers", len(traced) - 1], "msg": "softmax over one output is always 1: "
                       "use sigmoid (or nothing; the loss applies it) for a binary task"})


def _check_monitors(spec: JobSpec, signature: DataSignature, head: Head, errors: list[dict]) -> None:
    recorded = list(metric_names(head.task, validation=spec.split.validation > 0 or signature.has_validation_split))
    for field in ("early_stopping", "lr_schedule"):
        name = getattr(getattr(spec.training, field), "monitor", None)
        if name is not None and name not in recorded:
            why = ("there is no validation split (set split.validation above 0)" if name.startswith("val_")
                   and "val_loss" not in recorded else f"a {head.task} run does not record it")
            errors.append({"loc": ["training", field, "monitor"], "msg": f"cannot monitor '{name}': {why}; "
                           f"choose one of {recorded}"})


def _check(spec: JobSpec, signature: DataSignature, monitors: bool = False) -> tuple[list[_Traced], Head]:
    errors: list[dict] = []
    traced = _trace(spec, signature, errors)
    head = _head(spec, signature, traced, errors)
    if traced is not None and head is not None:
        _check_output(spec, signature, traced, head, errors)
    if head is not None and monitors:
        _check_monitors(spec, signature, head, errors)
    total = sum(t.params for t in traced or [])
    if total > MAX_PARAMS:
        errors.append({"loc": ["model", "layers"], "msg": f"the network has {total:,} parameters, more than the "
                       f"limit of {MAX_PARAMS:,}: use fewer units or filters, or pool before flattening"})
    if errors:
        raise SpecError(errors)
    return traced, head


class Plan(NamedTuple):
    """A checked network: each layer's traced shapes and parameters, and its loss head."""

    traced: list[_Traced]
    head: Head


def check(spec: JobSpec, signature: DataSignature) -> Plan:
    """Every check the API makes, with one trace that build_model can reuse (a trace costs
    10-60 ms)."""
    return Plan(*_check(spec, signature, monitors=True))


def resolve_head(spec: JobSpec, signature: DataSignature) -> Head:
    return _check(spec, signature)[1]


def build_model(spec: JobSpec, signature: DataSignature, device: str | torch.device = "cpu",
                plan: Plan | None = None) -> nn.Sequential:
    """The real network (initialised on the CPU under the caller's seed, then moved), without the
    folded trailing activation. `plan`: check()'s result for this spec and signature."""
    traced, head = plan or _check(spec, signature)
    if spec.model.is_graph:
        # the layers of this spec (a pack builds its members from one plan; their dropout rates differ)
        return _build_graph(traced, head, [n.layer for n in expand(spec.model.layers, spec.model.blocks)]).to(device)
    mods = [_tag(m, t.index) for layer, t in zip(spec.model.layers, traced) for m in _modules(layer, t.in_shape, t.index)]
    if head.folded:
        mods.pop()
    return nn.Sequential(*mods).to(device)


def _tag(module: nn.Module, index: int) -> nn.Module:
    """Mark a module with the index of the spec layer it came from (a Dense with an activation
    makes two modules): layer statistics use it, so that they number layers as the summary does."""
    module.spec_index = index
    return module


def _build_graph(traced: list[_Traced], head: Head, layers: list[Any]) -> GraphNet:
    nodes = []
    for t, layer in zip(traced, layers):
        if t.type in JOINS:
            nodes.append(([Add() if t.type == "add" else Concat()], t.node.inputs))
        else:
            nodes.append(([_tag(m, t.index) for m in _modules(layer, t.in_shape, int(t.node.loc[-1]))], t.node.inputs))
    if head.folded:
        nodes[-1][0].pop()
    return GraphNet(nodes, [t.node.name for t in traced])


def notes(spec: JobSpec, signature: DataSignature, head: Head) -> list[str]:
    """What netfit changed or assumed, so that nothing happens in silence."""
    out, t = [], spec.training
    if t.task is None:
        why = {"classification": f"the data has {signature.n_classes} classes",
               "binary": "the data has 2 classes and the network 1 output",
               "regression": "the targets are real numbers"}[head.task]
        out.append(f"task '{head.task}' inferred: {why} (set training.task to choose)")
    if t.loss is None:
        out.append(f"loss '{head.loss}' chosen for task '{head.task}' (set training.loss to choose another)")
    if head.folded:
        applied = "log-softmax" if head.loss == "cross_entropy" else "sigmoid"
        out.append(f"the trailing {head.folded} is folded into the loss: {head.loss} applies {applied} itself, so "
                   f"the network is trained and saved without it; load_model's outputs are logits "
                   f"(apply {head.folded} to them for probabilities)")
    if t.early_stopping is None and t.epochs > 1:
        out.append(f"no early stopping: all {t.epochs} epochs run and the last weights may be over-fitted; the "
                   "'best' checkpoint (the best validation epoch) is the job's result: /predict, the export "
                   "and the test metrics use it (set training.early_stopping to stop when validation stops improving)")
    if spec.preprocess.features == "none" and signature.integer_max is not None and signature.integer_max > 1:
        out.append(f"the inputs are unscaled integers up to {signature.integer_max:g} (0-255 pixels?): set "
                   "preprocess.features to 'scale' to divide by 255, or 'standardize'; unscaled inputs train slowly")
    return out


def _activation_of(spec: JobSpec, t: _Traced) -> str | None:
    """A dense or conv layer's own activation (Keras' `"activation": "relu"`), else None."""
    layer = t.node.layer if t.node else spec.model.layers[t.index]
    act = getattr(layer, "activation", None)
    return None if act in (None, "linear", "identity") else act


def summarize(spec: JobSpec, signature: DataSignature) -> ModelSummary:
    traced, head = check(spec, signature)
    return ModelSummary(
        input_shape=list(signature.input_shape), task=head.task, loss=head.loss, n_outputs=head.n_outputs,
        layers=[LayerSummary(index=t.index, type=t.type, output_shape=list(t.shape), params=t.params,
                             activation=_activation_of(spec, t),
                             **({"name": t.node.name, "inputs": t.inputs, "block": t.node.block} if t.node else {}))
                for t in traced],
        total_params=sum(t.params for t in traced),
        notes=notes(spec, signature, head),
    )
