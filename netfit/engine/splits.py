"""The held-out parts of a data set: the very indices sklearn's train_test_split draws (shuffled,
or stratified as its StratifiedShuffleSplit does), drawn here with numpy alone. Importing
sklearn.model_selection pulls scipy.stats and pandas: a second of every worker's start.
tests/netfit/engine/test_splits.py holds them equal to sklearn's."""

from __future__ import annotations

import numpy as np


def train_test_split(x: np.ndarray, y: np.ndarray, *, test_size: int, random_state: int,
                     stratify: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_test, y_train, y_test) with `test_size` samples held out, as sklearn's
    train_test_split(x, y, test_size=int, random_state=int, stratify=...) returns them.
    ValueError where sklearn's stratified split refuses (a class of one sample, fewer samples
    in a part than classes)."""
    train, test = _indices(len(x), test_size, np.random.RandomState(random_state), stratify)
    return x[train], x[test], y[train], y[test]


def _indices(n: int, n_test: int, rng: np.random.RandomState, stratify: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    n_train = n - n_test
    if stratify is None:
        permutation = rng.permutation(n)
        return permutation[n_test:n_test + n_train], permutation[:n_test]
    classes, y_indices, class_counts = np.unique(stratify, return_inverse=True, return_counts=True)
    if class_counts.min() < 2 or n_train < len(classes) or n_test < len(classes):
        raise ValueError("too few samples of a class, or in a part, to stratify")
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        shuffled = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(shuffled[:n_i[i]])
        test.extend(shuffled[n_i[i]:n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of n_draws each class gets: its share floored, the samples left over going to
    the largest remainders, ties broken by rng (sklearn.utils.extmath._approximate_mode)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)
