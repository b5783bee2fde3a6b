"""Verifying the projections: `Projections.verify` rebuilds them into scratch tables and
compares those with the live views, row by row, as of the live position.

After a long random history the live views, built a page at a time as the log grew,
are identical to a rebuild. On SQLite and PostgreSQL. (A view row altered by hand:
tests/e2e/test_projections_verify_cli.py.)
"""

from __future__ import annotations

import random

import pytest

from application.ledger import DecisionLedger
from application.projections.runtime import Projections
from tests.support.history import write_history
from tests.support.views import live_projections


@pytest.mark.slow
def test_the_live_views_equal_a_rebuild_after_a_long_random_history(ledger: DecisionLedger) -> None:
    projections = Projections(ledger)
    live = live_projections(projections)
    rng = random.Random(20261127)

    def follow_the_log() -> None:
        # The live views follow the log a page at a time, pages of any size.
        for projection in live.values():
            projections.catch_up(projection, page=rng.randint(1, 400))

    # A few thousand events, followed as they are written.
    write_history(ledger, rng, runs=6, inputs_per_run=450, after_each_write=follow_the_log)
    follow_the_log()
    head = ledger.index.head_position()
    assert ledger.index.count_after(0) > 2500

    # Each view is identical to a rebuild of it, as of the head.
    for name in projections.names:
        assert projections.verify(name) == (head, [])
