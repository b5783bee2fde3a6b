"""Property: the live views, a rebuild of them, and a fold of the commands written here
from scratch all tell the same story.

Hypothesis writes a random history of two runs: basis batches holding duplicates,
decisions (some for inputs never admitted), corrections back-dated or applying from now,
actions that commit, fail and are waived, redeliveries of accepted commands and
duplicates under fresh tokens. Each command goes through DecisionLedger, on a fresh
database per example, of each back end (a SQLite file, or a PostgreSQL schema of its own). `Fold` predicts every answer (a new event, a replay, or which
typed error) and keeps what the run summary and the reconciliation must say after each
event.

The live generation is caught up at random points in random page sizes, as a worker
would; the rebuild reads the whole log in one pass. Both must agree with the fold, now
and as of every event's position, and verify must find no difference between them.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from application.ledger import DecisionLedger
from application.projections.base import LedgerProjection
from application.projections.runtime import Projections
from application.queries.read_models import ReadModels
from domain import errors
from domain.basis import basis_digest
from domain.commands import (
    AdmitInputs,
    Command,
    CommitAction,
    CorrectDecision,
    FailAction,
    ModelRef,
    OpenRun,
    RecordDecision,
    RequestAction,
    WaiveAction,
)
from domain.identity import action_uuid, decision_uuid
from infrastructure.database import parse_database_url
from tests.support.databases import fresh_database_like
from tests.support.ledger_commands import commands_of

RUN_IDS = ("run-a", "run-b")
INPUT_POOL = tuple(f"in-{number}" for number in range(8))
OUTCOMES = ("approve", "decline", "refer")
ACTION_KEYS = ("block", "notify", "refund")
MODEL = ModelRef("gbm", "7")
#: SQLite on a RAM disk when there is one: the property is about the views, not about
#: fsync, and a cheap example lets hypothesis try more of them.
SCRATCH_DIRECTORY = "/dev/shm" if os.path.isdir("/dev/shm") else None

#: When a correction applies from: back-dated, or from now (no time given). Either way
#: newer knowledge wins: the correction recorded last is the outcome in force now.
EFFECTIVE_AT = (datetime(2020, 1, 1, tzinfo=UTC), None)

#: The answer a command must get: a new event, a replay, or a typed error.
NEW, REPLAY = "new", "replay"
Expected = str | type[errors.LedgerError]


# --- The fold: what the views must say, computed from the commands alone -----------------------


@dataclass
class DecisionFacts:
    command: RecordDecision
    #: The recorded outcome, then each correction's, in the order they were recorded.
    outcomes: list[str]

    @property
    def outcome_in_force(self) -> str:
        return self.outcomes[-1]


@dataclass
class ActionFacts:
    command: RequestAction
    status: str = "requested"
    retryable: bool = True


@dataclass
class RunFacts:
    run_id: str
    admitted: set[str] = field(default_factory=set)
    decisions: dict[str, DecisionFacts] = field(default_factory=dict)
    actions: dict[str, ActionFacts] = field(default_factory=dict)
    events: int = 0

    def summary(self) -> dict[str, Any]:
        statuses = Counter(action.status for action in self.actions.values())
        decided = set(self.decisions)
        return {
            "status": "open",
            "attempt": 1,
            "admitted_count": len(self.admitted),
            "basis_digest": basis_digest(sorted(self.admitted)),
            "decision_count": len(self.decisions),
            "outcome_counts": dict(
                Counter(decision.outcome_in_force for decision in self.decisions.values())
            ),
            "corrected_count": sum(len(decision.outcomes) > 1 for decision in self.decisions.values()),
            "missing_count": len(self.admitted - decided),
            "unexpected_count": len(decided - self.admitted),
            "actions": {
                "requested": len(self.actions),
                "pending": statuses["requested"],
                "committed": statuses["committed"],
                "failed": statuses["failed"],
                "waived": statuses["waived"],
                # No effector in these stories: the dispatcher made no delivery.
                "delivery_attempts": 0,
                "delivery_failures": 0,
                "dead_letters": 0,
            },
            "event_count": self.events,
            "audit_records": self.events,
        }

    def reconciliation(self) -> dict[str, set[str]]:
        decided = set(self.decisions)

        def actions_in(status: str) -> set[str]:
            return {
                str(action_uuid(self.run_id, key))
                for key, action in self.actions.items()
                if action.status == status
            }

        return {
            "missing": self.admitted - decided,
            "unexpected": decided - self.admitted,
            "pending": actions_in("requested"),
            "failed": actions_in("failed"),
        }


class Fold:
    """Predicts each command's answer and folds the accepted ones into run facts."""

    def __init__(self) -> None:
        self.runs = {run_id: RunFacts(run_id) for run_id in RUN_IDS}
        self._run_of_decision: dict[UUID, str] = {}
        self._action_by_id: dict[UUID, tuple[str, str]] = {}
        self.accepted_tokens: set[str] = set()

    def handle(self, command: Command) -> tuple[Expected, str]:
        """The answer `command` must get, and the run it concerns."""
        if command.token in self.accepted_tokens:
            return REPLAY, self._run_of(command)
        expected, run_id = self._handle_new(command)
        if expected == NEW:
            self.accepted_tokens.add(command.token)
            self.runs[run_id].events += 1
        return expected, run_id

    def _run_of(self, command: Any) -> str:
        if hasattr(command, "run_id"):
            return command.run_id
        if isinstance(command, CorrectDecision):
            return self._run_of_decision[command.decision_id]
        return self._action_by_id[command.action_id][0]

    def _handle_new(self, command: Command) -> tuple[Expected, str]:
        if isinstance(command, OpenRun):
            return NEW, command.run_id
        if isinstance(command, AdmitInputs):
            self.runs[command.run_id].admitted.update(command.input_ids)
            return NEW, command.run_id
        if isinstance(command, RecordDecision):
            return self._record(command), command.run_id
        if isinstance(command, CorrectDecision):
            run_id = self._run_of_decision[command.decision_id]
            decision = next(
                d
                for d in self.runs[run_id].decisions.values()
                if decision_id_of(d.command) == command.decision_id
            )
            decision.outcomes.append(command.outcome)
            return NEW, run_id
        if isinstance(command, RequestAction):
            return self._request(command), command.run_id
        run_id, key = self._action_by_id[command.action_id]
        return self._transition(self.runs[run_id].actions[key], command), run_id

    def _record(self, command: RecordDecision) -> Expected:
        run = self.runs[command.run_id]
        existing = run.decisions.get(command.input_id)
        if existing is None:
            run.decisions[command.input_id] = DecisionFacts(command, [command.outcome])
            self._run_of_decision[decision_id_of(command)] = command.run_id
            return NEW
        # The same decision under a fresh token is a replay; another one is a conflict.
        return (
            REPLAY if existing.command.fingerprint == command.fingerprint else errors.DecisionAlreadyRecorded
        )

    def _request(self, command: RequestAction) -> Expected:
        run = self.runs[command.run_id]
        existing = run.actions.get(command.action_key)
        if existing is None:
            run.actions[command.action_key] = ActionFacts(command)
            self._action_by_id[action_uuid(command.run_id, command.action_key)] = (
                command.run_id,
                command.action_key,
            )
            return NEW
        # The key names the action: the same request again is a replay.
        return REPLAY if existing.command.fingerprint == command.fingerprint else errors.IdempotencyKeyReused

    @staticmethod
    def _transition(action: ActionFacts, command: Command) -> Expected:
        if action.status == "committed":
            return errors.ActionAlreadyCommitted
        if isinstance(command, CommitAction):
            if action.status == "waived":
                return errors.ActionTransitionRefused
            if action.status == "failed" and not action.retryable:
                return errors.ActionNotRetryable
            action.status = "committed"
        elif isinstance(command, FailAction):
            if action.status == "waived":
                return errors.ActionTransitionRefused
            action.status, action.retryable = "failed", command.retryable
        elif isinstance(command, WaiveAction):
            if action.status != "failed":
                return errors.ActionTransitionRefused
            action.status = "waived"
        return NEW


def decision_id_of(command: RecordDecision) -> UUID:
    return decision_uuid(command.run_id, command.input_id)


# --- Drawing the next command from what the fold knows ---------------------------------------


def next_step(draw: Callable[..., Any], fold: Fold, accepted: list[Command], token: str) -> Command | int:
    """A command, or an int: the page size of a catch-up of the live views."""
    run = fold.runs[draw(st.sampled_from(RUN_IDS))]
    kinds = ["admit", "decide", "catch_up"]
    if run.decisions:
        kinds += ["decide_again", "correct", "request"]
    if run.actions:
        kinds += ["commit", "fail", "waive"]
    if accepted:
        kinds.append("redeliver")
    kind = draw(st.sampled_from(kinds))
    common = {"token": token, "actor": draw(st.sampled_from(["scorer", "operator"]))}
    if kind == "catch_up":
        return draw(st.integers(1, 7))
    if kind == "redeliver":
        return draw(st.sampled_from(accepted))
    if kind == "admit":
        input_ids = draw(st.lists(st.sampled_from(INPUT_POOL), min_size=1, max_size=5))
        return AdmitInputs(run_id=run.run_id, input_ids=tuple(input_ids), **common)
    if kind == "decide":
        return RecordDecision(
            run_id=run.run_id,
            input_id=draw(st.sampled_from(INPUT_POOL)),
            outcome=draw(st.sampled_from(OUTCOMES)),
            model=MODEL,
            **common,
        )
    decided = draw(st.sampled_from(sorted(run.decisions)))
    if kind == "decide_again":
        # The same decision (a replay), or another outcome for the same input (a conflict).
        recorded = run.decisions[decided].command
        outcome = draw(st.sampled_from([recorded.outcome, *OUTCOMES]))
        return RecordDecision(run_id=run.run_id, input_id=decided, outcome=outcome, model=MODEL, **common)
    if kind == "correct":
        return CorrectDecision(
            decision_id=decision_uuid(run.run_id, decided),
            outcome=draw(st.sampled_from(OUTCOMES)),
            reason="second look",
            effective_at=draw(st.sampled_from(EFFECTIVE_AT)),
            **common,
        )
    if kind == "request":
        return RequestAction(
            run_id=run.run_id,
            action_key=draw(st.sampled_from(ACTION_KEYS)),
            decision_id=decision_uuid(run.run_id, decided),
            kind=draw(st.sampled_from(["block-card", "notify"])),
            **common,
        )
    action_id = action_uuid(run.run_id, draw(st.sampled_from(sorted(run.actions))))
    if kind == "commit":
        return CommitAction(action_id=action_id, external_ref="psp-1", **common)
    if kind == "fail":
        return FailAction(action_id=action_id, error="timeout", retryable=draw(st.booleans()), **common)
    return WaiveAction(action_id=action_id, reason="done by hand", **common)


def send(ledger: DecisionLedger, command: Command) -> Any:
    commands = commands_of(ledger)
    handler = {
        OpenRun: commands.runs.open,
        AdmitInputs: commands.runs.admit,
        RecordDecision: commands.decisions.record,
        CorrectDecision: commands.decisions.correct,
        RequestAction: commands.actions.request,
        CommitAction: commands.actions.commit,
        FailAction: commands.actions.fail,
        WaiveAction: commands.actions.waive,
    }[type(command)]
    return handler(command)


# --- Reading the views ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What the fold said about one run right after one of its events."""

    run_id: str
    position: int
    summary: dict[str, Any]
    reconciliation: dict[str, set[str]]


def summary_as_read(read_models: ReadModels, run_id: str, position: int | None) -> dict[str, Any]:
    view = read_models.summary(run_id, as_of_position=position)
    return {key: getattr(view, key) for key in RunFacts(run_id).summary()}


def reconciliation_as_read(read_models: ReadModels, run_id: str, position: int | None) -> dict[str, set[str]]:
    view = read_models.reconciliation(run_id, as_of_position=position, limit=1000)
    for page in view.categories.values():
        assert page.count == len(page.ids) and page.next_after is None
    return {name: set(page.ids) for name, page in view.categories.items()}


def assert_views_tell_the_folds_story(read_models: ReadModels, fold: Fold, snapshots: list[Snapshot]) -> None:
    for run_id, run in fold.runs.items():
        assert summary_as_read(read_models, run_id, None) == run.summary()
        assert reconciliation_as_read(read_models, run_id, None) == run.reconciliation()
    for snapshot in snapshots:
        assert summary_as_read(read_models, snapshot.run_id, snapshot.position) == snapshot.summary, (
            snapshot.position
        )
        assert (
            reconciliation_as_read(read_models, snapshot.run_id, snapshot.position) == snapshot.reconciliation
        )


# --- The property -----------------------------------------------------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    # The `database_url` fixture only names the back end: each example gets a database of its own.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    # Shrinking a history whose every step depends on the ones before it takes longer
    # than the suite's timeout and gains little: a failure prints its steps instead.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)
@given(data=st.data())
def test_the_live_views_a_rebuild_and_a_fold_of_the_commands_agree(
    database_url: str, data: st.DataObject
) -> None:
    with fresh_database_like(database_url, scratch=SCRATCH_DIRECTORY) as url:
        ledger = DecisionLedger(env=parse_database_url(url).library_env())
        try:
            projections = Projections(ledger)
            live: dict[str, LedgerProjection] = {
                name: projections.kind(name).build(projections.live_store(name), ledger)
                for name in projections.names
            }
            fold, accepted, snapshots = Fold(), [], []
            tokens = (f"token-{number}" for number in itertools.count())

            def catch_up(page: int) -> None:
                for projection in live.values():
                    projections.catch_up(projection, page=page)

            # Both runs open, then a random history unfolds; each answer is the predicted one.
            opens: list[Command | int] = [
                OpenRun(token=next(tokens), actor="scheduler", run_id=run_id, lane="fraud")
                for run_id in RUN_IDS
            ]
            steps = itertools.chain(
                opens,
                (
                    next_step(data.draw, fold, accepted, next(tokens))
                    for _ in range(data.draw(st.integers(5, 40)))
                ),
            )
            for step in steps:
                note(f"step: {step!r}")
                if isinstance(step, int):
                    catch_up(step)
                    continue
                expected, run_id = fold.handle(step)
                try:
                    result = send(ledger, step)
                except errors.LedgerError as error:
                    assert type(error) is expected, (step, error)
                    continue
                assert expected in (NEW, REPLAY), (step, expected)
                assert result.replayed == (expected == REPLAY), step
                accepted.append(step)
                if expected == NEW:
                    run = fold.runs[run_id]
                    snapshots.append(
                        Snapshot(run_id, result.position, run.summary(), copy.deepcopy(run.reconciliation()))
                    )

            # The live views, caught up, tell the fold's story, now and as of every event.
            catch_up(data.draw(st.integers(1, 50)))
            read_models = ReadModels(projections)
            assert_views_tell_the_folds_story(read_models, fold, snapshots)

            # Verify finds the live views identical to a rebuild of them.
            for name in projections.names:
                position, differences = projections.verify(name)
                assert (position, differences) == (ledger.index.head_position(), [])

            # A rebuild, swapped in, tells the same story.
            for name in projections.names:
                projections.rebuild(name, grace=0)
            assert_views_tell_the_folds_story(read_models, fold, snapshots)
        finally:
            ledger.close()
