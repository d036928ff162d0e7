"""An in-process API (fastapi TestClient) on a real PostgreSQL database and a real Redis
broker; no worker, so messages stay in Redis where the tests can count them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings


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
