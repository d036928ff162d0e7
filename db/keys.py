"""API keys: create (the key is returned once), look up a tenant by key, list, revoke.

A key is "nf_" + 43 url-safe characters of 256 random bits. The table keeps only its
SHA-256: a slow password hash (bcrypt, argon2) defends low-entropy secrets against
guessing, and a 256-bit random key cannot be guessed, so one fast hash suffices and
the lookup on every request stays a single indexed equality.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import ApiKey, new_id, utcnow

KEY_PREFIX = "nf_"
VISIBLE = len(KEY_PREFIX) + 8  # "nf_" and 8 characters: tells keys apart, reveals 48 of 256 bits
TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, *, tenant: str, name: str | None = None) -> tuple[ApiKey, str]:
    """Store a new key of `tenant`; returns the row and the key itself (not stored anywhere)."""
    if not TENANT.fullmatch(tenant):
        raise ValueError(f"tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if name is not None and len(name) > 200:
        raise ValueError("name: at most 200 characters")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(id=new_id(), tenant=tenant, name=name, prefix=key[:VISIBLE], key_hash=hash_key(key))
    session.add(row)
    session.commit()
    return row, key


def tenant_for(session: Session, key: str) -> str | None:
    """The tenant of an active key; None for an unknown or revoked one."""
    return session.scalar(select(ApiKey.tenant).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)))


def any_keys(session: Session) -> bool:
    """Whether a key was ever created (revoked ones count: revoking the last key must not
    open the API to everyone)."""
    return session.scalar(select(ApiKey.id).limit(1)) is not None


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def find_key(session: Session, ident: str) -> ApiKey:
    """The key with this id, or whose key starts with `ident` (at least "nf_" and 4 characters;
    the whole key works too); LookupError if none or several match."""
    ident = ident.strip()
    rows = list(session.scalars(select(ApiKey).where(ApiKey.id == ident)))
    if not rows and ident.startswith(KEY_PREFIX) and len(ident) >= len(KEY_PREFIX) + 4:
        # a start of the visible prefix, or the whole key; few keys exist, so filter here
        rows = [r for r in list_keys(session) if r.prefix.startswith(ident[:VISIBLE])
                and (len(ident) <= VISIBLE or r.key_hash == hash_key(ident))]
    if not rows:
        raise LookupError(f"no API key with id or prefix '{ident}'; `netfit keys list` shows them")
    if len(rows) > 1:
        raise LookupError(f"'{ident}' matches {len(rows)} keys ({', '.join(r.id for r in rows)}); give the id")
    return rows[0]


def revoke_key(session: Session, ident: str) -> tuple[ApiKey, bool]:
    """Revoke the key named by id or prefix; returns it and whether it was active until now."""
    row = find_key(session, ident)
    done = session.execute(
        update(ApiKey).where(ApiKey.id == row.id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    ).rowcount
    session.commit()
    session.refresh(row)
    return row, bool(done)
