"""Labels are encoded once, when a data set is read: class labels (integers, booleans or text
with at most MAX_CLASSES distinct values) become codes 0..K-1 with their names in
`RawArrays.classes`; anything else is a real-valued target (regression)."""

from __future__ import annotations

import numpy as np

from .errors import DataError

MAX_CLASSES = 1000


def encode_labels(y: np.ndarray, y_test: np.ndarray | None, name: str):
    """(y, y_test, classes): class codes and names for class labels, floats otherwise."""
    if y.dtype.kind not in "biufUS":  # complex, dates, records: no label or target we can train on
        raise DataError(f"{name} has dtype {y.dtype}; labels must be integers, text or real numbers")
    if y.dtype.kind in "biuUS" and y.shape[1:] == (1,):  # a column of labels
        y, y_test = y[:, 0], None if y_test is None else y_test[:, 0]
    both = y if y_test is None else np.concatenate([y, y_test])
    if y.dtype.kind in "biuUS" and y.ndim == 1:
        values = np.unique(both)
        if y.dtype.kind in "US" or len(values) <= MAX_CLASSES:
            if len(values) < 2:
                raise DataError(f"{name} holds a single class ('{values[0]}'); a classifier needs at least 2")
            codes = lambda a: None if a is None else np.searchsorted(values, a).astype(np.int64)  # noqa: E731
            return codes(y), codes(y_test), [str(v) for v in values]
    if y.dtype.kind in "US":
        raise DataError(f"{name} holds text labels but has shape {y.shape}; give one label per sample")
    if y.ndim not in (1, 2):
        raise DataError(f"{name} has shape {y.shape}; give one value per sample (N,) or a row of targets (N, k)")
    if not np.isfinite(both.astype(np.float64)).all():
        raise DataError(f"{name} holds NaN or infinite values; drop or fill those samples")
    as_float = lambda a: None if a is None else a.astype(np.float64)  # noqa: E731
    return as_float(y), as_float(y_test), None

