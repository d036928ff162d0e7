"""Keyset pages, newest first: the one cursor every list endpoint (jobs, sweeps, data sets) hands out."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, bindparam, or_

T = TypeVar("T")


def encode_cursor(row: Any) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """ValueError if the cursor was not made by encode_cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, row_id = raw.split("|", 1)
        return datetime.fromisoformat(created), row_id
    except Exception as exc:  # noqa: BLE001 - any garbage is the same user error
        raise ValueError("cursor is not one this server returned; use next_cursor from the previous page") from exc


def newest_first(query: Select, table: Any, cursor: str | None, limit: int,
                 run: Callable[[Select], Sequence[T]]) -> tuple[list[T], str | None]:
    """The page after `cursor` (ordered by created_at, id, newest first) and the next page's
    cursor (None at the end); one row more than asked tells whether there is a next page."""
    statement = newest_first_statement(query, table, after=bool(cursor))
    return cut_page(list(run(statement.params(**page_parameters(cursor, limit)))), limit)


def newest_first_statement(query: Select, table: Any, after: bool) -> Select:
    """newest_first's statement with its values as bound parameters (after_created, after_id
    when `after`; page_rows, the limit + 1): built once and kept, it is compiled and its cache
    key computed once, where a statement built per request pays both every time."""
    if after:
        created, row_id = bindparam("after_created", type_=table.created_at.type), bindparam("after_id")
        query = query.where(or_(table.created_at < created, and_(table.created_at == created, table.id < row_id)))
    return query.order_by(table.created_at.desc(), table.id.desc()).limit(bindparam("page_rows"))


def page_parameters(cursor: str | None, limit: int) -> dict[str, Any]:
    """The bound values of newest_first_statement(after=bool(cursor))."""
    values: dict[str, Any] = {"page_rows": limit + 1}
    if cursor:
        values["after_created"], values["after_id"] = decode_cursor(cursor)
    return values


def cut_page(rows: list[T], limit: int) -> tuple[list[T], str | None]:
    """rows (up to limit + 1 read) as a page and the next page's cursor (None at the end)."""
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more else None)
