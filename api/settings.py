"""One settings object, read from the environment once (`get_settings()` is cached)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

DEFAULT_DATABASE_URL = "sqlite:///./netfit.db"


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _api_keys(raw: str) -> dict[str, str]:
    """NETFIT_API_KEYS="key1=tenant-a,key2=tenant-b" -> {key: tenant}."""
    keys = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, _, tenant = item.partition("=")
        keys[key.strip()] = tenant.strip() or "default"
    return keys


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str | None = None  # None: the embedded file broker (worker.celery_app)
    max_upload_bytes: int = 200 * 1024 * 1024
    max_body_bytes: int = 1024 * 1024  # a job spec is a few KB
    api_keys: dict[str, str] = field(default_factory=dict)  # empty: no auth, tenant "default"
    # may jobs ask for device "cuda"? None: only if this machine has CUDA (embedded mode, whose
    # worker runs here); the stack sets NETFIT_GPU_JOBS=1 when it runs GPU workers
    gpu_jobs: bool | None = None

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get("NETFIT_DATABASE_URL") or DEFAULT_DATABASE_URL,
            broker_url=os.environ.get("NETFIT_BROKER_URL") or None,
            max_upload_bytes=_int("NETFIT_MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            max_body_bytes=_int("NETFIT_MAX_BODY_BYTES", cls.max_body_bytes),
            api_keys=_api_keys(os.environ.get("NETFIT_API_KEYS", "")),
            gpu_jobs={"1": True, "0": False}.get(os.environ.get("NETFIT_GPU_JOBS", "")),
        )


@lru_cache
def get_settings() -> Settings:
    return Settings.from_env()
