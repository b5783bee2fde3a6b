"""Rotating the signing key on a live ledger, through the command line and the API: what
the retired key signed still verifies, the new key signs from then on, and a tlog-proof
checks offline with the keys GET /keys lists."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from infrastructure.settings import Settings
from interfaces.api.app import create_app
from tests.support.proofs import LedgerApi, commit_clean_run, decision_ledger
from tests.support.tamper import write_history


def test_a_rotated_key_keeps_verifying_what_it_signed(
    database_url: str, signing_key_hex: str, tmp_path: Path
) -> None:
    # A ledger signs with its configured key; someone keeps a checkpoint of it.
    history = write_history(database_url, signing_key_hex, tmp_path)
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    with TestClient(create_app(history.settings())) as client:
        service = client.app.state.service  # type: ignore[attr-defined]
        service.read_models.wait_for(history.head)
        (folder / "1-before-rotation").write_text(service.transparency.make_checkpoint().note)
        old_key = client.get("/keys").json()["keys"][0]

    # The operator rotates: the ring starts with the configured key, retired now, and a new one.
    ring = tmp_path / "ring.json"
    rotated = decision_ledger(
        "keys", "rotate", "--keyring", str(ring), "--database-url", database_url,
        cwd=tmp_path, signing_key=signing_key_hex,
    )  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    new_key = json.loads(rotated.stdout)
    assert new_key["not_before"] is not None and new_key["public_key"] != old_key["public_key"]

    # Served with the ring, the ledger signs with the new key and lists both.
    settings = Settings(database_url=database_url, signing_keyring_file=ring, api_keys=[], api_keys_file=None)
    with TestClient(create_app(settings)) as client:
        api = LedgerApi(client)
        commit_clean_run(api, "after-rotation")
        service = client.app.state.service  # type: ignore[attr-defined]
        api.wait_for_views()
        (folder / "2-after-rotation").write_text(service.transparency.make_checkpoint().note)
        body = client.get("/keys").json()
        assert body["public_key"] == new_key["public_key"]
        retired, current = body["keys"]
        assert (
            retired["public_key"] == old_key["public_key"] and retired["not_after"] == current["not_before"]
        )
        (tmp_path / "keys.json").write_text(json.dumps(body))
        tlog_proof = client.get("/runs/after-rotation/proof", params={"format": "tlog-proof"}).text
        (tmp_path / "seal.tlog-proof").write_text(tlog_proof)

    # Both checkpoints verify with the listed keys: the retired key's too.
    audit = decision_ledger(
        "audit", "verify", "--database-url", database_url, "--checkpoint", str(folder),
        "--trusted-keys", str(tmp_path / "keys.json"), cwd=tmp_path,
    )  # fmt: skip
    assert audit.returncode == 0, audit.stderr
    assert "2 signed checkpoint(s) match" in audit.stdout, audit.stdout

    # Trusting only the new key, the checkpoint the old key signed proves nothing.
    only_new = decision_ledger(
        "audit", "verify", "--database-url", database_url, "--checkpoint", str(folder / "1-before-rotation"),
        "--public-key", new_key["vkey"], cwd=tmp_path,
    )  # fmt: skip
    assert only_new.returncode == 1
    assert "no trusted key signed this note" in only_new.error_line

    # The run's tlog-proof checks offline, with nothing but the keys.
    offline = decision_ledger(
        "proof", "verify-tlog", str(tmp_path / "seal.tlog-proof"), "--trusted-keys", str(tmp_path / "keys.json"),
        cwd=tmp_path,
    )  # fmt: skip
    assert offline.returncode == 0, offline.stderr
    assert "Run.Sealed" in offline.stdout and "is leaf" in offline.stdout

    # keys show, from the same settings, lists the same keys.
    shown = decision_ledger(
        "keys", "show", "--database-url", database_url, cwd=tmp_path, signing_key=signing_key_hex
    )
    assert shown.returncode == 0, shown.stderr


def test_rotating_needs_to_know_where_the_ring_lives(
    database_url: str, signing_key_hex: str, tmp_path: Path
) -> None:
    refused = decision_ledger(
        "keys", "rotate", "--database-url", database_url, cwd=tmp_path, signing_key=signing_key_hex
    )
    assert refused.returncode == 2
    assert "--keyring FILE or DECISION_LEDGER_SIGNING_KEYRING_FILE" in refused.error_line


def test_a_ring_that_is_not_a_ring_is_one_line(database_url: str, tmp_path: Path) -> None:
    ring = tmp_path / "ring.json"
    ring.write_text("{}")
    refused = decision_ledger(
        "keys", "rotate", "--keyring", str(ring), "--database-url", database_url, cwd=tmp_path
    )
    assert refused.returncode == 2
    assert "is not {'keys'" in refused.error_line
