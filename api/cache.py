"""A small in-process LRU of response bytes, bounded by their total size."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class BytesLRU:
    """Least recently used entries go first once the bytes held pass `max_bytes`. Sync
    routes run in a thread pool, hence the lock."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            self._size += len(value) - (len(old) if old is not None else 0)
            self._entries[key] = value
            while self._size > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._size -= len(dropped)
