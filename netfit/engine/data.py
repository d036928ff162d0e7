"""Data sets: built-in, synthetic and uploaded (CSV, NPZ); seeded splits; preprocessing.

Labels are encoded once, when a data set is read: class labels (integers, booleans or text
with at most MAX_CLASSES distinct values) become codes 0..K-1 with their names in
`RawArrays.classes`; anything else is a real-valued target (regression).
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, NoReturn

import numpy as np
import torch
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split

from netfit.spec import MAX_SAMPLE_EPOCHS, MAX_SAMPLE_VALUES, MAX_SAMPLES, MAX_VALUES, DatasetRef, JobSpec, did_you_mean

from .errors import DataError, SpecError, UnsupportedFile

MAX_CLASSES = 1000
# synthetic sets are generated in memory: cap n_samples * n_features (float64) at ~400 MB
MAX_SYNTHETIC_VALUES = 50_000_000
MISSING = {"", "na", "n/a", "nan", "null", "none", "?", "-"}


@dataclass(frozen=True)
class DataSignature:
    input_shape: tuple[int, ...]  # per sample: (features,) or (channels, height, width)
    task: Literal["classification", "regression"]
    n_classes: int | None
    n_targets: int
    n_samples: int
    has_test_split: bool
    integer_max: float | None = None  # the largest feature value when features are integers (0-255 pixels), if known


@dataclass
class RawArrays:
    x: np.ndarray
    y: np.ndarray  # int64 codes when `classes` is set, else float targets (N,) or (N, k)
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    classes: list[str] | None = None


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


# --------------------------------------------------------------------------- labels and shapes

def _encode_labels(y: np.ndarray, y_test: np.ndarray | None, name: str):
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


def _raw(x, y, x_test=None, y_test=None, classes=None, names=("array 'x'", "array 'y'", "", "")) -> RawArrays:
    """Checked RawArrays; `classes` given means y is already encoded (the stored form)."""
    x, y = _check_x(np.asarray(x), names[0]), np.atleast_1d(y)
    if x_test is not None:
        x_test = _check_x(np.asarray(x_test), names[2])
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(f"{names[2]} samples have shape {x_test.shape[1:]} but {names[0]} samples {x.shape[1:]}")
    for xs, ys, xn, yn in ((x, y, names[0], names[1]), (x_test, y_test, names[2], names[3])):
        if xs is not None and len(ys) != len(xs):
            raise DataError(f"{xn} has {len(xs)} samples but {yn} has {len(ys)} labels; they must match")
    if classes is None:
        y, y_test, classes = _encode_labels(np.asarray(y), None if y_test is None else np.asarray(y_test), names[1])
    else:
        classes = [str(c) for c in classes]
        for a in (y, y_test):
            if a is not None and (a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= len(classes)):
                raise DataError(f"class codes must be integers 0..{len(classes) - 1}")
        y, y_test = y.astype(np.int64), None if y_test is None else y_test.astype(np.int64)
    return RawArrays(x, y, x_test, y_test, classes)


def describe(raw: RawArrays) -> DataSignature:
    n_test = 0 if raw.x_test is None else len(raw.x_test)
    return DataSignature(
        input_shape=tuple(int(s) for s in raw.x.shape[1:]),
        task="classification" if raw.classes is not None else "regression",
        n_classes=len(raw.classes) if raw.classes is not None else None,
        n_targets=int(raw.y.shape[1]) if raw.y.ndim == 2 else 1,
        n_samples=len(raw.x) + n_test,
        has_test_split=raw.x_test is not None,
        integer_max=float(raw.x.max()) if raw.x.dtype.kind in "iu" else None,
    )


# --------------------------------------------------------------------------- uploads

# A file is read as what its first bytes say it is, never by its name alone: a pickle or a
# torch checkpoint renamed .csv/.npz is refused, and nothing compressed is inflated blindly.
MAGIC = ((b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"),
         (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x93NUMPY", "npy"),
         (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))
PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
NPZ_LAYOUTS = ({"x", "y"}, {"x_train", "y_train"}, {"x_train", "y_train", "x_test", "y_test"})
# an .npz is a zip: its members' declared sizes are checked before any is inflated
MAX_NPZ_BYTES = 512 * 2**20
# a CSV is parsed cell by cell in Python; bigger tables travel as .npz
MAX_CSV_CELLS = 10_000_000
NEVER_UNPICKLED = "netfit never unpickles uploads: save numeric arrays with numpy.savez('data.npz', x=..., y=...)"


def _content_kind(content: bytes) -> str | None:
    if content.startswith(PICKLE_PROTOCOLS):
        return "pickle"
    return next((kind for magic, kind in MAGIC if content.startswith(magic)), None)


def read_upload(content: bytes, filename: str, target: str | None = None) -> RawArrays:
    """A CSV (header row; `target` names the label column, default the last) or an NPZ."""
    kind, lower = _content_kind(content), filename.lower()
    if kind == "pickle":
        raise UnsupportedFile(f"'{filename}' is a Python pickle; {NEVER_UNPICKLED} or as a CSV file")
    if lower.endswith(".npz"):
        if target is not None:
            raise DataError("'target' names a CSV column; an NPZ file gives its labels in array 'y'")
        if kind != "zip":
            raise UnsupportedFile(f"'{filename}' is not an .npz (zip) archive but {kind or 'something else'}; "
                                  "save it with numpy.savez('data.npz', x=..., y=...)")
        return _read_npz(content, filename)
    if lower.endswith(".csv"):
        if kind is not None:
            raise UnsupportedFile(f"'{filename}' is {kind} data, not UTF-8 text; upload the plain CSV "
                                  "(netfit neither decompresses nor guesses formats)")
        return _read_csv(content, filename, target)
    raise UnsupportedFile(f"cannot tell the format of '{filename}': upload a .csv or a .npz file (uncompressed CSV)")


def _read_npz(content: bytes, filename: str) -> RawArrays:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            arrays = _npz_arrays(archive, filename)
    except DataError:
        raise
    except (ValueError, OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile) as e:
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise DataError(f"cannot read '{filename}': it is not a valid .npz file ({why})") from None
    classes = arrays.get("classes")
    if classes is not None and (classes.ndim != 1 or len(classes) > MAX_CLASSES):
        raise DataError(f"'{filename}': array 'classes' must list at most {MAX_CLASSES} class names, one per code")
    if "x" in arrays:
        return _raw(arrays["x"], arrays["y"], classes=classes)
    return _raw(*(arrays.get(k) for k in ("x_train", "y_train", "x_test", "y_test")), classes,
                names=("array 'x_train'", "array 'y_train'", "array 'x_test'", "array 'y_test'"))


def _npz_arrays(archive: zipfile.ZipFile, filename: str) -> dict[str, np.ndarray]:
    members = archive.infolist()
    strays = [m.filename for m in members if not m.filename.endswith(".npy")]
    if strays:
        raise UnsupportedFile(f"'{filename}' holds {strays[:3]}, which are not numpy arrays (a torch checkpoint "
                              f"or a pickle?); {NEVER_UNPICKLED}")
    inflated = sum(m.file_size for m in members)
    if inflated > MAX_NPZ_BYTES:
        raise DataError(f"'{filename}' would decompress to {inflated:,} bytes, more than the limit of "
                        f"{MAX_NPZ_BYTES:,}; upload fewer samples or a smaller dtype (uint8 images)")
    keys = {m.filename[:-4] for m in members} - {"classes"}
    if keys not in NPZ_LAYOUTS:  # before reading any: a zip of a million members is read no further
        raise DataError(f"'{filename}' holds arrays {sorted(keys)[:10]}; expected x, y or x_train, y_train "
                        "(+ x_test, y_test)")
    return {m.filename[:-4]: _read_npy(archive, m, filename) for m in members}


def _read_npy(archive: zipfile.ZipFile, member: zipfile.ZipInfo, filename: str) -> np.ndarray:
    """One array, its header checked before its data is inflated or memory is allocated for it."""
    name = f"array '{member.filename[:-4]}' of '{filename}'"
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with archive.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version not in readers:
            raise DataError(f"{name} uses .npy format {version}; save it with numpy.savez")
        shape, _, dtype = readers[version](f)
    if dtype.hasobject:
        raise DataError(f"{name} holds Python objects; {NEVER_UNPICKLED}")
    if math.prod(shape) * dtype.itemsize > member.file_size:
        raise DataError(f"{name} declares shape {list(shape)} but holds less data; the file is damaged")
    _check_size(shape, name)
    with archive.open(member) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _check_size(shape: tuple[int, ...], name: str) -> None:
    """Samples, values per sample (features or pixels) and values in all, within the limits."""
    n, per = (shape[0], math.prod(shape[1:])) if shape else (1, 1)
    if n > MAX_SAMPLES:
        raise DataError(f"{name} has {n:,} samples, more than the limit of {MAX_SAMPLES:,}; upload fewer")
    if per > MAX_SAMPLE_VALUES:
        raise DataError(f"{name} has {per:,} values per sample (shape {list(shape[1:])}), more than the limit of "
                        f"{MAX_SAMPLE_VALUES:,}; downscale the images or select fewer features")
    if n * per > MAX_VALUES:
        raise DataError(f"{name} has {n * per:,} values, more than the limit of {MAX_VALUES:,}; "
                        "use fewer samples or features")


def _read_csv(content: bytes, filename: str, target: str | None) -> RawArrays:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"'{filename}' is not UTF-8 text (byte {e.start} is {content[e.start:e.start + 1]!r}); "
                        "save it as a plain UTF-8 CSV") from None
    try:
        header = [h.strip() for h in next(csv.reader(io.StringIO(text)), [])]
        lines = text.count("\n")  # counted before parsing: the parse holds every cell as a str
        if len(header) * lines > MAX_CSV_CELLS or lines > MAX_SAMPLES + 1:
            raise DataError(f"'{filename}' has about {lines:,} rows x {len(header):,} columns, more "
                            f"than {MAX_CSV_CELLS:,} cells or {MAX_SAMPLES:,} rows; upload big tables as .npz "
                            "(numpy.savez)")
        rows = [r for r in csv.reader(io.StringIO(text)) if r]
    except csv.Error as e:
        raise DataError(f"'{filename}' is not a readable CSV ({e}); check its quoting") from None
    if len(rows) < 2:
        raise DataError(f"'{filename}' needs a header row and at least one data row")
    if all(_number(h) is not None for h in header):
        raise DataError(f"'{filename}' starts with numbers; its first row must name the columns")
    repeated = sorted(h for h, count in Counter(header).items() if count > 1)
    if repeated:
        raise DataError(f"'{filename}' repeats the column name(s) {repeated}; give every column its own name")
    if target is None:
        col = len(header) - 1
    elif target in header:
        col = header.index(target)
    else:
        raise DataError(f"'{filename}' has no column '{target}'{_column_hint(target, header)}; "
                        f"its columns are {header[:50]}")
    if len(header) < 2:
        raise DataError(f"'{filename}' has one column; it needs feature columns and a target column")
    _check_size((len(rows) - 1, len(header) - 1), f"'{filename}'")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"'{filename}' line {line} has {len(row)} fields but the header has {len(header)}")
    labels = [row[col].strip() for row in rows[1:]]
    try:  # numpy converts all cells at once; on failure, look for the first bad cell to name it
        x = np.array([row[:col] + row[col + 1:] for row in rows[1:]], dtype=np.float64)
        ok = np.isfinite(x).all() and not any(v.lower() in MISSING for v in labels)
    except ValueError:
        ok = False
    if not ok:
        _explain(rows, header, col, filename)
    return _raw(x, _label_array(labels), names=(f"'{filename}'", f"'{filename}' column '{header[col]}'", "", ""))


def _column_hint(target: str, header: list[str]) -> str:
    """', but it has 'species' (names are case-sensitive)' or a did-you-mean, or ''."""
    same_case = [h for h in header if h.lower() == target.lower()]
    if same_case:
        return f", but it has '{same_case[0]}' (column names are case-sensitive): use target '{same_case[0]}'"
    guess = did_you_mean(target, header)
    return f" (did you mean '{guess}'?)" if guess else ""


def _explain(rows: list[list[str]], header: list[str], col: int, filename: str) -> NoReturn:
    for line, row in enumerate(rows[1:], start=2):
        for j, cell in enumerate(c.strip() for c in row):
            where = f"'{filename}' line {line}, column '{header[j]}'"
            if cell.lower() in MISSING:
                raise DataError(f"{where}: missing value; fill it or drop the row")
            v = _number(cell) if j != col else 0.0
            if v is None:
                raise DataError(f"{where}: '{cell[:50]}' is not a number; only the target column may hold text "
                                "(encode categories as numbers)")
            if not math.isfinite(v):
                raise DataError(f"{where}: {cell[:50]} is not finite; use finite numbers")
    raise DataError(f"'{filename}': its feature columns could not be read as numbers")


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _label_array(labels: list[str]) -> np.ndarray:
    """Integers stay integers (class labels), decimals become floats (targets), text stays text."""
    for kind, dtype in ((int, np.int64), (float, np.float64)):
        try:
            return np.array([kind(v) for v in labels], dtype=dtype)
        except (ValueError, OverflowError):
            pass
    return np.array(labels)


def to_npz_bytes(raw: RawArrays) -> bytes:
    arrays = {"x": raw.x, "y": raw.y}
    if raw.x_test is not None:
        arrays = {"x_train": raw.x, "y_train": raw.y, "x_test": raw.x_test, "y_test": raw.y_test}
    if raw.classes is not None:
        arrays["classes"] = np.array(raw.classes, dtype=str)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def from_npz_bytes(b: bytes) -> RawArrays:
    return _read_npz(b, "stored data set")


# --------------------------------------------------------------------------- built-in and synthetic

@lru_cache(maxsize=None)
def _builtin(name: str) -> RawArrays:
    # digits stay flat (64 features, pixel values 0..16) so that MLP specs work as in the lesson;
    # a reshape layer [1, 8, 8] turns them into images for a conv net.
    bunch = {"iris": skd.load_iris, "wine": skd.load_wine, "breast_cancer": skd.load_breast_cancer,
             "digits": skd.load_digits}[name]()
    return RawArrays(bunch.data, bunch.target.astype(np.int64), classes=[str(c) for c in bunch.target_names])


def _synthetic(s: Any) -> RawArrays:
    n, seed, signature = s.n_samples, s.seed, _synthetic_signature(s)
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
        return _raw(x, y.astype(np.float64))
    elif s.kind == "linear":
        x = rng.uniform(s.x_min, s.x_max, (n, 1))
        return _raw(x, (s.slope * x + s.intercept + s.noise * rng.standard_normal((n, 1)))[:, 0])
    else:  # polynomial: the Chebyshev polynomial of that degree, a smooth wiggle bounded by ±1 on [-1, 1]
        x = np.sort(rng.uniform(-1, 1, n))
        curve = np.polynomial.chebyshev.chebval(x, [0] * s.degree + [1])
        return _raw(x[:, None], curve + s.noise * rng.standard_normal(n))
    return RawArrays(x, y.astype(np.int64), classes=[str(c) for c in range(signature.n_classes)])


def _synthetic_signature(s: Any) -> DataSignature:
    """What _synthetic would make, without making it (the API checks specs with this)."""
    features = {"moons": 2, "circles": 2, "linear": 1, "polynomial": 1}.get(s.kind) or s.n_features
    if s.n_samples * features > MAX_SYNTHETIC_VALUES:
        raise SpecError.at(["dataset", "synthetic", "n_samples"], f"{s.n_samples} samples x {features} features is more "
                           f"than {MAX_SYNTHETIC_VALUES:,} values; use fewer samples or features")
    classes = {"classification": getattr(s, "n_classes", 0), "moons": 2, "circles": 2, "blobs": getattr(s, "centers", 0)}
    return DataSignature((features,), "classification" if s.kind in classes else "regression",
                         classes.get(s.kind), getattr(s, "n_targets", 1), s.n_samples, False)


def load_raw(dataset: DatasetRef, uploaded: bytes | None = None) -> RawArrays:
    if dataset.builtin is not None:
        return _builtin(dataset.builtin)
    if dataset.synthetic is not None:
        return _synthetic(dataset.synthetic)
    if uploaded is None:
        raise DataError(f"data set '{dataset.id}' was not supplied; upload it first (POST /v1/datasets)")
    return from_npz_bytes(uploaded)


def signature_of(spec: JobSpec, uploaded: bytes | None = None, stored: DataSignature | None = None) -> DataSignature:
    """What the data looks like, and whether the job's epochs x samples stay within the limit.
    `stored`: an upload's signature as recorded when it was read, so that its blob need not be."""
    if stored is not None:
        signature = stored
    elif spec.dataset.synthetic is not None:
        signature = _synthetic_signature(spec.dataset.synthetic)
    else:
        signature = describe(load_raw(spec.dataset, uploaded))
    epochs = spec.training.epochs
    if epochs * signature.n_samples > MAX_SAMPLE_EPOCHS:
        raise SpecError.at(["training", "epochs"], f"{epochs:,} epochs x {signature.n_samples:,} samples is more than "
                           f"{MAX_SAMPLE_EPOCHS:,} sample passes; use at most "
                           f"{MAX_SAMPLE_EPOCHS // signature.n_samples:,} epochs or fewer samples")
    return signature


# --------------------------------------------------------------------------- splits and preprocessing

def _split_off(x, y, fraction: float, n_total: int, stratify: bool, seed: int):
    """(x_rest, x_part, y_rest, y_part) with round(fraction * n_total) samples in the part."""
    k = max(1, round(fraction * n_total))
    if k >= len(x):
        raise DataError(f"{n_total} samples are too few for this split; lower split.validation/split.test or add data")
    try:  # stratify when every class can be split; else a plain shuffle, as documented
        return train_test_split(x, y, test_size=k, random_state=seed, stratify=y if stratify else None)
    except ValueError:
        return train_test_split(x, y, test_size=k, random_state=seed)


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


def load_data(spec: JobSpec, uploaded: bytes | None = None, raw: RawArrays | None = None) -> PreparedData:
    """`raw`: the spec's data set already read (it is not changed), else it is read here."""
    raw = raw if raw is not None else load_raw(spec.dataset, uploaded)
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
    if sp.validation > 0:
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
