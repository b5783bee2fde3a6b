"""Servers started as processes by a test: waiting until one answers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.support.polling import wait_until

#: How long a server process may take to answer /healthz (a loaded CI machine is slow).
STARTUP_TIMEOUT = 60.0


def wait_until_live(server: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    def live() -> bool:
        if server.poll() is not None:
            raise AssertionError(
                f"the server at {base_url} exited with {server.returncode}:\n{log.read_text()}"
            )
        try:
            return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    if not wait_until(live, STARTUP_TIMEOUT, interval=0.1):
        raise AssertionError(f"the server at {base_url} was not live after {STARTUP_TIMEOUT} s")
