"""Reading ahead: the next page is produced by a thread of its own while the consumer uses
the one before; order, errors and an early stop behave as with a plain loop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from application.read_ahead import read_ahead


def test_the_items_come_in_order_and_all_of_them() -> None:
    assert list(read_ahead(iter(range(1000)))) == list(range(1000))


def test_the_producer_runs_at_most_a_bounded_number_of_items_ahead() -> None:
    produced: list[int] = []

    def pages() -> Iterator[int]:
        for number in range(100):
            produced.append(number)
            yield number

    items = read_ahead(pages(), ahead=2)
    assert next(items) == 0
    # Give the producer every chance to run away; it may hold only `ahead` more, plus
    # the one it waits to hand over.
    for _ in range(50):
        threading.Event().wait(0.002)
    assert len(produced) <= 1 + 2 + 1
    items.close()


def test_an_error_in_the_producer_is_raised_in_the_consumer_after_the_items_before_it() -> None:
    def pages() -> Iterator[int]:
        yield 1
        yield 2
        raise LookupError("page 3 cannot be read")

    items = read_ahead(pages())
    assert next(items) == 1
    assert next(items) == 2
    with pytest.raises(LookupError, match="page 3"):
        next(items)


def test_a_consumer_that_stops_early_stops_the_producer() -> None:
    def pages() -> Iterator[int]:
        number = 0
        while True:  # an endless log: only the consumer's stop ends the thread
            yield number
            number += 1

    before = threading.active_count()
    items = read_ahead(pages(), name="stops-early")
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert not any(thread.name == "stops-early" for thread in threading.enumerate())
    assert threading.active_count() == before
