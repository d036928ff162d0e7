"""The job spec (v1): what a user POSTs to train a network.

Pydantic v2 models with `extra="forbid"` and finite numbers only, so a typo or a NaN is
refused with the field's path before anything is stored. Layer and option names accept
both the PyTorch and the Keras vocabulary; they are normalised to one canonical form.
Limits that need the data (shapes, output size, parameter count) are checked by the
engine's dry run, not here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator
from pydantic import Strict as NoCoercion

from netfit import spec_graph
from netfit.spec_graph import INPUT, JOINS
from netfit.suggest import did_you_mean

MAX_LAYERS = 64
MAX_UNITS = 65_536
MAX_EPOCHS = 10_000
MAX_PRIORITY = 100  # a job's priority is -MAX_PRIORITY..MAX_PRIORITY, higher first
MAX_SAMPLES = 1_000_000
# data sets: values per sample (features, or channels x height x width) and in all
MAX_SAMPLE_VALUES = 1_048_576
MAX_VALUES = 100_000_000
# epochs x samples: what one job may ask a worker to push through its network
MAX_SAMPLE_EPOCHS = 1_000_000_000
# ids of jobs and data sets: url-safe, so that a stray byte never reaches a query
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class Strict(BaseModel):
    # strict: JSON types as the schema says them (no "5" for 5, no 0 for false, no true for 1.0)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True, strict=True)


# --------------------------------------------------------------------------- data sets

# iris .. digits ship with scikit-learn; mnist and fashion_mnist are downloaded once per machine
BuiltinName = Literal["iris", "wine", "breast_cancer", "digits", "mnist", "fashion_mnist"]


class _Synthetic(Strict):
    n_samples: int = Field(200, ge=4, le=MAX_SAMPLES)
    seed: int = Field(0, ge=0, le=2**32 - 1)


class ClassificationSet(_Synthetic):
    kind: Literal["classification"]
    n_features: int = Field(20, ge=1, le=10_000)
    n_informative: int = Field(2, ge=1, le=10_000)
    n_redundant: int = Field(2, ge=0, le=10_000)
    n_classes: int = Field(2, ge=2, le=1_000)
    class_sep: float = Field(1.0, gt=0, le=100)
    flip_y: float = Field(0.01, ge=0, le=1)

    @model_validator(mode="after")
    def _fits(self) -> ClassificationSet:
        if self.n_informative + self.n_redundant > self.n_features:
            raise ValueError("n_informative + n_redundant must not exceed n_features")
        if self.n_classes > 2**self.n_informative:
            raise ValueError("n_classes must be at most 2 ** n_informative; raise n_informative")
        return self


class MoonsSet(_Synthetic):
    kind: Literal["moons"]
    noise: float = Field(0.1, ge=0, le=10)


class CirclesSet(_Synthetic):
    kind: Literal["circles"]
    noise: float = Field(0.05, ge=0, le=10)
    factor: float = Field(0.5, gt=0, lt=1)


class BlobsSet(_Synthetic):
    kind: Literal["blobs"]
    n_features: int = Field(2, ge=1, le=10_000)
    centers: int = Field(3, ge=2, le=1_000)
    cluster_std: float = Field(1.0, gt=0, le=100)


class RegressionSet(_Synthetic):
    kind: Literal["regression"]
    n_features: int = Field(10, ge=1, le=10_000)
    n_informative: int = Field(10, ge=1, le=10_000)
    n_targets: int = Field(1, ge=1, le=100)
    noise: float = Field(0.0, ge=0, le=1e6)


class LinearSet(_Synthetic):
    """The lesson's line: y = slope * x + intercept + noise, x uniform in [x_min, x_max]."""

    kind: Literal["linear"]
    slope: float = Field(2.0, ge=-1e6, le=1e6)
    intercept: float = Field(0.9, ge=-1e6, le=1e6)
    noise: float = Field(0.1, ge=0, le=1e6)
    x_min: float = Field(0.0, ge=-1e6, le=1e6)
    x_max: float = Field(1.0, ge=-1e6, le=1e6)


class PolynomialSet(_Synthetic):
    """A few noisy points of a smooth curve: a big network memorises them (over-fitting)."""

    kind: Literal["polynomial"]
    n_samples: int = Field(20, ge=4, le=MAX_SAMPLES)
    degree: int = Field(3, ge=1, le=10)
    noise: float = Field(0.2, ge=0, le=1e6)


SyntheticSet = Annotated[
    Union[ClassificationSet, MoonsSet, CirclesSet, BlobsSet, RegressionSet, LinearSet, PolynomialSet],
    Field(discriminator="kind"),
]


class DatasetRef(Strict):
    """Exactly one of `builtin`, `synthetic` or `id` (an uploaded data set)."""

    builtin: BuiltinName | None = None
    synthetic: SyntheticSet | None = None
    id: str | None = Field(None, pattern=ID_PATTERN)

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetRef:
        given = [k for k in ("builtin", "synthetic", "id") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'builtin' (iris, wine, breast_cancer, digits, mnist, fashion_mnist), "
                "'synthetic' ({'kind': ...}) or 'id' (an uploaded data set); got "
                + (", ".join(given) or "none")
            )
        return self


class Split(Strict):
    validation: float = Field(0.2, ge=0, lt=0.9, description=(
        "the share of the training data held out (seeded, stratified) to validate on after every epoch; 0: none. "
        "A data set that brings its own validation set (x_val, y_val) is validated on that, as is: this is then 0 "
        "(unset, it becomes 0; a share asked for is refused)"))
    test: float = Field(0.2, ge=0, lt=0.9)
    stratify: bool = True
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _leaves_training_data(self) -> Split:
        if self.validation + self.test > 0.9:
            raise ValueError("validation + test must be at most 0.9 so that data is left to train on")
        return self


class Preprocess(Strict):
    # standardize: zero mean/unit variance per feature; minmax: to [0, 1] per feature;
    # scale: divide by the data's max (integer pixels → [0, 1]); none: as given.
    features: Literal["none", "standardize", "minmax", "scale"] = "none"


# --------------------------------------------------------------------------- layers

Activation = Literal[
    "relu", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "softmax", "log_softmax",
    "softplus", "linear", "identity",
]
Size = Annotated[int, NoCoercion(), Field(ge=1, le=4096)]
# a JSON array or a Python tuple/list; its items as strict as the rest
IntPair = Union[Size, Annotated[tuple[Size, Size], NoCoercion(False)]]
Padding = Union[Annotated[int, Field(ge=0, le=1024)], Literal["same", "valid"]]

# Keras and PyTorch spellings (lower-cased, underscores removed) → canonical type.
LAYER_ALIASES: dict[str, str] = {
    "linear": "linear", "dense": "linear",
    "conv2d": "conv2d", "convolution2d": "conv2d",
    "maxpool2d": "maxpool2d", "maxpooling2d": "maxpool2d",
    "avgpool2d": "avgpool2d", "averagepooling2d": "avgpool2d",
    "flatten": "flatten", "reshape": "reshape",
    "dropout": "dropout",
    "batchnorm": "batchnorm", "batchnorm1d": "batchnorm", "batchnorm2d": "batchnorm",
    "batchnormalization": "batchnorm",
    "layernorm": "layernorm", "layernormalization": "layernorm",
    "activation": "activation",
    "relu": "relu", "leakyrelu": "leaky_relu", "elu": "elu", "gelu": "gelu",
    "silu": "silu", "swish": "silu", "sigmoid": "sigmoid", "tanh": "tanh",
    "softmax": "softmax", "logsoftmax": "log_softmax", "softplus": "softplus",
    "identity": "identity",
    "add": "add", "concat": "concat", "concatenate": "concat", "block": "block",
}


# a layer's name in a graph: no "." (a block's layers show as "r1.conv", after the block layer's name)
NodeName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
MAX_INPUTS = 16
MAX_BLOCKS = 16
MAX_NODES = 4 * MAX_LAYERS  # layers once every block is expanded


class _Node(Strict):
    """What any layer may carry in a functional graph: its `name`, and the names of the earlier
    layers it takes (`inputs`; default: the layer before it, or the input for the first)."""

    name: NodeName | None = None
    inputs: list[NodeName] | None = Field(None, min_length=1, max_length=MAX_INPUTS)

    @model_validator(mode="after")
    def _arity(self) -> _Node:
        n, t = len(self.inputs or ()), getattr(self, "type", "")
        if self.name == INPUT:
            raise ValueError(f"the name '{INPUT}' is reserved for the network's input; choose another name")
        if t in JOINS and n < 2:
            raise ValueError(f"{t} joins two or more layers: give their names in 'inputs', e.g. [\"a\", \"b\"]")
        if t not in JOINS and n > 1:
            raise ValueError(f"a {t} layer takes one input but 'inputs' names {n}: join them first with an add or "
                             "concat layer")
        return self

    @model_serializer(mode="wrap")
    def _as_before(self, handler: Any) -> dict[str, Any]:
        # a sequential spec dumps exactly as before graphs existed (its stored form and hash)
        out = handler(self)
        for key in ("name", "inputs"):
            if out.get(key) is None:
                out.pop(key, None)
        return out


class Linear(_Node):
    type: Literal["linear"]
    units: int = Field(ge=1, le=MAX_UNITS, validation_alias=AliasChoices("units", "out_features"))
    activation: Activation | None = None
    bias: bool = Field(True, validation_alias=AliasChoices("bias", "use_bias"))


class Conv2d(_Node):
    type: Literal["conv2d"]
    filters: int = Field(ge=1, le=4096, validation_alias=AliasChoices("filters", "out_channels"))
    kernel_size: IntPair
    stride: IntPair = Field(1, validation_alias=AliasChoices("stride", "strides"))
    padding: Padding = 0
    activation: Activation | None = None
    bias: bool = Field(True, validation_alias=AliasChoices("bias", "use_bias"))


class _Pool(_Node):
    pool_size: IntPair = Field(2, validation_alias=AliasChoices("pool_size", "kernel_size"))
    stride: IntPair | None = Field(None, validation_alias=AliasChoices("stride", "strides"))
    padding: Padding = 0


class MaxPool2d(_Pool):
    type: Literal["maxpool2d"]


class AvgPool2d(_Pool):
    type: Literal["avgpool2d"]


class Flatten(_Node):
    type: Literal["flatten"]


class Reshape(_Node):
    type: Literal["reshape"]
    # per-sample shape, without the batch dimension; one entry may be -1
    shape: list[Annotated[int, Field(ge=-1, le=MAX_UNITS * 16)]] = Field(
        min_length=1, max_length=4, validation_alias=AliasChoices("shape", "target_shape")
    )

    @field_validator("shape")
    @classmethod
    def _sizes(cls, shape: list[int]) -> list[int]:
        if 0 in shape or shape.count(-1) > 1:
            raise ValueError("every size must be positive, except at most one -1")
        return shape


class Dropout(_Node):
    type: Literal["dropout"]
    p: float = Field(0.5, ge=0, lt=1, validation_alias=AliasChoices("p", "rate"))


class BatchNorm(_Node):
    type: Literal["batchnorm"]
    momentum: float = Field(0.1, gt=0, le=1)
    eps: float = Field(1e-5, gt=0, le=1, validation_alias=AliasChoices("eps", "epsilon"))


class LayerNorm(_Node):
    type: Literal["layernorm"]
    eps: float = Field(1e-5, gt=0, le=1, validation_alias=AliasChoices("eps", "epsilon"))


class ActivationLayer(_Node):
    """A bare activation: `{"type": "relu"}` or Keras' `{"type": "Activation", "activation": "relu"}`."""

    type: Literal[
        "activation", "relu", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh",
        "softmax", "log_softmax", "softplus", "identity",
    ]
    activation: Activation | None = None
    negative_slope: float = Field(0.01, ge=0, le=10, validation_alias=AliasChoices("negative_slope", "alpha"))

    @model_validator(mode="after")
    def _named(self) -> ActivationLayer:
        if self.type == "activation":
            if self.activation is None:
                raise ValueError("an 'activation' layer needs 'activation', e.g. \"relu\"")
            self.type = "identity" if self.activation == "linear" else self.activation  # type: ignore[assignment]
            self.activation = None
        elif self.activation is not None:
            raise ValueError(f"'activation' belongs to dense/conv layers, not to '{self.type}'")
        return self


def _canonical_type(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        key = value["type"].lower().replace("_", "").replace("-", "")
        if key in LAYER_ALIASES:
            return {**value, "type": LAYER_ALIASES[key]}
    return value


class Add(_Node):
    """The element-wise sum of its `inputs` (equal shapes), e.g. a residual connection."""

    type: Literal["add"]


class Concat(_Node):
    """Its `inputs` side by side along the features (or channels) axis; the other sizes must match."""

    type: Literal["concat"]


class BlockLayer(_Node):
    """One use of a block of model.blocks: `{"type": "block", "block": "res", "name": "r1"}`."""

    type: Literal["block"]
    block: NodeName


Layer = Annotated[
    Union[Linear, Conv2d, MaxPool2d, AvgPool2d, Flatten, Reshape, Dropout, BatchNorm, LayerNorm, ActivationLayer,
          Add, Concat, BlockLayer],
    Field(discriminator="type"),
]


def _without_discriminator(schema: dict[str, Any]) -> None:
    # the OpenAPI discriminator would map a dozen activation names to ActivationLayer, which
    # schema tools (schemathesis) read as one name; the branches' distinct `type` values
    # already make the oneOf exact
    schema["items"].pop("discriminator", None)


class _Layers(Strict):
    layers: list[Layer] = Field(min_length=1, max_length=MAX_LAYERS, json_schema_extra=_without_discriminator)

    @field_validator("layers", mode="before")
    @classmethod
    def _aliases(cls, layers: Any) -> Any:
        if isinstance(layers, list):
            return [_canonical_type(layer) for layer in layers]
        return layers


class Block(_Layers):
    """A named sub-graph, defined once in model.blocks and used as a layer: inside it, "input" is
    what the block layer takes, and its output is its last layer's."""


class Model(_Layers):
    # a plain list of layers is a sequence; names, inputs, joins and blocks make it a graph
    blocks: dict[NodeName, Block] = Field(default_factory=dict, max_length=MAX_BLOCKS)

    @model_validator(mode="after")
    def _graph(self) -> Model:
        problem = spec_graph.graph_problem(self.layers, self.blocks, MAX_NODES)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def is_graph(self) -> bool:
        return spec_graph.is_graph(self.layers, self.blocks)

    @model_serializer(mode="wrap")
    def _as_before(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        if not out.get("blocks"):
            out.pop("blocks", None)
        return out


# --------------------------------------------------------------------------- training

Task = Literal["classification", "binary", "regression"]
Loss = Literal["cross_entropy", "bce", "mse", "mae", "huber"]
# the losses that fit each task; the first is the default
TASK_LOSSES: dict[str, tuple[str, ...]] = {"classification": ("cross_entropy",), "binary": ("bce",),
                                           "regression": ("mse", "mae", "huber")}
# what each task measures every epoch, on the training and the validation split
TASK_MEASURES: dict[str, tuple[str, ...]] = {"classification": ("loss", "accuracy"), "binary": ("loss", "accuracy"),
                                             "regression": ("loss", "rmse", "mae")}
SPLITS = ("train", "val")


def metric_names(task: str, validation: bool = True) -> tuple[str, ...]:
    """The metrics a job of `task` records each epoch (with a validation split or without):
    the one list the engine, the database, the wire models and the monitor checks derive from."""
    return tuple(f"{split}_{m}" for split in (SPLITS if validation else SPLITS[:1]) for m in TASK_MEASURES[task])


ALL_METRICS = tuple(dict.fromkeys(name for task in TASK_MEASURES for name in metric_names(task)))
Metric = Literal[ALL_METRICS]  # type: ignore[valid-type]  # any metric some job records


def metric_mode(metric: str) -> Literal["min", "max"]:
    """Whether a metric improves by going down or up: from what it measures, not its name."""
    return "max" if metric.endswith("accuracy") else "min"


Beta = Annotated[float, NoCoercion(), Field(ge=0, lt=1)]


class Optimizer(Strict):
    type: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"
    lr: float = Field(1e-3, gt=0, le=100)
    weight_decay: float = Field(0.0, ge=0, le=10)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    betas: Annotated[tuple[Beta, Beta], NoCoercion(False)] = (0.9, 0.999)

    @model_validator(mode="after")
    def _options_fit(self) -> Optimizer:
        if self.nesterov and (self.type != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs type 'sgd' and a momentum above 0")
        if self.momentum and self.type not in ("sgd", "rmsprop"):
            raise ValueError(f"momentum applies to sgd and rmsprop, not to {self.type}")
        return self


class StepLR(Strict):
    type: Literal["step"]
    step_size: int = Field(ge=1, le=MAX_EPOCHS)
    gamma: float = Field(0.1, gt=0, le=1)


class ExponentialLR(Strict):
    type: Literal["exponential"]
    gamma: float = Field(gt=0, le=1)


class CosineLR(Strict):
    type: Literal["cosine"]
    t_max: int | None = Field(None, ge=1, le=MAX_EPOCHS)  # default: the number of epochs
    eta_min: float = Field(0.0, ge=0, le=100)


class ReduceOnPlateau(Strict):
    type: Literal["reduce_on_plateau"]
    monitor: Metric = "val_loss"
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(10, ge=0, le=MAX_EPOCHS)
    min_lr: float = Field(0.0, ge=0, le=100)
    threshold: float = Field(1e-4, ge=0, le=1e6)


LRSchedule = Annotated[Union[StepLR, ExponentialLR, CosineLR, ReduceOnPlateau], Field(discriminator="type")]


class EarlyStopping(Strict):
    """A superset of Keras' EarlyStopping and Lightning's: patience counts epochs."""

    monitor: Metric = "val_loss"
    mode: Literal["min", "max"] | None = None  # default: from the metric (accuracy ↑, losses ↓)
    patience: int = Field(10, ge=0, le=MAX_EPOCHS)
    min_delta: float = Field(0.0, ge=0, le=1e6)
    min_delta_mode: Literal["abs", "rel"] = "abs"
    baseline: float | None = None
    start_from_epoch: int = Field(0, ge=0, le=MAX_EPOCHS)
    stopping_threshold: float | None = None
    divergence_threshold: float | None = None
    check_finite: bool = True
    restore_best_weights: bool = True

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        return self.mode or metric_mode(self.monitor)


class Training(Strict):
    task: Task | None = None  # default: from the data
    loss: Loss | None = None  # default: from the task
    epochs: int = Field(100, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(32, ge=1, le=65_536)
    shuffle: bool = Field(True, description=(
        "true: the training split's samples in a new order every epoch (seeded by seed); false: in one order every "
        "epoch (as Keras' shuffle=False): the data set's own when nothing is drawn from it (a given validation and "
        "test set, or shares of 0), else the order the seeded split leaves"))
    optimizer: Optimizer = Optimizer()
    lr_schedule: LRSchedule | None = None
    grad_clip: float | None = Field(None, gt=0, le=1e6)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    early_stopping: EarlyStopping | None = None
    seed: int = Field(0, ge=0, le=2**32 - 1)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d{1,2})?)$")
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast on CUDA
    compile: bool = False  # torch.compile on CUDA

    @model_validator(mode="after")
    def _loss_fits_task(self) -> Training:
        fits = TASK_LOSSES[self.task] if self.task else ()
        if self.task and self.loss and self.loss not in fits:
            raise ValueError(f"loss '{self.loss}' does not fit task '{self.task}'; use one of {sorted(fits)}")
        if self.label_smoothing and self.task in ("binary", "regression"):
            raise ValueError("label_smoothing applies to classification only")
        return self


class JobSpec(Strict):
    name: str | None = Field(None, max_length=200)

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str | None) -> str | None:
        # stored and shown: no NUL (PostgreSQL refuses it), control characters or lone surrogates
        if name is not None and not name.isprintable():
            raise ValueError("use printable text, without control characters")
        return name
    dataset: DatasetRef
    split: Split = Split()
    preprocess: Preprocess = Preprocess()
    model: Model
    training: Training = Training()
    # which queued job a free worker takes first (a tenant may be capped: `netfit tenants set`)
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)


# --------------------------------------------------------------------------- errors that teach

# Keras words a user may reach for, listed beside the canonical (PyTorch) tags in messages
KERAS_LAYER_WORDS = ("Dense", "Conv2D", "MaxPooling2D", "AveragePooling2D", "Flatten", "Reshape", "Dropout",
                     "BatchNormalization", "LayerNormalization", "Activation", "ReLU", "LeakyReLU", "Softmax",
                     "Add", "Concatenate")
# Keras arguments that give input sizes, which netfit infers from the data
INPUT_SIZE_FIELDS = ("input_shape", "input_dim", "batch_input_shape", "in_features", "in_channels")


def _quoted(text: str) -> list[str]:
    import re

    return re.findall(r"'([^']*)'", text)


def teach(error: dict[str, Any]) -> str:
    """A pydantic error's message, with what to change: the likely word, the accepted words
    in both vocabularies, "remove the quotes", or why a Keras argument is not needed."""
    kind, msg, value = error.get("type"), error.get("msg", "invalid value"), error.get("input")
    ctx, loc = error.get("ctx") or {}, list(error.get("loc") or ())
    field = loc[-1] if loc else None
    if kind == "union_tag_invalid" and "layers" in loc:
        tag = str(ctx.get("tag", value))
        guess = did_you_mean(tag, [*LAYER_ALIASES, *KERAS_LAYER_WORDS])
        hint = f"did you mean '{LAYER_ALIASES.get(guess, guess)}'? " if guess else ""
        return (f"unknown layer type '{tag}'; {hint}netfit accepts the PyTorch words "
                f"{', '.join(sorted(set(LAYER_ALIASES.values())))} and the Keras words {', '.join(KERAS_LAYER_WORDS)} "
                "(any case)")
    if kind == "literal_error" and isinstance(value, str):
        guess = did_you_mean(value, _quoted(str(ctx.get("expected", ""))))
        return f"{msg}; did you mean '{guess}'?" if guess else msg
    if kind in ("int_type", "float_type", "int_parsing", "float_parsing") and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return msg
        shown = value.strip() if kind.startswith("float") or not number.is_integer() else int(number)
        return f"{msg}; remove the quotes: write {shown}, not \"{value}\""
    if kind == "bool_type" and isinstance(value, str) and value.lower() in ("true", "false"):
        return f"{msg}; remove the quotes: write {value.lower()}, not \"{value}\""
    if kind == "extra_forbidden" and field in INPUT_SIZE_FIELDS:
        return (f"netfit infers every input size from the data (as PyTorch's Lazy layers and Keras' Input do); "
                f"remove '{field}'")
    return msg
