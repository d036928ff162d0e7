"""The database sessions of the worker processes: the training workers and the reconciler.

Kept apart from worker.tasks so that the reconciler's process does not import torch.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

from service.settings import get_settings
from db.session import make_engine, make_session_factory


@lru_cache
def session_factory() -> sessionmaker[Session]:
    settings = get_settings()
    url = settings.database_url
    if not url.startswith("postgresql"):
        return make_session_factory(url)
    # A worker frozen inside a transaction (SIGSTOP, a paused VM, a swap storm) keeps the job row
    # locked, so the next worker's claim and the reconciler would wait behind it for as long as it
    # sleeps. PostgreSQL ends such a session after half a lease (the row is free before the lease
    # expires); a merely slow worker's with_db_retry runs its transaction again.
    timeout_ms = int(settings.lease_seconds / 2 * 1000)
    return make_session_factory(make_engine(url, connect_args={
        "options": f"-c idle_in_transaction_session_timeout={timeout_ms}"}))
