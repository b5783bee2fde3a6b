"""Open local mode (no API keys) answers loopback callers only, however the app is served:
`serve` refuses a public --host, and so does the app itself, built by `create_app` (as
`uvicorn interfaces.serving:worker_app --factory --host 0.0.0.0` builds it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infrastructure.settings import ConfigurationError, Settings
from interfaces.api.app import create_app
from tests.support.api import assert_problem, free_port, keyed
from tests.support.servers import wait_until_live


def outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_create_app_refuses_open_mode_on_a_public_host(signing_key_hex: str, tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        signing_key=signing_key_hex,
        api_keys=[],
        api_keys_file=None,
        host="0.0.0.0",
    )
    with pytest.raises(ConfigurationError, match=r"refusing to serve without API keys on 0\.0\.0\.0"):
        create_app(settings)
    assert not (tmp_path / "ledger.sqlite3").exists()


def address_args(port: int) -> list[str]:
    return ["--host", "0.0.0.0", "--port", str(port)]


@pytest.fixture
def uvicorn_on_every_interface(signing_key_hex: str, tmp_path: Path) -> Iterator[str]:
    """The worker app under plain uvicorn, bound to 0.0.0.0, with no API keys anywhere."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("DECISION_LEDGER_")
    }
    environment |= {
        "DECISION_LEDGER_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        "DECISION_LEDGER_SIGNING_KEY": signing_key_hex,
    }
    port = free_port()
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "interfaces.serving:worker_app",
                "--factory",
                *address_args(port),
            ],
            cwd=Path(__file__).resolve().parent.parent,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_live(server, f"http://127.0.0.1:{port}", log)
        yield str(port)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_uvicorn_on_every_interface_answers_only_loopback_callers(uvicorn_on_every_interface: str) -> None:
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    port = uvicorn_on_every_interface
    body = {"run_id": "fraud-1", "lane": "fraud"}

    # From off the loopback: a write and a read are refused, and say why.
    outside = f"http://{address}:{port}"
    refused = httpx.post(f"{outside}/runs", json=body, headers=keyed("open-1"), timeout=10)
    problem = assert_problem(refused, 403, "open-mode-off-loopback")
    assert "DECISION_LEDGER_API_KEYS" in problem["detail"]
    assert_problem(httpx.get(f"{outside}/runs/fraud-1", timeout=10), 403, "open-mode-off-loopback")

    # Nothing was written; a loopback caller is served as before.
    inside = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{inside}/runs/fraud-1", timeout=10).status_code == 404
    assert httpx.post(f"{inside}/runs", json=body, headers=keyed("open-1"), timeout=10).status_code == 201
