"""`python -m bench space`: what a big model's persistence leaves on disk, SQLite and PostgreSQL.

One job of W bytes of weights is persisted as a worker does (db.epochs, db.attempts): each epoch
a resume state (weights + Adam's two moments: 3 W) and the best weights (W) in one transaction,
then the finish: best and last (2 W) kept, the resume state deleted. Then the job is deleted.
Figures: bytes on disk per byte kept after the finish, bytes on disk left after the delete, and
seconds of persistence per GB written. SQLite is measured with db.space (incremental vacuum,
-wal truncated after large writes) and without it (auto_vacuum NONE, no -wal limit), as netfit
was before; PostgreSQL as the relations' size (TOAST included) after a VACUUM, which autovacuum
runs on its own."""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bench.report import Report

GOAL_ON_DISK_PER_KEPT = 1.25  # after the finish: the kept weights and a little more


def _persist(factory: Any, weights: int, epochs: int) -> tuple[str, int, int, float]:
    """(job id, bytes kept, bytes written, seconds): one job's writes as a worker makes them."""
    from db import attempts, jobs
    from db.epochs import EpochRecord, Flush, record_epochs
    from db.states import Status
    from tests.conftest import iris_spec

    blob = os.urandom(weights)  # incompressible, as trained float32 weights are
    with factory() as s:
        job = jobs.create_job(s, tenant="bench", spec=iris_spec(epochs=epochs), summary=None, queue="cpu")
        attempt = attempts.claim(s, [job.id], "bench:1", lease_seconds=600, max_attempts=3)[job.id]
    written, began = 0, time.perf_counter()
    for epoch in range(1, epochs + 1):
        metrics = {"epoch": epoch, "seconds": 0.1, "train_loss": 1.0 / epoch, "val_loss": 1.0 / epoch}
        with factory() as s:
            record_epochs(s, [Flush(job.id, attempt, [EpochRecord(metrics)], resume=(epoch, blob * 3),
                                    best=(epoch, metrics, blob))])
        written += 4 * weights
    with factory() as s:
        attempts.finish(s, job.id, attempt, status=Status.SUCCEEDED, stop_reason="max_epochs", epochs_completed=epochs,
                        checkpoints=[("best", epochs, {}, blob), ("last", epochs, {}, blob)])
    written += 2 * weights
    return job.id, 2 * weights, written, time.perf_counter() - began


def _sqlite_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


@contextmanager
def _without_space_keeping() -> Iterator[None]:
    """netfit before db.space: no auto-vacuum, no -wal limit, no checkpoint after large writes."""
    from db import space

    saved = space.sqlite_pragmas, space.watch, space.give_back
    space.sqlite_pragmas = lambda cursor: cursor.execute("PRAGMA auto_vacuum=NONE")
    space.watch = lambda engine: None
    space.give_back = lambda engine: {}
    try:
        yield
    finally:
        space.sqlite_pragmas, space.watch, space.give_back = saved


def _sqlite(report: Report, weights: int, epochs: int, keep_space: bool) -> None:
    from db import retention
    from db.migrate import upgrade
    from db.session import make_session_factory

    label = "with db.space" if keep_space else "without (before)"
    with tempfile.TemporaryDirectory() as folder, (_nothing() if keep_space else _without_space_keeping()):
        path = Path(folder) / "netfit.db"
        url = f"sqlite:///{path}"
        upgrade(url)
        factory = make_session_factory(url)
        empty = _sqlite_bytes(path)
        job_id, kept, written, seconds = _persist(factory, weights, epochs)
        factory.kw["bind"].dispose()  # the pool's connections checked in: what a quiet service leaves
        after_finish = _sqlite_bytes(path) - empty
        factory = make_session_factory(url)
        with factory() as s:
            retention.delete_job(s, "bench", job_id)
        factory.kw["bind"].dispose()
        after_delete = _sqlite_bytes(path) - empty
    key = "sqlite" if keep_space else "sqlite_before"
    goal = ("<=", GOAL_ON_DISK_PER_KEPT) if keep_space else None
    report.figure(f"{key}_on_disk_per_kept", after_finish / kept, "x", goal,
                  label=f"SQLite {label}: bytes on disk / bytes kept, after the finish")
    report.figure(f"{key}_left_after_delete_mb", after_delete / 2**20, "MB",
                  ("<=", 0.05 * kept / 2**20) if keep_space else None,
                  label=f"SQLite {label}: left on disk after the delete")
    report.figure(f"{key}_seconds_per_gb", seconds / (written / 2**30), "s/GB",
                  label=f"SQLite {label}: persistence seconds per GB written")


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _postgres(report: Report, weights: int, epochs: int) -> None:
    from sqlalchemy import text

    from db import retention
    from db.session import make_session_factory
    from tests.conftest import fresh_pg_database

    with fresh_pg_database() as url:
        factory = make_session_factory(url)
        engine = factory.kw["bind"]

        def on_disk() -> int:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM checkpoints"))  # what autovacuum does on its own
                return conn.execute(text("SELECT pg_total_relation_size('checkpoints')")).scalar()

        empty = on_disk()
        job_id, kept, written, seconds = _persist(factory, weights, epochs)
        after_finish = on_disk() - empty
        with factory() as s:
            retention.delete_job(s, "bench", job_id)
        freed = on_disk() - empty
        again, *_ = _persist(factory, weights, epochs)  # a second job reuses the freed pages
        reused = on_disk() - empty
        engine.dispose()
    # PostgreSQL keeps its high-water mark (a state is rewritten before the old one's pages are
    # vacuumed) and reuses it: the goal is that a second job does not grow it
    report.figure("postgres_on_disk_per_kept", after_finish / kept, "x",
                  label="PostgreSQL: checkpoints' bytes on disk / bytes kept, after the finish")
    report.figure("postgres_after_delete_mb", freed / 2**20, "MB",
                  label="PostgreSQL: the table's size after the delete (free space it reuses)")
    report.figure("postgres_second_job_growth", (reused - after_finish) / kept, "x", ("<=", 0.25),
                  label="PostgreSQL: growth by a second such job / its bytes kept (the space reused)")
    report.figure("postgres_seconds_per_gb", seconds / (written / 2**30), "s/GB",
                  label="PostgreSQL: persistence seconds per GB written")


def run(report: Report, *, quick: bool = False) -> None:
    weights = (8 if quick else 64) * 2**20  # 64 MB: a 16M-parameter float32 model
    epochs = 2
    report.begin("space", f"a {weights // 2**20} MB model's persistence, {epochs} epochs: what stays on disk")
    _sqlite(report, weights, epochs, keep_space=False)
    _sqlite(report, weights, epochs, keep_space=True)
    _postgres(report, weights, epochs)
