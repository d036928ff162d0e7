"""The jobs list: one light item a job (netfit.models.JobItem), read as plain rows. A page of
whole jobs decoded 50 specs and model summaries and validated 50 full models (~10 ms a page);
a list shows none of that, and GET /v1/jobs/{id} has it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Job
from db.pages import newest_first
from netfit.models import JobItem

# `monitor` is read from inside the spec by the database; the other fields are the job's columns
MONITOR = func.coalesce(Job.spec[("training", "early_stopping", "monitor")].as_string(),
                        JobItem.model_fields["monitor"].default).label("monitor")
ITEM = tuple(MONITOR if name == "monitor" else getattr(Job, name) for name in JobItem.model_fields)


def list_jobs(session: Session, tenant: str, *, status: str | None = None, limit: int = 50,
              cursor: str | None = None, sweep: str | None = None,
              name: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first: a page of items (dicts of JobItem's fields) and the next page's cursor
    (None at the end)."""
    query = select(*ITEM).where(Job.tenant == tenant)
    if status:
        query = query.where(Job.status == status)
    if sweep:  # a sweep's trials
        query = query.where(Job.sweep_id == sweep)
    if name:  # a case-insensitive substring of the name (the dashboard's search box)
        query = query.where(Job.name.icontains(name, autoescape=True))
    rows, next_cursor = newest_first(query, Job, cursor, limit, session.execute)
    return [row._asdict() for row in rows], next_cursor
