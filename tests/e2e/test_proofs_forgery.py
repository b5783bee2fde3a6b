"""Forged proofs are refused, each with a reason that names the forgery.

An auditor holds a run proof or a decision's inclusion proof, and the ledger's public
key from GET /keys. Someone hands over a doctored copy: a leaf altered, a path node
changed, siblings swapped, a tree cut short, the run proof's counts edited after it was
signed, a signature lifted from another document, or the whole proof re-signed under
the forger's own key. verify_run_proof and verify_inclusion_proof refuse each one, and
so do `decision-ledger proof verify` and `proof verify-inclusion` (exit code 1).

The genuine documents come from one history written through the REST API, shared by
the module: forgeries are offline, so one database is enough.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from application.proof_checks import VerificationFailed, verify_inclusion_proof, verify_run_proof
from application.proofs import unsigned_bytes
from infrastructure.settings import Settings
from infrastructure.signing import Signer
from interfaces.api.app import create_app
from interfaces.bootstrap import build_service
from tests.support.proofs import LedgerApi, commit_clean_run, decision_ledger, write_json

RUN_ID = "forgery-2024-06-01"
OTHER_RUN_ID = "forgery-2024-06-02"


@dataclass
class Genuine:
    """Documents the ledger really issued, and what an auditor and a forger hold."""

    run_proof: dict[str, Any]
    other_run_proof: dict[str, Any]
    inclusion: dict[str, Any]  # a decision corrected twice: three leaves
    neighbour_inclusion: dict[str, Any]  # another decision of the same run
    public_key: str
    ledger_signer: Signer  # the ledger's own key, for documents it signed by mistake
    database_url: str
    settings: Settings


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> Genuine:
    database_url = f"sqlite:///{tmp_path_factory.mktemp('forgery') / 'ledger.sqlite3'}"
    signing_key = Ed25519PrivateKey.generate().private_bytes_raw().hex()
    settings = Settings(database_url=database_url, signing_key=signing_key, api_keys=[], api_keys_file=None)
    with TestClient(create_app(settings)) as client:
        api = LedgerApi(client)
        # Five decisions, so audit paths have several nodes; the first is corrected twice.
        api.open_run(RUN_ID)
        api.admit(RUN_ID, "a", "b", "c", "d", "e")
        decision_ids = [api.decide(RUN_ID, input_id)["decision_id"] for input_id in "abcde"]
        api.correct(decision_ids[0], "decline", "bureau data arrived late")
        api.correct(decision_ids[0], "refer", "second look by a person")
        assert api.close(RUN_ID)["verdict"] == "committed"
        commit_clean_run(api, OTHER_RUN_ID, ("x",))
        documents = Genuine(
            run_proof=api.run_proof(RUN_ID),
            other_run_proof=api.run_proof(OTHER_RUN_ID),
            inclusion=api.inclusion_proof(decision_ids[0]),
            neighbour_inclusion=api.inclusion_proof(decision_ids[1]),
            public_key=api.public_key(),
            ledger_signer=Signer.from_hex(signing_key),
            database_url=database_url,
            settings=settings,
        )
    return documents


@pytest.fixture
def forged(genuine: Genuine) -> Genuine:
    """Deep copies a test may doctor freely."""
    return copy.deepcopy(genuine)


def attacker_key() -> Signer:
    return Signer(Ed25519PrivateKey.generate())


def assert_refused_inclusion(inclusion: dict[str, Any], public_key: str, reason: str, workdir: Path) -> None:
    """Refused in process and by `proof verify-inclusion`, both naming `reason`."""
    with pytest.raises(VerificationFailed, match=reason):
        verify_inclusion_proof(inclusion, public_key)
    document = write_json(workdir / "inclusion.json", inclusion)
    cli = decision_ledger("proof", "verify-inclusion", str(document), "--public-key", public_key, cwd=workdir)
    assert cli.returncode == 1, (cli.stdout, cli.stderr)
    assert reason in cli.error_line, cli.error_line


def assert_refused_run_proof(proof: dict[str, Any], public_key: str, reason: str, workdir: Path) -> None:
    """Refused in process and by `proof verify --public-key`, both naming `reason`."""
    with pytest.raises(VerificationFailed, match=reason):
        verify_run_proof(proof, public_key)
    document = write_json(workdir / "proof.json", proof)
    cli = decision_ledger("proof", "verify", str(document), "--public-key", public_key, cwd=workdir)
    assert cli.returncode == 1, (cli.stdout, cli.stderr)
    assert reason in cli.error_line, cli.error_line


def flip_hex(value: str, at: int = 0) -> str:
    """The same hex text with one digit changed."""
    digit = "1" if value[at] != "1" else "2"
    return value[:at] + digit + value[at + 1 :]


# --- The genuine documents ---------------------------------------------------------------------


def test_the_genuine_documents_verify(genuine: Genuine) -> None:
    # Before forging anything: the untouched documents pass, so each refusal below is
    # caused by its forgery alone.
    verify_run_proof(genuine.run_proof, genuine.public_key)
    verify_inclusion_proof(genuine.inclusion, genuine.public_key)
    verify_inclusion_proof(genuine.neighbour_inclusion, genuine.public_key)
    assert [leaf["event"]["version"] for leaf in genuine.inclusion["leaves"]] == [1, 2, 3]
    assert len(genuine.inclusion["leaves"][0]["audit_path"]) >= 3


# --- Inclusion proofs: leaves, paths, trees ------------------------------------------------------


def test_an_altered_leaf_is_refused(forged: Genuine, tmp_path: Path) -> None:
    # The forger turns the recorded outcome into an approval, keeping the audit path.
    forged.inclusion["leaves"][0]["event"]["state"]["outcome"] = "approve-everything"

    assert_refused_inclusion(forged.inclusion, forged.public_key, "wrong leaf", tmp_path)


def test_a_leaf_of_another_decision_is_refused(forged: Genuine, tmp_path: Path) -> None:
    # A genuine leaf and path, but of the neighbouring decision, passed off as this one's.
    forged.inclusion["leaves"][0] = forged.neighbour_inclusion["leaves"][0]

    assert_refused_inclusion(forged.inclusion, forged.public_key, "wrong leaf", tmp_path)


def test_an_altered_path_node_is_refused(forged: Genuine, tmp_path: Path) -> None:
    # One hex digit of the top node of the first leaf's audit path changes.
    path = forged.inclusion["leaves"][0]["audit_path"]
    path[-1] = flip_hex(path[-1], at=17)

    assert_refused_inclusion(forged.inclusion, forged.public_key, "wrong path", tmp_path)


def test_swapped_siblings_are_refused(forged: Genuine, tmp_path: Path) -> None:
    # The first two nodes of the path change places: every node genuine, the order not.
    path = forged.inclusion["leaves"][0]["audit_path"]
    path[0], path[1] = path[1], path[0]

    assert_refused_inclusion(forged.inclusion, forged.public_key, "swapped siblings", tmp_path)


def test_a_leaf_claimed_at_its_siblings_index_is_refused(forged: Genuine, tmp_path: Path) -> None:
    # Same leaf, same path, but claimed one place over: left and right swap at the bottom.
    leaf = forged.inclusion["leaves"][0]
    leaf["leaf_index"] ^= 1

    assert_refused_inclusion(forged.inclusion, forged.public_key, "swapped siblings", tmp_path)


def test_a_tree_cut_short_is_refused(forged: Genuine, tmp_path: Path) -> None:
    # The inclusion proof claims a smaller tree than the one the run proof signed.
    forged.inclusion["tree_size"] -= 1

    assert_refused_inclusion(forged.inclusion, forged.public_key, "truncated or padded tree", tmp_path)


def test_a_path_cut_short_is_refused(forged: Genuine, tmp_path: Path) -> None:
    # The top node of the path is dropped, as if the tree were smaller.
    forged.inclusion["leaves"][0]["audit_path"].pop()

    assert_refused_inclusion(forged.inclusion, forged.public_key, "shorter than the tree is deep", tmp_path)


def test_a_path_padded_with_an_extra_node_is_refused(forged: Genuine, tmp_path: Path) -> None:
    path = forged.inclusion["leaves"][0]["audit_path"]
    path.append(path[-1])

    assert_refused_inclusion(forged.inclusion, forged.public_key, "longer than the tree is deep", tmp_path)


def test_a_tree_cut_short_in_the_run_proof_as_well_is_refused(forged: Genuine, tmp_path: Path) -> None:
    # The forger shrinks the tree in both documents, so the sizes agree: the run proof's
    # signature no longer holds.
    forged.inclusion["tree_size"] -= 1
    forged.inclusion["run_proof"]["merkle"]["tree_size"] -= 1
    forged.inclusion["run_proof"]["audit_records"] -= 1

    assert_refused_inclusion(forged.inclusion, forged.public_key, "signature does not verify", tmp_path)


def test_a_decision_with_a_missing_middle_version_is_refused(forged: Genuine, tmp_path: Path) -> None:
    # The first correction is left out: versions 1 and 3 remain, each genuinely included.
    del forged.inclusion["leaves"][1]

    assert_refused_inclusion(forged.inclusion, forged.public_key, "versions have gaps", tmp_path)


def test_a_decision_whose_latest_correction_is_left_out_is_refused(forged: Genuine, tmp_path: Path) -> None:
    # The last correction (outcome "refer") is dropped: the proof now shows "decline".
    forged.inclusion["leaves"].pop()

    # The signed decision-heads tree says how many events the decision has.
    assert_refused_inclusion(forged.inclusion, forged.public_key, "latest events are left out", tmp_path)


def test_a_decision_head_claiming_fewer_versions_is_refused(forged: Genuine, tmp_path: Path) -> None:
    # The forger drops the last correction and lowers the head to match.
    forged.inclusion["leaves"].pop()
    forged.inclusion["head"]["version"] -= 1

    assert_refused_inclusion(forged.inclusion, forged.public_key, "decision heads root", tmp_path)


def test_an_inclusion_proof_checked_with_another_key_is_refused(genuine: Genuine, tmp_path: Path) -> None:
    # A genuine inclusion proof, but the auditor holds some other key.
    assert_refused_inclusion(genuine.inclusion, attacker_key().public_key, "wrong key", tmp_path)


# --- Run proofs: signatures and keys -------------------------------------------------------------


def test_a_run_proof_checked_with_another_key_is_refused(genuine: Genuine, tmp_path: Path) -> None:
    assert_refused_run_proof(genuine.run_proof, attacker_key().public_key, "wrong key", tmp_path)


@pytest.mark.parametrize(
    ("member", "forge"),
    [
        ("decisions.count", lambda proof: proof["decisions"].update(count=proof["decisions"]["count"] + 1)),
        ("decisions.by_outcome", lambda proof: proof["decisions"]["by_outcome"].update(refer=0, approve=5)),
        ("basis.count", lambda proof: proof["basis"].update(count=proof["basis"]["count"] - 1)),
        ("merkle.root", lambda proof: proof["merkle"].update(root=flip_hex(proof["merkle"]["root"]))),
        ("seal_position", lambda proof: proof.update(seal_position=proof["seal_position"] + 1)),
    ],
)
def test_a_run_proof_edited_after_signing_is_refused(
    forged: Genuine, member: str, forge: Any, tmp_path: Path
) -> None:
    # One member changes after the signature was made over the original.
    forge(forged.run_proof)

    assert_refused_run_proof(forged.run_proof, forged.public_key, "signature does not verify", tmp_path)


def test_a_signature_lifted_from_another_run_proof_is_refused(forged: Genuine, tmp_path: Path) -> None:
    # The other run's proof carries a genuine signature by the ledger's key: the forger
    # moves it onto this run's proof.
    forged.run_proof["signature"] = forged.other_run_proof["signature"]

    assert_refused_run_proof(forged.run_proof, forged.public_key, "signature does not verify", tmp_path)


def test_a_signature_over_a_different_document_is_refused(forged: Genuine, tmp_path: Path) -> None:
    # The ledger's key signs a document with one more decision than this proof shows ...
    different = copy.deepcopy(forged.run_proof)
    different["decisions"]["count"] += 1
    forged.run_proof["signature"]["value"] = forged.ledger_signer.sign(unsigned_bytes(different))

    # ... and that genuine signature is transplanted onto the real proof's contents.
    assert_refused_run_proof(forged.run_proof, forged.public_key, "signature does not verify", tmp_path)


def test_a_run_proof_re_signed_under_the_forgers_key_is_refused(forged: Genuine, tmp_path: Path) -> None:
    # The forger edits the counts, swaps the embedded public key for their own and signs
    # the result: the document is consistent with itself.
    forger = attacker_key()
    forged.run_proof["decisions"]["count"] += 1
    forged.run_proof["key_id"] = forger.key_id
    forged.run_proof["signature"] = {
        "algorithm": "ed25519",
        "public_key": forger.public_key,
        "value": forger.sign(unsigned_bytes(forged.run_proof)),
    }

    # Checked against the ledger's real key, it is refused.
    assert_refused_run_proof(forged.run_proof, forged.public_key, "wrong key", tmp_path)


def test_a_proof_re_signed_by_any_key_is_not_trusted_without_a_pinned_key(
    forged: Genuine, tmp_path: Path
) -> None:
    # The forger changes the lane and re-signs with a fresh key of their own: the document
    # is consistent with itself, and its signature is valid for the key it carries.
    forger = attacker_key()
    forged.run_proof["lane"] = "forged-lane"
    forged.run_proof["key_id"] = forger.key_id
    forged.run_proof["signature"] = {
        "algorithm": "ed25519",
        "public_key": forger.public_key,
        "value": forger.sign(unsigned_bytes(forged.run_proof)),
    }
    document = write_json(tmp_path / "forged.json", forged.run_proof)

    # Without a pinned key the verifier fails closed: a valid signature by an unknown key is not "ok".
    cli = decision_ledger("proof", "verify", str(document), cwd=tmp_path)
    assert cli.returncode == 1
    assert (
        cli.error_line
        == "error: the signer is not trusted: pin its public key with --public-key KEY or --trusted-keys FILE (GET /keys)"
    )
    assert "ok" not in cli.stdout

    # The genuine proof without a pinned key is refused the same way: nothing is "ok" unpinned.
    genuine_document = write_json(tmp_path / "genuine.json", forged.other_run_proof)
    assert decision_ledger("proof", "verify", str(genuine_document), cwd=tmp_path).returncode == 1


def test_a_run_proof_signed_by_the_forger_under_the_ledgers_public_key_is_refused(
    forged: Genuine, tmp_path: Path
) -> None:
    # The forger leaves the ledger's public key in place but signs with their own.
    forged.run_proof["decisions"]["count"] += 1
    forged.run_proof["signature"]["value"] = attacker_key().sign(unsigned_bytes(forged.run_proof))

    assert_refused_run_proof(forged.run_proof, forged.public_key, "signature does not verify", tmp_path)


def test_an_inclusion_proof_carrying_an_edited_run_proof_is_refused(forged: Genuine, tmp_path: Path) -> None:
    # The leaves are genuine; the run proof inside was edited after signing.
    forged.inclusion["run_proof"]["decisions"]["by_outcome"]["refer"] = 0

    assert_refused_inclusion(forged.inclusion, forged.public_key, "signature does not verify", tmp_path)


# --- Against the store --------------------------------------------------------------------------


def stored_check(genuine: Genuine, proof: dict[str, Any]) -> None:
    """What `proof verify --database-url` does once the signature holds."""
    service = build_service(genuine.settings)
    try:
        service.verify_proof_against_store(proof)
    finally:
        service.close()


def test_a_signed_proof_whose_outcomes_disagree_with_the_store_is_refused(
    forged: Genuine, tmp_path: Path
) -> None:
    # The ledger's own key signed outcome counts the stored events do not support (as a
    # faulty view could make it do): the signature holds, the store check does not.
    forged.run_proof["decisions"]["by_outcome"] = {"approve": 5}
    forged.run_proof["signature"]["value"] = forged.ledger_signer.sign(unsigned_bytes(forged.run_proof))
    verify_run_proof(forged.run_proof, forged.public_key)

    with pytest.raises(VerificationFailed, match="outcomes recomputed from the store differ"):
        stored_check(forged, forged.run_proof)
    document = write_json(tmp_path / "proof.json", forged.run_proof)
    cli = decision_ledger(
        "proof",
        "verify",
        str(document),
        "--public-key",
        forged.public_key,
        "--database-url",
        forged.database_url,
        cwd=tmp_path,
    )
    assert cli.returncode == 1
    assert "outcomes recomputed from the store differ" in cli.error_line


def test_a_signed_proof_whose_decision_count_disagrees_with_its_heads_is_refused(forged: Genuine) -> None:
    # Signed by the ledger's key, but counting six decisions where its heads tree has five.
    forged.run_proof["decisions"]["count"] = 6
    forged.run_proof["signature"]["value"] = forged.ledger_signer.sign(unsigned_bytes(forged.run_proof))

    # Offline, the count contradicts the signed decision-heads tree.
    with pytest.raises(VerificationFailed, match="decision heads tree has 5 leaves"):
        verify_run_proof(forged.run_proof, forged.public_key)


def test_a_signed_proof_whose_decision_count_disagrees_with_the_store_is_refused(forged: Genuine) -> None:
    # Signed by the ledger's key, with six decisions in both the count and a forged heads tree.
    forged.run_proof["decisions"]["count"] = 6
    forged.run_proof["decision_heads"]["tree_size"] = 6
    forged.run_proof["signature"]["value"] = forged.ledger_signer.sign(unsigned_bytes(forged.run_proof))
    verify_run_proof(forged.run_proof, forged.public_key)

    # Against the store, the recomputed count differs.
    with pytest.raises(VerificationFailed, match="decision"):
        stored_check(forged, forged.run_proof)
