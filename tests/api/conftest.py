"""An in-process API (fastapi TestClient) on a real PostgreSQL database and a real Redis
broker; no worker, so messages stay in Redis where the tests can count them. Also the
helpers the API's test modules share (error bodies, keys, a CSV upload)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from service.settings import Settings
from db import keys as db_keys
from db.session import make_session_factory


def make_client(db: str, broker: str, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(database_url=db, broker_url=broker, **settings)))


@pytest.fixture
def client(pg_url: str, redis_url: str) -> Iterator[TestClient]:
    with make_client(pg_url, redis_url) as c:
        yield c


@pytest.fixture
def queued_messages(redis_url: str) -> Callable[[str], int]:
    """How many messages wait in a Celery queue (a Redis list named after the queue)."""
    r = redis.Redis.from_url(redis_url)
    return lambda queue="cpu": r.llen(queue)


def csv_bytes() -> bytes:
    rng = np.random.default_rng(0)
    rows = ["a,b,label"] + [f"{rng.normal():.3f},{rng.normal():.3f},{'yes' if i % 2 else 'no'}" for i in range(40)]
    return ("\n".join(rows) + "\n").encode()


def assert_error_body(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in response.text
    return body


def new_key(db_url: str, tenant: str) -> str:
    factory = make_session_factory(db_url)
    with factory() as session:
        _, key = db_keys.create_key(session, tenant=tenant)
    factory.kw["bind"].dispose()
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
