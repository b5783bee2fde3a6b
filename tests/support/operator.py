"""The REST API as one run's operator uses it: writes under named or fresh
Idempotency-Keys, and reads that wait for the operator's own writes."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
from fastapi.testclient import TestClient

from application.proof_checks import verify_run_proof
from application.proofs import proof_digest
from application.store_verification import StoreVerifier

MODEL = {"name": "gbm", "version": "7"}


class Operator:
    """The REST API as a lane's scheduler, scorer and operator use it on one run.

    Every write names its Idempotency-Key; `key=None` draws a fresh one. Every write
    remembers the highest position answered so far, so reads can wait for it."""

    def __init__(self, api: TestClient, run_id: str) -> None:
        self.api = api
        self.run_id = run_id
        self.position = 0
        self._fresh_keys = itertools.count(1)

    # --- Writes -----------------------------------------------------------------------

    def post(
        self, path: str, body: dict[str, Any] | None = None, *, key: str | None = None
    ) -> httpx.Response:
        key = key or f"{self.run_id}-{path.rsplit('/', 1)[-1]}-{next(self._fresh_keys)}"
        response = self.api.post(path, json=body, headers={"Idempotency-Key": key})
        if response.status_code < 300:
            self.position = max(self.position, response.json().get("position", 0))
        return response

    def expect(self, response: httpx.Response, status: int) -> dict[str, Any]:
        assert response.status_code == status, response.text
        return response.json()

    def open(self, lane: str = "fraud", **fields: Any) -> dict[str, Any]:
        return self.expect(self.post("/runs", {"run_id": self.run_id, "lane": lane, **fields}), 201)

    def admit(self, *input_ids: str, key: str | None = None) -> dict[str, Any]:
        return self.expect(
            self.post(f"/runs/{self.run_id}/basis", {"input_ids": list(input_ids)}, key=key), 200
        )

    def decide(self, input_id: str, outcome: str = "approve", *, key: str | None = None) -> httpx.Response:
        body = {"input_id": input_id, "outcome": outcome, "score": 0.5, "model": MODEL}
        return self.post(
            f"/runs/{self.run_id}/decisions", body, key=key or f"decide-{self.run_id}-{input_id}"
        )

    def decided(self, *input_ids: str) -> list[dict[str, Any]]:
        return [self.expect(self.decide(input_id), 201) for input_id in input_ids]

    def request_action(self, decision_id: str, kind: str = "block-card", *, key: str) -> httpx.Response:
        return self.post(f"/runs/{self.run_id}/actions", {"decision_id": decision_id, "kind": kind}, key=key)

    def commit_action(self, action_id: str, *, key: str | None = None) -> httpx.Response:
        return self.post(f"/actions/{action_id}/commit", {"external_ref": "psp-4711"}, key=key)

    def fail_action(
        self, action_id: str, *, retryable: bool = False, key: str | None = None
    ) -> httpx.Response:
        return self.post(
            f"/actions/{action_id}/fail", {"error": "psp timeout", "retryable": retryable}, key=key
        )

    def waive_action(self, action_id: str, *, key: str | None = None) -> httpx.Response:
        return self.post(f"/actions/{action_id}/waive", {"reason": "refunded by hand"}, key=key)

    def close(self, *, key: str) -> dict[str, Any]:
        verdict = self.expect(self.post(f"/runs/{self.run_id}/close", key=key), 200)
        if verdict["verdict"] == "committed":
            self.assert_proof_holds(verdict)
        return verdict

    def assert_proof_holds(self, verdict: dict[str, Any]) -> None:
        """Every committed run's proof verifies offline, with the served key, and against
        the stored events as of its seal."""
        proof = self.get(f"/runs/{self.run_id}/proof")
        assert proof_digest(proof) == verdict["proof_digest"]
        public_key = self.get("/keys")["public_key"]
        verify_run_proof(proof, public_key)
        service = self.api.app.state.service
        service.read_models.wait_for(proof["seal_position"])
        StoreVerifier(service.ledger.recorder, service.read_models.audit_stream).verify_chain(
            to_position=proof["seal_position"], proofs=[proof]
        )

    def reopen(self, reason: str = "remediate", *, key: str) -> dict[str, Any]:
        return self.expect(self.post(f"/runs/{self.run_id}/reopen", {"reason": reason}, key=key), 200)

    # --- Reads, after our own writes ----------------------------------------------------

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.api.get(path, params={"min_position": self.position, **params})
        assert response.status_code == 200, response.text
        return response.json()

    def run(self) -> dict[str, Any]:
        return self.get(f"/runs/{self.run_id}")

    def summary(self, **params: Any) -> dict[str, Any]:
        return self.get(f"/runs/{self.run_id}/summary", **params)

    def reconciliation(self, **params: Any) -> dict[str, Any]:
        return self.get(f"/runs/{self.run_id}/reconciliation", **params)
