"""Engine and session factory for a URL passed in (db never reads settings)."""

from __future__ import annotations

import select
from typing import Any

from pydantic_core import from_json
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from db import space
from db.space import SQLITE_BUSY_TIMEOUT_MS


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; busy_timeout makes writers queue instead
    # of failing with "database is locked"; SQLite leaves foreign keys off unless asked.
    cursor = dbapi_connection.cursor()
    space.sqlite_pragmas(cursor)  # first: a new file's format; freed pages go back (db.space)
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        space.watch(engine)
        return engine
    # a connection that died while PostgreSQL restarted is replaced, not reused: checked at
    # checkout without a round trip (pool_pre_ping's SELECT cost each request one more)
    # json columns read with pydantic's parser: the same values as json.loads, ~5x faster
    # (a list page reads 100 metrics dicts). At most 15 connections, as before, all kept once
    # opened: with 5 kept and 10 overflow, 50 clients made the pool close and open one every
    # ~5 requests (a PostgreSQL backend started each time, ~1 ms of CPU a page)
    engine = create_engine(url, pool_size=15, max_overflow=0, json_deserializer=from_json, **kwargs)
    event.listen(engine, "checkout", _check_idle_connection)
    return engine


def _check_idle_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """An idle connection's socket has nothing to read unless the server hung up (a restart, a
    terminated backend: its FATAL message, then EOF) or dropped it; DisconnectionError makes
    the pool replace it and try again. A silent network loss is not seen here: a pre-ping's
    SELECT would block on it the same way."""
    if dbapi_connection.closed or dbapi_connection.broken:
        raise DisconnectionError("the connection is closed")
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLPRI)
    if poller.poll(0):  # POLLHUP and POLLERR are always reported
        raise DisconnectionError("the server closed the connection or spoke while it was idle")


def make_session_factory(url_or_engine: str | Engine) -> sessionmaker[Session]:
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    # expire_on_commit=False: rows stay readable after the transaction that loaded them
    return sessionmaker(engine, expire_on_commit=False)


def read_only_connection(session: Session) -> Connection:
    """The connection for a read that is one statement: in autocommit when the session has no
    transaction yet, so PostgreSQL gets the statement alone, without the BEGIN before it and
    the ROLLBACK that returns the connection (two round trips of three). In a transaction
    already, that transaction's connection."""
    if session.in_transaction():
        return session.connection()
    return session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
