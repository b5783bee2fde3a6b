"""Bulk jobs raise the collector's thresholds while any of them runs, and the last one
to end puts back what was there before, however they overlap or fail."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from application.gc_pauses import BULK_THRESHOLD, fewer_collections


@pytest.fixture(autouse=True)
def known_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def test_overlapping_jobs_share_the_raised_thresholds_and_the_last_puts_them_back() -> None:
    first, second = fewer_collections(), fewer_collections()
    first.__enter__()
    assert gc.get_threshold() == (BULK_THRESHOLD, 10, 10)
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold() == (BULK_THRESHOLD, 10, 10)
    second.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_failing_job_puts_them_back() -> None:
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("page 3 cannot be read")
    assert gc.get_threshold() == (700, 10, 10)


def test_jobs_in_many_threads_leave_the_thresholds_as_they_found_them() -> None:
    start = threading.Barrier(8)

    def job() -> None:
        start.wait()
        for _ in range(200):
            with fewer_collections():
                assert gc.get_threshold()[0] == BULK_THRESHOLD

    threads = [threading.Thread(target=job) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gc.get_threshold() == (700, 10, 10)
