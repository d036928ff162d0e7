"""A Keras model (Sequential or Functional) as netfit's model spec, read from its config, in
the Keras 3 and Keras 2 forms (`model.get_config()`, a serialized model dict, a .keras file's
config.json). Keras is not imported: a config is plain JSON."""

from __future__ import annotations

import json
import re
from typing import Any

from netfit.convert.common import SUPPORTED_KERAS, ConversionError, Converted

ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax", "linear": None,
               "elu": "elu", "gelu": "gelu", "silu": "silu", "swish": "silu", "softplus": "softplus",
               "leaky_relu": "leaky_relu", "log_softmax": "log_softmax"}
WEIGHTS_NOTE = "the Keras model's weights are not carried: netfit trains the architecture from a fresh initialisation"
REFUSED_WHY = {
    "Lambda": "a Lambda layer runs Python code, which a declarative spec cannot carry",
    "LSTM": "netfit has no recurrent layers", "GRU": "netfit has no recurrent layers",
    "SimpleRNN": "netfit has no recurrent layers", "Bidirectional": "netfit has no recurrent layers",
    "Embedding": "netfit has no embedding layer",
}


def from_keras(model: Any) -> Converted:
    """A keras.Model or its config (see the module) → Converted, with a note that weights stay behind."""
    kind, config = _config_of(model)
    config = json.loads(json.dumps(config, default=str))  # a live model's config holds tuples; JSON's does not
    layers = config.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ConversionError(f"the Keras {kind} has no 'layers' in its config: netfit reads a Sequential or "
                              "Functional model's layers (a subclassed keras.Model's call() cannot be read)")
    functional = "input_layers" in config or any(layer.get("inbound_nodes") for layer in layers)
    converted = Converted({"layers": []}, "keras", notes=[WEIGHTS_NOTE])
    if functional:
        converted.model["layers"] = _functional(config, converted)
    else:
        converted.model["layers"] = _sequential(layers, converted)
    if not converted.model["layers"]:
        raise ConversionError("the Keras model has no layers besides its input")
    return converted


def _config_of(model: Any) -> tuple[str, dict]:
    if isinstance(model, dict):
        if "class_name" in model and isinstance(model.get("config"), dict):
            return model["class_name"], model["config"]
        return "model config", model
    try:
        return type(model).__name__, model.get_config()
    except NotImplementedError:
        raise ConversionError(f"the Keras model {type(model).__name__} has no config (a subclassed keras.Model): "
                              "build it with keras.Sequential or the functional API") from None


def _sequential(layers: list[dict], converted: Converted) -> list[dict]:
    out = []
    for i, layer in enumerate(layers):
        cls, cfg = layer.get("class_name"), layer.get("config") or {}
        where = f"layers[{i}] '{cfg.get('name', cls)}' ({cls})"
        if cls in ("InputLayer", "Input"):
            continue
        out.append(_layer(cls, cfg, where, converted))
    return out


def _functional(config: dict, converted: Converted) -> list[dict]:
    inputs, outputs = _endpoints(config.get("input_layers")), _endpoints(config.get("output_layers"))
    if len(inputs) > 1 or len(outputs) > 1:
        raise ConversionError(f"the Keras model has {len(inputs)} inputs and {len(outputs)} outputs; netfit trains "
                              "networks with one input and one output")
    names: dict[str, str] = {}  # Keras layer name -> netfit node name
    out: list[dict] = []
    for i, layer in enumerate(config["layers"]):
        cls, cfg = layer.get("class_name"), layer.get("config") or {}
        keras_name = layer.get("name") or cfg.get("name") or f"layer{i}"
        where = f"layers[{i}] '{keras_name}' ({cls})"
        if cls in ("InputLayer", "Input"):
            names[keras_name] = "input"
            continue
        nodes = layer.get("inbound_nodes") or []
        if len(nodes) != 1:
            raise ConversionError(f"{where} is called {len(nodes)} times (shared weights); netfit's layers each "
                                  "have their own weights: make a layer per call")
        sources = _inbound(nodes[0])
        missing = [s for s in sources if s not in names]
        if missing:
            raise ConversionError(f"{where} takes {missing}, which come later or are not layers netfit reads")
        node = _layer(cls, cfg, where, converted)
        names[keras_name] = _node_name(keras_name, set(names.values()))
        out.append({**node, "name": names[keras_name], "inputs": [names[s] for s in sources]})
    if outputs and names.get(outputs[0]) != out[-1]["name"]:
        raise ConversionError(f"the Keras model's output is layer '{outputs[0]}', not its last layer; netfit's "
                              "output is the last layer: list the layers so that the output comes last")
    return out


def _endpoints(value: Any) -> list[str]:
    """[['input_layer', 0, 0]] (or one such triple) -> the layer names."""
    if not value:
        return []
    if isinstance(value[0], str):
        return [value[0]]
    return [v[0] for v in value]


def _inbound(node: Any) -> list[str]:
    """The layer names a call takes: Keras 3 {"args": [tensor or [tensors]]}; Keras 2 [[name, 0, 0, {}], ...]."""
    if isinstance(node, dict):
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, dict):
                history = (value.get("config") or {}).get("keras_history")
                if value.get("class_name") == "__keras_tensor__" and history:
                    found.append(history[0])
                    return
                for v in value.values():
                    walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        walk(node.get("args", []))
        return found
    return [entry[0] for entry in node]


def _node_name(name: str, taken: set[str]) -> str:
    """A netfit node name (a letter first, then letters, digits, _ or -; "input" is reserved)."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:60]
    if not clean[:1].isalpha():
        clean = f"l{clean}"[:60]
    base, n = clean, 1
    while clean in taken or clean == "input":
        clean, n = f"{base}_{n}", n + 1
    return clean


def _activation(value: Any, where: str) -> str | None:
    if isinstance(value, dict):  # Keras 3 may serialize a function: {"class_name": "function", "config": "relu"}
        value = value.get("config") if isinstance(value.get("config"), str) else value.get("class_name")
    if value is None:
        return None
    key = str(value).lower()
    if key not in ACTIVATIONS:
        raise ConversionError(f"{where}: netfit has no activation '{value}'; it supports "
                              f"{', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[key]


def _pair(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return value[0] if len(set(value)) == 1 else list(value)
    return value


def _must(cfg: dict, where: str, **expected: Any) -> None:
    """Settings netfit has no word for must keep the value that needs none."""
    for key, want in expected.items():
        have = cfg.get(key, want)
        have = _pair(have) if isinstance(have, (list, tuple)) else have
        if have != want and not (isinstance(want, tuple) and have in want):
            raise ConversionError(f"{where}: {key}={cfg.get(key)!r} cannot be expressed in netfit (it supports "
                                  f"{key}={want if not isinstance(want, tuple) else want[0]!r} only)")


def _no_regularizers(cfg: dict, where: str) -> None:
    for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                "bias_constraint"):
        if cfg.get(key):
            hint = " (for L2, use training.optimizer.weight_decay)" if "regularizer" in key else ""
            raise ConversionError(f"{where}: {key} cannot be expressed in netfit per layer; remove it{hint}")


def _channels(cfg: dict, converted: Converted) -> None:
    if cfg.get("data_format", "channels_last") == "channels_last":
        converted.channels_last = True


def _layer(cls: str | None, cfg: dict, where: str, converted: Converted) -> dict:
    if cls == "Dense":
        _no_regularizers(cfg, where)
        return {"type": "linear", "units": cfg["units"], "activation": _activation(cfg.get("activation"), where),
                "bias": cfg.get("use_bias", True)}
    if cls in ("Conv2D", "Convolution2D"):
        _no_regularizers(cfg, where)
        _must(cfg, where, dilation_rate=1, groups=1)
        _channels(cfg, converted)
        stride, padding = _pair(cfg.get("strides", 1)), cfg.get("padding", "valid")
        if padding == "same" and stride != 1:
            raise ConversionError(f"{where}: padding 'same' with strides {cfg.get('strides')} cannot be expressed "
                                  "in netfit (PyTorch pads 'same' at stride 1 only); use strides 1 or padding 'valid'")
        if padding not in ("same", "valid"):
            raise ConversionError(f"{where}: padding {padding!r}; netfit supports 'same' and 'valid'")
        return {"type": "conv2d", "filters": cfg["filters"], "kernel_size": _pair(cfg["kernel_size"]),
                "stride": stride, "padding": padding, "activation": _activation(cfg.get("activation"), where),
                "bias": cfg.get("use_bias", True)}
    if cls in ("MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D"):
        _channels(cfg, converted)
        pool = _pair(cfg.get("pool_size", 2))
        stride = _pair(cfg.get("strides")) if cfg.get("strides") is not None else pool
        return {"type": "maxpool2d" if cls.startswith("Max") else "avgpool2d", "pool_size": pool, "stride": stride,
                "padding": cfg.get("padding", "valid")}
    if cls == "Flatten":
        return {"type": "flatten"}
    if cls == "Reshape":
        shape = list(cfg["target_shape"])
        if len(shape) != 1:
            raise ConversionError(f"{where}: a Reshape to {shape} orders values channels-last, netfit's images are "
                                  "channels-first; netfit converts a Reshape to one dimension (a Flatten) only")
        return {"type": "reshape", "shape": shape}
    if cls == "Dropout":
        return {"type": "dropout", "p": cfg.get("rate", 0.5)}
    if cls == "BatchNormalization":
        _must(cfg, where, axis=(-1, 1, 3), center=True, scale=True)
        # Keras keeps momentum of the running average, PyTorch the weight of the new batch
        return {"type": "batchnorm", "momentum": round(1 - cfg.get("momentum", 0.99), 10),
                "eps": cfg.get("epsilon", 1e-3)}
    if cls == "LayerNormalization":
        _must(cfg, where, center=True, scale=True)
        return {"type": "layernorm", "eps": cfg.get("epsilon", 1e-3)}
    if cls == "Activation":
        return {"type": _activation(cfg.get("activation"), where) or "identity"}
    if cls == "ReLU":
        _must(cfg, where, max_value=None, negative_slope=0.0, threshold=0.0)
        return {"type": "relu"}
    if cls == "LeakyReLU":
        return {"type": "leaky_relu", "negative_slope": cfg.get("negative_slope", cfg.get("alpha", 0.3))}
    if cls == "ELU":
        _must(cfg, where, alpha=1.0)
        return {"type": "elu"}
    if cls == "Softmax":
        _must(cfg, where, axis=-1)
        return {"type": "softmax"}
    if cls == "Add":
        return {"type": "add"}
    if cls == "Concatenate":
        _must(cfg, where, axis=(-1, 1, 3))
        return {"type": "concat"}
    why = REFUSED_WHY.get(str(cls), f"netfit has no {cls} layer")
    raise ConversionError(f"{where}: {why}; netfit supports the Keras layers {', '.join(SUPPORTED_KERAS)}")
