"""Statistics of the training part only, and the transform they define (also at inference)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def fit_preprocessing(x: np.ndarray, kind: str) -> dict[str, Any]:
    """Statistics of the training part only: per feature, or per channel for images."""
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    if kind == "standardize":
        std = x.std(axis=axes)
        return {"features": kind, "mean": x.mean(axis=axes).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}
    if kind == "minmax":
        lo, hi = x.min(axis=axes), x.max(axis=axes)
        return {"features": kind, "min": lo.tolist(), "range": np.where(hi > lo, hi - lo, 1.0).tolist()}
    if kind == "scale":
        top = 255.0 if x.dtype == np.uint8 else float(np.abs(x).max())
        return {"features": kind, "scale": top or 1.0}
    return {"features": "none"}


def apply_preprocessing(x: torch.Tensor, preprocessing: dict[str, Any]) -> torch.Tensor:
    """The training transform, for any batch of samples (e.g. at inference)."""
    x = x.to(torch.float32, copy=True)  # a copy of its own: the steps below work in place (an MNIST-sized set is 200 MB)
    kind = preprocessing.get("features", "none")
    per = (lambda key: torch.tensor(preprocessing[key], dtype=torch.float32).reshape(
        (-1,) + (1,) * (x.dim() - 2)))  # per feature (F,), or per channel (C, 1, 1)
    if kind == "standardize":
        return x.sub_(per("mean")).div_(per("std"))
    if kind == "minmax":
        return x.sub_(per("min")).div_(per("range"))
    if kind == "scale":
        return x.div_(preprocessing["scale"])
    return x

