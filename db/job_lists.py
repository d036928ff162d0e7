"""The jobs list: one light item a job (netfit.models.JobItem), read as plain rows. A page of
whole jobs decoded 50 specs and model summaries and validated 50 full models (~10 ms a page);
a list shows none of that, and GET /v1/jobs/{id} has it."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from db.models import Job
from db.pages import cut_page, newest_first_statement, page_parameters
from db.session import read_only_connection
from netfit.models import JobItem

# every field is a column of the job's (the early stopping's monitor is copied from the spec when
# the job is made: read from inside each spec, it was a third of PostgreSQL's time for a page)
MONITOR = func.coalesce(Job.monitor, JobItem.model_fields["monitor"].default).label("monitor")
ITEM = tuple(MONITOR if name == "monitor" else getattr(Job, name) for name in JobItem.model_fields)
NAMES = tuple(JobItem.model_fields)


@functools.lru_cache(maxsize=None)
def _statement(status: bool, sweep: bool, after: bool) -> Select:
    """One kept statement per set of filters, the values bound at execution."""
    query = select(*ITEM).where(Job.tenant == bindparam("tenant"))
    if status:
        query = query.where(Job.status == bindparam("status"))
    if sweep:  # a sweep's trials
        query = query.where(Job.sweep_id == bindparam("sweep"))
    return newest_first_statement(query, Job, after)


def list_jobs(session: Session, tenant: str, *, status: str | None = None, limit: int = 50,
              cursor: str | None = None, sweep: str | None = None,
              name: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first: a page of items (dicts of JobItem's fields) and the next page's cursor
    (None at the end). ValueError for a bad cursor."""
    values = page_parameters(cursor, limit) | {"tenant": tenant, "status": status, "sweep": sweep}
    statement = _statement(bool(status), bool(sweep), bool(cursor))
    if name:  # a case-insensitive substring of the name (the dashboard's search box)
        statement = statement.where(Job.name.icontains(name, autoescape=True))
    # one statement, so no transaction: no BEGIN and ROLLBACK round trips (db.session)
    rows, next_cursor = cut_page(read_only_connection(session).execute(statement, values).all(), limit)
    return [dict(zip(NAMES, row)) for row in rows], next_cursor
