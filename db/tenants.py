"""Tenants' shares of the cluster: weight (fair share), max_priority, max_running.

A tenant without a row has weight 1 and no caps; `netfit tenants set` writes a row (server side,
on the database, like API keys)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.keys import TENANT
from db.models import Tenant, utcnow

DEFAULT_WEIGHT = 1.0


@dataclass(frozen=True)
class Share:
    name: str
    weight: float = DEFAULT_WEIGHT
    max_priority: int | None = None
    max_running: int | None = None


def share_of(session: Session, tenant: str) -> Share:
    row = session.get(Tenant, tenant)
    if row is None:
        return Share(tenant)
    return Share(row.name, row.weight, row.max_priority, row.max_running)


def set_tenant(session: Session, name: str, *, weight: float | None = None, max_priority: int | None = None,
               max_running: int | None = None, clear: tuple[str, ...] = ()) -> Tenant:
    """Create or change a tenant's row: the values given are set, the names in `clear` go back
    to their defaults (weight 1, no cap). ValueError for a bad name or value."""
    from netfit.spec import MAX_PRIORITY

    if not TENANT.fullmatch(name):
        raise ValueError(f"tenant {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if weight is not None and not 0 < weight <= 1e6:
        raise ValueError(f"--weight {weight}: give a number above 0 (the default is {DEFAULT_WEIGHT:g})")
    if max_priority is not None and not -MAX_PRIORITY <= max_priority <= MAX_PRIORITY:
        raise ValueError(f"--max-priority {max_priority}: give {-MAX_PRIORITY}..{MAX_PRIORITY}")
    if max_running is not None and max_running < 0:
        raise ValueError(f"--max-running {max_running}: give 0 or more (0: none of its jobs starts)")
    row = session.get(Tenant, name) or Tenant(name=name, weight=DEFAULT_WEIGHT)
    for field in clear:
        setattr(row, field, DEFAULT_WEIGHT if field == "weight" else None)
    for field, value in (("weight", weight), ("max_priority", max_priority), ("max_running", max_running)):
        if value is not None:
            setattr(row, field, value)
    row.updated_at = utcnow()
    session.add(row)
    session.commit()
    return row


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.name)))


def priority_refusal(session: Session, tenant: str, priority: int) -> str | None:
    """Why `tenant` may not submit at `priority` (None: it may)."""
    cap = share_of(session, tenant).max_priority
    if cap is not None and priority > cap:
        return (f"{priority} is above this tenant's cap, max_priority {cap} "
                f"(set by the operator: `netfit tenants set {tenant} --max-priority N`); use {cap} or less")
    return None
