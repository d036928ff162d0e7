"""Which trials can train together as one pack: the rules, apart from the batched training itself
(netfit.engine.packed), so that the API can judge a packing sweep at POST without loading the
training loop. Pure functions of a JobSpec; nothing heavy imported.
"""

from __future__ import annotations

import json

from netfit.spec import JobSpec
from netfit.spec_graph import expand
from netfit.sweep_spec import MAX_PACK

CPU_CONV_PACK = 8  # members of a conv net's pack on a CPU (max_members)

# the numbers a member may have of its own: none of them changes a tensor's shape
MEMBER_TRAINING = ("epochs", "lr_schedule", "grad_clip", "label_smoothing", "early_stopping", "seed", "shuffle")
MEMBER_OPTIMIZER = ("lr", "weight_decay", "momentum", "nesterov", "betas")
# the same, as sweep parameter paths (what a 422 tells a user may vary in a packing sweep)
MEMBER_PATHS = (*(f"training.{n}" for n in MEMBER_TRAINING), *(f"training.optimizer.{n}" for n in MEMBER_OPTIMIZER),
                "model.layers.N.p (a dropout layer's rate)")
# the layer types a pack's batched network runs (netfit.engine.packed.PackedNet), in sequences and graphs
PACKED_LAYERS = frozenset({
    "linear", "conv2d", "maxpool2d", "avgpool2d", "flatten", "reshape", "dropout", "batchnorm", "layernorm",
    "relu", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "softmax", "log_softmax", "softplus", "identity",
    "add", "concat",
})


def pack_key(spec: JobSpec) -> str:
    """Specs with the same key can train in one pack: the spec without the per-member numbers."""
    d = spec.model_dump(mode="json")
    d.pop("name", None)
    for name in MEMBER_TRAINING:
        d["training"].pop(name, None)
    for name in MEMBER_OPTIMIZER:
        d["training"]["optimizer"].pop(name, None)
    for layers in [d["model"]["layers"], *(block["layers"] for block in (d["model"].get("blocks") or {}).values())]:
        for layer in layers:
            if layer.get("type") == "dropout":
                layer.pop("p", None)
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def _layers(spec: JobSpec) -> list:
    return [node.layer for node in expand(spec.model.layers, spec.model.blocks)] if spec.model.is_graph else spec.model.layers


def packable(spec: JobSpec) -> str | None:
    """Why this spec cannot train packed, or None when it can."""
    t = spec.training
    if t.compile or t.precision != "fp32":
        return "compile and bf16 precision are not packed; train such trials alone"
    for i, layer in enumerate(_layers(spec)):
        if layer.type not in PACKED_LAYERS:
            return (f"layer {i} ({layer.type}) is not packed; packs hold {', '.join(sorted(PACKED_LAYERS))} layers: "
                    "train such trials alone")
    return None


def max_members(spec: JobSpec, *, on_cpu: bool) -> int:
    """How many trials one pack of this spec holds: MAX_PACK, but CPU_CONV_PACK of a conv net on a
    CPU. There a pack's grouped convolutions are compute-bound, as its members' are one at a
    time, and a bigger pack only spills the caches: on 2 cores (`python -m bench packed`) a
    2-conv MNIST-shaped CNN trained 1.13 x faster packed at 8 members and 0.77 x (slower) at 32;
    the two-branch net 2.2 x at 8 and 2.4 x at 32. A GPU, which one small member leaves idle,
    takes the whole pack."""
    if on_cpu and any(layer.type == "conv2d" for layer in _layers(spec)):
        return CPU_CONV_PACK
    return MAX_PACK
