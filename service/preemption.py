"""The preemption pass as the processes run it: every worker's reconciler each period, and the
API right after a submit (so a priority job does not wait a reconcile period to be let in)."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from db import preemption
from service.settings import Settings

log = logging.getLogger("netfit.preemption")


def run_pass(session: Session, settings: Settings) -> list[tuple[str, str]]:
    """One pass (db.preemption says the rule); [(job asked, queued job it makes way for)]. A
    failure (a concurrent writer on SQLite) costs this pass only: the next one decides again."""
    if not settings.preemption:
        return []
    try:
        asked = preemption.preempt(session, after_seconds=settings.preempt_after_seconds,
                                   stale_after=settings.lease_seconds)
    except Exception as exc:  # noqa: BLE001 - the reconciler's next pass tries again
        session.rollback()
        log.warning("preemption pass failed: %s", str(exc).splitlines()[0][:200])
        return []
    for victim, by in asked:
        log.info("job %s: asked to make way for job %s at its next epoch end (preemption)", victim, by)
    return asked
