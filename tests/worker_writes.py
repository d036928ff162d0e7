"""A worker's writes as tests make them without a worker process: claim a job, record one
epoch (with its resume state and, when given, its best weights), finish it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db import attempts as db_attempts
from db.epochs import EpochRecord, Flush, record_epochs
from db.attempts import finish

__all__ = ["claim", "record_epoch", "finish"]


def claim(session: Session, job_id: str, owner: str = "test-worker", *, lease_seconds: float = 600,
          max_attempts: int = 3) -> int | None:
    """The attempt a claim of this one job took, or None."""
    return db_attempts.claim(session, [job_id], owner, lease_seconds=lease_seconds,
                           max_attempts=max_attempts).get(job_id)


def record_epoch(session: Session, job_id: str, attempt: int, metrics: dict[str, Any], *,
                 resume_state: bytes | None = None, best: bytes | None = None,
                 early_stopping: dict[str, Any] | None = None, layers: list[dict[str, Any]] | None = None) -> None:
    """One epoch as a flush of one writes it: its row and event, the resume state, and its weights
    as the best so far when given."""
    epoch = int(metrics["epoch"])
    record_epochs(session, [Flush(job_id, attempt, [EpochRecord(metrics, early_stopping, layers)],
                                  resume=(epoch, resume_state) if resume_state is not None else None,
                                  best=(epoch, metrics, best) if best is not None else None)])
