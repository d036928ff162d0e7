"""The data a job trains on: its data set read (sources), split with a seed, preprocessed.

Modules: `arrays` (RawArrays, DataSignature, the checks every data set passes), `labels`
(class codes), `formats` (CSV/NPZ uploads and their guards, IDX), `sources` (built-in, synthetic,
uploaded), `downloads` (MNIST-like sets fetched once into a shared cache), `preprocessing`.
The names other code imports from here stay importable here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from netfit.spec import JobSpec

from .arrays import DataSignature, RawArrays, checked, describe
from .downloads import Downloads
from .errors import DataError
from .formats import from_npz_bytes, npz_arrays, read_upload, to_npz_bytes
from .preprocessing import apply_preprocessing, fit_preprocessing
from .sources import load_raw, signature_of
from .splits import train_test_split

__all__ = ["DataSignature", "Downloads", "PreparedData", "RawArrays", "Split", "apply_preprocessing", "describe",
           "fit_preprocessing", "from_npz_bytes", "load_data", "npz_arrays", "load_raw", "read_upload", "signature_of",
           "to_npz_bytes"]


@dataclass
class Split:
    x: torch.Tensor  # float32
    y: torch.Tensor  # int64 (N,) for classes, float32 (N, k) for regression


@dataclass
class PreparedData:
    train: Split
    val: Split | None
    test: Split | None
    signature: DataSignature
    preprocessing: dict[str, Any]
    classes: list[str] | None = None  # the class names as the data set had them (None: regression)


def _split_off(x, y, fraction: float, n_total: int, stratify: bool, seed: int):
    """(x_rest, x_part, y_rest, y_part) with round(fraction * n_total) samples in the part."""
    k = max(1, round(fraction * n_total))
    if k >= len(x):
        raise DataError(f"{n_total} samples are too few for this split; lower split.validation/split.test or add data")
    try:  # stratify when every class can be split; else a plain shuffle, as documented
        return train_test_split(x, y, test_size=k, random_state=seed, stratify=y if stratify else None)
    except ValueError:
        return train_test_split(x, y, test_size=k, random_state=seed)


def load_data(spec: JobSpec, uploaded: bytes | None = None, raw: RawArrays | None = None,
              downloads: Downloads | None = None) -> PreparedData:
    """`raw`: the spec's data set already read (it is not changed), else it is read here;
    `downloads`: where downloaded built-ins are cached and fetched from (default: ~/.cache/netfit)."""
    raw = raw if raw is not None else load_raw(spec.dataset, uploaded, downloads)
    if raw.classes is None and raw.y.dtype.kind in "biuUS":
        # labels not yet encoded (arrays built by hand): the one rule every upload follows, so
        # integer labels are classes here too
        raw = checked(raw.x, raw.y, raw.x_test, raw.y_test, x_val=raw.x_val, y_val=raw.y_val)
    signature = describe(raw)
    sp = spec.split
    stratify = sp.stratify and raw.classes is not None
    x, y, n = raw.x, raw.y, len(raw.x)
    if raw.x_test is not None:  # a given test split is used as is
        test = (raw.x_test, raw.y_test)
    elif sp.test > 0:
        x, x_te, y, y_te = _split_off(x, y, sp.test, n, stratify, sp.seed)
        test = (x_te, y_te)
    else:
        test = None
    val = None
    if raw.x_val is not None:  # a given validation set is used as is (the API refuses split.validation > 0 with it)
        val = (raw.x_val, raw.y_val)
    elif sp.validation > 0:
        x, x_va, y, y_va = _split_off(x, y, sp.validation, n, stratify, sp.seed)
        val = (x_va, y_va)
    prep = fit_preprocessing(x, spec.preprocess.features)

    def tensors(part):
        # copies: built-in sets and a worker's uploads are cached and must not share memory with a run's
        # tensors (apply_preprocessing copies the features)
        xs, ys = torch.as_tensor(part[0]), torch.tensor(part[1])
        return Split(apply_preprocessing(xs, prep), ys if raw.classes is not None else ys.reshape(len(ys), -1).float())

    return PreparedData(tensors((x, y)), tensors(val) if val else None, tensors(test) if test else None, signature, prep,
                        raw.classes)
