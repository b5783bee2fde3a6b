"""A long random history written straight through the ledger: runs, overlapping
admissions, batches of decisions, corrections, and actions with every fate."""

from __future__ import annotations

import random
from collections.abc import Callable
from uuid import UUID

from application.ledger import DecisionLedger
from domain.commands import (
    AdmitInputs,
    CommitAction,
    CorrectDecision,
    FailAction,
    ModelRef,
    OpenRun,
    RecordDecision,
    RequestAction,
    WaiveAction,
)
from domain.identity import decision_uuid
from tests.support.ledger_commands import commands_of

MODEL = ModelRef("gbm", "7")
OUTCOMES = ("approve", "decline", "refer")
DECISION_BATCH = 250


def write_history(
    ledger: DecisionLedger,
    rng: random.Random,
    *,
    runs: int,
    inputs_per_run: int,
    after_each_write: Callable[[], None] = lambda: None,
) -> None:
    """Runs that admit overlapping batches (with duplicates), decide most of their inputs
    and a few never admitted, correct some decisions, and request actions that commit,
    fail, fail for good and are waived, or stay pending. About `runs * inputs_per_run`
    events in all, most of them decisions recorded in batches."""
    for run_number in range(runs):
        run_id = f"run-{run_number:03d}"
        commands_of(ledger).runs.open(
            OpenRun(
                token=f"open-{run_id}", actor="scheduler", run_id=run_id, lane=rng.choice(["fraud", "credit"])
            )
        )
        inputs = [f"{run_id}-input-{number:05d}" for number in range(inputs_per_run)]
        for batch_number in range(3):
            batch = rng.sample(inputs, k=len(inputs) // 2) + rng.sample(inputs, k=5)
            commands_of(ledger).runs.admit(
                AdmitInputs(
                    token=f"basis-{run_id}-{batch_number}",
                    actor="loader",
                    run_id=run_id,
                    input_ids=tuple(batch),
                )
            )
            after_each_write()
        # Most inputs are decided, and a few decisions name inputs never admitted.
        decided = rng.sample(inputs, k=int(len(inputs) * 0.9)) + [
            f"{run_id}-stray-{number}" for number in range(3)
        ]
        for start in range(0, len(decided), DECISION_BATCH):
            items = [
                RecordDecision(
                    token=f"decide-{run_id}-{input_id}",
                    actor="scorer",
                    run_id=run_id,
                    input_id=input_id,
                    outcome=rng.choice(OUTCOMES),
                    score=rng.random(),
                    model=MODEL,
                )
                for input_id in decided[start : start + DECISION_BATCH]
            ]
            token = f"batch-{run_id}-{start}"
            commands_of(ledger).batches.record(run_id, items, token, f"fingerprint-{token}")
            after_each_write()
        for input_id in rng.sample(decided, k=len(decided) // 20):
            commands_of(ledger).decisions.correct(
                CorrectDecision(
                    token=f"correct-{run_id}-{input_id}",
                    actor="operator",
                    decision_id=decision_uuid(run_id, input_id),
                    outcome=rng.choice(OUTCOMES),
                    reason="second look",
                )
            )
        for input_id in rng.sample(decided, k=len(decided) // 20):
            write_action(ledger, rng, run_id, input_id)
        after_each_write()


def write_action(ledger: DecisionLedger, rng: random.Random, run_id: str, input_id: str) -> None:
    action = (
        commands_of(ledger)
        .actions.request(
            RequestAction(
                token=f"request-{run_id}-{input_id}",
                actor="scorer",
                run_id=run_id,
                action_key=f"block-{input_id}",
                decision_id=decision_uuid(run_id, input_id),
                kind="block-card",
            )
        )
        .view
    )
    action_id, token = UUID(action.action_id), f"{run_id}-{input_id}"
    fate = rng.choice(["commit", "fail then commit", "fail for good", "fail then waive", "pending"])
    if fate.startswith("fail"):
        commands_of(ledger).actions.fail(
            FailAction(
                token=f"fail-{token}",
                actor="scorer",
                action_id=action_id,
                error="timeout",
                retryable=fate != "fail for good",
            )
        )
    if fate.endswith("commit"):
        commands_of(ledger).actions.commit(
            CommitAction(token=f"commit-{token}", actor="scorer", action_id=action_id)
        )
    if fate.endswith("waive"):
        commands_of(ledger).actions.waive(
            WaiveAction(token=f"waive-{token}", actor="operator", action_id=action_id, reason="by hand")
        )
