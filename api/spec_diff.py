"""What differs between job specs as their users wrote them: the compare page's table.

A stored spec is the validated one, every default filled in; the diff leaves the defaults out
(pydantic's exclude_defaults), so a row is a choice someone made. A sequence's layers are aligned
(difflib) before they are compared: a dropout layer that one job has and another has not is one
row, not a shift of every later layer."""

from __future__ import annotations

import difflib
import json
from typing import Any

ABSENT = None  # a field or layer the job does not have (the page shows "—")


def written(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec without its defaults (a spec that no longer validates is shown as stored)."""
    from netfit.spec import JobSpec

    try:
        return JobSpec.model_validate(spec).model_dump(mode="json", exclude_defaults=True)
    except ValueError:
        return spec


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = value
    return out


def _key(layer: Any) -> str:
    return json.dumps(layer, sort_keys=True)


def _aligned_layers(lists: list[list[Any]]) -> list[list[Any]]:
    """Rows of layers, one per position after alignment to the first job's layers: row[j] is job
    j's layer there, or ABSENT."""
    base = lists[0]
    at: list[list[Any]] = [[layer] + [ABSENT] * (len(lists) - 1) for layer in base]
    before: list[list[list[Any]]] = [[] for _ in range(len(base) + 1)]  # layers other jobs add before base[i]
    for j, layers in enumerate(lists[1:], start=1):
        ops = difflib.SequenceMatcher(None, [_key(x) for x in base], [_key(x) for x in layers], autojunk=False)
        for tag, i1, i2, j1, j2 in ops.get_opcodes():
            pairs = min(i2 - i1, j2 - j1) if tag in ("equal", "replace") else 0
            for k in range(pairs):
                at[i1 + k][j] = layers[j1 + k]
            for k in range(j1 + pairs, j2):  # more layers here than the first job: rows of their own
                row = [ABSENT] * len(lists)
                row[j] = layers[k]
                before[i1 + pairs].append(row)
    rows: list[list[Any]] = []
    for i in range(len(base)):
        rows += before[i] + [at[i]]
    return rows + before[len(base)]


def differences(specs: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """(field, one value per spec) for each field whose values differ, fields sorted, then the
    layers in network order as "model.layers.<i>" (i: the layer's index in each job, in the value)."""
    mine = [written(s) for s in specs]
    layer_lists = [m.get("model", {}).pop("layers", None) for m in mine]
    flat = [_flatten(m, "", {}) for m in mine]
    rows = []
    for field in sorted({k for f in flat for k in f}):
        values = [f.get(field, ABSENT) for f in flat]
        if len({_key(v) for v in values}) > 1:
            rows.append((field, values))
    if all(isinstance(x, list) for x in layer_lists):
        index = [0] * len(specs)
        for row in _aligned_layers(layer_lists):  # type: ignore[arg-type]
            shown = []
            for j, layer in enumerate(row):
                shown.append(ABSENT if layer is ABSENT else {"index": index[j], **layer})
                index[j] += layer is not ABSENT
            if len({_key(v) for v in row}) > 1:
                first = next(v["index"] for v in shown if v is not ABSENT)
                rows.append((f"model.layers.{first}", shown))
    elif any(x is not None for x in layer_lists):
        values = layer_lists
        if len({_key(v) for v in values}) > 1:
            rows.append(("model.layers", values))
    return rows
