"""A ledger configured to encrypt or compress its events' states (the library's
CIPHER_TOPIC, COMPRESSOR_TOPIC) would store what the audit chain and the views cannot read
as canonical JSON: the command line refuses it in one line, before anything is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONSOLE_SCRIPT = Path(sys.executable).with_name("decision-ledger")


@pytest.mark.parametrize("command", [["runs", "show", "run-1"], ["serve", "--port", "18999"]])
@pytest.mark.parametrize(
    "setting",
    [
        ("COMPRESSOR_TOPIC", "eventsourcing.compressor:ZlibCompressor"),
        ("DECISIONLEDGER_CIPHER_TOPIC", "eventsourcing.cryptography:AESCipher"),
    ],
)
def test_another_stored_form_is_refused_in_one_line_and_nothing_is_written(
    command: list[str], setting: tuple[str, str], tmp_path: Path
) -> None:
    database = tmp_path / "ledger.sqlite3"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DECISION_LEDGER_")}
    environment[setting[0]] = setting[1]
    completed = subprocess.run(
        [str(CONSOLE_SCRIPT), *command, "--database-url", f"sqlite:///{database}"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.splitlines()
    named = setting[0].removeprefix("DECISIONLEDGER_")
    assert line.startswith("error: the ledger stores events as canonical JSON") and line.endswith(
        f"unset {named}"
    )
    assert not database.exists()
