"""A projection page is applied in one transaction with its tracking position
(application/projections/base.py): a page that fails to commit leaves nothing behind,
and the same projection applies it again, in full, with the pages after it.

If any of the failed page's rows survived, the retried page would find its own basis
"already admitted": the inputs would count as decided-unexpected instead of missing.
On SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest

from application.ledger import DecisionLedger
from application.projections.runtime import Projections
from application.queries.read_models import ReadModels
from domain.commands import AdmitInputs, ModelRef, OpenRun, RecordDecision
from tests.support.ledger_commands import commands_of
from tests.support.views import live_projections

RUN_ID = "run-retried"


class DatabaseWentAway(Exception):
    pass


def test_a_page_that_fails_to_commit_is_applied_again_in_full(
    ledger: DecisionLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = commands_of(ledger)
    commands.runs.open(OpenRun(token="open", actor="ops", run_id=RUN_ID, lane="fraud"))
    projections = Projections(ledger)
    live = live_projections(projections)
    runs = live["runs"]
    for projection in live.values():
        projections.catch_up(projection)
    opened_at = runs.view.position()
    commands.runs.admit(AdmitInputs(token="basis", actor="ops", run_id=RUN_ID, input_ids=("a", "b", "c")))

    # The page that admits the run's basis fails as it records its position.
    def fail(cursor: Any, tracking: Any) -> None:
        raise DatabaseWentAway("the connection was lost before the commit")

    with monkeypatch.context() as patched:
        patched.setattr(runs.view, "track", fail)
        with pytest.raises(DatabaseWentAway):
            projections.catch_up(runs)
    assert runs.view.position() == opened_at

    # The same projection applies the page again, then a decision for one input.
    for projection in live.values():
        projections.catch_up(projection)
    commands.decisions.record(
        RecordDecision(
            token="decide-a",
            actor="model",
            run_id=RUN_ID,
            input_id="a",
            outcome="approve",
            score=0.9,
            model=ModelRef("gbm", "7"),
        )
    )
    for projection in live.values():
        projections.catch_up(projection)

    summary = ReadModels(projections).summary(RUN_ID)
    assert (summary.admitted_count, summary.missing_count, summary.unexpected_count) == (3, 2, 0)
    assert projections.verify("runs") == (ledger.index.head_position(), [])
