"""An ASGI app served by uvicorn in a thread of this process, on 127.0.0.1 only: the
demo's ledger server, and the receivers the tests post webhooks to."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

LOOPBACK = "127.0.0.1"


class ServerDidNotStart(RuntimeError):
    pass


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving_in_thread(
    app: Any, *, port: int, name: str, start_timeout: float, stop_timeout: float, **config: Any
) -> Iterator[None]:
    """Serve `app` until the block ends; `config` goes to uvicorn.Config."""
    server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning", **config))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise ServerDidNotStart(f"{name} did not start on {LOOPBACK}:{port}")
            time.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=stop_timeout)
