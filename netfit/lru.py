"""A small in-process LRU bounded by the total size of what it holds, in bytes: the API's kept
response bodies and the SDK's ETag-answered GETs."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class BytesLRU:
    """Least recently used entries go first once the bytes held pass `max_bytes`. Thread-safe:
    the API's sync routes run in a thread pool, and an SDK Client may be shared by threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: Any, size: int | None = None) -> None:
        """Keep `value`, counted as `size` bytes (default len(value): bytes)."""
        size = len(value) if size is None else size
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            self._size += size - (old[1] if old is not None else 0)
            self._entries[key] = (value, size)
            while self._size > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._size -= dropped

    def discard(self, matches: Any) -> None:
        """Drop every entry whose key `matches(key)` (what a delete made stale)."""
        with self._lock:
            for key in [k for k in self._entries if matches(k)]:
                self._size -= self._entries.pop(key)[1]
