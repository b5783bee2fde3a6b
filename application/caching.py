"""One bounded, thread-safe LRU map: the only kind of cache the application keeps."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, TypeVar

KeyT = TypeVar("KeyT")
ValueT = TypeVar("ValueT")


class BoundedLRU(Generic[KeyT, ValueT]):
    """At most `max_size` entries; the least recently used goes first. Every method takes
    one short lock, so threads and the event loop can share an instance."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("a cache holds at least one entry")
        self.max_size = max_size
        self._entries: OrderedDict[KeyT, ValueT] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: KeyT) -> ValueT | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def pop(self, key: KeyT) -> ValueT | None:
        with self._lock:
            return self._entries.pop(key, None)

    def put(self, key: KeyT, value: ValueT) -> None:
        self.put_many([(key, value)])

    def put_many(self, entries: Iterable[tuple[KeyT, ValueT]]) -> None:
        with self._lock:
            for key, value in entries:
                self._entries[key] = value
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)

    def discard(self, key: KeyT) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
