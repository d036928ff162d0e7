"""Helpers shared by the test modules of tests/db."""

from __future__ import annotations


def insert_old_job(conn, tenant: str, spec: dict) -> str:
    """A job row as revision 0001 knew it (the ORM would name the columns later revisions add)."""
    import json

    from sqlalchemy import text

    from db.models import new_id, utcnow

    job_id, now = new_id(), utcnow().replace(tzinfo=None)
    conn.execute(text(
        "INSERT INTO jobs (id, tenant, spec, status, epochs, epochs_completed, attempts, releases, queue,"
        " cancel_requested, created_at, updated_at) VALUES (:id, :tenant, :spec, 'queued', 5, 0, 0, 0, 'cpu',"
        " false, :now, :now)"), {"id": job_id, "tenant": tenant, "spec": json.dumps(spec), "now": now})
    return job_id
