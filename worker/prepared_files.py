"""Prepared data (a data set split and preprocessed, as a job trains on it) in the machine's data
set cache, NETFIT_DATASET_DIR/prepared, so that a machine's other workers map what one of them
made instead of splitting and scaling it again (0.5-0.8 s for MNIST), as they map decoded uploads
(worker.uploads, whose rules these files follow: complete once named, never changed, removed when
unreadable, least recently used out first). Keyed by the data's content (an upload's sha256, or a
built-in's spec), the split and the preprocessing; small sets are not kept: preparing them costs
less than their files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from netfit.engine.data import DataSignature, PreparedData, Split
from worker.uploads import publish

log = logging.getLogger(__name__)

MIN_BYTES = 8 * 1024**2  # the training features' size from which a set is kept
PARTS = ("train", "val", "test")


def key_of(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def found(key: str, cache_dir: Path) -> PreparedData | None:
    """The prepared data if a worker of this machine made it, mapped copy-on-write (the pages are
    the machine's page cache, shared by its workers; the engine never writes into them)."""
    folder = cache_dir / key
    if not folder.is_dir():
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text())
        parts = {name: Split(*(torch.from_numpy(np.load(folder / f"{name}_{a}.npy", mmap_mode="c", allow_pickle=False))
                               for a in ("x", "y")))
                 for name in PARTS if (folder / f"{name}_x.npy").exists()}
        signature = DataSignature(**{**meta["signature"], "input_shape": tuple(meta["signature"]["input_shape"])})
        os.utime(folder)  # used: the last to be evicted
        return PreparedData(parts["train"], parts.get("val"), parts.get("test"), signature, meta["preprocessing"],
                            meta["classes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("the prepared data in %s is unreadable (%s); it is removed and prepared again", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def keep(key: str, data: PreparedData, cache_dir: Path, limit_bytes: int) -> None:
    """Into the machine's cache (worker.uploads.publish), sets of MIN_BYTES and more."""
    if data.train.x.nbytes < MIN_BYTES or (cache_dir / key).is_dir():
        return
    def write(folder: Path) -> None:
        for name in PARTS:
            part = getattr(data, name)
            if part is not None:
                np.save(folder / f"{name}_x.npy", part.x.numpy(), allow_pickle=False)
                np.save(folder / f"{name}_y.npy", part.y.numpy(), allow_pickle=False)
        meta = {"signature": dataclasses.asdict(data.signature), "preprocessing": data.preprocessing,
                "classes": data.classes}
        (folder / "meta.json").write_text(json.dumps(meta))

    publish(cache_dir, key, limit_bytes, write, "prepared data")
