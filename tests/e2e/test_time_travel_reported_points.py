"""Which point in time does an answer speak of? The header and the body must agree, a
write's own time must know that write, and a point in time must be an RFC 3339 time.

Most tests here pin down a place where the service gives a point in time that another
part of the same API contradicts: they are expected failures until fixed (strict: a fix
makes them pass, and the marker must then go). On SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.story import AS_OF_HEADER, MODEL, write
from tests.support.views import catch_up_views

RUN_ID = "points-1"


@pytest.fixture
def lagging_api(api_settings: Any) -> Iterator[TestClient]:
    """The API served with the projections run elsewhere (DECISION_LEDGER_RUN_PROJECTIONS=false):
    here nothing follows the log, so the views stay where the test leaves them."""
    from interfaces.api.app import create_app

    settings = api_settings.model_copy(update={"run_projections": False})
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_read_model_answer_and_its_header_name_the_same_position_while_the_views_lag(
    lagging_api: TestClient,
) -> None:
    # The run is opened and admitted; the worker applies both events.
    write(lagging_api, "/runs", "open", {"run_id": RUN_ID, "lane": "credit"})
    admitted = write(lagging_api, f"/runs/{RUN_ID}/basis", "basis-1", {"input_ids": ["app-1"]})
    catch_up_views(lagging_api.app.state.service)  # type: ignore[attr-defined]

    # More inputs are admitted, and the worker has not applied them yet.
    head = write(lagging_api, f"/runs/{RUN_ID}/basis", "basis-2", {"input_ids": ["app-2"]})["position"]
    assert head > admitted["position"]

    # Each read-model answer reflects the views' position, and says so in its body ...
    for path in (f"/runs/{RUN_ID}/summary", f"/runs/{RUN_ID}/reconciliation", "/runs", "/audit"):
        response = lagging_api.get(path)
        assert response.status_code == 200, response.text
        assert response.json()["as_of_position"] == admitted["position"], path
        # ... and its header must name that same position, not the head it did not reflect.
        assert response.headers[AS_OF_HEADER] == str(response.json()["as_of_position"]), path


def test_a_write_is_known_as_of_the_time_it_says_it_was_recorded(api: TestClient) -> None:
    # A run is opened, and a decision recorded in it; each answer says when it was recorded.
    opened = write(api, "/runs", "open", {"run_id": RUN_ID, "lane": "credit"})
    recorded = write(
        api,
        f"/runs/{RUN_ID}/decisions",
        "decide",
        {"input_id": "app-1", "outcome": "approve", "model": MODEL},
    )

    # As of the very time each answer gives, the ledger knew what that answer described.
    run = api.get(f"/runs/{RUN_ID}", params={"as_of": opened["opened_at"]})
    assert run.status_code == 200, run.text
    decision = api.get(f"/decisions/{recorded['decision_id']}", params={"as_of": recorded["recorded_at"]})
    assert decision.status_code == 200, decision.text
    assert decision.json()["version"] == recorded["version"]


def test_a_point_in_time_without_an_offset_is_reported_against_the_query_parameter(api: TestClient) -> None:
    write(api, "/runs", "open", {"run_id": RUN_ID, "lane": "credit"})

    # A malformed as_of is named as the query parameter it is, as the schema's own errors name it ...
    unparsable = api.get(f"/runs/{RUN_ID}", params={"as_of": "yesterday"}).json()
    assert [error["field"] for error in unparsable["errors"]] == ["query.as_of"]

    # ... and so is one that parses but carries no offset.
    naive = api.get(f"/runs/{RUN_ID}", params={"as_of": "2026-01-31T14:00:00"})
    assert naive.status_code == 422
    assert [error["field"] for error in naive.json()["errors"]] == ["query.as_of"]


def test_a_bare_number_is_not_taken_for_a_point_in_time(api: TestClient) -> None:
    # (A number was once read as Unix seconds: as_of=1 meant 1970, while the CLI reads --as-of 1 as position 1.)
    opened = write(api, "/runs", "open", {"run_id": RUN_ID, "lane": "credit"})

    # as_of takes an RFC 3339 time: a position given to the wrong parameter is refused, not read as 1970.
    response = api.get(f"/runs/{RUN_ID}", params={"as_of": str(opened["position"])})
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "/problems/validation-error"

    # So does valid_at.
    response = api.get(f"/runs/{RUN_ID}/decisions/app-1", params={"valid_at": "5"})
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "/problems/validation-error"
