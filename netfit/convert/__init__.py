"""Networks from elsewhere as netfit's model spec: a list of layer dicts, a whole job spec, a
Keras model or its config (`convert.keras`), a `torch.nn.Sequential` (`convert.torch`).

Only the architecture travels: netfit trains from a fresh initialisation, so weights are never
carried. Anything netfit cannot express is a ConversionError naming the layer, where it is and
what netfit supports instead, raised before anything is uploaded. Keras and torch are imported
only when the model given is one of theirs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from netfit.convert.common import ConversionError, Converted

__all__ = ["ConversionError", "Converted", "convert"]


def convert(model: Any) -> Converted:
    """`model` as netfit's model spec. Accepted: a list of layer dicts (PyTorch or Keras words),
    a model dict {"layers": [...]}, a whole job spec {"model": ..., "training": ...} (or a
    JobSpec), a keras.Model (Sequential or Functional), a Keras config dict or a .keras / .json
    file, a torch.nn.Sequential (nested Sequentials too)."""
    from netfit.spec import JobSpec

    if isinstance(model, JobSpec):
        model = model.model_dump(mode="json", exclude_unset=True)
    if isinstance(model, (str, Path)):
        return _from_file(Path(model))
    if isinstance(model, list):
        return Converted({"layers": model}, "spec")
    if isinstance(model, dict):
        if "class_name" in model or _keras_layers(model):
            from netfit.convert.keras import from_keras

            return from_keras(model)
        if "model" in model:
            return Converted(model["model"], "spec", spec=model)
        if "layers" in model:
            return Converted(model, "spec")
        raise ConversionError("a model dict needs 'layers' (netfit's model), 'model' (a whole job spec) or "
                              f"'class_name' (a Keras config); it has {sorted(model)[:8]}")
    kind = type(model).__module__.split(".")[0]
    if kind == "keras" or (kind == "tf_keras") or hasattr(model, "get_config") and hasattr(model, "count_params"):
        from netfit.convert.keras import from_keras

        return from_keras(model)
    if kind == "torch":
        from netfit.convert.torch import from_torch

        return from_torch(model)
    raise TypeError(f"model: cannot read a {type(model).__module__}.{type(model).__name__}; give a list of layer "
                    "dicts, a spec dict, a keras.Model, a Keras config or .keras file, or a torch.nn.Sequential")


def _keras_layers(model: dict) -> bool:
    layers = model.get("layers")
    return isinstance(layers, list) and bool(layers) and all(isinstance(x, dict) and "class_name" in x for x in layers)


def _from_file(path: Path) -> Converted:
    if path.suffix == ".keras":
        import zipfile

        try:
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
        except (OSError, KeyError, zipfile.BadZipFile, ValueError) as exc:
            raise ConversionError(f"cannot read the Keras file {path}: {exc}") from None
        from netfit.convert.keras import from_keras

        return from_keras(config)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConversionError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConversionError(f"{path} is not JSON ({exc}); give a .json spec, a Keras config or a .keras file") from None
    return convert(document)
