"""A worker's database calls ride out a database restart: each runs again in a fresh session
while the database is unreachable, for NETFIT_DB_RETRY_SECONDS."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.settings import get_settings

log = logging.getLogger("netfit.worker")
T = TypeVar("T")


def with_db_retry(action: Callable[[Session], T], factory: sessionmaker[Session], *, deadline: float | None = None,
                  done_if_duplicate: bool = False) -> T:
    """Run action(session) in a fresh session, retrying while the database is unreachable.
    done_if_duplicate: a retried insert that hits the unique key had committed before the
    connection dropped, so it counts as done."""
    give_up = time.monotonic() + (get_settings().db_retry_seconds if deadline is None else deadline)
    delay, retried = 0.25, False
    while True:
        try:
            with factory() as session:
                return action(session)
        except IntegrityError:
            if done_if_duplicate and retried:
                return None  # type: ignore[return-value]
            raise
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not (isinstance(exc, OperationalError) or exc.connection_invalidated):
                raise
            if time.monotonic() + delay > give_up:
                raise
            log.warning("database unavailable (%s); retrying in %.1fs", str(exc).splitlines()[0][:120], delay)
            time.sleep(delay)
            delay, retried = min(delay * 2, 5.0), True
