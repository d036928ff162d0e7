"""Using a trained network: load a self-describing checkpoint, predict on raw inputs, export
to ONNX.

A best/last checkpoint written by the worker carries, in its safetensors metadata, all that
is needed to rebuild and use the network without a server or a database: the normalised job
spec ("spec"), the data signature ("signature"), the preprocessing statistics of the
training split ("preprocessing") and the class names as the data set had them ("classes").
A checkpoint from before that still loads when the caller passes the job's spec and summary.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from netfit.spec import JobSpec

from .checkpoints import weights_from_bytes
from .data import DataSignature
from .layers import Head, build_model, resolve_head

MAX_INSTANCES = 10_000


class InputError(ValueError):
    """Instances that do not fit the model: `loc` names where (e.g. ["instances", 3, 1])."""

    def __init__(self, message: str, loc: list[str | int] | None = None):
        super().__init__(message)
        self.loc = loc or ["instances"]


class ExportError(ValueError):
    """The network cannot be exported; `layer` is the spec index of the layer to blame (or None)."""

    def __init__(self, message: str, layer: int | None = None):
        super().__init__(message)
        self.layer = layer


def model_metadata(spec: JobSpec, signature: DataSignature, preprocessing: dict[str, Any],
                   classes: list[str] | None) -> dict[str, Any]:
    """What a checkpoint needs to describe itself (merged into the weights' metadata)."""
    if classes is None and signature.task == "classification":
        classes = [str(i) for i in range(signature.n_classes or 0)]
    return {"spec": spec.model_dump(mode="json"), "signature": dataclasses.asdict(signature),
            "preprocessing": preprocessing, "classes": classes}


def signature_from_summary(summary: dict[str, Any]) -> DataSignature:
    """An old checkpoint's data signature, recovered from the job's model summary."""
    task = summary["task"]
    classification = task in ("classification", "binary")
    n = summary["n_outputs"]
    return DataSignature(tuple(summary["input_shape"]), "classification" if classification else "regression",
                         (2 if task == "binary" else n) if classification else None,
                         1 if classification else n, 0, False)


class TrainedModel(nn.Module):
    """A trained network that takes raw inputs: the job's preprocessing (its training split's
    statistics, as buffers, so that an export carries them) runs first. forward() returns the
    network's outputs (logits for classification); predict_proba() the probabilities.
    `.network` is the bare network, `.classes` the class names, `.task` the head's task."""

    def __init__(self, network: nn.Module, preprocessing: dict[str, Any], head: Head, signature: DataSignature,
                 classes: list[str] | None, metadata: dict[str, Any] | None = None):
        super().__init__()
        self.network, self.preprocessing, self.head, self.signature = network, preprocessing, head, signature
        self.task = head.task
        self.classes = classes
        self.metadata = metadata or {}
        kind = preprocessing.get("features", "none")
        per = (1,) * (len(signature.input_shape) - 1)  # per feature (F,), or per channel (C, 1, 1)
        shift = scale = None
        if kind == "standardize":
            shift, scale = preprocessing["mean"], preprocessing["std"]
        elif kind == "minmax":
            shift, scale = preprocessing["min"], preprocessing["range"]
        elif kind == "scale":
            shift, scale = [0.0], [preprocessing["scale"]]
        self.preprocess = shift is not None
        if self.preprocess:
            self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32).reshape((-1, *per)))
            self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).reshape((-1, *per)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        if self.preprocess:
            x = (x - self.shift) / self.scale
        return self.network(x)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, K); for regression the predicted values (N, targets). A
        trailing softmax/sigmoid is folded into the loss at training, so the outputs are logits."""
        out = self(x)
        if self.task == "binary":
            p = torch.sigmoid(out[:, :1])
            return torch.cat([1 - p, p], dim=1)
        if self.task == "classification":
            return torch.softmax(out, dim=1)
        return out

    def predict(self, x: torch.Tensor) -> list[Any]:
        """Labels as the data set had them (class names), or values for regression."""
        return outputs(self, self.predict_proba(x))["predictions"]


def load_model(source: str | Path | bytes, *, spec: dict[str, Any] | JobSpec | None = None,
               summary: dict[str, Any] | None = None, raw_inputs: bool = True) -> nn.Module:
    """A checkpoint (a path or its bytes) → a TrainedModel in eval mode (raw_inputs=False: the
    bare network). `spec` and `summary` (the job's) are needed only for a checkpoint written
    before checkpoints described themselves."""
    blob = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    state, meta = weights_from_bytes(bytes(blob))
    spec_doc = meta.get("spec") if isinstance(meta.get("spec"), dict) else None
    if spec_doc is not None:
        job_spec = JobSpec.model_validate(spec_doc)
        signature = DataSignature(**{**meta["signature"], "input_shape": tuple(meta["signature"]["input_shape"])})
    elif spec is not None and summary is not None:
        job_spec = spec if isinstance(spec, JobSpec) else JobSpec.model_validate(spec)
        signature = signature_from_summary(summary)
        meta = {**meta, "spec": job_spec.model_dump(mode="json")}
    else:
        raise ValueError("this checkpoint does not describe its network (it predates self-describing "
                         "checkpoints): load it with Client.load_model(job_id), which passes the job's spec")
    network = build_model(job_spec, signature)
    network.load_state_dict(state)
    head = resolve_head(job_spec, signature)
    classes = meta.get("classes")
    if classes is None and signature.task == "classification":
        classes = [str(i) for i in range(signature.n_classes or 0)]
    model = TrainedModel(network, meta.get("preprocessing") or {"features": "none"}, head, signature, classes, meta)
    return (model if raw_inputs else network).eval()


def model_bytes(model: nn.Module) -> int:
    """Memory its parameters and buffers hold (what a model cache counts)."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


# --------------------------------------------------------------------------- instances


def _shape_text(shape: tuple[int, ...]) -> str:
    return f"{shape[0]} feature{'s' * (shape[0] != 1)}" if len(shape) == 1 else f"shape {list(shape)}"


def _first_shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def _find_bad_number(value: Any, loc: list[str | int]) -> InputError | None:
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _find_bad_number(v, [*loc, i])
            if found is not None:
                return found
        return None
    where = "".join(f"[{p}]" if isinstance(p, int) else p for p in loc)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return InputError(f"{where} is {json.dumps(value)[:40]}, not a number; send numbers only", loc)
    if isinstance(value, float) and not math.isfinite(value):
        return InputError(f"{where} is {value}; send finite numbers (no NaN or infinity)", loc)
    return None


def instances_array(instances: Any, signature: DataSignature) -> np.ndarray:
    """Raw instances (JSON lists) → float32 (N, *input_shape); InputError naming what is wrong
    and the shape the model takes."""
    shape = tuple(signature.input_shape)
    expect = _shape_text(shape)
    # grey images may be sent as (H, W); a single feature as a bare number
    accepted = [shape] + ([shape[1:]] if len(shape) == 3 and shape[0] == 1 else []) + ([()] if shape == (1,) else [])
    if not isinstance(instances, list):
        raise InputError(f"instances must be a list of samples, each with {expect}")
    if not instances:
        raise InputError(f"instances is empty; send at least one sample with {expect}")
    if len(instances) > MAX_INSTANCES:
        raise InputError(f"{len(instances):,} instances is more than {MAX_INSTANCES:,} per request; send them in batches")
    try:  # numbers only: text, null or objects give another dtype (true among numbers reads as 1)
        x = np.array(instances)
    except (ValueError, TypeError):  # ragged
        x = None
    if x is not None and x.dtype.kind in "fiu" and x.shape[1:] in accepted and np.isfinite(x).all():
        return x.reshape((len(x), *shape)).astype(np.float32)
    for i, instance in enumerate(instances):
        got = tuple(_first_shape(instance))
        if got not in accepted:
            what = (f"{got[0]} value{'s' * (got[0] != 1)}" if len(got) == 1 else
                    f"shape {list(got)}" if got else "a single number")
            also = f" (or {list(shape[1:])} for a grey image)" if len(accepted) > 1 and len(shape) == 3 else ""
            raise InputError(f"instances[{i}] has {what} but the model takes {expect}{also}", ["instances", i])
    raise _find_bad_number(instances, ["instances"]) or InputError(
        f"instances could not be read as numbers; each sample takes {expect}")


def outputs(model: TrainedModel, proba: torch.Tensor) -> dict[str, Any]:
    """predictions (+ probabilities and classes for classification) as JSON-able lists."""
    values = proba.detach().cpu().to(torch.float64).numpy()
    if model.task == "regression":
        flat = values[:, 0].tolist() if values.shape[1] == 1 else values.tolist()
        return {"predictions": flat}
    classes = model.classes or [str(i) for i in range(values.shape[1])]
    return {"predictions": [classes[k] for k in values.argmax(axis=1)], "probabilities": values.tolist(),
            "classes": classes}


def predict(model: TrainedModel, instances: Any) -> dict[str, Any]:
    """Raw instances (lists) → {"predictions", "probabilities", "classes"} (values for regression)."""
    x = torch.from_numpy(instances_array(instances, model.signature))
    with torch.inference_mode():
        return outputs(model, model.predict_proba(x))


# --------------------------------------------------------------------------- ONNX


class _Exported(nn.Module):
    """What the ONNX graph computes: raw float32 inputs → probabilities (values for regression)."""

    def __init__(self, model: TrainedModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict_proba(x)


def _export(module: nn.Module, example: torch.Tensor) -> Any:
    import warnings

    batch = torch.export.Dim("batch", min=1, max=MAX_INSTANCES * 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.onnx.export(module, (example,), dynamo=True, dynamic_shapes=({0: batch},),
                                 input_names=["input"], output_names=["output"], verbose=False, report=False)


def _blame(model: TrainedModel) -> int | None:
    """The spec index of the first layer that cannot be exported on its own, or None."""
    spec = JobSpec.model_validate(model.metadata["spec"])
    if not isinstance(model.network, nn.Sequential):  # a graph: its nodes are not spec layers one to one
        return None
    x = torch.zeros((2, *model.signature.input_shape))
    modules = list(model.network)
    index = 0
    for i, layer in enumerate(spec.model.layers):
        # a layer with an activation builds two modules; a folded last activation none
        n = 1 + (getattr(layer, "activation", None) not in (None, "linear", "identity"))
        block = nn.Sequential(*modules[index:index + n])
        index += n
        if not len(block):
            continue
        try:
            _export(block.eval(), x)
        except Exception:  # noqa: BLE001 - any failure of the exporter blames this layer
            return i
        with torch.inference_mode():
            x = block(x)
    return None


def export_onnx(model: TrainedModel) -> bytes:
    """The network with its preprocessing inside the graph: input "input" (raw float32, any
    batch size), output "output" (probabilities, or values for regression); the class names,
    task and input shape in the model's metadata_props."""
    example = torch.zeros((2, *model.signature.input_shape))
    try:
        program = _export(_Exported(model).eval(), example)
    except Exception as exc:  # noqa: BLE001 - name the layer that the exporter refuses
        layer = _blame(model)
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # the exporter colours its messages
        reason = (text.splitlines() or [type(exc).__name__])[0][:300]
        if layer is None:
            raise ExportError(f"the network cannot be exported to ONNX: {reason}") from None
        kind = model.metadata["spec"]["model"]["layers"][layer]["type"]
        raise ExportError(f"layer {layer} ({kind}) cannot be exported to ONNX: {reason}", layer) from None
    proto = program.model_proto
    for key, value in (("classes", json.dumps(model.classes)), ("task", model.task),
                       ("input_shape", json.dumps(list(model.signature.input_shape))),
                       ("output", "probabilities" if model.task != "regression" else "values")):
        proto.metadata_props.add(key=key, value=value)
    return proto.SerializeToString()


def read_instances_npz(path: str | Path) -> list[Any]:
    """The samples of an .npz for predict: its array "x" (or its only array), as lists; never
    unpickled."""
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        if "x" not in names and len(names) != 1:
            raise ValueError(f"{path} holds arrays {names}; put the samples in an array named 'x'")
        return archive["x" if "x" in names else names[0]].tolist()
