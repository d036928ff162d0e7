"""Downloaded built-ins (mnist, fashion_mnist): fetched once from the mirrors in order, checked by
sha256, cached, shared under a lock — against a local mirror of small IDX files (tests/idx_mirror)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netfit.engine.data import Downloads, load_data, signature_of
from netfit.engine.downloads import REMOTE_SETS, fetch
from netfit.engine.errors import DataError
from netfit.engine.formats import read_idx
from netfit.engine.sources.builtin import SIGNATURES, builtin
from netfit.spec import JobSpec
from tests.conftest import wait_until
from tests.idx_mirror import FILES, Mirror, idx_bytes, make_set, write_manifest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def idx_set():
    return make_set()


@pytest.fixture
def manifest(tmp_path, idx_set) -> Path:
    return write_manifest(tmp_path / "manifest.json", idx_set[0])


def downloads(tmp_path: Path, manifest: Path, *mirrors: str) -> Downloads:
    return Downloads(tmp_path / "cache", mirror=",".join(mirrors), mirror_only=True, manifest=manifest)


def spec(name: str, **kw) -> JobSpec:
    return JobSpec.model_validate({"dataset": {"builtin": name}, "model": {"layers": [
        {"type": "flatten"}, {"type": "linear", "units": 10}]}, **kw})


def test_a_set_is_downloaded_once_cached_and_then_read_without_the_network(tmp_path, idx_set, manifest):
    files, arrays = idx_set
    with Mirror(files) as mirror:
        where = downloads(tmp_path, manifest, mirror.url())
        data = load_data(spec("mnist", split={"validation": 0.2}), downloads=where)
        assert mirror.served() == dict.fromkeys(FILES, 1)
        assert sorted(p.name for p in (tmp_path / "cache" / "mnist").glob("*.gz")) == sorted(FILES)
        # the published test split as is, images with one channel, pixels as they were
        assert data.test.x.shape == (20, 1, 28, 28) and len(data.train.x) + len(data.val.x) == 100
        assert np.array_equal(data.test.x[:, 0].numpy(), arrays["t10k-images-idx3-ubyte.gz"])
        assert data.classes == [str(d) for d in range(10)]

        # as a new process would (the in-memory copy dropped), read from the cache: no request at all
        builtin.cache_clear()
        load_data(spec("fashion_mnist"), downloads=where)  # the other set: its own downloads
        load_data(spec("mnist"), downloads=where)
        assert mirror.served() == dict.fromkeys(FILES, 1)
        assert mirror.served(name="fashion_mnist") == dict.fromkeys(FILES, 1)
    assert load_data(spec("fashion_mnist"), downloads=where).classes[0] == "T-shirt/top"


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "down"])
def test_a_bad_first_mirror_is_refused_and_the_next_one_used(tmp_path, idx_set, manifest, damage):
    with Mirror(idx_set[0], prefixes=("bad", "good")) as mirror:
        mirror.mode["bad"] = damage
        paths = fetch("mnist", downloads(tmp_path, manifest, mirror.url("bad"), mirror.url("good")))
        assert mirror.served("bad") == dict.fromkeys(FILES, 1) and mirror.served("good") == dict.fromkeys(FILES, 1)
    assert {f: p.read_bytes() for f, p in paths.items()} == idx_set[0]  # only the good copies entered the cache
    assert not [p for p in paths["t10k-images-idx3-ubyte.gz"].parent.iterdir() if p.name.endswith(".part")]


def test_a_wrong_file_in_the_cache_is_set_aside_and_downloaded_again(tmp_path, idx_set, manifest):
    """A file put there by hand (or by an older netfit) is checked too, not trusted for being there."""
    folder = tmp_path / "cache" / "mnist"
    folder.mkdir(parents=True)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the labels")
    with Mirror(idx_set[0]) as mirror:
        paths = fetch("mnist", downloads(tmp_path, manifest, mirror.url()))
        assert mirror.served() == dict.fromkeys(FILES, 1)
    assert paths["t10k-labels-idx1-ubyte.gz"].read_bytes() == idx_set[0]["t10k-labels-idx1-ubyte.gz"]
    assert (folder / "t10k-labels-idx1-ubyte.gz.rejected").read_bytes() == b"not the labels"


def test_every_mirror_failing_says_where_the_files_go_and_how_to_upload_instead(tmp_path, idx_set, manifest):
    with Mirror(idx_set[0], prefixes=("a", "b")) as mirror:
        mirror.mode.update(a="corrupt", b="down")
        where = downloads(tmp_path, manifest, mirror.url("a"), mirror.url("b"))
        with pytest.raises(DataError) as caught:
            load_data(spec("mnist"), downloads=where)
    message = str(caught.value)
    assert str(tmp_path / "cache" / "mnist") in message
    assert all(f in message for f in FILES) and "POST /v1/datasets" in message and ".npz" in message
    assert "sha256" in message and "HTTP 503" in message  # why each mirror failed
    assert not list((tmp_path / "cache" / "mnist").glob("*.gz"))


def test_the_real_check_uses_the_published_digests(tmp_path, idx_set):
    """Without the test-only manifest, the local files are refused: they are not the published ones."""
    with Mirror(idx_set[0]) as mirror:
        with pytest.raises(DataError, match="is not the published 440fcabf73cc"):
            fetch("mnist", Downloads(tmp_path / "cache", mirror=mirror.url(), mirror_only=True))
    assert REMOTE_SETS["mnist"].mirrors[0].startswith("https://")


def test_two_processes_at_once_download_once(tmp_path, idx_set, manifest):
    """`netfit datasets fetch` twice at once: the second waits on the lock while the first
    downloads (the mirror holds its answer until the second is seen blocked), then finds the files."""
    cache = tmp_path / "cache"
    with Mirror(idx_set[0]) as mirror:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NETFIT_")}
        env.update(PYTHONPATH=str(ROOT), NETFIT_DATASET_DIR=str(cache), NETFIT_DATASET_MIRROR=mirror.url(),
                   NETFIT_DATASET_MIRROR_ONLY="1", NETFIT_DATASET_MANIFEST=str(manifest))
        fetch_cmd = [sys.executable, "-c", "import sys; from netfit.cli import main; sys.exit(main())",
                     "datasets", "fetch", "mnist"]
        mirror.release.clear()
        first = subprocess.Popen(fetch_cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(mirror.held.is_set, timeout=30, what="the first download to start")
            second = subprocess.Popen(fetch_cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            lock = os.stat(cache / "mnist" / ".lock").st_ino
            wait_until(lambda: any("->" in line and f":{lock} " in line for line in open("/proc/locks")),
                       timeout=30, what="the second process to wait on the lock")
        finally:
            mirror.release.set()
        outputs = [p.communicate(timeout=60)[0] for p in (first, second)]
        assert [p.returncode for p in (first, second)] == [0, 0], outputs
        assert mirror.served() == dict.fromkeys(FILES, 1)
    assert "downloaded 4 of 4 files to" in outputs[0] and f"already in {cache / 'mnist'}" in outputs[1]


def test_the_signature_is_known_without_downloading(tmp_path):
    for name in ("mnist", "fashion_mnist"):
        signature = signature_of(spec(name))
        assert signature.input_shape == (1, 28, 28) and signature.n_classes == 10
        assert signature.n_samples == 70_000 and signature.has_test_split and signature.integer_max == 255
    assert SIGNATURES.keys() == REMOTE_SETS.keys()


def test_idx_files_are_read_and_damaged_ones_refused():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(idx_bytes(images), "x"), images)
    counts = np.array([1, -2, 70_000], dtype=np.int32)
    assert np.array_equal(read_idx(idx_bytes(counts), "x"), counts)
    with pytest.raises(DataError, match="declares shape \\[2, 3, 4\\]"):
        read_idx(idx_bytes(images)[:-1], "'train-images'")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(b"PK\x03\x04", "x")
