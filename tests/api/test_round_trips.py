"""What a read costs the database: a list page is one round trip to PostgreSQL (no pre-ping,
no BEGIN, no ROLLBACK), counted from libpq's own trace of the messages the API sends; and a
pooled connection whose server went away is replaced at checkout, not handed to a request."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

from psycopg import pq
from sqlalchemy import create_engine, event, text

from tests.conftest import iris_spec, wait_until


def _traced(engine, path: Path):
    """libpq writes every message of the connections checked out meanwhile to `path`."""
    out = path.open("w")

    def on_checkout(dbapi_connection, _record, _proxy):
        dbapi_connection.pgconn.trace(out.fileno())
        dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)

    def on_checkin(dbapi_connection, _record):
        dbapi_connection.pgconn.untrace()

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)
    return out


def _round_trips(trace: str) -> list[str]:
    # each exchange the client waits for ends with a Sync (extended protocol) or is a Query
    return [line for line in trace.splitlines()
            if line.startswith("F\t") and line.split("\t")[2].split()[0] in ("Sync", "Query")]


def test_a_list_page_is_one_round_trip(client, tmp_path):
    ids = [client.post("/v1/jobs", json=iris_spec()).json()["id"] for _ in range(3)]
    engine = client.app.state.session_factory.kw["bind"]
    path = tmp_path / "libpq.trace"
    out = _traced(engine, path)
    try:
        first = client.get("/v1/jobs", params={"limit": 2})
        second = client.get("/v1/jobs", params={"limit": 2, "cursor": first.json()["next_cursor"]})
        named = client.get("/v1/jobs", params={"status": "queued", "name": "%_"})  # LIKE's wildcards are literal
    finally:
        out.close()
    assert [j["id"] for j in first.json()["items"] + second.json()["items"]] == ids[::-1]
    assert named.json() == {"items": [], "next_cursor": None}
    trips = _round_trips(path.read_text())
    assert len(trips) == 3, "\n".join(trips)  # one a page: the SELECT alone
    assert all("Sync" in t for t in trips), "\n".join(trips)  # no BEGIN, ROLLBACK or ping (simple queries)


def test_a_pooled_connection_whose_server_went_away_is_replaced(client, pg_url):
    assert client.get("/v1/jobs").status_code == 200  # a connection now waits in the pool
    engine = client.app.state.session_factory.kw["bind"]
    assert engine.pool.checkedin() >= 1
    database = engine.url.database
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            # what a PostgreSQL restart does to each open session
            ended = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database}).scalar()
            assert ended >= 1
            wait_until(lambda: conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                                                 "AND pid <> pg_backend_pid()"), {"db": database}).scalar() == 0,
                       what="the terminated sessions to end")
    finally:
        admin.dispose()
    for _ in range(3):  # every connection the pool held is dead
        response = client.get("/v1/jobs")
        assert response.status_code == 200, response.text


def test_the_imports_are_left_out_of_later_collections(client):
    wait_until(client.app.state.warmed.is_set, timeout=120, what="the warm-up")
    assert gc.get_freeze_count() > 10_000  # modules, classes and torch's objects
    assert gc.get_threshold()[0] >= 10_000


def test_the_endpoints_thread_closes_their_sessions(client):
    """OneThreadRoute's endpoints get their session without a yielding dependency: the endpoint's
    thread closes it, whether it answered, raised or was refused before it ran."""
    job = client.post("/v1/jobs", json=iris_spec()).json()
    assert client.get("/v1/jobs").status_code == 200
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 200
    assert client.get("/v1/jobs/nope-0000").status_code == 404  # raised in the thread
    assert client.get("/v1/jobs", params={"limit": 0}).status_code == 422  # refused before it ran
    assert client.get("/v1/jobs", params={"cursor": "bogus"}).status_code == 422
    assert client.app.state.session_factory.kw["bind"].pool.checkedout() == 0


def test_connections_are_kept_through_bursts(pg_url):
    """Bursts of concurrent requests reuse the connections the first one opened: a pool that
    closes what it lent beyond a few made a PostgreSQL backend start every few requests."""
    from db.session import make_session_factory

    factory = make_session_factory(pg_url)
    engine = factory.kw["bind"]
    opened = []
    event.listen(engine, "connect", lambda *_: opened.append(1))
    width, rounds = 12, 4
    all_in = threading.Barrier(width)

    def one() -> None:
        with factory() as session:
            session.execute(text("SELECT 1"))
            all_in.wait(timeout=30)  # every session holds its connection at once

    try:
        for _ in range(rounds):
            threads = [threading.Thread(target=one) for _ in range(width)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert len(opened) == width, f"{len(opened)} connections opened for {rounds} bursts of {width}"
    finally:
        engine.dispose()
