"""Which trials can train together as one pack (issue 16 §3): the rules, apart from the batched
training itself (netfit.engine.packed), so that the API can judge a packing sweep at POST
without loading the training loop. Pure functions of a JobSpec; nothing heavy imported.
"""

from __future__ import annotations

import json

from netfit.sweep_spec import MAX_PACK
from netfit.spec import JobSpec

# the numbers a member may have of its own: none of them changes a tensor's shape
MEMBER_TRAINING = ("epochs", "lr_schedule", "grad_clip", "label_smoothing", "early_stopping", "seed")
MEMBER_OPTIMIZER = ("lr", "weight_decay", "momentum", "nesterov", "betas")
# the same, as sweep parameter paths (what a 422 tells a user may vary in a packing sweep)
MEMBER_PATHS = (*(f"training.{n}" for n in MEMBER_TRAINING), *(f"training.optimizer.{n}" for n in MEMBER_OPTIMIZER),
                "model.layers.N.p (a dropout layer's rate)")


def pack_key(spec: JobSpec) -> str:
    """Specs with the same key can train in one pack: the spec without the per-member numbers."""
    d = spec.model_dump(mode="json")
    d.pop("name", None)
    for name in MEMBER_TRAINING:
        d["training"].pop(name, None)
    for name in MEMBER_OPTIMIZER:
        d["training"]["optimizer"].pop(name, None)
    for layer in d["model"]["layers"]:
        if layer.get("type") == "dropout":
            layer.pop("p", None)
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def packable(spec: JobSpec) -> str | None:
    """Why this spec cannot train packed, or None when it can."""
    t = spec.training
    if t.compile or t.precision != "fp32":
        return "compile and bf16 precision are not packed; train such trials alone"
    if spec.model.is_graph:  # the batched network is a chain; a graph's joins would be skipped
        return "functional graphs (names, inputs, joins, blocks) are not packed; train such trials alone"
    for i, layer in enumerate(spec.model.layers):
        if layer.type in ("conv2d", "maxpool2d", "avgpool2d", "batchnorm", "softmax", "log_softmax"):
            last = i == len(spec.model.layers) - 1 and layer.type in ("softmax", "log_softmax")
            if not last:  # a trailing softmax is folded into the loss
                return f"layer {i} ({layer.type}) is not packed; packs hold linear, activation, dropout, flatten, reshape and layernorm layers"
    return None


def group_packs(specs: list[JobSpec], most: int = MAX_PACK) -> list[list[int]]:
    """The indexes of `specs` grouped into packs (same pack_key, each packable, at most `most`
    members), in first-seen order; a spec that cannot pack is a group of its own."""
    groups: dict[str, list[list[int]]] = {}
    alone: list[list[int]] = []
    for i, spec in enumerate(specs):
        if packable(spec) is not None:
            alone.append([i])
            continue
        packs = groups.setdefault(pack_key(spec), [[]])
        if len(packs[-1]) == most:
            packs.append([])
        packs[-1].append(i)
    return sorted([p for packs in groups.values() for p in packs] + alone, key=lambda group: group[0])
