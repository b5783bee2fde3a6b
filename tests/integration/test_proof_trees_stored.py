"""Inclusion proofs from the stored trees (issue 16): when the audit projection applies a
run's Run.Committed, it stores the attempt's two Merkle trees, and GET
/decisions/{id}/proof reads O(log n) rows of them instead of recomputing the run.

The answer must be byte for byte what recomputing both trees from the run's whole audit
log answers (the path every proof took before): for decisions across several blocks of
leaves, corrected or not, now and as of earlier positions, on a run committed at its
third attempt beside one committed at its first. On SQLite and PostgreSQL. The stored
trees are views like the others: a rebuild of the audit projection equals them, and
without them (a generation built before they existed) the proof is recomputed.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest

from application.projections.run_proof_trees import StoredRunTrees
from application.proof_checks import verify_inclusion_proof
from application.proofs import MaterialTrees
from application.queries.proofs import decision_inclusion_proof
from application.service import LedgerService
from domain.commands import (
    AdmitInputs,
    CloseRun,
    CorrectDecision,
    ModelRef,
    OpenRun,
    RecordDecision,
    ReopenRun,
)
from domain.errors import NothingKnownYet, ProofNotFound
from domain.identity import decision_uuid
from tests.support.dispatch import ledger_service

MODEL = ModelRef("gbm", "7")
#: More than two blocks of leaves (64) in both trees, the last block partial.
INPUTS = 150


def proof(service: LedgerService, decision_id: UUID, as_of: int | None, *, recompute: bool = False) -> str:
    """The inclusion proof as the API serialises it: the bytes to compare."""
    answer = decision_inclusion_proof(
        service.ledger, service.queries, service.read_models, decision_id, as_of, recompute=recompute
    )
    return json.dumps(answer)


def decide(service: LedgerService, run_id: str, input_ids: list[str], outcome: str = "approve") -> int:
    items = [
        RecordDecision(
            token=f"decide-{run_id}-{input_id}",
            actor="scorer",
            run_id=run_id,
            input_id=input_id,
            outcome=outcome,
            score=0.5,
            model=MODEL,
        )
        for input_id in input_ids
    ]
    token = f"batch-{run_id}-{input_ids[0]}"
    return service.commands.batches.record(run_id, items, token, f"fingerprint-{token}").position


def close(service: LedgerService, run_id: str, attempt: int) -> Any:
    return service.closer.close(CloseRun(token=f"close-{run_id}-{attempt}", actor="operator", run_id=run_id))


def reopen(service: LedgerService, run_id: str, attempt: int) -> None:
    service.commands.runs.reopen(
        ReopenRun(token=f"reopen-{run_id}-{attempt}", actor="operator", run_id=run_id, reason="remediate")
    )


def correct(service: LedgerService, run_id: str, input_id: str, outcome: str) -> None:
    service.commands.decisions.correct(
        CorrectDecision(
            token=f"correct-{run_id}-{input_id}-{outcome}",
            actor="operator",
            decision_id=decision_uuid(run_id, input_id),
            outcome=outcome,
            reason="second look",
        )
    )


def stored_trees_of(service: LedgerService, run_id: str, seal_position: int) -> Any:
    with service.read_models.run_trees(run_id, seal_position) as trees:
        return trees


def test_stored_trees_answer_what_recomputing_the_run_answers(
    database_url: str, signing_key_hex: str
) -> None:
    with ledger_service(database_url, signing_key_hex) as service:
        inputs = [f"txn-{number:04d}" for number in range(INPUTS)]
        # run-a: attempt 1 misses 10 decisions (rejected), attempt 2 still misses 5 (rejected), attempt 3 is
        # complete, with corrections made while it was open (so some heads are at version 2 or 3).
        service.commands.runs.open(OpenRun(token="open-a", actor="scheduler", run_id="run-a", lane="fraud"))
        service.commands.runs.admit(
            AdmitInputs(token="basis-a", actor="loader", run_id="run-a", input_ids=tuple(inputs))
        )
        # run-b: written between run-a's events, committed at its first attempt.
        service.commands.runs.open(OpenRun(token="open-b", actor="scheduler", run_id="run-b", lane="credit"))
        service.commands.runs.admit(
            AdmitInputs(token="basis-b", actor="loader", run_id="run-b", input_ids=tuple(inputs[:70]))
        )
        for start in range(0, INPUTS - 10, 35):
            decide(service, "run-a", inputs[start : min(start + 35, INPUTS - 10)])
            if start < 70:
                decide(service, "run-b", inputs[start : start + 35], outcome="decline")
        rejected_a = close(service, "run-a", 1).view
        assert rejected_a.verdict == "rejected"
        committed_b = close(service, "run-b", 1).view
        assert committed_b.verdict == "committed"
        reopen(service, "run-a", 1)
        decide(service, "run-a", inputs[INPUTS - 10 : INPUTS - 5])
        correct(service, "run-a", inputs[3], "decline")
        assert close(service, "run-a", 2).view.verdict == "rejected"
        reopen(service, "run-a", 2)
        correct(service, "run-a", inputs[3], "refer")
        correct(service, "run-a", inputs[100], "refer")
        decide(service, "run-a", inputs[INPUTS - 5 :])
        committed_a = close(service, "run-a", 3).view
        assert committed_a.verdict == "committed" and committed_a.attempt == 3
        head = service.ledger.index.head_position()
        service.read_models.wait_for(head)

        # The audit projection stored both committed attempts' trees, and only those.
        for view in (committed_a, committed_b):
            trees = stored_trees_of(service, view.run_id, view.seal_position)
            assert isinstance(trees, StoredRunTrees)
        assert isinstance(stored_trees_of(service, "run-a", rejected_a.seal_position), MaterialTrees)

        # Every fifth decision of each run, the corrected ones, and the last ones: the stored
        # trees' answer is the recomputed one, byte for byte, and it verifies offline.
        public_key = service.signer.public_key
        chosen = sorted({*inputs[::5], inputs[3], inputs[100], *inputs[-6:]})
        as_of_points = [None, head, committed_a.position, committed_a.seal_position, committed_b.position]
        checked = 0
        for run_id, view in (("run-a", committed_a), ("run-b", committed_b)):
            for input_id in chosen if run_id == "run-a" else [i for i in chosen if i < inputs[70]]:
                decision_id = decision_uuid(run_id, input_id)
                for as_of in as_of_points:
                    if as_of is not None and as_of < view.position:
                        # Not committed yet then (or not even decided yet).
                        with pytest.raises((ProofNotFound, NothingKnownYet)):
                            proof(service, decision_id, as_of)
                        continue
                    stored = proof(service, decision_id, as_of)
                    assert stored == proof(service, decision_id, as_of, recompute=True)
                    verify_inclusion_proof(json.loads(stored), public_key)
                    checked += 1
        assert checked > 100

        # The run proof comes from the run's latest Run.Committed, read newest first: the proof
        # of its latest committed verdict, as a replay of the run says, at every point.
        for run_id in ("run-a", "run-b"):
            for as_of in as_of_points:
                replayed = [v["proof"] for v in service.queries.run(run_id, as_of_position=as_of).verdicts]
                if any(replayed):
                    assert service.queries.latest_proof(run_id, as_of_position=as_of) == replayed[-1]
                else:
                    with pytest.raises(ProofNotFound):
                        service.queries.latest_proof(run_id, as_of_position=as_of)

        # The corrected decision's head is its last version at the seal.
        inclusion = json.loads(proof(service, decision_uuid("run-a", inputs[3]), None))
        assert inclusion["head"]["version"] == 3 and len(inclusion["leaves"]) == 3

        # The stored trees are views like the others: a rebuild of the audit projection equals them.
        assert service.projections.verify("audit") == (service.projections.live_store("audit").position(), [])


def test_without_stored_trees_the_proof_is_recomputed(database_url: str, signing_key_hex: str) -> None:
    with ledger_service(database_url, signing_key_hex) as service:
        inputs = [f"txn-{number}" for number in range(5)]
        service.commands.runs.open(OpenRun(token="open", actor="scheduler", run_id="run-c", lane="fraud"))
        service.commands.runs.admit(
            AdmitInputs(token="basis", actor="loader", run_id="run-c", input_ids=tuple(inputs))
        )
        decide(service, "run-c", inputs)
        committed = close(service, "run-c", 1).view
        service.read_models.wait_for(service.ledger.index.head_position())
        decision_id = decision_uuid("run-c", inputs[2])
        from_stored = proof(service, decision_id, None)

        # An audit generation built before the trees were stored: its tables are empty.
        tables = service.projections.live_tables("audit")
        with service.projections.live_store("audit").cursor(commit=True) as cursor:
            for table in ("proof_nodes", "proof_blocks", "proof_trees"):
                cursor.execute(f"DELETE FROM {tables[table]}")
        assert isinstance(stored_trees_of(service, "run-c", committed.seal_position), MaterialTrees)
        assert proof(service, decision_id, None) == from_stored
