"""What the converters share: the result, the error and the layers they offer instead."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# the words a message offers instead of a layer netfit cannot express
SUPPORTED_KERAS = ("InputLayer", "Dense", "Conv2D", "MaxPooling2D", "AveragePooling2D", "Flatten", "Reshape",
                   "Dropout", "BatchNormalization", "LayerNormalization", "Activation", "ReLU", "LeakyReLU", "ELU",
                   "Softmax", "Add", "Concatenate")
SUPPORTED_TORCH = ("Sequential", "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "Dropout", "BatchNorm1d",
                   "BatchNorm2d", "LayerNorm", "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid", "Tanh",
                   "Softmax", "LogSoftmax", "Softplus", "Identity")


class ConversionError(ValueError):
    """A network netfit cannot express: the message names the layer, its path and the alternatives."""


@dataclass
class Converted:
    model: dict[str, Any]  # the spec's "model": {"layers": [...]} (and "blocks")
    source: str  # "spec", "keras" or "torch"
    spec: dict[str, Any] | None = None  # a whole job spec given: its other sections, as defaults
    channels_last: bool = False  # Keras images (N, H, W, C): sent as netfit's (N, C, H, W)
    notes: list[str] = field(default_factory=list)  # what a user should know (weights not carried, ...)
