"""Racing the seal: scorers keep recording decisions and requesting actions while the
operator closes the run.

Whatever the interleaving, every write lands before the seal and is counted in the
verdict, or is refused with 409 run-not-open. Nothing of the sealed attempt lands after
its seal. On SQLite and on PostgreSQL, through the REST API (its handlers serve
requests concurrently, so the writes really race).

The first test lets the threads race freely. The second one builds the interleaving
that loses by hand: group commit saving a seal and a decision of the same attempt in one
transaction, the decision after the seal.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from eventsourcing.persistence import IntegrityError
from fastapi.testclient import TestClient

from application.ledger import DecisionLedger
from domain.commands import AdmitInputs, CloseRun, ModelRef, OpenRun, RecordDecision
from domain.decision import Decision
from tests.support.ledger_commands import commands_of
from tests.support.operator import Operator

RUN_ID = "fraud-race"
SCORERS = 8
#: More inputs than a scorer can send before the close: each one stops at its first refusal.
INPUTS_PER_SCORER = 100
#: Decisions recorded before the race, so actions can be requested during it.
EARLY_DECISIONS = 16
#: How many racing writes succeed before the operator closes the run.
CLOSE_AFTER = 30


def test_every_write_racing_the_seal_lands_before_it_and_is_counted_or_is_refused(api: TestClient) -> None:
    operator = Operator(api, RUN_ID)
    race_inputs = [f"txn-{number:04d}" for number in range(SCORERS * INPUTS_PER_SCORER)]
    early_inputs = [f"early-{number:02d}" for number in range(EARLY_DECISIONS)]

    # The run admits every input; the first few are decided before the race begins.
    operator.open()
    operator.admit(*early_inputs, *race_inputs)
    early_decisions = operator.decided(*early_inputs)

    # Scorers record decisions and request actions, all at once, each until it is
    # refused; after a few of them succeeded, the operator closes the run.
    successes = threading.Semaphore(0)
    answers: list[tuple[str, httpx.Response]] = []
    answers_lock = threading.Lock()

    def scorer(number: int) -> None:
        mine = race_inputs[number::SCORERS]
        to_act_on = early_decisions[number::SCORERS]
        for index, input_id in enumerate(mine):
            sent = [("decision", operator.decide(input_id))]
            if index < len(to_act_on):
                decision_id = to_act_on[index]["decision_id"]
                sent.append(("action", operator.request_action(decision_id, key=f"block-{input_id}")))
            with answers_lock:
                answers.extend(sent)
            for _, response in sent:
                if response.status_code == 201:
                    successes.release()
            if any(response.status_code != 201 for _, response in sent):
                return

    def closer() -> dict[str, Any]:
        for _ in range(CLOSE_AFTER):
            assert successes.acquire(timeout=60)
        return operator.close(key="close-during-the-race")

    with ThreadPoolExecutor(max_workers=SCORERS + 1) as pool:
        verdict_future = pool.submit(closer)
        for future in [pool.submit(scorer, number) for number in range(SCORERS)]:
            future.result()
        verdict = verdict_future.result()

    # The race really happened: some writes made it, some came too late.
    accepted = [(kind, response.json()) for kind, response in answers if response.status_code == 201]
    refused = [response for _, response in answers if response.status_code != 201]
    assert len(accepted) >= CLOSE_AFTER and refused, (len(accepted), len(refused))

    # Every refusal is a 409 run-not-open.
    for response in refused:
        assert response.status_code == 409, response.text
        assert response.json()["type"] == "/problems/run-not-open"

    # Every accepted write landed before the seal, in the sealed attempt.
    seal_position = verdict["seal_position"]
    late = [body for _, body in accepted if body["position"] >= seal_position]
    assert not late, f"accepted after the seal at {seal_position}: {late}"

    # ... and the verdict counts each of them.
    accepted_decisions = [body for kind, body in accepted if kind == "decision"]
    accepted_actions = [body for kind, body in accepted if kind == "action"]
    assert verdict["summary"]["decisions"] == EARLY_DECISIONS + len(accepted_decisions)
    assert verdict["summary"]["actions"]["requested"] == len(accepted_actions)
    missing = next(reason for reason in verdict["reasons"] if reason["code"] == "missing")
    assert missing["count"] == len(race_inputs) - len(accepted_decisions)

    # Nothing of the sealed attempt was recorded after its seal but its verdict.
    operator.position = verdict["position"]
    records = operator.get("/audit", run_id=RUN_ID, after=seal_position, limit=1000)["records"]
    assert [(record["event_type"], record["attempt"]) for record in records] == [("Run.Rejected", 1)]


def test_a_decision_committed_together_with_its_runs_seal_and_after_it_is_refused(
    ledger: DecisionLedger,
) -> None:
    # The run is open, with two inputs admitted.
    commands_of(ledger).runs.open(OpenRun(token="open", actor="scheduler", run_id=RUN_ID, lane="fraud"))
    commands_of(ledger).runs.admit(
        AdmitInputs(token="basis", actor="loader", run_id=RUN_ID, input_ids=("txn-1", "txn-2"))
    )

    # The operator's close seals the run while a scorer's decision for attempt 1 is on
    # its way; group commit puts both in one transaction, the seal first.
    run = ledger.load_run(RUN_ID)
    run.seal(CloseRun(token="close", actor="operator", run_id=RUN_ID))
    decision = Decision.record(
        RecordDecision(
            token="decide",
            actor="scorer",
            run_id=RUN_ID,
            input_id="txn-1",
            outcome="approve",
            model=ModelRef("gbm", "7"),
        ),
        attempt=run.attempt,
        now=ledger.clock(),
    )

    # The seal gate refuses that transaction as a whole: the decision would land after
    # the seal, in the sealed attempt, and be left out of its verdict.
    with pytest.raises(IntegrityError):
        ledger.save(run, decision)
    assert ledger.index.count_run_events(RUN_ID, ledger.index.head_position()) == 2
