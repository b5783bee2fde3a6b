"""The demo's ledger server: the API, the console and the dispatcher over a new SQLite
database, in open local mode on loopback, with one effector (the card processor)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from infrastructure.settings import Settings
from interfaces.api.app import create_app
from interfaces.demo.client import DemoFailed
from interfaces.threaded_server import ServerDidNotStart, serving_in_thread

#: The action kind the card processor receives.
BLOCK_CARD = "block-card"
#: Three quick attempts, then the action is dead-lettered (a real schedule spans a day).
RETRY_SCHEDULE_S = (0.0, 0.2, 0.5)


def write_effectors_file(workdir: Path, url: str, secret: str) -> Path:
    """The effectors file the server reads: block-card actions go to the card processor."""
    path = workdir / "effectors.toml"
    schedule = ", ".join(str(delay) for delay in RETRY_SCHEDULE_S)
    path.write_text(
        "[[effectors]]\n"
        'name = "card-processor"\n'
        f'url = "{url}"\n'
        f'kinds = ["{BLOCK_CARD}"]\n'
        f'secret = "{secret}"\n'
        "timeout_s = 5\n"
        f"retry_schedule_s = [{schedule}]\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


@contextmanager
def ledger_server(workdir: Path, port: int, effectors_file: Path) -> Iterator[str]:
    """Serve until the block ends; yields the base URL."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise DemoFailed(f"port {port} on 127.0.0.1 cannot be used: {error.strerror}") from None
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'demo.sqlite3'}",
        signing_key=SecretStr(Ed25519PrivateKey.generate().private_bytes_raw().hex()),
        api_keys=[],
        api_keys_file=None,
        host="127.0.0.1",
        port=port,
        effectors_file=effectors_file,
        run_dispatcher=True,
    )
    try:
        with serving_in_thread(
            create_app(settings), port=port, name="demo-server", start_timeout=60, stop_timeout=30
        ):
            yield f"http://127.0.0.1:{port}"
    except ServerDidNotStart as error:
        raise DemoFailed(str(error)) from None
