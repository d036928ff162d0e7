"""The machine's caches of decoded uploads (worker/uploads.py) and of prepared data
(worker/prepared_files.py), on the real file system."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from netfit.engine.data import RawArrays, load_data, to_npz_bytes
from netfit.spec import JobSpec
from worker import prepared_files, uploads


def stored(seed: int, n: int = 50) -> tuple[str, bytes, RawArrays]:
    rng = np.random.default_rng(seed)
    raw = RawArrays(rng.integers(0, 256, (n, 1, 4, 4), dtype=np.uint8), np.arange(n) % 3,
                    rng.integers(0, 256, (10, 1, 4, 4), dtype=np.uint8), np.arange(10) % 3, ["cat", "dog", "émeu"],
                    x_val=rng.integers(0, 256, (6, 1, 4, 4), dtype=np.uint8), y_val=np.arange(6) % 3)
    blob = to_npz_bytes(raw)
    return hashlib.sha256(blob).hexdigest(), blob, raw


@pytest.fixture(autouse=True)
def another_process():
    """Each test starts as a worker that has decoded nothing itself (it only sees the cache)."""
    uploads._kept.clear()
    yield
    uploads._kept.clear()


def test_an_upload_decoded_once_is_mapped_by_the_next_worker_as_it_was(tmp_path: Path):
    sha, blob, raw = stored(1)
    assert uploads.found(sha, tmp_path) is None
    uploads.decoded(sha, blob, tmp_path, limit_bytes=1 << 30)
    uploads._kept.clear()  # another worker of the machine
    mapped = uploads.found(sha, tmp_path)
    assert mapped is not None and mapped.classes == raw.classes
    for name in ("x", "y", "x_val", "y_val", "x_test", "y_test"):  # the given validation set too
        np.testing.assert_array_equal(getattr(mapped, name), getattr(raw, name))
    # a job may scale its copy in place; the cache keeps what was uploaded
    mapped.x[:] = 0
    uploads._kept.clear()
    np.testing.assert_array_equal(uploads.found(sha, tmp_path).x, raw.x)
    # and without the blob, a worker that holds nothing and finds nothing says so
    with pytest.raises(LookupError):
        uploads.decoded(stored(2)[0], None, tmp_path, limit_bytes=1 << 30)


def test_a_damaged_entry_is_dropped_and_the_blob_read_again(tmp_path: Path):
    sha, blob, raw = stored(1)
    uploads.decoded(sha, blob, tmp_path, limit_bytes=1 << 30)
    uploads._kept.clear()
    (tmp_path / sha / "x.npy").write_bytes(b"\x93NUMPY truncated")
    assert uploads.found(sha, tmp_path) is None and not (tmp_path / sha).exists()
    np.testing.assert_array_equal(uploads.decoded(sha, blob, tmp_path, limit_bytes=1 << 30).x, raw.x)
    assert (tmp_path / sha).is_dir()


def test_the_cache_stays_under_its_limit_dropping_the_least_recently_used(tmp_path: Path):
    (a, blob_a, _), (b, blob_b, _), (c, blob_c, _) = stored(1), stored(2), stored(3)
    uploads.decoded(a, blob_a, tmp_path, limit_bytes=1 << 30)
    one = sum(f.stat().st_size for f in (tmp_path / a).iterdir())
    uploads.decoded(b, blob_b, tmp_path, limit_bytes=1 << 30)
    # a is used again after b: b is now the least recently used (mtimes set apart explicitly,
    # the file system's clock may not tick between two calls)
    os.utime(tmp_path / b, (1, 1))
    uploads._kept.clear()
    assert uploads.found(a, tmp_path) is not None
    uploads.decoded(c, blob_c, tmp_path, limit_bytes=2 * one)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([a, c])


def mnist_like(n: int = 4_000) -> tuple[JobSpec, RawArrays]:
    """An upload's arrays (uint8 28x28 images, 10 classes) and a spec that scales them: 9 MB of
    float32 to train on, enough to be shared."""
    rng = np.random.default_rng(0)
    raw = RawArrays(rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8), np.arange(n) % 10,
                    classes=[str(c) for c in range(10)])
    spec = JobSpec.model_validate({"dataset": {"id": "d1"}, "preprocess": {"features": "scale"},
                                   "model": {"layers": [{"type": "flatten"}, {"type": "linear", "units": 10}]},
                                   "split": {"validation": 0.2, "test": 0.1}})
    return spec, raw


def test_data_prepared_by_one_worker_is_mapped_by_the_next_as_it_was(tmp_path: Path):
    spec, raw = mnist_like()
    made = load_data(spec, raw=raw)
    key = prepared_files.key_of("sha-of-the-upload", spec.split.model_dump_json(), spec.preprocess.model_dump_json())
    assert prepared_files.found(key, tmp_path) is None
    prepared_files.keep(key, made, tmp_path, limit_bytes=1 << 30)
    mapped = prepared_files.found(key, tmp_path)  # another worker of the machine
    assert mapped is not None
    assert (mapped.signature, mapped.preprocessing, mapped.classes) == (made.signature, made.preprocessing, made.classes)
    for part in ("train", "val", "test"):
        for a in ("x", "y"):
            assert torch.equal(getattr(getattr(mapped, part), a), getattr(getattr(made, part), a)), (part, a)
    mapped.train.x[:] = 0  # copy-on-write: what a worker does to its map stays its own
    assert torch.equal(prepared_files.found(key, tmp_path).train.x, made.train.x)
    # a damaged entry is removed, and the next worker prepares the data again
    (tmp_path / key / "train_x.npy").write_bytes(b"\x93NUMPY truncated")
    assert prepared_files.found(key, tmp_path) is None and not (tmp_path / key).exists()


def test_small_data_is_not_kept_preparing_it_costs_less_than_its_files(tmp_path: Path):
    spec, raw = mnist_like(n=300)
    prepared_files.keep("small", load_data(spec, raw=raw), tmp_path, limit_bytes=1 << 30)
    assert prepared_files.found("small", tmp_path) is None and list(tmp_path.iterdir()) == []
