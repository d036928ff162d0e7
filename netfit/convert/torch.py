"""A `torch.nn.Sequential` (nested Sequentials too) of the layer types netfit knows, as netfit's
model spec. Input sizes (in_features, in_channels) are not carried: netfit infers them from the
data, and the converted network has the same parameters when the data has the sizes the
original expects."""

from __future__ import annotations

from typing import Any

from netfit.convert.common import SUPPORTED_TORCH, ConversionError, Converted

WEIGHTS_NOTE = "the torch module's weights are not carried: netfit trains the architecture from a fresh initialisation"
ACTIVATIONS = {"ReLU": "relu", "GELU": "gelu", "SiLU": "silu", "Sigmoid": "sigmoid", "Tanh": "tanh",
               "Softplus": "softplus", "Identity": "identity", "LogSoftmax": "log_softmax", "Softmax": "softmax"}
REFUSED_WHY = {"LSTM": "netfit has no recurrent layers", "GRU": "netfit has no recurrent layers",
               "RNN": "netfit has no recurrent layers", "Embedding": "netfit has no embedding layer"}


def from_torch(module: Any) -> Converted:
    import torch.nn as nn

    if not isinstance(module, nn.Sequential):
        raise ConversionError(f"a {type(module).__name__}: netfit reads a torch.nn.Sequential (its forward() is the "
                              "layers in order); a custom module's forward() cannot be read. Wrap its layers in "
                              "nn.Sequential")
    layers: list[dict] = []
    _walk(module, "model", layers)
    if not layers:
        raise ConversionError("the nn.Sequential is empty")
    return Converted({"layers": layers}, "torch", notes=[WEIGHTS_NOTE])


def _walk(sequential: Any, path: str, out: list[dict]) -> None:
    import torch.nn as nn

    for name, child in sequential.named_children():
        where = f"{path}.{name}"
        if isinstance(child, nn.Sequential):
            _walk(child, where, out)
        else:
            out.append(_layer(child, f"{where} ({type(child).__name__})"))


def _same(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return value[0] if len(set(value)) == 1 else list(value)
    return value


def _must(module: Any, where: str, **expected: Any) -> None:
    for key, want in expected.items():
        have = _same(getattr(module, key))
        if have != want:
            raise ConversionError(f"{where}: {key}={getattr(module, key)!r} cannot be expressed in netfit (it "
                                  f"supports {key}={want!r} only)")


def _layer(m: Any, where: str) -> dict:
    import torch.nn as nn

    cls = type(m).__name__
    if isinstance(m, nn.Linear):  # LazyLinear too
        return {"type": "linear", "units": m.out_features, "bias": m.bias is not None}
    if isinstance(m, nn.Conv2d):
        _must(m, where, dilation=1, groups=1, padding_mode="zeros")
        padding = m.padding if isinstance(m.padding, str) else _same(m.padding)
        if isinstance(padding, list):
            raise ConversionError(f"{where}: padding {m.padding} differs by side; netfit pads all sides alike")
        return {"type": "conv2d", "filters": m.out_channels, "kernel_size": _same(m.kernel_size),
                "stride": _same(m.stride), "padding": padding, "bias": m.bias is not None}
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        if isinstance(m, nn.MaxPool2d):
            _must(m, where, dilation=1, ceil_mode=False, return_indices=False)
        else:
            _must(m, where, ceil_mode=False, count_include_pad=True, divisor_override=None)
        stride = m.stride if m.stride is not None else m.kernel_size
        return {"type": "maxpool2d" if isinstance(m, nn.MaxPool2d) else "avgpool2d", "pool_size": _same(m.kernel_size),
                "stride": _same(stride), "padding": _same(m.padding)}
    if isinstance(m, nn.Flatten):
        _must(m, where, start_dim=1, end_dim=-1)
        return {"type": "flatten"}
    if isinstance(m, nn.Dropout):
        return {"type": "dropout", "p": m.p}
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        _must(m, where, affine=True, track_running_stats=True)
        if m.momentum is None:
            raise ConversionError(f"{where}: momentum=None (a cumulative average) cannot be expressed in netfit; "
                                  "give a momentum such as 0.1")
        return {"type": "batchnorm", "momentum": m.momentum, "eps": m.eps}
    if isinstance(m, nn.LayerNorm):
        if len(m.normalized_shape) != 1 or not m.elementwise_affine:
            raise ConversionError(f"{where}: netfit's layernorm normalises the last dimension with its own scale and "
                                  f"shift; normalized_shape {list(m.normalized_shape)} cannot be expressed")
        return {"type": "layernorm", "eps": m.eps}
    if isinstance(m, nn.LeakyReLU):
        return {"type": "leaky_relu", "negative_slope": m.negative_slope}
    if isinstance(m, nn.ELU):
        _must(m, where, alpha=1.0)
        return {"type": "elu"}
    if isinstance(m, nn.GELU):
        _must(m, where, approximate="none")
    if isinstance(m, nn.Softplus):
        _must(m, where, beta=1.0, threshold=20.0)
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)) and m.dim not in (1, -1, None):
        raise ConversionError(f"{where}: dim={m.dim}; netfit's {cls.lower()} runs over the classes (dim 1)")
    if cls in ACTIVATIONS and type(m).__module__.startswith("torch.nn"):
        return {"type": ACTIVATIONS[cls]}
    why = REFUSED_WHY.get(cls, f"netfit has no {cls} layer")
    raise ConversionError(f"{where}: {why}; netfit supports the torch modules {', '.join(SUPPORTED_TORCH)}")
