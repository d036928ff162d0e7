"""What the commands print: numbers and tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime


def num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}" if abs(value) >= 1e4 else f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [list(header)] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def when(moment: datetime | None) -> str | None:
    return moment and moment.strftime("%Y-%m-%d %H:%M:%S")
