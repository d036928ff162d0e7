"""Which value of a metric is better: the one home of "min" and "max" (a loss goes down, an
accuracy up: netfit.spec.metric_mode says which a metric is)."""

from __future__ import annotations

from collections.abc import Iterable


def better(value: float, than: float, mode: str) -> bool:
    """Whether `value` is strictly better than `than` for a metric of this mode ("min" or "max")."""
    return value < than if mode == "min" else value > than


def best(values: Iterable[float], mode: str) -> float | None:
    """The best of `values` (None when there are none)."""
    values = list(values)
    if not values:
        return None
    return min(values) if mode == "min" else max(values)


def rank(value: float | None, mode: str) -> tuple[bool, float]:
    """A sort key putting the best value first and no value last."""
    return (value is None, 0.0 if value is None else value if mode == "min" else -value)
