"""Fewer garbage collections while a bulk job holds pages of young objects (decoded events
and the rows folded from them). They form no reference cycles, yet with the default
thresholds the collector scans them again at every 700 allocations. Measured on a
100,000-event rebuild of the runs view (PostgreSQL): about a tenth of its time.

The thresholds belong to the process, so they are raised once for all the jobs that
run at a time, and put back when the last one ends (in a server process, to the setting
interfaces/serving.py gave it).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Allocations between two collections of the youngest generation, during bulk jobs.
BULK_THRESHOLD = 50_000

_lock = threading.Lock()
_jobs = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def fewer_collections() -> Iterator[None]:
    global _jobs, _saved
    with _lock:
        if _jobs == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(max(BULK_THRESHOLD, _saved[0]), *_saved[1:])
        _jobs += 1
    try:
        yield
    finally:
        with _lock:
            _jobs -= 1
            if _jobs == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
