"""Closing a run through the REST API, fail-closed: it commits only when the evidence
proves it reconciles, and is rejected with reasons otherwise.

Each test is one operator's story on a fresh database, on SQLite and on PostgreSQL
(the `api` fixture runs the projections in-process). Reads pass `min_position`, the
position a write answered with, so they see their own writes.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from domain.basis import basis_digest
from tests.support.operator import Operator

#: A run with no dispatched action: the dispatcher made no delivery.
NO_DELIVERIES = {"delivery_attempts": 0, "delivery_failures": 0, "dead_letters": 0}


def assert_problem(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == f"/problems/{slug}"


def reasons_by_code(verdict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {reason["code"]: reason for reason in verdict["reasons"]}


def business_counts(summary: dict[str, Any]) -> dict[str, Any]:
    """What a summary says about the run's work, leaving out how many events said it."""
    return {
        key: summary[key]
        for key in (
            "attempt",
            "status",
            "admitted_count",
            "basis_digest",
            "decision_count",
            "outcome_counts",
            "corrected_count",
            "missing_count",
            "unexpected_count",
            "actions",
        )
    }


@pytest.fixture
def operator(api: TestClient) -> Operator:
    return Operator(api, "fraud-2026-11-27")


# --- Green ---------------------------------------------------------------------------------


def test_a_run_whose_outputs_reconcile_with_its_basis_commits(operator: Operator) -> None:
    # The scheduler opens the run and admits three transactions.
    operator.open()
    admission = operator.admit("txn-1", "txn-2", "txn-3")
    assert admission["admitted_total"] == 3

    # The scorer decides each of them; the decline triggers an action that commits.
    decisions = operator.decided("txn-1", "txn-2")
    decline = operator.expect(operator.decide("txn-3", "decline"), 201)
    action = operator.expect(operator.request_action(decline["decision_id"], key="block-txn-3"), 201)
    operator.expect(operator.commit_action(action["action_id"]), 200)

    # Closing the run commits it, with no reasons and a proof.
    verdict = operator.close(key="close-1")
    assert (verdict["verdict"], verdict["attempt"], verdict["reasons"]) == ("committed", 1, [])
    assert verdict["proof_digest"]
    assert verdict["seal_position"] > max(decision["position"] for decision in [*decisions, decline])

    # The verdict's summary is the evidence as of the seal.
    counts = verdict["summary"]
    assert (counts["admitted"], counts["decisions"], counts["missing"], counts["unexpected"]) == (3, 3, 0, 0)
    assert counts["outcomes"] == {"approve": 2, "decline": 1}
    assert counts["actions"] == {
        "requested": 1,
        "pending": 0,
        "committed": 1,
        "failed": 0,
        "waived": 0,
        **NO_DELIVERIES,
    }
    assert counts["basis_digest"] == basis_digest(["txn-1", "txn-2", "txn-3"])
    assert (
        counts["audit_records"] == counts["events"] == 8
    )  # opened, admitted, 3 decisions, 2 action events, sealed

    # The run and its read models say committed.
    run = operator.run()
    assert (run["status"], [entry["verdict"] for entry in run["verdicts"]]) == ("committed", ["committed"])
    assert operator.summary()["status"] == "committed"
    assert operator.api.get(f"/runs/{operator.run_id}/proof").status_code == 200


# --- Missing, then remediated --------------------------------------------------------------


def test_a_run_missing_decisions_is_rejected_then_remediated_and_committed_in_a_second_attempt(
    operator: Operator,
) -> None:
    # The run admits five inputs, but only two are decided before the close.
    operator.open()
    operator.admit("txn-1", "txn-2", "txn-3", "txn-4", "txn-5")
    operator.decided("txn-1", "txn-2")

    # The close rejects it: three inputs are missing, named in the sample.
    first = operator.close(key="close-attempt-1")
    assert (first["verdict"], first["attempt"]) == ("rejected", 1)
    assert first["reasons"] == [{"code": "missing", "count": 3, "sample_ids": ["txn-3", "txn-4", "txn-5"]}]
    assert first["proof_digest"] is None

    # A rejected run takes no more decisions ...
    assert_problem(operator.decide("txn-3"), 409, "run-not-open")

    # ... until the operator reopens it as attempt 2.
    reopened = operator.reopen("three inputs were never scored", key="reopen-1")
    assert (reopened["status"], reopened["attempt"]) == ("open", 2)

    # The scorer records the missing decisions; the reconciliation is clean again.
    operator.decided("txn-3", "txn-4", "txn-5")
    assert {name: page["count"] for name, page in operator.reconciliation()["categories"].items()} == {
        "missing": 0,
        "unexpected": 0,
        "pending": 0,
        "failed": 0,
    }

    # Closing again commits attempt 2, sealed later than attempt 1.
    second = operator.close(key="close-attempt-2")
    assert (second["verdict"], second["attempt"], second["reasons"]) == ("committed", 2, [])
    assert second["seal_position"] > first["seal_position"]
    assert (second["summary"]["decisions"], second["summary"]["missing"]) == (5, 0)

    # The history keeps both attempts, each with its own verdict and evidence.
    verdicts = operator.run()["verdicts"]
    assert [(entry["attempt"], entry["verdict"]) for entry in verdicts] == [(1, "rejected"), (2, "committed")]
    assert verdicts[0]["reasons"] == first["reasons"]
    assert verdicts[0]["summary"]["decisions"] == 2
    assert verdicts[1]["proof_digest"] == second["proof_digest"]

    # The summary of each attempt can still be read.
    assert (operator.summary(attempt=1)["status"], operator.summary(attempt=1)["decision_count"]) == (
        "rejected",
        2,
    )
    assert (operator.summary(attempt=2)["status"], operator.summary(attempt=2)["decision_count"]) == (
        "committed",
        5,
    )


def test_a_basis_with_no_decisions_at_all_is_rejected_as_missing_and_as_no_decisions(
    operator: Operator,
) -> None:
    # The run admits four inputs and nobody decides any of them.
    operator.open()
    operator.admit("txn-1", "txn-2", "txn-3", "txn-4")

    # The close rejects it for both reasons, each counting the whole basis.
    verdict = operator.close(key="close-1")
    assert verdict["verdict"] == "rejected"
    reasons = reasons_by_code(verdict)
    assert set(reasons) == {"missing", "no_decisions"}
    assert reasons["missing"] == {
        "code": "missing",
        "count": 4,
        "sample_ids": ["txn-1", "txn-2", "txn-3", "txn-4"],
    }
    assert reasons["no_decisions"]["count"] == 4


# --- Empty basis -----------------------------------------------------------------------------


def test_an_empty_basis_is_rejected_when_the_run_does_not_allow_it(operator: Operator) -> None:
    # The run is opened without allow_empty and admits nothing.
    operator.open()

    # Closing it is red: an empty basis proves nothing.
    verdict = operator.close(key="close-1")
    assert verdict["verdict"] == "rejected"
    assert verdict["reasons"] == [{"code": "empty_basis", "count": 0, "sample_ids": []}]


def test_an_empty_basis_commits_when_the_run_allows_it(operator: Operator) -> None:
    # A lane that may legitimately have nothing to do opens its run with allow_empty.
    operator.open(allow_empty=True)

    # Closing it with nothing admitted commits.
    verdict = operator.close(key="close-1")
    assert (verdict["verdict"], verdict["reasons"]) == ("committed", [])
    assert verdict["summary"]["admitted"] == verdict["summary"]["decisions"] == 0


# --- Unexpected decisions ----------------------------------------------------------------------


def test_a_decision_for_an_input_never_admitted_makes_the_run_red(operator: Operator) -> None:
    # The run admits two inputs; the scorer decides them and one it was never given.
    operator.open()
    operator.admit("txn-1", "txn-2")
    operator.decided("txn-1", "txn-2", "txn-99")

    # The reconciliation shows it as unexpected before the close ...
    categories = operator.reconciliation()["categories"]
    assert categories["unexpected"] == {"count": 1, "ids": ["txn-99"], "next_after": None}
    assert categories["missing"]["count"] == 0

    # ... and the close rejects the run for it, and for nothing else.
    verdict = operator.close(key="close-1")
    assert verdict["verdict"] == "rejected"
    assert verdict["reasons"] == [{"code": "unexpected", "count": 1, "sample_ids": ["txn-99"]}]


# --- Actions ---------------------------------------------------------------------------------------


def test_a_pending_action_makes_the_run_red_until_it_is_committed(operator: Operator) -> None:
    # Every input is decided, and a decline asks for a card block that never reports back.
    operator.open()
    operator.admit("txn-1", "txn-2")
    operator.decided("txn-1")
    decline = operator.expect(operator.decide("txn-2", "decline"), 201)
    action = operator.expect(operator.request_action(decline["decision_id"], key="block-txn-2"), 201)

    # The close is red: the action is pending.
    first = operator.close(key="close-1")
    assert first["verdict"] == "rejected"
    assert first["reasons"] == [{"code": "pending", "count": 1, "sample_ids": [action["action_id"]]}]

    # A closed run takes no action result until it is reopened.
    assert_problem(operator.commit_action(action["action_id"]), 409, "run-not-open")
    operator.reopen("the PSP confirmed the block", key="reopen-1")

    # The action commits in attempt 2, and the run commits with it.
    operator.expect(operator.commit_action(action["action_id"]), 200)
    second = operator.close(key="close-2")
    assert (second["verdict"], second["attempt"], second["reasons"]) == ("committed", 2, [])
    assert second["summary"]["actions"] == {
        "requested": 1,
        "pending": 0,
        "committed": 1,
        "failed": 0,
        "waived": 0,
        **NO_DELIVERIES,
    }


def test_a_failed_action_makes_the_run_red_until_it_is_waived(operator: Operator) -> None:
    # Every input is decided; the card block fails for good.
    operator.open()
    operator.admit("txn-1")
    decline = operator.expect(operator.decide("txn-1", "decline"), 201)
    action = operator.expect(operator.request_action(decline["decision_id"], key="block-txn-1"), 201)
    operator.expect(operator.fail_action(action["action_id"], retryable=False), 200)

    # The close is red: the action failed.
    first = operator.close(key="close-1")
    assert first["reasons"] == [{"code": "failed", "count": 1, "sample_ids": [action["action_id"]]}]

    # The operator reopens the run and waives the action (the refund was done by hand).
    operator.reopen("refund done by hand", key="reopen-1")
    waived = operator.expect(operator.waive_action(action["action_id"]), 200)
    assert waived["status"] == "waived"

    # Now the run commits.
    second = operator.close(key="close-2")
    assert (second["verdict"], second["reasons"]) == ("committed", [])
    assert second["summary"]["actions"] == {
        "requested": 1,
        "pending": 0,
        "committed": 0,
        "failed": 0,
        "waived": 1,
        **NO_DELIVERIES,
    }


# --- Duplicates and replays ------------------------------------------------------------------


def test_duplicates_and_replays_during_a_run_change_no_count(operator: Operator) -> None:
    # The run admits a batch holding a duplicate, then decides and acts.
    operator.open()
    admission = operator.admit("txn-1", "txn-2", "txn-3", "txn-1", key="basis-1")
    assert (admission["admitted_total"], admission["newly_admitted"]) == (3, 3)
    operator.decided("txn-1", "txn-2")
    decline = operator.expect(operator.decide("txn-3", "decline"), 201)
    action = operator.expect(operator.request_action(decline["decision_id"], key="block-txn-3"), 201)
    operator.expect(operator.fail_action(action["action_id"], retryable=True, key="fail-1"), 200)
    summary_before = operator.summary()
    reconciliation_before = operator.reconciliation()

    # An at-least-once queue delivers every one of those requests again, same key, same body.
    replays = [
        operator.admit("txn-1", "txn-2", "txn-3", "txn-1", key="basis-1"),
        operator.expect(operator.decide("txn-1"), 201),
        operator.expect(operator.decide("txn-3", "decline"), 201),
        operator.expect(operator.request_action(decline["decision_id"], key="block-txn-3"), 201),
        operator.expect(operator.fail_action(action["action_id"], retryable=True, key="fail-1"), 200),
    ]

    # Each answer is the first one again, at the first one's position.
    assert replays[0]["admitted_total"] == 3
    assert replays[2]["position"] == decline["position"]
    assert replays[3]["action_id"] == action["action_id"]

    # Nothing changed, not even the number of events.
    head = operator.api.get("/readyz").json()["detail"]["head_position"]
    assert operator.summary(min_position=head) == summary_before | {"as_of_position": head}
    assert operator.reconciliation(min_position=head) == reconciliation_before | {"as_of_position": head}

    # Duplicates under fresh keys: a decision already recorded (replayed by its natural key)
    # and a basis batch holding only inputs already admitted.
    again = operator.decide("txn-2", key="decide-txn-2-redelivered")
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (201, "true")
    readmission = operator.admit("txn-2", "txn-3", key="basis-2")
    assert (readmission["admitted_total"], readmission["newly_admitted"]) == (3, 0)

    # They change no count either (only the re-admission is an event of its own).
    summary_after = operator.summary()
    assert business_counts(summary_after) == business_counts(summary_before)
    assert summary_after["event_count"] == summary_before["event_count"] + 1
    assert operator.reconciliation()["categories"] == reconciliation_before["categories"]


# --- After the seal ----------------------------------------------------------------------------------


def test_a_sealed_run_refuses_new_decisions_and_actions_until_a_later_close_resumes_it(
    api_settings: Any,
) -> None:
    from interfaces.api.app import create_app

    # This API process does not follow the log, and a close waits only briefly for the views.
    settings = api_settings.model_copy(update={"run_projections": False, "close_timeout": 0.2})
    with TestClient(create_app(settings)) as api:
        operator = Operator(api, "fraud-sealed")
        operator.open()
        operator.admit("txn-1", "txn-2")
        decision = operator.expect(operator.decide("txn-1", "decline"), 201)
        action = operator.expect(operator.request_action(decision["decision_id"], key="block-txn-1"), 201)

        # The close seals the run, cannot gather its evidence in time, and answers 503.
        assert_problem(
            operator.post(f"/runs/{operator.run_id}/close", key="close-1"), 503, "projections-behind"
        )
        assert operator.api.get(f"/runs/{operator.run_id}").json()["status"] == "sealed"

        # Sealed, the run refuses new decisions, new actions and action results: 409.
        assert_problem(operator.decide("txn-2"), 409, "run-not-open")
        assert_problem(
            operator.request_action(decision["decision_id"], "notify", key="notify-txn-1"),
            409,
            "run-not-open",
        )
        assert_problem(operator.commit_action(action["action_id"]), 409, "run-not-open")

        # Once the views follow the log again, the next close resumes the sealed attempt.
        api.app.state.service.start_projections()
        verdict = operator.close(key="close-2")
        assert (verdict["verdict"], verdict["attempt"]) == ("rejected", 1)
        assert reasons_by_code(verdict).keys() == {"missing", "pending"}
        assert reasons_by_code(verdict)["missing"]["sample_ids"] == ["txn-2"]

        # Its verdict still refuses writes.
        assert_problem(operator.decide("txn-2"), 409, "run-not-open")


def test_a_committed_run_refuses_new_decisions_and_actions(operator: Operator) -> None:
    # A run commits.
    operator.open()
    operator.admit("txn-1")
    decision = operator.expect(operator.decide("txn-1", "decline"), 201)
    assert operator.close(key="close-1")["verdict"] == "committed"

    # Later decisions and action requests are refused with 409, and change nothing.
    assert_problem(operator.decide("txn-2"), 409, "run-not-open")
    assert_problem(operator.request_action(decision["decision_id"], key="late-block"), 409, "run-not-open")
    assert operator.summary()["decision_count"] == 1


# --- Paging the reconciliation --------------------------------------------------------------------


def test_the_missing_inputs_of_a_big_basis_are_read_page_by_page(operator: Operator) -> None:
    # The run admits 25 inputs and decides only the first.
    input_ids = [f"txn-{number:03d}" for number in range(25)]
    operator.open()
    operator.admit(*input_ids)
    operator.decided(input_ids[0])

    # Pages of ten missing IDs, each naming where the next one starts.
    pages = []
    after = None
    while True:
        params = {"category": "missing", "limit": 10, **({"after": after} if after else {})}
        page = operator.reconciliation(**params)["categories"]["missing"]
        pages.append(page)
        after = page["next_after"]
        if after is None:
            break

    # Three pages: 10, 10 and 4 IDs, in order, each with the full count.
    assert [len(page["ids"]) for page in pages] == [10, 10, 4]
    assert [page["count"] for page in pages] == [24, 24, 24]
    assert [input_id for page in pages for input_id in page["ids"]] == input_ids[1:]
    assert pages[0]["next_after"] == input_ids[10]

    # Without a category, every category shows its first page.
    categories = operator.reconciliation(limit=10)["categories"]
    assert (categories["missing"]["ids"], categories["missing"]["next_after"]) == (
        input_ids[1:11],
        input_ids[10],
    )
    assert categories["unexpected"] == {"count": 0, "ids": [], "next_after": None}

    # The rejected verdict samples the first of them.
    verdict = operator.close(key="close-1")
    assert reasons_by_code(verdict)["missing"]["count"] == 24
    assert reasons_by_code(verdict)["missing"]["sample_ids"][:3] == input_ids[1:4]
