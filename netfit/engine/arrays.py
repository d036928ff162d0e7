"""The in-memory form of a data set: checked arrays with labels encoded (RawArrays), and what
a network needs to know of it (DataSignature)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import DataError
from .labels import encode_labels

@dataclass(frozen=True)
class DataSignature:
    input_shape: tuple[int, ...]  # per sample: (features,) or (channels, height, width)
    task: Literal["classification", "regression"]
    n_classes: int | None
    n_targets: int
    n_samples: int
    has_test_split: bool
    integer_max: float | None = None  # the largest feature value when features are integers (0-255 pixels), if known
    has_validation_split: bool = False  # the data set brings its own validation set (x_val, y_val)


@dataclass
class RawArrays:
    x: np.ndarray
    y: np.ndarray  # int64 codes when `classes` is set, else float targets (N,) or (N, k)
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    classes: list[str] | None = None
    x_val: np.ndarray | None = None  # a given validation set, used as is (no share of x drawn)
    y_val: np.ndarray | None = None


# every array a data set may hold, as RawArrays and an .npz of the train/val/test layout name them
ARRAY_NAMES = ("x", "y", "x_val", "y_val", "x_test", "y_test")


def _check_x(x: np.ndarray, name: str) -> np.ndarray:
    """Per-sample features (N, F) or images (N, C, H, W); (N,) and (N, H, W) are widened."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"{name} has dtype {x.dtype}; features must be numbers")
    if x.dtype.kind == "b":
        x = x.astype(np.float32)
    if x.ndim in (1, 3):
        x = x[:, None]  # (N,) → (N, 1) feature; (N, H, W) grey images → one channel
    elif x.ndim not in (2, 4):
        raise DataError(f"{name} has shape {x.shape}; use (N, features), (N, H, W) or (N, C, H, W)")
    if len(x) == 0:
        raise DataError(f"{name} is empty")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        first = np.argwhere(~np.isfinite(x))[0]
        raise DataError(f"{name} holds NaN or infinite values (first at index {tuple(first.tolist())}); drop or fill them")
    return x


def checked(x, y, x_test=None, y_test=None, classes=None, names=("array 'x'", "array 'y'", "", ""),
            x_val=None, y_val=None, val_names=("", "")) -> RawArrays:
    """Checked RawArrays; `classes` given means y is already encoded (the stored form). A given
    validation set (x_val, y_val) is checked as the test set is, its labels encoded with the rest."""
    x, y = _check_x(np.asarray(x), names[0]), np.atleast_1d(y)
    parts = [(x_test, y_test, names[2], names[3]), (x_val, y_val, *val_names)]
    for i, (xs, ys, xn, yn) in enumerate(parts):
        if (xs is None) != (ys is None):
            given, missing = (xn, yn) if xs is not None else (yn, xn)
            raise DataError(f"{given} is given without {missing}; give both or neither")
        if xs is not None:
            xs = _check_x(np.asarray(xs), xn)
            if xs.shape[1:] != x.shape[1:]:
                raise DataError(f"{xn} samples have shape {xs.shape[1:]} but {names[0]} samples {x.shape[1:]}")
            parts[i] = (xs, np.atleast_1d(ys), xn, yn)
    (x_test, y_test, *_), (x_val, y_val, *_) = parts
    for xs, ys, xn, yn in ((x, y, names[0], names[1]), *parts):
        if xs is not None and len(ys) != len(xs):
            raise DataError(f"{xn} has {len(xs)} samples but {yn} has {len(ys)} labels; they must match")
    if classes is None:
        # one encoding for every part: the held-out labels are encoded with the training labels' classes
        held = [a for a in (y_val, y_test) if a is not None]
        if len(held) == 2 and held[0].shape[1:] != held[1].shape[1:]:
            raise DataError(f"{val_names[1]} has shape {y_val.shape} but {names[3]} {y_test.shape}; give labels "
                            "of one shape")
        y, rest, classes = encode_labels(np.asarray(y), np.concatenate(held) if held else None, names[1])
        if y_val is not None:
            y_val, y_test = rest[:len(y_val)], None if y_test is None else rest[len(y_val):]
        else:
            y_test = rest
    else:
        classes = [str(c) for c in classes]
        for a in (y, y_test, y_val):
            if a is not None and (a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= len(classes)):
                raise DataError(f"class codes must be integers 0..{len(classes) - 1}")
        y, y_test, y_val = (None if a is None else a.astype(np.int64) for a in (y, y_test, y_val))
    return RawArrays(x, y, x_test, y_test, classes, x_val, y_val)


def describe(raw: RawArrays) -> DataSignature:
    n_test = 0 if raw.x_test is None else len(raw.x_test)
    n_val = 0 if raw.x_val is None else len(raw.x_val)
    return DataSignature(
        input_shape=tuple(int(s) for s in raw.x.shape[1:]),
        task="classification" if raw.classes is not None else "regression",
        n_classes=len(raw.classes) if raw.classes is not None else None,
        n_targets=int(raw.y.shape[1]) if raw.y.ndim == 2 else 1,
        n_samples=len(raw.x) + n_val + n_test,
        has_test_split=raw.x_test is not None,
        integer_max=float(raw.x.max()) if raw.x.dtype.kind in "iu" else None,
        has_validation_split=raw.x_val is not None,
    )


def content_sha256(raw: RawArrays) -> str:
    """The digest of a checked data set's content: each array's name, dtype, shape and values,
    and the class names. The same arrays give the same digest however they were packed or
    compressed, so a client finds an upload it already made (GET /v1/datasets?sha256=)."""
    digest = hashlib.sha256()
    for key in ARRAY_NAMES:
        array = getattr(raw, key)
        if array is not None:
            array = np.ascontiguousarray(array)
            digest.update(f"{key}:{array.dtype.str}:{list(array.shape)};".encode())
            digest.update(memoryview(array).cast("B"))
    if raw.classes is not None:
        digest.update(json.dumps(raw.classes).encode())
    return digest.hexdigest()
