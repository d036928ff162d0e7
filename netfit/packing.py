"""Which trials can train together as one pack: the rules, apart from the batched training itself
(netfit.engine.packed), so that the API can judge a packing sweep at POST without loading the
training loop. Pure functions of a JobSpec; nothing heavy imported.
"""

from __future__ import annotations

import json

from netfit.spec import JobSpec
from netfit.spec_graph import expand

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


def packable(spec: JobSpec) -> str | None:
    """Why this spec cannot train packed, or None when it can."""
    t = spec.training
    if t.compile or t.precision != "fp32":
        return "compile and bf16 precision are not packed; train such trials alone"
    layers = [node.layer for node in expand(spec.model.layers, spec.model.blocks)] if spec.model.is_graph else spec.model.layers
    for i, layer in enumerate(layers):
        if layer.type not in PACKED_LAYERS:
            return (f"layer {i} ({layer.type}) is not packed; packs hold {', '.join(sorted(PACKED_LAYERS))} layers: "
                    "train such trials alone")
    return None
