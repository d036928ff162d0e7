"""Which weights a job's checkpoint holds now, read without them: what a kept model is checked
against on every /predict (one indexed row; not the job's row with its spec, nor every checkpoint)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Checkpoint, Job


def checkpoint_ref(session: Session, tenant: str, job_id: str, kind: str) -> Any:
    """(sha256, epoch) of the tenant's job's `kind` checkpoint; None if there is none (or no such job)."""
    return session.execute(
        select(Checkpoint.sha256, Checkpoint.epoch).join(Job, Job.id == Checkpoint.job_id)
        .where(Checkpoint.job_id == job_id, Checkpoint.kind == kind, Job.tenant == tenant)).one_or_none()
