"""Data sets, splits and preprocessing, through the engine's public data API."""

import io

import numpy as np
import pytest
import torch

from netfit.spec import DatasetRef, JobSpec
from netfit.engine.data import (
    RawArrays, apply_preprocessing, describe, from_npz_bytes, load_data, load_raw, read_upload, signature_of,
    to_npz_bytes,
)
from netfit.engine.errors import DataError, SpecError


def spec(dataset, **kw) -> JobSpec:
    return JobSpec.model_validate({"dataset": dataset, "model": {"layers": [{"type": "linear", "units": 1}]}, **kw})


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def uploaded(content: bytes, filename: str, **kw):
    """What the service does: read the upload, store its canonical form, train from that."""
    stored = to_npz_bytes(read_upload(content, filename))
    return spec({"id": "d1"}, **kw), stored


# --------------------------------------------------------------------------- built-in and synthetic

@pytest.mark.parametrize("name, shape, n_classes, n", [
    ("iris", (4,), 3, 150), ("wine", (13,), 3, 178), ("breast_cancer", (30,), 2, 569), ("digits", (64,), 10, 1797),
])
def test_builtin_sets(name, shape, n_classes, n):
    sig = signature_of(spec({"builtin": name}))
    assert (sig.input_shape, sig.task, sig.n_classes, sig.n_samples) == (shape, "classification", n_classes, n)


SYNTHETIC = [
    {"kind": "classification", "n_features": 5, "n_classes": 3},
    {"kind": "moons"}, {"kind": "circles"}, {"kind": "blobs", "centers": 4, "n_features": 3},
    {"kind": "regression", "n_features": 4, "n_informative": 2, "n_targets": 2},
    {"kind": "linear"}, {"kind": "polynomial"},
]


@pytest.mark.parametrize("synthetic", SYNTHETIC, ids=[s["kind"] for s in SYNTHETIC])
def test_synthetic_sets_are_seeded_and_cheap_signature_agrees(synthetic):
    ref = DatasetRef.model_validate({"synthetic": synthetic})
    a, b = load_raw(ref), load_raw(ref)
    other = load_raw(DatasetRef.model_validate({"synthetic": {**synthetic, "seed": 1}}))
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, other.x)
    # the API's signature (computed without generating) is what the worker will get
    assert signature_of(spec({"synthetic": synthetic})) == describe(a)


def test_linear_set_is_the_lessons_line():
    raw = load_raw(DatasetRef.model_validate({"synthetic": {"kind": "linear", "n_samples": 500, "noise": 0.05}}))
    slope, intercept = np.polyfit(raw.x[:, 0], raw.y, 1)
    assert slope == pytest.approx(2.0, abs=0.05) and intercept == pytest.approx(0.9, abs=0.05)
    assert raw.x.min() >= 0 and raw.x.max() <= 1


def test_synthetic_size_is_capped_before_generating():
    big = spec({"synthetic": {"kind": "classification", "n_samples": 1_000_000, "n_features": 1000}})
    with pytest.raises(SpecError) as e:
        signature_of(big)
    assert e.value.errors[0]["loc"] == ["dataset", "synthetic", "n_samples"]


# --------------------------------------------------------------------------- splits

def test_split_fractions_are_stratified():
    data = load_data(spec({"builtin": "iris"}, split={"validation": 0.2, "test": 0.2}))
    assert (len(data.train.x), len(data.val.x), len(data.test.x)) == (90, 30, 30)
    for part in (data.train, data.val, data.test):  # iris has 50 of each class
        counts = torch.bincount(part.y, minlength=3)
        assert (counts == len(part.y) // 3).all()
    assert data.train.y.dtype == torch.int64 and data.train.x.dtype == torch.float32


def test_split_without_validation_or_test():
    data = load_data(spec({"builtin": "wine"}, split={"validation": 0, "test": 0}))
    assert data.val is None and data.test is None and len(data.train.x) == 178


def test_stratification_falls_back_when_a_class_is_too_small():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.array([0] * 19 + [1])  # one sample of class 1 cannot be in two parts
    s, stored = uploaded(npz(x=x, y=y), "tiny.npz", split={"validation": 0.25, "test": 0.25})
    data = load_data(s, stored)
    assert (len(data.train.x), len(data.val.x), len(data.test.x)) == (10, 5, 5)


def test_too_few_samples_for_the_split():
    s, stored = uploaded(npz(x=np.zeros((4, 2)), y=np.array([0.0, 1.0, 2.0, 3.0])), "t.npz",
                         split={"validation": 0.45, "test": 0.45})
    with pytest.raises(DataError, match="too few"):
        load_data(s, stored)


def test_splits_are_deterministic_by_seed():
    a, b = (load_data(spec({"builtin": "iris"})) for _ in range(2))
    c = load_data(spec({"builtin": "iris"}, split={"seed": 1}))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y)
    assert not torch.equal(a.train.x, c.train.x)


def test_given_test_split_is_used_as_is():
    rng = np.random.default_rng(0)
    x_test = rng.normal(size=(7, 3))
    s, stored = uploaded(npz(x_train=rng.normal(size=(40, 3)), y_train=rng.normal(size=40),
                             x_test=x_test, y_test=rng.normal(size=7)), "given.npz", split={"validation": 0.25, "test": 0.5})
    data = load_data(s, stored)
    assert data.signature.has_test_split and data.signature.task == "regression"
    assert (len(data.train.x), len(data.val.x)) == (30, 10)
    assert torch.allclose(data.test.x, torch.tensor(x_test, dtype=torch.float32))
    assert data.train.y.shape == (30, 1) and data.train.y.dtype == torch.float32


# --------------------------------------------------------------------------- preprocessing

def test_standardize_is_fitted_on_the_training_part_only():
    data = load_data(spec({"builtin": "wine"}, preprocess={"features": "standardize"}))
    assert data.train.x.mean(0).abs().max() < 1e-4
    assert data.val.x.mean(0).abs().max() > 1e-2  # fitted on train, so the val mean is not exactly 0
    full_mean = load_raw(DatasetRef(builtin="wine")).x.mean(0)
    assert not np.allclose(data.preprocessing["mean"], full_mean)


def test_minmax_and_inference_transform():
    data = load_data(spec({"builtin": "iris"}, preprocess={"features": "minmax"}))
    assert data.train.x.min().item() == 0 and data.train.x.max().item() == pytest.approx(1)
    raw = load_data(spec({"builtin": "iris"}))  # same split, not preprocessed
    again = apply_preprocessing(raw.test.x, data.preprocessing)
    assert torch.allclose(again, data.test.x)


@pytest.mark.parametrize("features", ["standardize", "minmax", "scale", "none"])
def test_preprocessing_leaves_the_read_data_as_it_was(features):
    # float32 features share memory with the tensors made of them; a worker reuses what it read
    rng = np.random.default_rng(0)
    raw = RawArrays(rng.normal(3, 2, size=(40, 3)).astype(np.float32), np.arange(40) % 2, classes=["a", "b"])
    before = raw.x.copy()
    s = spec({"id": "kept"}, preprocess={"features": features}, split={"validation": 0, "test": 0})
    first, second = load_data(s, raw=raw), load_data(s, raw=raw)
    assert np.array_equal(raw.x, before) and torch.equal(first.train.x, second.train.x)
    x = torch.from_numpy(before.copy())
    apply_preprocessing(x, first.preprocessing)
    assert np.array_equal(x.numpy(), before)


def test_images_keep_their_shape_and_integer_pixels_scale_by_255():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 200, size=(30, 6, 5), dtype=np.uint8)  # (N, H, W): one channel
    raw = read_upload(npz(x=x, y=(np.arange(30) % 3)[:, None]), "img.npz")  # labels as a column
    assert raw.x.shape == (30, 1, 6, 5) and raw.x.dtype == np.uint8 and raw.classes == ["0", "1", "2"]
    data = load_data(spec({"id": "i"}, preprocess={"features": "scale"}), to_npz_bytes(raw))
    assert data.signature.input_shape == (1, 6, 5) and data.preprocessing["scale"] == 255
    assert data.train.x.max().item() <= 200 / 255
    chw = read_upload(npz(x=rng.normal(size=(8, 3, 4, 4)), y=np.arange(8) % 2), "c.npz")
    assert chw.x.shape == (8, 3, 4, 4)


def test_standardize_images_per_channel():
    x = np.stack([np.full((10, 4, 4), 5.0), np.full((10, 4, 4), -3.0)], axis=1) + np.random.default_rng(0).normal(size=(10, 2, 4, 4))
    s, stored = uploaded(npz(x=x, y=np.arange(10) % 2), "c.npz", preprocess={"features": "standardize"},
                         split={"validation": 0, "test": 0})
    data = load_data(s, stored)
    assert len(data.preprocessing["mean"]) == 2
    assert data.train.x.mean((0, 2, 3)).abs().max() < 1e-5


# --------------------------------------------------------------------------- CSV and NPZ

CSV = b"sepal length,species,sepal width\n5.1,setosa,3.5\n7.0,versicolor,3.2\n6.3,virginica,3.3\n4.9,setosa,3.0\n"


def test_csv_named_target_column_with_text_labels():
    raw = read_upload(CSV, "flowers.csv", target="species")
    assert raw.classes == ["setosa", "versicolor", "virginica"]
    assert raw.y.tolist() == [0, 1, 2, 0] and raw.x.tolist()[0] == [5.1, 3.5]
    back = from_npz_bytes(to_npz_bytes(raw))  # the stored form keeps the class names
    assert back.classes == raw.classes and np.array_equal(back.x, raw.x) and np.array_equal(back.y, raw.y)


def test_csv_target_defaults_to_the_last_column_and_decimals_mean_regression():
    sig = describe(read_upload(b"a,b,price\n1,2,3.5\n4,5,6.25\n", "p.csv"))
    assert (sig.task, sig.input_shape, sig.n_classes) == ("regression", (2,), None)
    sig = describe(read_upload(b"a,b,label\n1,2,0\n4,5,1\n", "p.csv"))
    assert (sig.task, sig.n_classes) == ("classification", 2)


@pytest.mark.parametrize("content, target, message", [
    (b"a,b,y\n1,,0\n2,3,1\n", None, "line 2, column 'b': missing value"),
    (b"a,b,y\n1,2,0\n2,NA,1\n", None, "line 3, column 'b': missing value"),
    (b"a,b,y\n1,red,0\n2,3,1\n", None, "line 2, column 'b': 'red' is not a number"),
    (b"a,b,y\n1,inf,0\n2,3,1\n", None, "column 'b': inf is not finite"),
    (b"a,b,y\n1,2\n", None, "line 2 has 2 fields but the header has 3"),
    (b"a,b,y\n1,2,0\n", "label", "no column 'label'; its columns are ['a', 'b', 'y']"),
    (b"1,2,0\n3,4,1\n", None, "first row must name the columns"),
    (b"\x1f\x8b\x08\x00gzip", None, "not UTF-8 text"),
    (b"a,b,y\n1,2,0\n3,4,0\n", None, "single class"),
])
def test_csv_errors_name_line_and_column(content, target, message):
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_upload(content, "d.csv", target=target)


def test_npz_refuses_pickled_objects():
    content = io.BytesIO()
    np.savez(content, x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DataError, match="Python objects"):
        read_upload(content.getvalue(), "evil.npz")


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.array([[1.0], [np.nan]]), "y": np.array([0, 1])}, "'x' holds NaN or infinite values .first at index .1, 0."),
    ({"x": np.zeros((3, 2)), "y": np.array([0, 1])}, "array 'x' has 3 samples but array 'y' has 2"),
    ({"features": np.zeros((3, 2)), "y": np.array([0, 1, 0])}, "expected x, y or x_train, y_train"),
    ({"x": np.zeros((3, 2)), "y": np.array([0.5, np.inf, 1])}, "'y' holds NaN or infinite"),
    ({"x": np.zeros((3, 2, 2, 2, 2)), "y": np.array([0, 1, 0])}, "has shape .3, 2, 2, 2, 2."),
])
def test_npz_errors_name_the_array(arrays, message):
    with pytest.raises(DataError, match=message):
        read_upload(npz(**arrays), "d.npz")


def test_unknown_format_and_missing_upload():
    with pytest.raises(DataError, match="upload a .csv or a .npz"):
        read_upload(CSV, "flowers.csv.gz")
    with pytest.raises(DataError, match="not supplied"):
        load_data(spec({"id": "gone"}))


# --------------------------------------------------------------------------- a given validation set

def test_given_validation_set_is_used_as_is_and_preprocessing_is_fitted_on_train_only():
    rng = np.random.default_rng(0)
    x_train, x_val, x_test = rng.normal(3, 2, (40, 3)), rng.normal(size=(9, 3)), rng.normal(size=(7, 3))
    labels = np.array(["cat", "dog", "owl"])
    y_train, y_val, y_test = labels[np.arange(40) % 3], labels[[2] * 9], labels[np.arange(7) % 2]
    s, stored = uploaded(npz(x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test),
                         "given.npz", split={"validation": 0, "test": 0.5}, preprocess={"features": "standardize"})
    data = load_data(s, stored)
    assert data.signature.has_validation_split and data.signature.has_test_split
    assert data.signature.n_samples == 56 and data.classes == ["cat", "dog", "owl"]
    assert (len(data.train.x), len(data.val.x), len(data.test.x)) == (40, 9, 7)  # nothing drawn from x_train
    mean, std = x_train.mean(0), x_train.std(0)  # the training part's, applied to the given parts
    assert torch.allclose(data.val.x, torch.tensor((x_val - mean) / std, dtype=torch.float32), atol=1e-5)
    assert data.val.y.tolist() == [2] * 9 and data.test.y.tolist() == [0, 1] * 3 + [0]  # one encoding


def test_a_given_validation_set_without_a_test_set_still_draws_the_test_share():
    rng = np.random.default_rng(1)
    s, stored = uploaded(npz(x_train=rng.normal(size=(40, 2)), y_train=np.arange(40) % 2, x_val=rng.normal(size=(5, 2)),
                             y_val=np.arange(5) % 2), "val.npz", split={"validation": 0, "test": 0.25})
    data = load_data(s, stored)
    assert (len(data.train.x), len(data.val.x), len(data.test.x)) == (30, 5, 10)
    assert not data.signature.has_test_split and data.signature.has_validation_split


@pytest.mark.parametrize("arrays, message", [
    ({"x_val": np.zeros((3, 2)), "y_val": np.arange(3) % 2}, r"\['x_val', 'y_val'\] \(missing x_train, y_train\)"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.arange(4) % 2, "x_val": np.zeros((3, 2))}, r"\(missing y_val\)"),
    ({"x": np.zeros((4, 2)), "y": np.arange(4) % 2, "x_val": np.zeros((3, 2)), "y_val": np.arange(3) % 2},
     "name the training arrays x_train, y_train"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.arange(4) % 2, "x_val": np.zeros((3, 5)), "y_val": np.arange(3) % 2},
     r"array 'x_val' samples have shape \(5,\) but array 'x_train' samples \(2,\)"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.arange(4) % 2, "x_val": np.zeros((3, 2)), "y_val": np.arange(2)},
     "array 'x_val' has 3 samples but array 'y_val' has 2"),
])
def test_npz_validation_set_errors_name_the_arrays(arrays, message):
    with pytest.raises(DataError, match=message):
        read_upload(npz(**arrays), "d.npz")


def test_the_validation_set_is_part_of_the_content_digest_and_survives_storage():
    from netfit.engine.arrays import content_sha256

    rng = np.random.default_rng(2)
    x, y, x_val, y_val = rng.normal(size=(20, 2)), np.arange(20) % 2, rng.normal(size=(4, 2)), np.arange(4) % 2
    with_val = read_upload(npz(x_train=x, y_train=y, x_val=x_val, y_val=y_val), "a.npz")
    without = read_upload(npz(x=x, y=y), "b.npz")
    moved = read_upload(npz(x_train=x, y_train=y, x_test=x_val, y_test=y_val), "c.npz")  # the same arrays as a test set
    assert len({content_sha256(with_val), content_sha256(without), content_sha256(moved)}) == 3
    again = from_npz_bytes(to_npz_bytes(with_val))
    assert content_sha256(again) == content_sha256(with_val) and np.array_equal(again.x_val, x_val)
    assert describe(again).has_validation_split and not describe(without).has_validation_split


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "digits"])
def test_builtin_sets_read_from_sklearns_files_equal_its_loaders(name):
    """The built-in sets are read from the files scikit-learn ships, without importing it (a
    worker's first job saves 1.7 s): they must be exactly what its loaders return. Fails when a
    new scikit-learn moves or changes them (the loaders are then used, slower but right)."""
    from sklearn import datasets as skd

    from netfit.engine.sources.builtin import _shipped

    bunch = getattr(skd, f"load_{name}")()
    ours = _shipped(name)
    assert ours is not None, f"scikit-learn's {name} file is not where it was"
    np.testing.assert_array_equal(ours.x, bunch.data)
    np.testing.assert_array_equal(ours.y, bunch.target)
    assert ours.classes == [str(c) for c in bunch.target_names]
