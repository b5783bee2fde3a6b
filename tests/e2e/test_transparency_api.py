"""The transparency log over HTTP, on both back ends: GET /checkpoint, consistency proofs,
tlog-proofs of a run's seal, the keys that verify them, and every bad request refused."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from application.transparency.checkpoints import Checkpoint, open_checkpoint
from application.transparency.leaves import parse_event_leaf
from application.transparency.merkle import leaf_hash
from application.transparency.notes import NoteVerifier
from application.transparency.tlog_proofs import TlogProof
from application.transparency.verify import verify_consistency
from application.transparency_log import CheckpointScheduler
from infrastructure.keyring import KeyEntry, KeyRing
from infrastructure.settings import Settings
from infrastructure.signing import Signer
from interfaces.api.app import create_app
from tests.support.proofs import LedgerApi, commit_clean_run

TLOG_PROOF = "text/x-tlog-proof"


@pytest.fixture
def settings(database_url: str, signing_key_hex: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        signing_key=signing_key_hex,
        api_keys=[],
        api_keys_file=None,
        checkpoint_dir=tmp_path / "checkpoints",
        checkpoint_origin="example.com/ledger",
    )


@pytest.fixture
def ledger_api(settings: Settings) -> Iterator[LedgerApi]:
    with TestClient(create_app(settings)) as client:
        yield LedgerApi(client)


def trusted(api: LedgerApi) -> list[NoteVerifier]:
    keys = api.client.get("/keys").json()["keys"]
    return [NoteVerifier.from_vkey(key["vkey"]) for key in keys]


def checkpoint(api: LedgerApi, **params: Any) -> Checkpoint:
    response = api.client.get("/checkpoint", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return open_checkpoint(response.text, trusted(api), "example.com/ledger").checkpoint


def problem(response: Any, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/" + slug), response.json()


def test_keys_list_every_key_with_its_verifier_key(ledger_api: LedgerApi, signing_key_hex: str) -> None:
    body = ledger_api.client.get("/keys").json()
    [key] = body["keys"]
    assert key["name"] == "example.com/ledger"
    assert key["public_key"] == body["public_key"] and key["key_id"] == body["key_id"]
    assert NoteVerifier.from_vkey(key["vkey"]).public_key.hex() == key["public_key"]
    assert key["not_before"] is None and key["not_after"] is None


def test_a_closed_run_has_a_checkpoint_covering_its_seal_and_a_file_of_it(
    ledger_api: LedgerApi, settings: Settings
) -> None:
    commit_clean_run(ledger_api, "tlog-1")
    seal = ledger_api.run_proof("tlog-1")["seal_position"]
    latest = checkpoint(ledger_api)
    assert latest.size >= seal  # the seal and everything before it: positions start at 1, no gaps here
    assert settings.checkpoint_dir is not None
    files = sorted(settings.checkpoint_dir.iterdir())
    assert files, "no checkpoint file was written"
    kept = open_checkpoint(files[-1].read_text(), trusted(ledger_api), "example.com/ledger").checkpoint
    assert kept.size >= seal


def test_checkpoints_at_two_sizes_are_consistent(ledger_api: LedgerApi) -> None:
    commit_clean_run(ledger_api, "tlog-2")
    ledger_api.wait_for_views()
    latest = checkpoint(ledger_api)
    earlier = checkpoint(ledger_api, size=3)
    assert earlier.size == 3
    response = ledger_api.client.get("/checkpoints/consistency", params={"from": 3, "to": latest.size})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"]) == (3, latest.size)
    proof = [base64.b64decode(element) for element in body["proof"]]
    verify_consistency(3, latest.size, earlier.root_hash, latest.root_hash, proof)


@pytest.mark.parametrize("how", ["accept", "query"])
@pytest.mark.parametrize("route", ["run", "decision"])
def test_a_tlog_proof_shows_the_seal_in_the_latest_checkpoint(
    ledger_api: LedgerApi, how: str, route: str
) -> None:
    decision_ids = commit_clean_run(ledger_api, "tlog-3")
    seal = ledger_api.run_proof("tlog-3")["seal_position"]
    path = "/runs/tlog-3/proof" if route == "run" else f"/decisions/{decision_ids[0]}/proof"
    if how == "accept":
        response = ledger_api.client.get(path, headers={"Accept": TLOG_PROOF})
    else:
        response = ledger_api.client.get(path, params={"format": "tlog-proof"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(TLOG_PROOF)
    # The document says the route answers in this media type too, not only JSON.
    template = "/runs/{run_id}/proof" if route == "run" else "/decisions/{decision_id}/proof"
    documented = ledger_api.client.get("/openapi.json").json()["paths"][template]["get"]["responses"]["200"]
    assert {"application/json", TLOG_PROOF} <= documented["content"].keys()
    proof = TlogProof.parse(response.text)
    assert proof.extra is not None
    # The extra data is the seal event's leaf: hashing it gives the leaf the proof places.
    leaf = parse_event_leaf(proof.extra)
    assert leaf.position == seal and leaf.topic.endswith("Run.Sealed")
    verified = proof.verify(leaf_hash(proof.extra), trusted(ledger_api), "example.com/ledger")
    assert verified.checkpoint.size > proof.index


@pytest.mark.parametrize(
    ("params", "status", "slug"),
    [
        ({"size": 10**9}, 404, "checkpoint-not-found"),
        ({"size": -1}, 422, "validation-error"),
        ({"size": "three"}, 422, "validation-error"),
    ],
)
def test_bad_checkpoint_requests_are_problems(
    ledger_api: LedgerApi, params: dict, status: int, slug: str
) -> None:
    problem(ledger_api.client.get("/checkpoint", params=params), status, slug)


@pytest.mark.parametrize(
    ("params", "status", "slug"),
    [
        ({"from": 5, "to": 3}, 422, "tree-size-invalid"),
        ({"from": 0, "to": 3}, 422, "validation-error"),
        ({"from": 1}, 422, "validation-error"),
        ({"from": 1, "to": 10**9}, 404, "checkpoint-not-found"),
        ({"from": "x", "to": 2}, 422, "validation-error"),
    ],
)
def test_bad_consistency_requests_are_problems(
    ledger_api: LedgerApi, params: dict, status: int, slug: str
) -> None:
    ledger_api.open_run("tlog-bad")
    ledger_api.wait_for_views()
    problem(ledger_api.client.get("/checkpoints/consistency", params=params), status, slug)


def test_a_tlog_proof_needs_a_committed_run_and_a_known_format(ledger_api: LedgerApi) -> None:
    ledger_api.open_run("tlog-open")
    problem(
        ledger_api.client.get("/runs/tlog-open/proof", params={"format": "tlog-proof"}),
        404,
        "proof-not-found",
    )
    problem(ledger_api.client.get("/runs/tlog-open/proof", params={"format": "xml"}), 422, "validation-error")


def test_the_scheduler_checkpoints_a_grown_log_and_nothing_else(ledger_api: LedgerApi) -> None:
    service = ledger_api.client.app.state.service  # type: ignore[attr-defined]
    log = service.transparency
    ledger_api.open_run("tlog-sched")
    ledger_api.wait_for_views()
    # Grown since the last checkpoint (none yet): one is made; not grown: none is.
    made = log.make_checkpoint_if_grown()
    assert made is not None and made.tree_size == log.tree_size()
    assert log.make_checkpoint_if_grown() is None


def test_the_scheduler_thread_calls_the_log_until_stopped() -> None:
    calls = threading.Event()

    class FakeLog:
        def make_checkpoint_if_grown(self) -> None:
            calls.set()

    scheduler = CheckpointScheduler(FakeLog(), interval=0.01)  # type: ignore[arg-type]
    scheduler.start()
    try:
        assert calls.wait(timeout=30)
    finally:
        scheduler.stop()
    assert not scheduler._thread.is_alive()


def test_with_no_key_valid_now_nothing_is_signed_and_the_answer_says_so(
    database_url: str, tmp_path: Path
) -> None:
    # The ring's only key was retired yesterday, and none replaced it.
    ring_file = tmp_path / "ring.json"
    yesterday = datetime.now(UTC) - timedelta(days=1)
    KeyRing([KeyEntry("example.com/ledger", Signer(Ed25519PrivateKey.generate()), None, yesterday)]).save(
        ring_file
    )
    settings = Settings(
        database_url=database_url, signing_keyring_file=ring_file, api_keys=[], api_keys_file=None,
        checkpoint_origin="example.com/ledger",
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        problem(client.get("/checkpoint"), 503, "no-valid-signing-key")
        # The keys are still listed, so what the retired key signed can be checked.
        [key] = client.get("/keys").json()["keys"]
        assert key["not_after"] == yesterday.isoformat()
