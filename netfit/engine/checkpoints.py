"""Checkpoints without pickle: safetensors for tensors, JSON for everything else.

Weights are a plain safetensors file whose metadata holds epoch, metrics and the spec hash,
so any safetensors reader can open a downloaded checkpoint. The resume state
(TrainingState) is one safetensors file too: every tensor in it (weights, optimizer moments,
RNG states) is stored under its path in the state, e.g. "optimizer.state.0.exp_avg", and the
rest of the structure is JSON in the metadata with {"__tensor__": path} where a tensor was.
Nothing is ever unpickled, so a checkpoint from an untrusted place cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from netfit.spec import JobSpec

STATE_KEY = "netfit.training_state"


def spec_hash(spec: JobSpec) -> str:
    """A stable fingerprint of a spec: a checkpoint only resumes the run it came from."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _cpu(tensor: torch.Tensor) -> torch.Tensor:
    # a copy, so training on after the snapshot does not change it
    return tensor.detach().to("cpu", copy=True).contiguous()


def cpu_copy(obj: Any) -> Any:
    """A deep copy of nested dicts/lists/tuples with every tensor copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return _cpu(obj)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


def _read_metadata(b: bytes) -> dict[str, str]:
    # safetensors layout: 8-byte little-endian header length, then the JSON header
    n = int.from_bytes(b[:8], "little")
    try:
        header = json.loads(b[8 : 8 + n])
    except ValueError:  # also UnicodeDecodeError
        header = None
    if not isinstance(header, dict):
        raise ValueError("not a safetensors file: its header is not a JSON object")
    return header.get("__metadata__") or {}


def weights_to_bytes(state_dict: dict[str, torch.Tensor], metadata: dict[str, Any]) -> bytes:
    """A safetensors file; metadata values are stored JSON-encoded (safetensors wants strings)."""
    meta = {"format": "pt", **{k: json.dumps(v) for k, v in metadata.items()}}
    return save_tensors({k: _cpu(v) for k, v in state_dict.items()}, metadata=meta)


def weights_from_bytes(b: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    meta = {}
    for key, raw in _read_metadata(b).items():
        try:
            meta[key] = json.loads(raw)
        except ValueError:  # a plain string written by another tool, e.g. format="pt"
            meta[key] = raw
    return load_tensors(b), meta


# --------------------------------------------------------------------------- resume state


def _split(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able skeleton of `obj`; its tensors go into `tensors` keyed by their path."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = _cpu(obj)
        return {"__tensor__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _split(v, f"{path}.{k}", tensors) for k, v in obj.items()}
        # optimizer state is keyed by parameter index (int): keep the keys' type
        return {"__items__": [[k, _split(v, f"{path}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: _join(v, tensors) for k, v in obj["__items__"]}
        return {k: _join(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


@dataclass
class TrainingState:
    """Everything needed to continue a run exactly after `epoch` (1-based, completed)."""

    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # torch optimizer state_dict
    schedule: dict[str, Any] | None
    early_stopping: dict[str, Any]
    rng: dict[str, Any]  # see capture_rng
    best_weights: dict[str, torch.Tensor] | None
    best_epoch: int | None
    best_metrics: dict[str, float | None] | None
    history: list[dict[str, Any]]  # EpochReport fields per finished epoch
    spec_hash: str | None = None

    def to_bytes(self) -> bytes:
        tensors: dict[str, torch.Tensor] = {}
        skeleton = {f.name: _split(getattr(self, f.name), f.name, tensors) for f in fields(self)}
        return save_tensors(tensors, metadata={STATE_KEY: json.dumps(skeleton)})

    @classmethod
    def from_bytes(cls, b: bytes) -> TrainingState:
        meta = _read_metadata(b)
        if STATE_KEY not in meta:
            raise ValueError("not a netfit training state: the safetensors metadata has no training state")
        return cls(**_join(json.loads(meta[STATE_KEY]), load_tensors(b)))


# --------------------------------------------------------------------------- random number generators


def capture_rng(shuffle: torch.Generator) -> dict[str, Any]:
    """Every generator a run draws from: dropout (torch), the epoch shuffle, and python/numpy for
    anything else, so that a resumed run draws the same numbers as an uninterrupted one."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "python": [version, list(py_state), py_gauss],
        "numpy": [np_kind, np_keys.tolist(), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "shuffle": shuffle.get_state(),
        "shuffle_device": shuffle.device.type,
    }


def restore_rng(state: dict[str, Any], shuffle: torch.Generator) -> None:
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np.array(np_keys, dtype=np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    # a CPU and a CUDA generator keep different states: across devices the shuffle starts afresh
    if state["shuffle_device"] == shuffle.device.type:
        shuffle.set_state(state["shuffle"])
