"""The machine's cache of decoded uploads (worker/uploads.py), on the real file system."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from netfit.engine.data import RawArrays, to_npz_bytes
from worker import uploads


def stored(seed: int, n: int = 50) -> tuple[str, bytes, RawArrays]:
    rng = np.random.default_rng(seed)
    raw = RawArrays(rng.integers(0, 256, (n, 1, 4, 4), dtype=np.uint8), np.arange(n) % 3,
                    rng.integers(0, 256, (10, 1, 4, 4), dtype=np.uint8), np.arange(10) % 3, ["cat", "dog", "émeu"])
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
    for name in uploads.ARRAYS:
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
