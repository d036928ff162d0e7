"""Decoded uploads, by the sha256 of their stored bytes, so that jobs on one data set (a lab, a
sweep) read and inflate its blob once per machine: the last few in this process's memory, and
every recent one in the machine's data set cache (NETFIT_DATASET_DIR/uploads, which the
workers of a machine share as they share downloads) as uncompressed .npy files that a worker
maps instead of reading tens of MB from the database and inflating them (0.4-1 s for MNIST).

A directory there is complete once it has its name (written under another, then renamed), and
its content never changes; a damaged one is removed and the blob read again. Access stays with
the database: a job finds an upload's hash only through its tenant's `datasets` row."""

from __future__ import annotations

import logging
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from netfit.engine.arrays import ARRAY_NAMES
from netfit.engine.data import RawArrays, from_npz_bytes

log = logging.getLogger(__name__)

KEPT_IN_MEMORY = 2  # each may take hundreds of MB
_kept: OrderedDict[str, RawArrays] = OrderedDict()


def found(sha256: str, cache_dir: Path) -> RawArrays | None:
    """The upload's arrays if this process or the machine's cache holds them (then its blob
    need not be read)."""
    raw = _kept.pop(sha256, None)
    if raw is None:
        raw = _mapped(cache_dir / sha256)
    if raw is not None:
        _keep(sha256, raw)
    return raw


def decoded(sha256: str, blob: bytes | None, cache_dir: Path, limit_bytes: int) -> RawArrays:
    """The upload's arrays: as found, else decoded from its blob and written to the cache."""
    raw = found(sha256, cache_dir)
    if raw is None:
        if blob is None:  # the cache lost it since the job was loaded: the caller reads the blob
            raise LookupError(sha256)
        raw = from_npz_bytes(blob)
        _keep(sha256, raw)
        _write(raw, cache_dir, sha256, limit_bytes)
        log.info("upload %s: read from the database and decoded (%.1f MB stored); kept in %s",
                 sha256[:12], len(blob) / 1e6, cache_dir)
    return raw


def _keep(sha256: str, raw: RawArrays) -> None:
    _kept[sha256] = raw  # the most recently used last
    while len(_kept) > KEPT_IN_MEMORY:
        _kept.popitem(last=False)


def _mapped(folder: Path) -> RawArrays | None:
    if not folder.is_dir():
        return None
    try:
        # copy-on-write maps: the pages are the machine's page cache, shared by its workers,
        # and the arrays are writable to numpy and torch without ever changing the files
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="c", allow_pickle=False)
                  for name in ARRAY_NAMES if (folder / f"{name}.npy").exists()}
        classes = folder / "classes.npy"
        raw = RawArrays(**arrays, classes=np.load(classes).tolist() if classes.exists() else None)
        os.utime(folder)  # used: the last to be evicted
        return raw
    except (OSError, ValueError, TypeError) as exc:
        log.warning("the cached upload %s is unreadable (%s); it is removed and read from the database", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _write(raw: RawArrays, cache_dir: Path, sha256: str, limit_bytes: int) -> None:
    def write(folder: Path) -> None:
        for name in ARRAY_NAMES:
            if getattr(raw, name) is not None:
                np.save(folder / f"{name}.npy", getattr(raw, name), allow_pickle=False)
        if raw.classes is not None:
            np.save(folder / "classes.npy", np.array(raw.classes, dtype=str), allow_pickle=False)

    publish(cache_dir, sha256, limit_bytes, write, "decoded upload")


def publish(cache_dir: Path, key: str, limit_bytes: int, write: Callable[[Path], None], what: str) -> None:
    """An entry into a machine's cache: written under a private name, then renamed, so a reader
    sees a whole entry or none; then the least recently used beyond the limit out. A cache that
    cannot be written costs only its speed."""
    partial = cache_dir / f".{key}.{os.getpid()}"
    try:
        partial.mkdir(parents=True, exist_ok=True)
        write(partial)
        partial.rename(cache_dir / key)
    except OSError as exc:  # full, read-only, or another worker renamed the same entry first
        shutil.rmtree(partial, ignore_errors=True)
        if not (cache_dir / key).is_dir():
            log.warning("cannot keep the %s in %s (%s)", what, cache_dir, exc)
        return
    evict(cache_dir, limit_bytes, keep=key)


def evict(cache_dir: Path, limit_bytes: int, keep: str) -> None:
    """The least recently used folders of cache_dir (but `keep`) out until it holds limit_bytes
    (worker.prepared_files' cache follows the same rule)."""
    entries = []
    for folder in cache_dir.iterdir():
        if folder.name.startswith("."):
            continue
        try:
            size = sum(f.stat().st_size for f in folder.iterdir())
            entries.append((folder.stat().st_mtime, size, folder))
        except OSError:  # removed by another worker meanwhile
            continue
    total = sum(size for _, size, _ in entries)
    for _, size, folder in sorted(entries):  # the least recently used first
        if total <= limit_bytes:
            break
        if folder.name != keep:
            shutil.rmtree(folder, ignore_errors=True)  # a worker that maps it keeps its pages
            total -= size
