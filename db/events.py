"""Storing a job's events (what GET /v1/jobs/{id}/events replays); their kinds are db.states.EventKind."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db.models import JobEvent
from db.states import EventKind


def add(session: Session, job_id: str, kind: EventKind, data: dict[str, Any]) -> None:
    session.add(JobEvent(job_id=job_id, kind=str(kind), data=data))


def status(session: Session, job_id: str, status: str, **extra: Any) -> None:
    add(session, job_id, EventKind.STATUS, {"status": str(status), **extra})
