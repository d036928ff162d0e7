"""Space on disk comes back (SQLite): weights and resume states are large blobs rewritten every
checkpoint and deleted when a job ends, and SQLite by itself keeps both the pages they freed
(auto_vacuum NONE) and a write-ahead log as large as the largest transaction (a 49M-parameter
job left 0.8 GB of free pages and a 2.2 GB -wal behind 0.4 GB of weights).

- new databases are made with auto_vacuum=INCREMENTAL (migration 0005 converts older ones once);
- journal_size_limit truncates the -wal to WAL_LIMIT_BYTES whenever a checkpoint resets it;
- when a connection goes back to the pool after a large write (the -wal is over FREE_LIMIT_BYTES),
  the log is checkpointed into the database and truncated, and free pages above FREE_LIMIT_BYTES
  are given back to the file system (`give_back`); deletes call `give_back` themselves.

PostgreSQL needs none of this: a deleted row's TOASTed bytes are reused once autovacuum has
passed (docs/production.md says how to measure)."""

from __future__ import annotations

import logging
import os
from typing import Any

from sqlalchemy import Engine, event

log = logging.getLogger("netfit.db")
WAL_LIMIT_BYTES = 64 * 1024 * 1024  # the -wal's size once truncated after a checkpoint
FREE_LIMIT_BYTES = 16 * 1024 * 1024  # a -wal or free pages above this are given back
SQLITE_BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for the lock (db.session sets it on each connection)


def sqlite_pragmas(cursor: Any) -> None:
    """At each new connection: before the first table exists, auto_vacuum decides the file's
    format; later it changes nothing until a VACUUM (migration 0005 runs one)."""
    cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")


def watch(engine: Engine) -> None:
    """Checkpoint and give back after large writes, when a connection returns to the pool."""
    path = engine.url.database
    if not path or path == ":memory:" or engine.url.query.get("mode") == "memory":
        return
    wal = os.path.abspath(path) + "-wal"

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_connection: Any, _record: Any) -> None:
        try:
            if dbapi_connection is not None and os.path.getsize(wal) > FREE_LIMIT_BYTES:
                give_back_dbapi(dbapi_connection)
        except OSError:  # no -wal yet
            pass


def give_back(engine: Engine) -> dict[str, int]:
    """Free pages back to the file system and the -wal truncated (SQLite; nothing elsewhere).
    Returns {"freed_pages": n, "wal_bytes": size after}."""
    if engine.dialect.name != "sqlite":
        return {}
    raw = engine.raw_connection()
    try:
        return give_back_dbapi(raw.driver_connection)
    finally:
        raw.close()


def give_back_dbapi(connection: Any) -> dict[str, int]:
    cursor = connection.cursor()
    try:
        if getattr(connection, "in_transaction", False):
            return {}
        # waits for readers at most 2 s: a busy API is not held for the full busy timeout
        cursor.execute("PRAGMA busy_timeout=2000")
        page = cursor.execute("PRAGMA page_size").fetchone()[0]
        free = cursor.execute("PRAGMA freelist_count").fetchone()[0]
        freed = 0
        if free * page > FREE_LIMIT_BYTES:
            # executescript steps the pragma to its end (a plain execute frees one page only)
            connection.executescript("PRAGMA incremental_vacuum;")
            freed = free - cursor.execute("PRAGMA freelist_count").fetchone()[0]
        busy, log_pages, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.info("sqlite: the write-ahead log could not be truncated now (readers); it is tried again later")
        return {"freed_pages": freed, "wal_pages": log_pages}
    finally:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()
