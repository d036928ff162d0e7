"""The "did you mean" of every error message that names a word the user may have mistyped."""

from __future__ import annotations

import difflib
from typing import Any


def did_you_mean(word: str, choices: Any) -> str | None:
    """The closest of `choices` to `word` (case and `_`/`-` ignored), or None."""
    key = lambda s: str(s).lower().replace("_", "").replace("-", "")  # noqa: E731
    by_key = {key(c): c for c in choices}
    if key(word) in by_key:
        return by_key[key(word)]
    close = difflib.get_close_matches(key(word), list(by_key), n=1, cutoff=0.6)
    return by_key[close[0]] if close else None
