"""What the commands print: numbers and tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime


from netfit.progress import num  # noqa: F401  (one home for how a number is shown)


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [list(header)] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def when(moment: datetime | None) -> str | None:
    return moment and moment.strftime("%Y-%m-%d %H:%M:%S")
