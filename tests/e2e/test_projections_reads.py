"""Reading the projections through the REST API: the audit log and the run listing,
page by page, on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.support.operator import Operator


def read(api: TestClient, path: str, min_position: int, **params: Any) -> dict[str, Any]:
    response = api.get(path, params={"min_position": min_position, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_audit_log_is_read_page_by_page_in_notification_order(api: TestClient) -> None:
    # Two runs record a few events each, interleaved.
    fraud, credit = Operator(api, "fraud-1"), Operator(api, "credit-1")
    fraud.open()
    credit.open(lane="credit")
    fraud.admit("txn-1", "txn-2")
    credit.admit("app-1")
    fraud.decided("txn-1", "txn-2")
    credit.decided("app-1")
    head = max(fraud.position, credit.position)

    # Reading pages of three records, following next_after until there is none ...
    pages, after = [], 0
    while after is not None:
        page = read(api, "/audit", head, after=after, limit=3)
        pages.append(page)
        after = page["next_after"]
    records = [record for page in pages for record in page["records"]]

    # ... gives each record once, in position order, three to a page.
    assert [len(page["records"]) for page in pages] == [3, 3, 1]
    positions = [record["position"] for record in records]
    assert positions == sorted(set(positions)) and positions[-1] == head
    assert pages[0]["next_after"] == positions[2]

    # The pages are exactly the log read in one go.
    assert read(api, "/audit", head, limit=1000)["records"] == records

    # Filtered by run, the log holds that run's records only.
    fraud_records = read(api, "/audit", head, run_id="fraud-1")["records"]
    assert {record["run_id"] for record in fraud_records} == {"fraud-1"}
    assert [record["event_type"] for record in fraud_records] == [
        "Run.Opened",
        "Run.BasisAdmitted",
        "Decision.Recorded",
        "Decision.Recorded",
    ]
    assert [record["position"] for record in fraud_records] == [
        r["position"] for r in records if r["run_id"] == "fraud-1"
    ]


def test_runs_are_listed_by_status_and_lane_page_by_page(api: TestClient) -> None:
    # Five runs in two lanes: one committed, one rejected, three still open.
    committed, rejected = Operator(api, "fraud-a"), Operator(api, "fraud-b")
    still_open = [Operator(api, "credit-a"), Operator(api, "credit-b"), Operator(api, "fraud-c")]
    for operator in (committed, rejected):
        operator.open()
        operator.admit("txn-1")
    committed.decided("txn-1")
    committed.close(key="close-fraud-a")
    rejected.close(key="close-fraud-b")
    for operator in still_open:
        operator.open(lane=operator.run_id.split("-")[0])
    head = max(operator.position for operator in (committed, rejected, *still_open))

    def listed(**params: Any) -> list[str]:
        return [run["run_id"] for run in read(api, "/runs", head, **params)["runs"]]

    # Filters by status, by lane, and by both.
    assert listed(status="committed") == ["fraud-a"]
    assert listed(status="rejected") == ["fraud-b"]
    assert listed(status="open") == ["credit-a", "credit-b", "fraud-c"]
    assert listed(lane="credit") == ["credit-a", "credit-b"]
    assert listed(status="open", lane="fraud") == ["fraud-c"]
    assert listed(status="sealed") == []

    # Pages of two, in run_id order, each naming where the next one starts.
    pages, after = [], None
    while True:
        page = read(api, "/runs", head, limit=2, **({"after": after} if after else {}))
        pages.append([run["run_id"] for run in page["runs"]])
        after = page["next_after"]
        if after is None:
            break
    assert pages == [["credit-a", "credit-b"], ["fraud-a", "fraud-b"], ["fraud-c"]]

    # A filtered listing pages too.
    first = read(api, "/runs", head, status="open", limit=2)
    assert ([run["run_id"] for run in first["runs"]], first["next_after"]) == (
        ["credit-a", "credit-b"],
        "credit-b",
    )
    rest = read(api, "/runs", head, status="open", limit=2, after=first["next_after"])
    assert ([run["run_id"] for run in rest["runs"]], rest["next_after"]) == (["fraud-c"], None)

    # Each listed run carries its summary.
    [listed_committed] = read(api, "/runs", head, status="committed")["runs"]
    assert (listed_committed["decision_count"], listed_committed["missing_count"]) == (1, 0)


def test_the_summary_of_an_earlier_attempt_counts_that_attempts_audit_records(api: TestClient) -> None:
    # A run is rejected in attempt 1, reopened, and committed in attempt 2.
    operator = Operator(api, "fraud-attempts")
    operator.open()
    operator.admit("txn-1", "txn-2")
    operator.decided("txn-1")
    first = operator.close(key="close-1")
    operator.reopen(key="reopen-1")
    operator.decided("txn-2")
    operator.close(key="close-2")

    # Attempt 1's summary is the run as its verdict left it: five events, five audit records.
    attempt_1 = operator.summary(attempt=1)
    assert (attempt_1["status"], attempt_1["last_position"]) == ("rejected", first["position"])
    assert attempt_1["event_count"] == 5
    assert attempt_1["audit_records"] == attempt_1["event_count"]
