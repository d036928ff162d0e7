"""Built-in data sets: those shipped with scikit-learn (no download), and MNIST and
Fashion-MNIST, downloaded once into the machine's cache (netfit.engine.downloads)."""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..arrays import DataSignature, RawArrays, checked
from ..downloads import IDX_FILES, Downloads, fetch
from ..formats import read_idx

# class names as Keras and torchvision give them
DOWNLOADED_CLASSES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
}
# what the downloaded sets look like, known without downloading them, so that a spec is checked at once:
# 28x28 grey images (0-255), 10 classes, 60,000 training and 10,000 test images
SIGNATURES = {name: DataSignature((1, 28, 28), "classification", 10, 1, 70_000, True, integer_max=255.0)
              for name in DOWNLOADED_CLASSES}


@lru_cache(maxsize=None)
def builtin(name: str, downloads: Downloads | None = None) -> RawArrays:
    if name in DOWNLOADED_CLASSES:
        return _downloaded(name, downloads or Downloads())
    # digits stay flat (64 features, pixel values 0..16) so that MLP specs work as in the lesson;
    # a reshape layer [1, 8, 8] turns them into images for a conv net.
    shipped = _shipped(name)
    if shipped is not None:
        return shipped
    from sklearn import datasets as skd

    bunch = {"iris": skd.load_iris, "wine": skd.load_wine, "breast_cancer": skd.load_breast_cancer,
             "digits": skd.load_digits}[name]()
    return RawArrays(bunch.data, bunch.target.astype(np.int64), classes=[str(c) for c in bunch.target_names])


# scikit-learn's own files: a first line "rows,features,class names..." (digits: none, classes 0-9)
SHIPPED = {"iris": "iris.csv", "wine": "wine_data.csv", "breast_cancer": "breast_cancer.csv", "digits": "digits.csv.gz"}


def _shipped(name: str) -> RawArrays | None:
    """The file scikit-learn ships, read as its loaders read it, without importing sklearn (and
    scipy through it): 1.7 s of CPU in the first job of every worker process. None if the file
    is not where it was (the loaders are then used; a test compares both)."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0], "datasets", "data", SHIPPED[name])
    if not path.is_file():
        return None
    with (gzip.open(path, "rt") if path.suffix == ".gz" else path.open()) as f:
        if name == "digits":
            classes = [str(d) for d in range(10)]
        else:
            _rows, _features, *classes = next(f).strip().split(",")
        table = np.loadtxt(f, delimiter=",", ndmin=2)
    return RawArrays(table[:, :-1], table[:, -1].astype(np.int64), classes=classes)


def _downloaded(name: str, downloads: Downloads) -> RawArrays:
    """The published train/test split as is: (N, 1, 28, 28) uint8 images, labels as class codes."""
    paths = fetch(name, downloads)
    names = [f"'{paths[f]}'" for f in IDX_FILES]  # x_train, y_train, x_test, y_test
    arrays = [read_idx(paths[f].read_bytes(), where) for f, where in zip(IDX_FILES, names)]
    return checked(*arrays, classes=DOWNLOADED_CLASSES[name], names=tuple(names))
