"""The data a worker trains on, kept for the next job that needs the same.

The last job's data as it trains on it (split, preprocessed: 0.1-0.2 s for MNIST), for the next
job on the same content, split and preprocessing (a lab's, a sweep's); the engine never writes
into it. One is kept: an MNIST-sized set is 200 MB of float32. Decoded uploads are kept apart,
in memory and in the machine's cache (worker.uploads).
"""

from __future__ import annotations

from pathlib import Path

from netfit.engine.data import PreparedData, load_data
from netfit.spec import JobSpec
from service.settings import get_settings
from worker import prepared_files, uploads

_prepared: tuple[tuple[str, ...], PreparedData] | None = None


def uploads_dir() -> Path:
    return get_settings().downloads().cache_dir / "uploads"


def prepared_dir() -> Path:
    return get_settings().downloads().cache_dir / "prepared"


def job_data(spec: JobSpec, sha256: str | None, uploaded: bytes | None) -> PreparedData:
    """The spec's data: an upload's (its sha256, and its bytes when not decoded on this machine
    yet) or a built-in or downloaded set's, split and preprocessed."""
    global _prepared
    key = (sha256 or spec.dataset.model_dump_json(), spec.split.model_dump_json(), spec.preprocess.model_dump_json())
    if _prepared is not None and _prepared[0] == key:
        return _prepared[1]
    _prepared = None  # its memory is free before the next is made
    # another worker of this machine may have prepared it (worker.prepared_files)
    shared, limit = prepared_files.key_of(*key), get_settings().upload_cache_bytes
    data = prepared_files.found(shared, prepared_dir())
    if data is None:
        raw = None if sha256 is None else uploads.decoded(sha256, uploaded, uploads_dir(), limit)
        data = load_data(spec, raw=raw, downloads=get_settings().downloads())
        prepared_files.keep(shared, data, prepared_dir(), limit)
    _prepared = (key, data)
    return data
