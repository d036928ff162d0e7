"""Retention where netfit trains: the reconciler's passes apply db.retention.retain at most every
NETFIT_RETAIN_SECONDS per process (a pass costs a few indexed queries; any number of workers
may run it at once)."""

from __future__ import annotations

import logging
import time

from sqlalchemy.orm import Session, sessionmaker

from db import retention
from service.settings import get_settings

log = logging.getLogger("netfit.reconciler")
_last = float("-inf")


def retain_if_due(factory: sessionmaker[Session]) -> dict[str, int]:
    """How many checkpoints each retention rule removed now ({} when not due)."""
    global _last
    settings = get_settings()
    if time.monotonic() - _last < settings.retain_seconds:
        return {}
    _last = time.monotonic()
    with factory() as session:
        removed = retention.retain(session, keep_failed_days=settings.keep_failed_days)
    if any(removed.values()):
        log.info("retention removed checkpoints: %s", removed)
    return {f"removed_{rule}": n for rule, n in removed.items() if n}
