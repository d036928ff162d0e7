"""The sweep request (examples/README.md, "Sweeps"): a base job spec, the parameters to vary, how to search.

Strict like netfit.spec (unknown fields and wrong JSON types refused, finite numbers only).
What needs the base spec (does a path exist, does each value give a valid job) is checked by
the API with `resolve`/`apply`, since it needs the job validation the API owns.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

from pydantic import Field, model_validator

from netfit.spec import MAX_PRIORITY, Metric, Strict, metric_mode

MAX_TRIALS = 1_000  # per sweep
MAX_PARAMETERS = 32
MAX_VALUES = 256  # per categorical parameter
MAX_PROBES = 512  # values dry-run at POST (each categorical value, both ends of each range)
MAX_CONCURRENT = 64  # trials of one sweep queued or running at once
MAX_PACK = 128  # members of one pack; a packing sweep may run this many trials at once


class Parameter(Strict):
    """Either `values` (a grid / categorical choice; any JSON value, e.g. a whole layer list)
    or `min`/`max` with a `distribution`."""

    values: list[Any] | None = Field(None, min_length=1, max_length=MAX_VALUES)
    min: float | int | None = None
    max: float | int | None = None
    distribution: Literal["uniform", "log_uniform", "int_uniform"] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Parameter:
        ranged = self.min is not None or self.max is not None or self.distribution is not None
        if self.values is not None and ranged:
            raise ValueError("give either 'values' or 'min'/'max' (with 'distribution'), not both")
        if self.values is None:
            if self.min is None or self.max is None:
                raise ValueError("give 'values', or both 'min' and 'max'")
            if not self.min < self.max:
                raise ValueError(f"'min' ({self.min}) must be below 'max' ({self.max})")
            kind = self.distribution or "uniform"
            if kind == "log_uniform" and self.min <= 0:
                raise ValueError(f"'log_uniform' needs 'min' > 0 (got {self.min}); use 'uniform' or a positive min")
            if kind == "int_uniform" and not (float(self.min).is_integer() and float(self.max).is_integer()):
                raise ValueError("'int_uniform' needs whole numbers for 'min' and 'max'")
        elif len({_key(v) for v in self.values}) != len(self.values):
            raise ValueError("'values' has duplicates; list each value once")
        return self

    @property
    def kind(self) -> str:
        return "categorical" if self.values is not None else (self.distribution or "uniform")

    def probes(self) -> list[Any]:
        """The values whose specs are validated before the sweep is stored: every categorical
        value, and both ends of a range (a range's inside lies between valid ends)."""
        if self.values is not None:
            return list(self.values)
        if self.kind == "int_uniform":
            return [int(self.min), int(self.max)]  # type: ignore[arg-type]
        return [float(self.min), float(self.max)]  # type: ignore[arg-type]


def _key(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


class Objective(Strict):
    metric: Metric = "val_loss"
    mode: Literal["min", "max"] | None = None

    @property
    def direction(self) -> Literal["min", "max"]:
        return self.mode or metric_mode(self.metric)


class Pruning(Strict):
    type: Literal["asha", "median", "none"] = "none"
    # asha: the first rung is at min_epochs, then min_epochs * reduction_factor**k;
    # median: every epoch from min_epochs on
    min_epochs: int = Field(1, ge=1, le=10_000)
    reduction_factor: int = Field(3, ge=2, le=10)


class SweepSpec(Strict):
    name: str | None = Field(None, max_length=200)
    spec: dict[str, Any]
    parameters: dict[str, Parameter] = Field(min_length=1, max_length=MAX_PARAMETERS)
    method: Literal["grid", "random", "tpe"] = "tpe"
    objective: Objective = Objective()
    max_trials: int | None = Field(None, ge=1, le=MAX_TRIALS)
    max_concurrent: int = Field(2, ge=1, le=MAX_PACK)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    pruning: Pruning = Pruning()
    # trials of one shape trained together on one worker as one batched model (issue 16 §3);
    # the API refuses a base spec or a parameter that would give trials different shapes
    packing: bool = False
    # the trials' priority (each trial runs with it, whatever the base spec says)
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    # when the sweep ends, the weights of all but its best this-many trials are removed (None: all kept)
    keep_best_trials: int | None = Field(None, ge=1, le=MAX_TRIALS)

    @model_validator(mode="after")
    def _searchable(self) -> SweepSpec:
        if self.max_concurrent > MAX_CONCURRENT and not self.packing:
            raise ValueError(f"max_concurrent {self.max_concurrent} is above {MAX_CONCURRENT}; lower it, or set "
                             f"'packing': true (a packing sweep may run up to {MAX_PACK} trials at once, as packs)")
        probes = sum(len(p.probes()) for p in self.parameters.values())
        if probes > MAX_PROBES:
            raise ValueError(f"the parameters list {probes} values in all, more than the {MAX_PROBES} that are "
                             "checked before a sweep starts; list fewer values or use ranges (min/max)")
        if self.method == "grid":
            ranged = [path for path, p in self.parameters.items() if p.values is None]
            if ranged:
                raise ValueError(f"method 'grid' needs 'values' for every parameter; {ranged[0]!r} has a range "
                                 "(list its values, or use method 'random' or 'tpe')")
            size = self.grid_size
            if size > MAX_TRIALS:
                raise ValueError(f"the grid has {size} points, more than {MAX_TRIALS} trials a sweep may run; "
                                 "list fewer values or set max_trials")
        elif self.max_trials is None:
            raise ValueError(f"method '{self.method}' needs 'max_trials' (only a grid has a natural size)")
        return self

    @property
    def grid_size(self) -> int:
        return math.prod(len(p.values or ()) for p in self.parameters.values())

    @property
    def trials(self) -> int:
        """How many trials the sweep runs: max_trials, or the whole grid (capped by max_trials)."""
        if self.method == "grid":
            return min(self.grid_size, self.max_trials or self.grid_size)
        return int(self.max_trials)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- paths into a spec


def split_path(path: str) -> list[str | int]:
    """'model.layers.0.units' -> ['model', 'layers', 0, 'units'] (numbers index lists)."""
    return [int(part) if part.isdigit() else part for part in path.split(".")]


def resolve(spec: dict[str, Any], path: str) -> str | None:
    """None if `path` names a value in `spec` (a full spec, defaults filled in); else why not."""
    from netfit.suggest import did_you_mean

    node: Any = spec
    walked: list[str] = []
    for part in split_path(path):
        where = ".".join(walked) or "the spec"
        if isinstance(node, list):
            if not isinstance(part, int):
                return f"{where} is a list; index it with a number (e.g. {where}.0)"
            if part >= len(node):
                return f"{where} has {len(node)} items (indexes 0..{len(node) - 1}), so {part} does not exist"
            node = node[part]
        elif isinstance(node, dict):
            if str(part) not in node:
                hint = did_you_mean(str(part), node.keys())
                return f"{where} has no field '{part}'" + (f"; did you mean '{hint}'?" if hint else
                                                             f"; it has {', '.join(sorted(node))}")
            node = node[str(part)]
        else:
            shown = "null" if node is None else repr(node)
            return f"{where} is {shown}, not an object or list; set it in the base spec first"
        walked.append(str(part))
    return None


def apply(spec: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of `spec` with each path set to its value (paths already checked by `resolve`)."""
    out = copy.deepcopy(spec)
    for path, value in params.items():
        *parents, last = split_path(path)
        node: Any = out
        for part in parents:
            node = node[part] if isinstance(node, list) else node[str(part)]
        if isinstance(node, list):
            node[int(last)] = copy.deepcopy(value)
        else:
            node[str(last)] = copy.deepcopy(value)
    return out
