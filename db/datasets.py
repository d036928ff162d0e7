"""Uploaded data sets: canonical npz bytes plus what the API shows about them."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from db.models import Dataset, new_id
from db.pages import newest_first


def create_dataset(session: Session, *, tenant: str, name: str | None, format: str, data: bytes,
                   n_samples: int, input_shape: list[int], task: str, n_classes: int | None,
                   has_test_split: bool, sha256: str | None = None, has_validation_split: bool = False) -> Dataset:
    """`sha256`: the digest of the content (its arrays), default the stored bytes'."""
    dataset = Dataset(
        id=new_id(), tenant=tenant, name=name, format=format, data=data, n_samples=n_samples,
        input_shape=list(input_shape), task=task, n_classes=n_classes, has_test_split=has_test_split,
        has_validation_split=has_validation_split,
        size_bytes=len(data), sha256=sha256 or hashlib.sha256(data).hexdigest(),
    )
    session.add(dataset)
    session.commit()
    return dataset


def get_dataset(session: Session, tenant: str, dataset_id: str) -> Dataset | None:
    return session.scalars(select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant == tenant)).one_or_none()


def dataset_bytes(session: Session, tenant: str, dataset_id: str) -> bytes | None:
    if session.get_bind().dialect.name != "postgresql":
        return session.scalar(select(Dataset.data).where(Dataset.id == dataset_id, Dataset.tenant == tenant))
    # psycopg's binary format: the bytea comes as it is stored, not as hex text twice its size
    # (a 55 MB blob in 0.27 s instead of 0.6-0.9 s); SQLAlchemy has no per-query switch for it
    import psycopg

    driver = session.connection().connection.driver_connection
    query = f"SELECT data FROM {Dataset.__tablename__} WHERE id = %s AND tenant = %s"
    try:
        with driver.cursor(binary=True) as cursor:
            row = cursor.execute(query, (dataset_id, tenant)).fetchone()
    except psycopg.OperationalError as exc:  # as SQLAlchemy raises it: the callers retry on it
        raise OperationalError(query, (dataset_id, tenant), exc) from exc
    return None if row is None else row[0]


def dataset_sha256(session: Session, tenant: str, dataset_id: str) -> str | None:
    return session.scalar(select(Dataset.sha256).where(Dataset.id == dataset_id, Dataset.tenant == tenant))


def list_datasets(session: Session, tenant: str, *, limit: int = 50, cursor: str | None = None,
                  sha256: str | None = None) -> tuple[list[Dataset], str | None]:
    """Newest first, with the jobs list's cursor (`sha256`: only that content). ValueError for a bad cursor."""
    query = select(Dataset).where(Dataset.tenant == tenant)
    if sha256 is not None:
        query = query.where(Dataset.sha256 == sha256)
    return newest_first(query, Dataset, cursor, limit, session.scalars)
