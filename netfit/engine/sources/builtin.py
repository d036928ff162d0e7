"""Built-in data sets shipped with scikit-learn (no download)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from sklearn import datasets as skd

from ..arrays import RawArrays


@lru_cache(maxsize=None)
def builtin(name: str) -> RawArrays:
    # digits stay flat (64 features, pixel values 0..16) so that MLP specs work as in the lesson;
    # a reshape layer [1, 8, 8] turns them into images for a conv net.
    bunch = {"iris": skd.load_iris, "wine": skd.load_wine, "breast_cancer": skd.load_breast_cancer,
             "digits": skd.load_digits}[name]()
    return RawArrays(bunch.data, bunch.target.astype(np.int64), classes=[str(c) for c in bunch.target_names])
