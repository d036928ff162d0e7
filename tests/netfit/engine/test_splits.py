"""netfit.engine.splits draws the held-out parts sklearn's train_test_split draws: a job's
validation and test rows are the ones they always were, without importing sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import train_test_split as sklearn_split

from netfit.engine.splits import train_test_split


def cases():
    rng = np.random.default_rng(0)
    for case in range(150):
        n = int(rng.integers(6, 400))
        k = int(rng.integers(1, n - 1))
        n_classes = int(rng.integers(2, 12))
        weights = rng.dirichlet(np.ones(n_classes) * rng.choice([0.3, 1.0, 5.0]))
        y = rng.choice(n_classes, size=n, p=weights)
        yield pytest.param(n, k, y, int(rng.integers(0, 2**32 - 1)), bool(case % 3), id=f"n{n}-k{k}-c{n_classes}-{case}")


@pytest.mark.parametrize(("n", "k", "y", "seed", "stratify"), list(cases()))
def test_the_same_rows_as_sklearn_in_the_same_order(n, k, y, seed, stratify):
    x = np.arange(n * 2).reshape(n, 2)
    try:
        expected = sklearn_split(x, y, test_size=k, random_state=seed, stratify=y if stratify else None)
    except ValueError:  # sklearn refuses to stratify this: so does the split
        with pytest.raises(ValueError):
            train_test_split(x, y, test_size=k, random_state=seed, stratify=y if stratify else None)
        return
    got = train_test_split(x, y, test_size=k, random_state=seed, stratify=y if stratify else None)
    for mine, theirs in zip(got, expected):
        np.testing.assert_array_equal(mine, theirs)
