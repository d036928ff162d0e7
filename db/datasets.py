"""Uploaded data sets: canonical npz bytes plus what the API shows about them."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Dataset, new_id
from db.pages import newest_first


def create_dataset(session: Session, *, tenant: str, name: str | None, format: str, data: bytes,
                   n_samples: int, input_shape: list[int], task: str, n_classes: int | None,
                   has_test_split: bool) -> Dataset:
    dataset = Dataset(
        id=new_id(), tenant=tenant, name=name, format=format, data=data, n_samples=n_samples,
        input_shape=list(input_shape), task=task, n_classes=n_classes, has_test_split=has_test_split,
        size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
    )
    session.add(dataset)
    session.commit()
    return dataset


def get_dataset(session: Session, tenant: str, dataset_id: str) -> Dataset | None:
    return session.scalars(select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant == tenant)).one_or_none()


def dataset_bytes(session: Session, tenant: str, dataset_id: str) -> bytes | None:
    return session.scalar(select(Dataset.data).where(Dataset.id == dataset_id, Dataset.tenant == tenant))


def dataset_sha256(session: Session, tenant: str, dataset_id: str) -> str | None:
    return session.scalar(select(Dataset.sha256).where(Dataset.id == dataset_id, Dataset.tenant == tenant))


def list_datasets(session: Session, tenant: str, *, limit: int = 50,
                  cursor: str | None = None) -> tuple[list[Dataset], str | None]:
    """Newest first, with the jobs list's cursor. ValueError for a bad cursor."""
    return newest_first(select(Dataset).where(Dataset.tenant == tenant), Dataset, cursor, limit, session.scalars)
