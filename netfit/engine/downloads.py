"""Data sets downloaded once (MNIST, Fashion-MNIST) into a cache that every worker of a machine
shares: the canonical mirrors are tried in order, each file is checked against the sha256 of
the published original, and a file enters the cache whole (a temp file, then os.replace) under
a lock (fcntl.flock), so that two workers starting at once download it once.

Standard library only: the CLI's `netfit datasets fetch` uses it without numpy or torch.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# the real files are 5 KB .. 26 MB; a mirror that sends more is not sending them
MAX_DOWNLOAD_BYTES = 64 * 2**20
CHUNK = 2**20


@dataclass(frozen=True)
class RemoteSet:
    title: str
    mirrors: tuple[str, ...]  # base URLs, tried in order; a file is at base + file name
    sha256: dict[str, str] = field(hash=False)  # file name -> digest of the published file


# Digests of the original gzip files as torchvision's and TensorFlow's loaders check them (the
# same values recur in many independent projects); the mirrors are those loaders' sources.
REMOTE_SETS = {
    "mnist": RemoteSet("MNIST", (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ), dict(zip(IDX_FILES, (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    )))),
    "fashion_mnist": RemoteSet("Fashion-MNIST", (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ), dict(zip(IDX_FILES, (
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    )))),
}


def default_cache_dir() -> Path:
    """Per user, shared by every worker and service of the machine (as ~/.keras/datasets is)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "netfit" / "datasets"


@dataclass(frozen=True)
class Downloads:
    """Where downloaded sets are cached and fetched from. Server processes build it from their
    settings (NETFIT_DATASET_DIR, NETFIT_DATASET_MIRROR, NETFIT_DATASET_MIRROR_ONLY); a notebook
    gets the defaults.

    `mirror`: base URLs (comma-separated) tried in order before the canonical mirrors (alone with
    `mirror_only`); each holds the files as <mirror>/<set>/<file>, the cache's own layout, so a
    served copy of a cache directory is a mirror (file:// URLs work too). `manifest` is for tests only: a JSON file {set: {file: sha256}} that
    replaces the published digests, so that a test's small IDX files can pass the same check."""

    cache_dir: Path = field(default_factory=default_cache_dir)
    mirror: str | None = None
    mirror_only: bool = False
    manifest: Path | None = None
    timeout: float = 30.0

    @classmethod
    def configured(cls, cache_dir: str | None = None, mirror: str | None = None, mirror_only: bool = False,
                   manifest: str | None = None) -> Downloads:
        return cls(Path(cache_dir) if cache_dir else default_cache_dir(), mirror or None, mirror_only,
                   Path(manifest) if manifest else None)

    def digests(self, name: str) -> dict[str, str]:
        if self.manifest is None:
            return REMOTE_SETS[name].sha256
        return json.loads(self.manifest.read_text())[name]

    def mirrors(self, name: str) -> list[str]:
        own = [m.strip().rstrip("/") + f"/{name}/" for m in (self.mirror or "").split(",") if m.strip()]
        if self.mirror_only:
            if not own:
                raise DataError("NETFIT_DATASET_MIRROR_ONLY is set but NETFIT_DATASET_MIRROR is not; set the mirror's "
                                "base URL")
            return own
        return own + list(REMOTE_SETS[name].mirrors)

    def folder(self, name: str) -> Path:
        return self.cache_dir / name


def fetch(name: str, downloads: Downloads, placed: list[str] | None = None) -> dict[str, Path]:
    """The set's files in the cache, each checked by its sha256 (a file put there by hand too),
    downloading those missing or wrong: {file name: path}. `placed` collects the names of the
    files this call downloaded (not another process). A process reads a set once (the engine
    keeps it in memory), so the hashing (~0.1 s for Fashion-MNIST) is paid once per process."""
    digests, folder = downloads.digests(name), downloads.folder(name)
    paths = {f: folder / f for f in digests}
    if all(_holds(paths[f], digest) for f, digest in digests.items()):
        return paths
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data set cache {folder} ({exc.strerror}); set NETFIT_DATASET_DIR to a "
                        "writable directory") from None
    with _locked(folder / ".lock"):
        for file, digest in digests.items():
            target = paths[file]
            if _holds(target, digest):  # whoever held the lock before us may have placed it
                continue
            if target.exists():  # not the published file: kept aside for its owner to look at, never read
                os.replace(target, target.with_name(target.name + ".rejected"))
            failed = _download(file, digest, target, downloads.mirrors(name), downloads.timeout)
            if failed:  # the next files would fail alike: say so now
                raise DataError(_offline_message(name, downloads, file, failed))
            if placed is not None:
                placed.append(file)
    return paths


def _holds(path: Path, digest: str) -> bool:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == digest
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _download(file: str, digest: str, target: Path, mirrors: list[str], timeout: float) -> list[str]:
    """Place `file` at `target` from the first mirror whose copy has the digest; the reason
    each mirror failed otherwise (empty: placed)."""
    why = []
    for base in mirrors:
        url = base + file
        tmp = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{file}.", suffix=".part", delete=False)
        try:
            with tmp:
                got = _copy(url, tmp, timeout)
            if got == digest:
                os.replace(tmp.name, target)
                return []
            why.append(f"{url}: sha256 {got[:12]}… is not the published {digest[:12]}… (corrupt or truncated)")
        except urllib.error.HTTPError as exc:
            why.append(f"{url}: HTTP {exc.code}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            why.append(f"{url}: {str(reason)[:120] or type(exc).__name__}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp.name)
    return why


def _copy(url: str, out, timeout: float) -> str:
    """Stream `url` into `out`; the sha256 of what came."""
    digest, size = hashlib.sha256(), 0
    request = urllib.request.Request(url, headers={"User-Agent": "netfit"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        while chunk := response.read(CHUNK):
            size += len(chunk)
            if size > MAX_DOWNLOAD_BYTES:
                raise ValueError(f"more than {MAX_DOWNLOAD_BYTES:,} bytes; not the published file")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _offline_message(name: str, downloads: Downloads, file: str, failed: list[str]) -> str:
    """What to do first (a job's error keeps 500 characters), then why each mirror failed."""
    return (f"could not download {REMOTE_SETS[name].title} (no mirror gave {file}). Put "
            f"{', '.join(downloads.digests(name))} in {downloads.folder(name)}/ (sha256-checked; "
            f"`netfit datasets fetch {name}` there when online) or set NETFIT_DATASET_MIRROR; or upload it: "
            f"POST /v1/datasets, an .npz of x_train, y_train, x_test, y_test. Tried: {'; '.join(failed)}")
