"""What the proof, tamper and forgery tests share: the REST calls that build runs, and
the `decision-ledger` command line run as an auditor would, in a process of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

MODEL = {"name": "scorecard", "version": "7.1"}


# --- Talking to the API ---------------------------------------------------------------------


class LedgerApi:
    """The REST calls the proof tests make. Every write carries a fresh Idempotency-Key;
    `head` follows the newest position written, so reads can wait for the views."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.head = 0

    def write(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.post(path, json=body or {}, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert response.status_code in (200, 201), response.text
        answer = response.json()
        self.head = max(self.head, answer.get("position", 0))
        return answer

    def read(self, path: str) -> httpx.Response:
        """A read that waits until the views reflect every write made so far."""
        return self.client.get(path, params={"min_position": self.head} if self.head else None)

    # Runs
    def open_run(self, run_id: str, lane: str = "credit") -> dict[str, Any]:
        return self.write("/runs", {"run_id": run_id, "lane": lane})

    def admit(self, run_id: str, *input_ids: str) -> dict[str, Any]:
        return self.write(f"/runs/{run_id}/basis", {"input_ids": list(input_ids)})

    def close(self, run_id: str) -> dict[str, Any]:
        return self.write(f"/runs/{run_id}/close")

    def reopen(self, run_id: str, reason: str) -> dict[str, Any]:
        return self.write(f"/runs/{run_id}/reopen", {"reason": reason})

    # Decisions
    def decide(self, run_id: str, input_id: str, outcome: str = "approve") -> dict[str, Any]:
        body = {"input_id": input_id, "outcome": outcome, "score": 0.25, "model": MODEL}
        return self.write(f"/runs/{run_id}/decisions", body)

    def correct(self, decision_id: str, outcome: str, reason: str) -> dict[str, Any]:
        return self.write(f"/decisions/{decision_id}/corrections", {"outcome": outcome, "reason": reason})

    # Actions
    def request_action(self, run_id: str, decision_id: str, kind: str = "notify") -> dict[str, Any]:
        return self.write(f"/runs/{run_id}/actions", {"decision_id": decision_id, "kind": kind})

    def commit_action(self, action_id: str) -> dict[str, Any]:
        return self.write(f"/actions/{action_id}/commit", {"external_ref": f"ext-{action_id[:8]}"})

    def fail_action(self, action_id: str, error: str) -> dict[str, Any]:
        return self.write(f"/actions/{action_id}/fail", {"error": error, "retryable": False})

    def waive_action(self, action_id: str, reason: str) -> dict[str, Any]:
        return self.write(f"/actions/{action_id}/waive", {"reason": reason})

    # Proofs
    def run_proof(self, run_id: str) -> dict[str, Any]:
        response = self.read(f"/runs/{run_id}/proof")
        assert response.status_code == 200, response.text
        return response.json()

    def inclusion_proof(self, decision_id: str) -> dict[str, Any]:
        response = self.read(f"/decisions/{decision_id}/proof")
        assert response.status_code == 200, response.text
        return response.json()

    def public_key(self) -> str:
        response = self.client.get("/keys")
        assert response.status_code == 200, response.text
        return response.json()["public_key"]

    def wait_for_views(self) -> None:
        """GET with min_position: the views, the audit log among them, reached the head."""
        response = self.read("/audit")
        assert response.status_code == 200, response.text
        assert response.json()["as_of_position"] >= self.head


def commit_clean_run(api: LedgerApi, run_id: str, input_ids: tuple[str, ...] = ("a", "b", "c")) -> list[str]:
    """A run whose every admitted input is decided, closed green. Its decision IDs."""
    api.open_run(run_id)
    api.admit(run_id, *input_ids)
    decision_ids = [api.decide(run_id, input_id)["decision_id"] for input_id in input_ids]
    verdict = api.close(run_id)
    assert verdict["verdict"] == "committed", verdict
    return decision_ids


# --- The command line, as a process of its own ------------------------------------------------------


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_line(self) -> str:
        """The one line the command writes on failure (the progress bar shares stderr)."""
        errors = [line for line in self.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, self.stderr
        return errors[0]


def decision_ledger(*arguments: str, cwd: Path, signing_key: str | None = None) -> CliResult:
    """Run `decision-ledger ARGUMENTS` in a fresh process, with no settings but these."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("DECISION_LEDGER_")}
    env.update(COLUMNS="250", NO_COLOR="1", TERM="dumb")
    if signing_key is not None:
        env["DECISION_LEDGER_SIGNING_KEY"] = signing_key
    script = shutil.which("decision-ledger", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "interfaces.cli"]
    completed = subprocess.run(
        [*command, *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def write_json(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document, indent=2))
    return path
