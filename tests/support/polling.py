"""Waiting for something another process does: poll a condition until a deadline.

A test never sleeps for a fixed time hoping the other side is done; it asks, again and
again, and gives up (returning False) only when the deadline has passed."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    """True as soon as `condition()` holds; False if it still does not after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
