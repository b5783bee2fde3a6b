"""A committed run carries a signed proof that anyone can check, with no trust in the
server: offline with nothing but the public key from GET /keys, against the database's
stored events, and for each decision, as an inclusion proof in the run's Merkle tree.

Each test builds runs through the REST API, then checks them the way an auditor would:
through the `decision-ledger` command line, in a process of its own, and through the
verification functions the command line calls. The helpers are in tests/support/proofs.py,
shared with the tamper and forgery tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from application.proof_checks import verify_inclusion_proof, verify_run_proof
from tests.support.proofs import LedgerApi, commit_clean_run, decision_ledger, write_json


def assert_proofs_hold(
    api: LedgerApi, run_id: str, decision_ids: list[str], database_url: str, workdir: Path
) -> dict[str, Any]:
    """The run's proof verifies offline and against the store, and every decision's
    inclusion proof verifies offline. Returns the run proof."""
    proof = api.run_proof(run_id)
    public_key = api.public_key()
    proof_file = write_json(workdir / f"{run_id}.proof.json", proof)

    # Offline, with nothing but the document and the public key.
    verify_run_proof(proof, public_key)
    offline = decision_ledger("proof", "verify", str(proof_file), "--public-key", public_key, cwd=workdir)
    assert offline.returncode == 0, offline.stderr
    assert f"ok: run {run_id!r} attempt {proof['attempt']} proof is signed and consistent" in offline.stdout

    # Against the stored events: an auditor needs the database, not the signing key.
    stored = decision_ledger(
        "proof",
        "verify",
        str(proof_file),
        "--public-key",
        public_key,
        "--database-url",
        database_url,
        cwd=workdir,
    )
    assert stored.returncode == 0, stored.stderr
    assert f"ok: run {run_id!r} attempt {proof['attempt']} proof matches the stored events" in stored.stdout

    # Every decision is in the run's committed tree, leaf by leaf.
    for decision_id in decision_ids:
        inclusion = api.inclusion_proof(decision_id)
        assert inclusion["run_proof"] == proof
        assert inclusion["tree_size"] == proof["merkle"]["tree_size"]
        verify_inclusion_proof(inclusion, public_key)
        inclusion_file = write_json(workdir / f"{decision_id}.inclusion.json", inclusion)
        included = decision_ledger(
            "proof", "verify-inclusion", str(inclusion_file), "--public-key", public_key, cwd=workdir
        )
        assert included.returncode == 0, included.stderr
        assert f"ok: decision {decision_id} is in run {run_id!r}'s committed proof" in included.stdout
    return proof


@pytest.fixture
def ledger_api(api: TestClient) -> LedgerApi:
    return LedgerApi(api)


# --- The use cases ------------------------------------------------------------------------------------


def test_a_clean_run_proves_itself_offline_against_the_store_and_for_every_decision(
    ledger_api: LedgerApi, database_url: str, tmp_path: Path
) -> None:
    # Three inputs admitted, three decisions recorded, closed green.
    decision_ids = commit_clean_run(ledger_api, "clean-2024-06-01")

    # The proof verifies everywhere, and every decision is in its tree.
    proof = assert_proofs_hold(ledger_api, "clean-2024-06-01", decision_ids, database_url, tmp_path)

    # It states what was proven: three inputs, three approvals, nothing missing, and a
    # tree over the run's events up to the seal (open, admit, 3 decisions, seal).
    assert (proof["verdict"], proof["attempt"]) == ("committed", 1)
    assert proof["basis"]["count"] == 3
    assert proof["decisions"] == {"count": 3, "by_outcome": {"approve": 3}}
    assert proof["reconciliation"] == {"missing": 0, "unexpected": 0, "pending": 0, "failed": 0}
    assert proof["merkle"]["tree_size"] == proof["audit_records"] == 6


def test_a_run_committed_after_a_reopen_proves_its_second_attempt(
    ledger_api: LedgerApi, database_url: str, tmp_path: Path
) -> None:
    # The first close finds input "b" undecided and rejects the run.
    run_id = "reopened-2024-06-01"
    ledger_api.open_run(run_id)
    ledger_api.admit(run_id, "a", "b")
    first = ledger_api.decide(run_id, "a")["decision_id"]
    rejected = ledger_api.close(run_id)
    assert rejected["verdict"] == "rejected"

    # A rejected attempt has nothing to prove yet.
    assert ledger_api.read(f"/runs/{run_id}/proof").status_code == 404

    # The operator reopens it, the missing decision arrives, and the second close commits.
    ledger_api.reopen(run_id, "input b was late")
    second = ledger_api.decide(run_id, "b", outcome="decline")["decision_id"]
    committed = ledger_api.close(run_id)
    assert (committed["verdict"], committed["attempt"]) == ("committed", 2)

    # The proof is the second attempt's, and its tree spans both attempts' events.
    proof = assert_proofs_hold(ledger_api, run_id, [first, second], database_url, tmp_path)
    assert proof["attempt"] == 2
    assert proof["decisions"]["by_outcome"] == {"approve": 1, "decline": 1}
    # open, admit, decide a, seal, reject, reopen, decide b, seal
    assert proof["merkle"]["tree_size"] == 8


def test_a_run_with_corrections_and_waived_actions_proves_the_outcomes_in_force(
    ledger_api: LedgerApi, database_url: str, tmp_path: Path
) -> None:
    # Three decisions; one is corrected twice, and each of the others gets an action.
    run_id = "corrected-2024-06-01"
    ledger_api.open_run(run_id)
    ledger_api.admit(run_id, "a", "b", "c")
    decision_ids = [ledger_api.decide(run_id, input_id)["decision_id"] for input_id in ("a", "b", "c")]
    ledger_api.correct(decision_ids[0], "decline", "bureau data arrived late")
    ledger_api.correct(decision_ids[0], "refer", "second look by a person")

    # One action goes through; the other fails for good and an operator waives it.
    delivered = ledger_api.request_action(run_id, decision_ids[1])["action_id"]
    ledger_api.commit_action(delivered)
    abandoned = ledger_api.request_action(run_id, decision_ids[2])["action_id"]
    ledger_api.fail_action(abandoned, "mailbox gone")
    ledger_api.waive_action(abandoned, "customer closed the account")
    verdict = ledger_api.close(run_id)
    assert verdict["verdict"] == "committed", verdict

    # Everything verifies; the corrected decision's proof carries all three of its events.
    proof = assert_proofs_hold(ledger_api, run_id, decision_ids, database_url, tmp_path)
    corrected = ledger_api.inclusion_proof(decision_ids[0])
    assert [leaf["event"]["version"] for leaf in corrected["leaves"]] == [1, 2, 3]

    # The proof counts the outcome in force and both settled actions.
    assert proof["decisions"]["by_outcome"] == {"approve": 2, "refer": 1}
    assert (proof["actions"]["committed"], proof["actions"]["waived"]) == (1, 1)


def test_runs_written_side_by_side_each_prove_only_their_own_events(
    ledger_api: LedgerApi, database_url: str, signing_key_hex: str, tmp_path: Path
) -> None:
    # Two lanes work at once: their events alternate in the log.
    runs = ("credit-2024-06-01", "fraud-2024-06-01")
    for run_id in runs:
        ledger_api.open_run(run_id, lane=run_id.split("-")[0])
        ledger_api.admit(run_id, "a", "b")
    decision_ids: dict[str, list[str]] = {run_id: [] for run_id in runs}
    for input_id in ("a", "b"):
        for run_id in runs:
            decision_ids[run_id].append(ledger_api.decide(run_id, input_id)["decision_id"])
    for run_id in runs:
        assert ledger_api.close(run_id)["verdict"] == "committed"
    public_key = ledger_api.public_key()

    for run_id in runs:
        # Each tree holds just its run's events: open, admit, two decisions, seal ...
        proof = ledger_api.run_proof(run_id)
        assert proof["merkle"]["tree_size"] == 5
        # ... it matches the store, recomputed from those events among the others ...
        proof_file = write_json(tmp_path / f"{run_id}.proof.json", proof)
        stored = decision_ledger(
            "proof",
            "verify",
            str(proof_file),
            "--public-key",
            public_key,
            "--database-url",
            database_url,
            cwd=tmp_path,
        )
        assert stored.returncode == 0, stored.stderr
        # ... and each decision is in its own run's tree.
        for decision_id in decision_ids[run_id]:
            inclusion = ledger_api.inclusion_proof(decision_id)
            assert inclusion["run_proof"]["run_id"] == run_id
            verify_inclusion_proof(inclusion, public_key)

    # The whole log verifies, both proofs checked at their seals.
    ledger_api.wait_for_views()
    audit = decision_ledger(
        "audit",
        "verify",
        "--database-url",
        database_url,
        "--public-key",
        public_key,
        cwd=tmp_path,
        signing_key=signing_key_hex,
    )
    assert audit.returncode == 0, audit.stderr
    assert "2 run proof(s) match" in audit.stdout, audit.stdout


def test_a_run_without_a_committed_attempt_has_no_proof(ledger_api: LedgerApi) -> None:
    # A run that is still open, with one decision recorded.
    ledger_api.open_run("open-2024-06-01")
    ledger_api.admit("open-2024-06-01", "a")
    decision_id = ledger_api.decide("open-2024-06-01", "a")["decision_id"]

    # Neither the run nor its decision has a proof: 404, as problem details.
    for path in ("/runs/open-2024-06-01/proof", f"/decisions/{decision_id}/proof"):
        response = ledger_api.read(path)
        assert response.status_code == 404, response.text
        assert response.json()["type"] == "/problems/proof-not-found"

    # A run nobody opened has none either.
    assert ledger_api.read("/runs/never-opened/proof").status_code == 404
