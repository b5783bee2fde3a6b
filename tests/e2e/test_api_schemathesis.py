"""The API against its own OpenAPI document, with schemathesis.

One schemathesis run (its engine, as `schemathesis run` drives it, in-process over ASGI)
covers every operation of `/openapi.json` through the examples, coverage and fuzzing
phases, with schemathesis's default checks: no 5xx, documented statuses, content types,
headers and bodies, schema-valid requests accepted and schema-violating ones refused.

It runs on SQLite only: the document is the same on both back ends, and the behavioural
suites cover PostgreSQL. The ledger is seeded first (an open run with a decision and an
action, a committed run with its proofs) and the document's path parameters get those IDs
as examples, so requests reach existing resources as well as missing ones.

Two things are adjusted, each for a stated reason:

- The Idempotency-Key header is documented as optional (a missing key is a documented 400)
  and as a plain string. Every write whose header is not itself the part a negative case
  breaks gets a fresh, well-formed key, so it reaches the route (and its body reaches
  validation) instead of stopping at that 400, or at a 422 for a key the generator reused.
- A failure explained by a known gap between the document and the API (GAPS below) is
  reported, not failed on; each gap has a strict xfail test of its own that pins it. Any
  other failure fails the test.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.engine import Status, events
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

from infrastructure.settings import Settings
from interfaces.api.app import create_app
from interfaces.bootstrap import build_service
from tests.support.api import RUN_ID, admit, close_run, keyed, open_run, record_decision, request_action

COMMITTED_RUN_ID = "fraud-2026-11-26"
#: Generated cases per operation and phase; the whole file stays well under 90 s.
MAX_EXAMPLES = 20
SEED = 20261127

CONFIG = {
    "seed": SEED,
    "generation": {"max-examples": MAX_EXAMPLES},
    # A failure explained by a known gap must not end its operation's run early.
    "continue-on-failure": True,
    # Stateful testing needs links the document does not declare; the seeded examples stand in.
    "phases": {"stateful": {"enabled": False}},
}


# --- Known gaps between the document and the API ----------------------------------------------


@dataclass(frozen=True)
class Gap:
    """A documented-vs-actual difference, and how to recognise the failures it causes."""

    name: str
    check: str
    explains: Callable[[Any, Any], bool]  # (case, response) -> bool


def both_times_given(case: Any, response: Any) -> bool:
    both = {"as_of", "as_of_position"} <= set(case.query or {})
    return both and response.status_code == 422 and response.json()["type"] == "/problems/invalid-command"


def a_rule_json_schema_cannot_say(case: Any, response: Any) -> bool:
    """Refused by the ledger's field rules, naming a field JSON Schema cannot constrain."""
    if response.status_code != 422 or response.json().get("type") != "/problems/invalid-command":
        return False
    fields = [entry["field"] for entry in response.json().get("errors") or []]
    return any(field.split(".")[-1] in UNSCHEMATIC_FIELDS for field in fields)


#: Free-form documents (their nested strings must be clean text, their numbers finite,
#: their depth at most 32) and times (which must lie in 1970..9999 once in UTC).
UNSCHEMATIC_FIELDS = {"metadata", "params", "result", "effective_at", "as_of", "valid_at"}


def sizes_out_of_order(case: Any, response: Any) -> bool:
    query = case.query or {}
    try:
        out_of_order = int(query["from"]) > int(query["to"])
    except (KeyError, TypeError, ValueError):
        return False
    return (
        out_of_order
        and response.status_code == 422
        and response.json()["type"] == "/problems/tree-size-invalid"
    )


def allow_lists_one_route(case: Any, response: Any) -> bool:
    return response.status_code == 405


GAPS = [
    # The document lists as_of and as_of_position as independent optional parameters (JSON
    # Schema cannot say "not both" of two query parameters); the API refuses both at once with
    # 422 invalid-command, and the parameters' descriptions say so
    # (test_the_document_says_as_of_excludes_as_of_position).
    Gap("as_of with as_of_position", "positive_data_acceptance", both_times_given),
    # JSON Schema cannot constrain every string nested in a free-form document, nor the range
    # of a date-time once converted to UTC; the ledger refuses those with 422 naming the field
    # (domain/fields.py, and tests/test_api_hostile_input.py for each rule).
    Gap(
        "field rules inside documents and time ranges",
        "positive_data_acceptance",
        a_rule_json_schema_cannot_say,
    ),
    # GET /checkpoints/consistency needs from <= to, which JSON Schema cannot say of two query
    # parameters; the API refuses the reverse with 422 tree-size-invalid.
    Gap("consistency from > to", "positive_data_acceptance", sizes_out_of_order),
    # POST /runs/{id}/decisions/batch also matches GET /runs/{id}/decisions/{input_id:path}, so
    # a 405 there names GET too; schemathesis expects the batch route's methods only.
    Gap("405 Allow header on the batch path", "allow_header_conformance", allow_lists_one_route),
]


# --- The seeded app, and the document with the seeded IDs as examples ---------------------------


def seed(api: TestClient) -> dict[str, list[str]]:
    """Resources for generated requests to find; returns example values per path parameter."""
    # A committed run: its basis decided, closed green, with a run proof and inclusion proofs.
    open_run(api, COMMITTED_RUN_ID)
    admit(api, ["txn-1"], COMMITTED_RUN_ID)
    committed_decision = record_decision(api, "txn-1", "approve", COMMITTED_RUN_ID)
    assert close_run(api, COMMITTED_RUN_ID)["verdict"] == "committed"

    # An open run with a decision and an action requested for it.
    open_run(api)
    admit(api, ["txn-1", "txn-2"])
    open_decision = record_decision(api, "txn-1")
    action = request_action(api, open_decision["decision_id"])
    return {
        "run_id": [RUN_ID, COMMITTED_RUN_ID],
        "decision_id": [open_decision["decision_id"], committed_decision["decision_id"]],
        "action_id": [action["action_id"]],
        "input_id": ["txn-1"],
    }


def with_examples(document: dict[str, Any], examples: dict[str, list[str]]) -> dict[str, Any]:
    """The OpenAPI document, its path parameters given the seeded IDs as examples."""
    document = copy.deepcopy(document)
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                values = examples.get(parameter["name"]) if parameter["in"] == "path" else None
                if values:
                    parameter["examples"] = {
                        f"seeded-{index}": {"value": value} for index, value in enumerate(values)
                    }
    return document


@pytest.fixture(scope="module")
def seeded_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, dict[str, list[str]]]]:
    """The real app on a seeded SQLite ledger. The service is built here, not in the app's
    lifespan, so it outlives the seeding client and serves schemathesis's own client."""
    database = Path(tmp_path_factory.mktemp("schemathesis")) / "ledger.sqlite3"
    app_settings = Settings(
        database_url=f"sqlite:///{database}",
        signing_key=Ed25519PrivateKey.generate().private_bytes_raw().hex(),
        api_keys=[],
        api_keys_file=None,
    )
    service = build_service(app_settings)
    app = create_app(app_settings, service=service)
    try:
        with TestClient(app) as client:
            examples = seed(client)
        yield app, examples
    finally:
        service.close()


def api_schema(app: FastAPI, examples: dict[str, list[str]]) -> Any:
    schema = schemathesis.openapi.from_dict(
        with_examples(app.openapi(), examples), config=SchemathesisConfig.from_dict(CONFIG)
    )
    schema.app = app  # requests go to the app in-process, as `schemathesis.openapi.from_asgi` arranges
    return schema


@contextmanager
def fresh_idempotency_keys() -> Iterator[None]:
    """Give every schema-valid write a well-formed key of its own (see the module docstring)."""
    fresh = itertools.count()

    def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
        # Unless the header itself is what a negative case breaks, so the rest of it reaches validation.
        header = case.meta.components.get(ParameterLocation.HEADER) if case.meta is not None else None
        if case.method.upper() == "POST" and (header is None or header.mode.is_positive):
            case.headers = {**(case.headers or {}), **keyed(f"schemathesis-{next(fresh)}")}

    # `before_call` hooks are global in schemathesis 4; this one lives for one run only.
    schemathesis.hook("before_call")(before_call)
    try:
        yield
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(before_call)


@dataclass
class RunReport:
    cases: int
    statuses: dict[int, int]
    operations: set[str]
    known: dict[str, int]
    unexplained: list[str]


def run_schemathesis(schema: Any) -> RunReport:
    report = RunReport(cases=0, statuses={}, operations=set(), known={}, unexplained=[])
    with fresh_idempotency_keys():
        stream = list(schemathesis.engine.from_schema(schema).execute())
    for event in stream:
        if isinstance(event, events.FatalError):
            raise event.exception
        if isinstance(event, events.NonFatalError):
            report.unexplained.append(f"{event.label}: error {event.value!r}")
        if not isinstance(event, events.ScenarioFinished) or not event.is_test_scenario:
            continue
        recorder = event.recorder
        report.cases += len(recorder.cases)
        if recorder.cases:
            report.operations.add(recorder.label)
        for interaction in recorder.interactions.values():
            if interaction.response is not None:
                status = interaction.response.status_code
                report.statuses[status] = report.statuses.get(status, 0) + 1
        for case_id, checks in recorder.checks.items():
            for check in checks:
                if check.status != Status.FAILURE or check.failure_info is None:
                    continue
                case = recorder.cases[case_id].value
                response = recorder.find_response(case_id=case_id)
                gap = next((g for g in GAPS if g.check == check.name and g.explains(case, response)), None)
                if gap is not None:
                    report.known[gap.name] = report.known.get(gap.name, 0) + 1
                else:
                    failure = check.failure_info.failure
                    report.unexplained.append(
                        f"{recorder.label}: {check.name}: {failure.title}: {failure.message}\n"
                        f"  {case.method} {case.formatted_path} query={case.query} headers={case.headers}"
                        f" body={str(case.body)[:300]} -> {getattr(response, 'status_code', None)}"
                    )
    return report


def test_every_operation_answers_as_its_openapi_document_says(
    seeded_app: tuple[FastAPI, dict[str, list[str]]],
) -> None:
    # The run covers every operation of the document.
    app, examples = seeded_app
    schema = api_schema(app, examples)
    report = run_schemathesis(schema)
    documented = {
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert report.operations == documented

    # It reached the domain (writes executed, conflicts met, resources found and missed) ...
    assert {200, 201, 404, 409, 422} <= report.statuses.keys(), report.statuses
    print(
        f"schemathesis: {report.cases} cases over {len(report.operations)} operations, statuses {report.statuses},"
        f" failures explained by known gaps {report.known}"
    )

    # ... and no answer was a server error or broke the document, beyond the pinned gaps.
    assert not [status for status in report.statuses if status >= 500]
    assert not report.unexplained, "\n".join(report.unexplained)


# --- The gaps, pinned -------------------------------------------------------------------------------


def served_document() -> dict[str, Any]:
    return create_app(
        Settings(database_url="sqlite:///never-opened.sqlite3", api_keys=[], api_keys_file=None)
    ).openapi()


def test_the_document_says_as_of_excludes_as_of_position() -> None:
    # Every operation that reads as of a point takes both ways of naming it ...
    time_travel: dict[str, dict[str, Any]] = {}
    for path, operations in served_document()["paths"].items():
        for method, operation in operations.items():
            parameters = {parameter["name"]: parameter for parameter in operation.get("parameters", [])}
            if {"as_of", "as_of_position"} & parameters.keys():
                assert {"as_of", "as_of_position"} <= parameters.keys(), (method, path)
                time_travel[f"{method} {path}"] = parameters
    # ... the time-travel reads of the README among them ...
    assert {"get /runs/{run_id}", "get /decisions/{decision_id}", "get /audit"} <= time_travel.keys()
    # ... and each says that they exclude each other.
    for operation, parameters in time_travel.items():
        descriptions = parameters["as_of"].get("description", "") + parameters["as_of_position"].get(
            "description", ""
        )
        assert "not both" in descriptions or "exclusive" in descriptions, operation


def test_the_document_says_batch_items_are_checked_one_by_one() -> None:
    document = served_document()
    batch = document["paths"]["/runs/{run_id}/decisions/batch"]["post"]["requestBody"]["content"][
        "application/json"
    ]
    reference = batch["schema"]["$ref"].rsplit("/", 1)[-1]
    items = document["components"]["schemas"][reference]["properties"]["decisions"]["items"]
    assert items.get("type") == "object" and "$ref" not in items


def test_the_document_gives_the_idempotency_key_its_format() -> None:
    writes = [
        operations["post"] for operations in served_document()["paths"].values() if "post" in operations
    ]
    for write in writes:
        [header] = [parameter for parameter in write["parameters"] if parameter["name"] == "Idempotency-Key"]
        schemas = [header["schema"], *header["schema"].get("anyOf", [])]
        assert any("pattern" in schema for schema in schemas), header


def test_the_document_says_effective_at_cannot_be_in_the_future() -> None:
    schemas = served_document()["components"]["schemas"]
    effective_at = schemas["CorrectionCreate"]["properties"]["effective_at"]
    assert "future" in effective_at.get("description", "")
