"""The one settings object of every server process (API, worker, reconciler, the CLI's server
commands), read from the environment once (`get_settings()` is cached). Only this module reads
NETFIT_* variables; it imports nothing heavy, so a worker may use it without FastAPI."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///./netfit.db"


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str | None = None  # None: the embedded file broker (service.queue)
    max_upload_bytes: int = 200 * 1024 * 1024
    max_body_bytes: int = 1024 * 1024  # a job spec is a few KB
    # Auth is on once any API key exists in the database (db.keys); require_auth turns it on
    # before the first key is made (the compose stack sets it), so the API is never open by accident.
    require_auth: bool = False
    max_active_jobs: int = 100  # queued + running per tenant; the next submit is a 429
    max_active_trials: int = 32  # sweep trials queued + running per tenant, all sweeps together
    # may jobs ask for device "cuda"? None: only if this machine has CUDA (embedded mode, whose
    # worker runs here); the stack sets NETFIT_GPU_JOBS=1 when it runs GPU workers
    gpu_jobs: bool | None = None
    # GET /metrics: the bearer token scrapers must send (None: open, like /healthz), and whether
    # job figures are labelled by tenant (tenant names are for operators who choose to see them)
    metrics_token: str | None = None
    metrics_tenants: bool = False
    # the API's in-process caches: finished jobs' metrics pages (32 MiB: ~150 1,000-epoch jobs),
    # and the models kept for predict/export (their parameters, buffers and ONNX bytes)
    metrics_cache_bytes: int = 32 * 1024 * 1024
    model_cache_bytes: int = 256 * 1024 * 1024
    # `netfit api`'s uvicorn processes behind its one port (each with its own caches); `netfit
    # serve` always runs one: its warm-up and its worker's readiness are watched in that process
    api_processes: int = 1
    default_queue: str = "cpu"  # where "device": "auto" jobs go (the stack sets gpu with GPU workers)
    # workers and the reconciler (docs/production.md: what happens when things break)
    lease_seconds: float = 30.0  # a silent worker loses its job after this
    heartbeat_seconds: float = 10.0  # lease renewal period
    max_attempts: int = 3  # lost attempts before a job fails as "worker_lost"
    db_retry_seconds: float = 60.0  # a worker rides out a database restart this long
    requeue_seconds: float = 60.0  # a queued job not sent for this long is sent again
    reconcile_seconds: float = 5.0  # how often each worker's reconciler looks
    # a running job's epochs reach the database at least this often (the live curves), many
    # fast epochs in one transaction; the state to resume from and the best weights at most
    # every checkpoint_seconds (and at the end): a lost worker costs at most max(one epoch,
    # checkpoint_seconds) of training, done again (docs/production.md)
    flush_seconds: float = 0.25
    checkpoint_seconds: float = 5.0
    log_level: str = "info"
    log_format: str = "plain"  # or "json": one object per line, for log shippers (service.logs)
    # a worker creates this file once it has warmed up and listens (serve's /readyz waits for it)
    worker_ready_file: str | None = None
    # downloaded built-ins (mnist, fashion_mnist; netfit.engine.downloads): the cache every worker
    # of the machine shares (None: ~/.cache/netfit/datasets), a mirror's base URL tried before the
    # canonical ones (or alone), and, for tests only, a JSON file of digests replacing the published ones
    dataset_dir: str | None = None
    dataset_mirror: str | None = None
    dataset_mirror_only: bool = False
    dataset_manifest: str | None = None
    # decoded uploads the workers of a machine keep under dataset_dir/uploads (worker.uploads)
    upload_cache_bytes: int = 4 * 1024**3
    # retention (db.retention): failed and cancelled jobs' weights are removed after this many
    # days (None: kept); the reconciler applies it every retain_seconds
    keep_failed_days: float | None = None
    retain_seconds: float = 60.0
    # preemption (db.preemption): a queued job that outranks a running one, with no worker free,
    # has the lowest-priority running job stop at its next epoch end and resume later, exactly;
    # never one whose attempt started less than preempt_after_seconds ago (nothing thrashes)
    preemption: bool = True
    preempt_after_seconds: float = 60.0

    def downloads(self):
        """These settings as the engine takes them (netfit.engine.downloads.Downloads)."""
        from netfit.engine.downloads import Downloads  # standard library only: nothing heavy

        return Downloads.configured(self.dataset_dir, self.dataset_mirror, self.dataset_mirror_only,
                                    self.dataset_manifest)

    @classmethod
    def embedded(cls, data_dir: str | os.PathLike[str]) -> Settings:
        """`netfit serve`'s settings: the environment's, with the database and the file broker
        in data_dir unless NETFIT_DATABASE_URL / NETFIT_BROKER_URL name others, and the file its
        worker creates once warm there too."""
        data = Path(data_dir).resolve()
        return replace(cls.from_env(),
                       database_url=os.environ.get("NETFIT_DATABASE_URL") or f"sqlite:///{data / 'netfit.db'}",
                       broker_url=os.environ.get("NETFIT_BROKER_URL") or f"filesystem://{data / '.netfit' / 'broker'}",
                       worker_ready_file=str(data / ".netfit" / "worker-ready"))

    def worker_env(self) -> dict[str, str]:
        """What a worker process started with these settings must find in its environment (it
        reads only its environment): the database, the broker and its readiness file."""
        env = {"NETFIT_DATABASE_URL": self.database_url, "NETFIT_BROKER_URL": self.broker_url or "",
               "NETFIT_WORKER_READY_FILE": self.worker_ready_file or ""}
        return {name: value for name, value in env.items() if value}

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get("NETFIT_DATABASE_URL") or DEFAULT_DATABASE_URL,
            broker_url=os.environ.get("NETFIT_BROKER_URL") or None,
            max_upload_bytes=_int("NETFIT_MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            max_body_bytes=_int("NETFIT_MAX_BODY_BYTES", cls.max_body_bytes),
            require_auth=_flag("NETFIT_REQUIRE_AUTH"),
            max_active_jobs=_int("NETFIT_MAX_ACTIVE_JOBS", cls.max_active_jobs),
            max_active_trials=_int("NETFIT_MAX_ACTIVE_TRIALS", cls.max_active_trials),
            gpu_jobs={"1": True, "0": False}.get(os.environ.get("NETFIT_GPU_JOBS", "")),
            metrics_token=os.environ.get("NETFIT_METRICS_TOKEN") or None,
            metrics_tenants=_flag("NETFIT_METRICS_TENANTS"),
            metrics_cache_bytes=_int("NETFIT_METRICS_CACHE_BYTES", cls.metrics_cache_bytes),
            model_cache_bytes=_int("NETFIT_MODEL_CACHE_BYTES", cls.model_cache_bytes),
            upload_cache_bytes=_int("NETFIT_UPLOAD_CACHE_BYTES", cls.upload_cache_bytes),
            keep_failed_days=float(os.environ["NETFIT_KEEP_FAILED_DAYS"]) if os.environ.get("NETFIT_KEEP_FAILED_DAYS") else None,
            retain_seconds=_float("NETFIT_RETAIN_SECONDS", cls.retain_seconds),
            preemption=os.environ.get("NETFIT_PREEMPTION", "1").strip().lower() not in ("0", "false", "no", "off"),
            preempt_after_seconds=_float("NETFIT_PREEMPT_AFTER_SECONDS", cls.preempt_after_seconds),
            api_processes=max(1, _int("NETFIT_API_PROCESSES", cls.api_processes)),
            default_queue=os.environ.get("NETFIT_DEFAULT_QUEUE") or cls.default_queue,
            lease_seconds=_float("NETFIT_LEASE_SECONDS", cls.lease_seconds),
            heartbeat_seconds=_float("NETFIT_HEARTBEAT_SECONDS", cls.heartbeat_seconds),
            max_attempts=_int("NETFIT_MAX_ATTEMPTS", cls.max_attempts),
            db_retry_seconds=_float("NETFIT_DB_RETRY_SECONDS", cls.db_retry_seconds),
            requeue_seconds=_float("NETFIT_REQUEUE_SECONDS", cls.requeue_seconds),
            reconcile_seconds=_float("NETFIT_RECONCILE_SECONDS", cls.reconcile_seconds),
            flush_seconds=_float("NETFIT_FLUSH_SECONDS", cls.flush_seconds),
            checkpoint_seconds=_float("NETFIT_CHECKPOINT_SECONDS", cls.checkpoint_seconds),
            log_level=os.environ.get("NETFIT_LOG_LEVEL") or cls.log_level,
            log_format=(os.environ.get("NETFIT_LOG_FORMAT") or cls.log_format).strip().lower(),
            worker_ready_file=os.environ.get("NETFIT_WORKER_READY_FILE") or None,
            dataset_dir=os.environ.get("NETFIT_DATASET_DIR") or None,
            dataset_mirror=os.environ.get("NETFIT_DATASET_MIRROR") or None,
            dataset_mirror_only=_flag("NETFIT_DATASET_MIRROR_ONLY"),
            dataset_manifest=os.environ.get("NETFIT_DATASET_MANIFEST") or None,
        )


@lru_cache
def get_settings() -> Settings:
    return Settings.from_env()
