"""The runs projection keeps, across pages, which inputs of the runs it follows are
admitted and which decided (application/projections/run_inputs.py). What it keeps must
never outlive the tables it describes: when another writer applied pages in between,
or the bounds let a run go, the next page asks the tables instead. On SQLite and
PostgreSQL, over a history whose admissions and decisions arrive in both orders.
"""

from __future__ import annotations

from itertools import cycle

import pytest

from application.ledger import DecisionLedger
from application.projections import run_inputs
from application.projections.log_pages import log_pages
from application.projections.runtime import Projections
from application.queries.read_models import ReadModels
from domain.commands import AdmitInputs, ModelRef, OpenRun, RecordDecision
from tests.support.ledger_commands import commands_of
from tests.support.views import live_projections

#: (run, step) in log order: "+x" admits input x, "x" decides it.
HISTORY = (
    ("run-x", "+a"),
    ("run-y", "q"),
    ("run-x", "+b"),
    ("run-x", "a"),
    ("run-y", "+r"),
    ("run-x", "z"),
    ("run-x", "+c"),
    ("run-x", "+z"),
    ("run-y", "+q"),
    ("run-x", "b"),
    ("run-y", "s"),
)
#: What each run's reconciliation says at the end.
EXPECTED = {
    "run-x": {"admitted": 4, "decisions": 3, "missing": ["c"], "unexpected": []},
    "run-y": {"admitted": 2, "decisions": 2, "missing": ["r"], "unexpected": ["s"]},
}


def write_history(ledger: DecisionLedger) -> None:
    commands = commands_of(ledger)
    for run_id in EXPECTED:
        commands.runs.open(OpenRun(token=f"open-{run_id}", actor="ops", run_id=run_id, lane="fraud"))
    for number, (run_id, step) in enumerate(HISTORY):
        if step.startswith("+"):
            commands.runs.admit(
                AdmitInputs(token=f"admit-{number}", actor="ops", run_id=run_id, input_ids=(step[1:],))
            )
        else:
            commands.decisions.record(
                RecordDecision(
                    token=f"decide-{number}",
                    actor="model",
                    run_id=run_id,
                    input_id=step,
                    outcome="approve",
                    score=0.5,
                    model=ModelRef("gbm", "7"),
                )
            )


def reconciled(projections: Projections) -> dict[str, dict[str, object]]:
    """Each run's reconciliation, once the other projections caught up (reads are as of
    the position every projection reached)."""
    for name, projection in live_projections(projections).items():
        if name != "runs":
            projections.catch_up(projection)
    read_models = ReadModels(projections)
    answers: dict[str, dict[str, object]] = {}
    for run_id in EXPECTED:
        summary = read_models.summary(run_id)
        view = read_models.reconciliation(run_id)
        assert summary.missing_count == view.categories["missing"].count
        assert summary.unexpected_count == view.categories["unexpected"].count
        answers[run_id] = {
            "admitted": summary.admitted_count,
            "decisions": summary.decision_count,
            "missing": view.categories["missing"].ids,
            "unexpected": view.categories["unexpected"].ids,
        }
    return answers


@pytest.mark.parametrize("page_size", [1, 2, 3])
def test_two_writers_taking_turns_never_trust_what_the_other_changed(
    ledger: DecisionLedger, page_size: int
) -> None:
    write_history(ledger)
    projections = Projections(ledger)
    store = projections.live_store("runs")
    # Two projection objects over the same tables, as a leader and its successor.
    writers = cycle([projections.kind("runs").build(store, ledger) for _ in range(2)])
    decode = projections.kind("runs").decoder(ledger)
    for page in log_pages(ledger, after=store.position(), up_to=None, page=page_size, decode=decode):
        next(writers).apply_page(page)

    assert reconciled(projections) == EXPECTED
    assert projections.verify("runs") == (ledger.index.head_position(), [])


def test_runs_let_go_beyond_the_bounds_are_asked_of_the_tables(
    ledger: DecisionLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_inputs, "MAX_FOLLOWED_RUNS", 1)
    monkeypatch.setattr(run_inputs, "MAX_OPEN_INPUTS", 1)
    write_history(ledger)
    projections = Projections(ledger)
    store = projections.live_store("runs")
    runs = projections.kind("runs").build(store, ledger)
    decode = projections.kind("runs").decoder(ledger)
    for page in log_pages(ledger, after=store.position(), up_to=None, page=1, decode=decode):
        runs.apply_page(page)
        assert len(runs.inputs._followed) <= 1  # type: ignore[attr-defined]

    assert reconciled(projections) == EXPECTED


#: The inputs table as generations made before it was insert-only have it.
OLDER_INPUTS_DDL = (
    "CREATE TABLE {inputs} (run_id TEXT NOT NULL, input_id TEXT NOT NULL, admitted_at BIGINT,"
    " decided_at BIGINT, decision_id TEXT, PRIMARY KEY (run_id, input_id))"
)


def test_a_generation_with_the_older_inputs_table_keeps_following(ledger: DecisionLedger) -> None:
    projections = Projections(ledger)
    generation = projections.store("runs", 0).claim_generation(make_live=True)
    store = projections.store("runs", generation)
    with store.cursor(commit=True) as cursor:
        cursor.execute(OLDER_INPUTS_DDL.format(inputs=store.table("inputs")))
    write_history(ledger)
    runs = projections.kind("runs").build(store, ledger)
    projections.catch_up(runs, page=2)

    assert reconciled(projections) == EXPECTED
    assert projections.verify("runs") == (ledger.index.head_position(), [])
