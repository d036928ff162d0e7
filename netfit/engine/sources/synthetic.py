"""Synthetic data sets, seeded: scikit-learn's make_* generators and the lesson's line and
polynomial; their signature is known without making them."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..arrays import DataSignature, RawArrays, checked
from ..errors import SpecError

# synthetic sets are generated in memory: cap n_samples * n_features (float64) at ~400 MB
MAX_SYNTHETIC_VALUES = 50_000_000


def synthetic(s: Any) -> RawArrays:
    from sklearn import datasets as skd  # here: importing sklearn is a second of a process's start

    n, seed, signature = s.n_samples, s.seed, synthetic_signature(s)
    rng = np.random.default_rng(seed)
    if s.kind == "classification":
        # sklearn needs n_classes * n_clusters_per_class <= 2 ** n_informative; 2 clusters when they fit
        clusters = 2 if s.n_classes * 2 <= 2 ** min(s.n_informative, 30) else 1
        x, y = skd.make_classification(n, s.n_features, n_informative=s.n_informative, n_redundant=s.n_redundant,
                                       n_classes=s.n_classes, n_clusters_per_class=clusters, class_sep=s.class_sep,
                                       flip_y=s.flip_y, random_state=seed)
    elif s.kind == "moons":
        x, y = skd.make_moons(n, noise=s.noise, random_state=seed)
    elif s.kind == "circles":
        x, y = skd.make_circles(n, noise=s.noise, factor=s.factor, random_state=seed)
    elif s.kind == "blobs":
        x, y = skd.make_blobs(n, s.n_features, centers=s.centers, cluster_std=s.cluster_std, random_state=seed)
    elif s.kind == "regression":
        x, y = skd.make_regression(n, s.n_features, n_informative=min(s.n_informative, s.n_features),
                                   n_targets=s.n_targets, noise=s.noise, random_state=seed)
        return checked(x, y.astype(np.float64))
    elif s.kind == "linear":
        x = rng.uniform(s.x_min, s.x_max, (n, 1))
        return checked(x, (s.slope * x + s.intercept + s.noise * rng.standard_normal((n, 1)))[:, 0])
    else:  # polynomial: the Chebyshev polynomial of that degree, a smooth wiggle bounded by ±1 on [-1, 1]
        x = np.sort(rng.uniform(-1, 1, n))
        curve = np.polynomial.chebyshev.chebval(x, [0] * s.degree + [1])
        return checked(x[:, None], curve + s.noise * rng.standard_normal(n))
    return RawArrays(x, y.astype(np.int64), classes=[str(c) for c in range(signature.n_classes)])


def synthetic_signature(s: Any) -> DataSignature:
    """What synthetic() would make, without making it (the API checks specs with this)."""
    features = {"moons": 2, "circles": 2, "linear": 1, "polynomial": 1}.get(s.kind) or s.n_features
    if s.n_samples * features > MAX_SYNTHETIC_VALUES:
        raise SpecError.at(["dataset", "synthetic", "n_samples"], f"{s.n_samples} samples x {features} features is more "
                           f"than {MAX_SYNTHETIC_VALUES:,} values; use fewer samples or features")
    classes = {"classification": getattr(s, "n_classes", 0), "moons": 2, "circles": 2, "blobs": getattr(s, "centers", 0)}
    return DataSignature((features,), "classification" if s.kind in classes else "regression",
                         classes.get(s.kind), getattr(s, "n_targets", 1), s.n_samples, False)

