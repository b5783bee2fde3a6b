"""Producing the next items while the current one is used: reading the log a page ahead.

A thread of its own pulls items from an iterable (each a page read from the database)
and hands them over through a queue that holds at most `ahead` of them, so the reading,
and the database's work on it, overlap with what the consumer does with the page before,
and memory stays bounded however long the iterable is. An error in the thread is raised
in the consumer; a consumer that stops early stops the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def read_ahead(items: Iterable[T], *, ahead: int = 2, name: str = "read-ahead") -> Generator[T, None, None]:
    """The items of `items`, in order, each produced while the one before is consumed."""
    handed: queue.Queue[object] = queue.Queue(maxsize=ahead)
    stopping = threading.Event()
    producer = threading.Thread(target=_produce, args=(items, handed, stopping), name=name, daemon=True)
    producer.start()
    try:
        while True:
            item = handed.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stopping.set()
        producer.join()


def _produce(items: Iterable[object], handed: queue.Queue[object], stopping: threading.Event) -> None:
    def hand_over(item: object) -> bool:
        while not stopping.is_set():
            try:
                handed.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    try:
        for item in items:
            if not hand_over(item):
                return
        hand_over(_END)
    except BaseException as error:  # raised again in the consumer
        hand_over(_Failed(error))
