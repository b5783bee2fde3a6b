"""Scripts of valid ledger commands, as hypothesis draws them, and the same scripts
delivered again (duplicates, redeliveries from another actor, creations under a fresh
token), plus `InMemoryLedger`, a fake of the application that routes each command to
its aggregate by natural key. Shared by the idempotency properties of every tier.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from hypothesis import strategies as st

from domain.action import Action
from domain.clock import system_clock
from domain.commands import (
    AdmitInputs,
    CloseRun,
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
from domain.decision import Decision
from domain.identity import action_uuid, decision_uuid, run_uuid
from domain.ledger_aggregate import LedgerAggregate
from domain.run import Run

RUN_IDS = ("run-a", "run-b")
INPUT_IDS = tuple(f"input-{number}" for number in range(6))
OUTCOMES = ("approve", "decline", "refer")
BACK_DATED = datetime(2020, 1, 1, tzinfo=UTC)

#: Creation commands are named by their natural key, so the same request under a
#: fresh token is a replay too. Any other command under a fresh token is new work.
CREATION_COMMANDS = (OpenRun, RecordDecision, RequestAction)


# --- The fake application: aggregates in memory, routed by natural key ----------------------


class InMemoryLedger:
    """Does what DecisionLedger does between loading and saving, without a database.

    Every command reaches the aggregate its natural key names; a creation command for
    an aggregate that exists asks it whether this is a replay. Saved aggregates and
    their events are kept here, and so is each run's membership index."""

    def __init__(self) -> None:
        self.aggregates: dict[UUID, LedgerAggregate] = {}
        self.saved_events: list[Any] = []
        self.admitted: dict[str, set[str]] = {}

    def handle(self, command: Command) -> None:
        if isinstance(command, OpenRun):
            self._create_or_replay(run_uuid(command.run_id), command, lambda: Run.open(command))
        elif isinstance(command, RecordDecision):
            self._create_or_replay(
                decision_uuid(command.run_id, command.input_id),
                command,
                lambda: Decision.record(command, self.run(command.run_id).attempt, system_clock()),
            )
        elif isinstance(command, RequestAction):
            self._create_or_replay(
                action_uuid(command.run_id, command.action_key),
                command,
                lambda: Action.request(command, 1, self._input_of(command.decision_id)),
            )
        elif isinstance(command, AdmitInputs):
            run = self.run(command.run_id)
            run.admit(command, self.admitted[command.run_id] & set(command.input_ids))
            self._save(run)
        elif isinstance(command, CloseRun):
            run = self.run(command.run_id)
            run.seal(command)
            self._save(run)
        elif isinstance(command, CorrectDecision):
            decision = self.aggregates[command.decision_id]
            assert isinstance(decision, Decision)
            decision.correct(command, attempt=1, now=system_clock())
            self._save(decision)
        elif isinstance(command, (CommitAction, FailAction, WaiveAction)):
            action = self.aggregates[command.action_id]
            assert isinstance(action, Action)
            transition = {CommitAction: Action.commit, FailAction: Action.fail}.get(
                type(command), Action.waive
            )
            transition(action, command, 1)
            self._save(action)
        else:
            raise TypeError(f"no route for {type(command).__name__}")

    def run(self, run_id: str) -> Run:
        run = self.aggregates[run_uuid(run_id)]
        assert isinstance(run, Run)
        return run

    def _input_of(self, decision_id: UUID) -> str:
        decision = self.aggregates[decision_id]
        assert isinstance(decision, Decision)
        return decision.input_id

    def _create_or_replay(
        self, aggregate_id: UUID, command: Any, create: Callable[[], LedgerAggregate]
    ) -> None:
        existing = self.aggregates.get(aggregate_id)
        if existing is None:
            self._save(create())
        elif isinstance(existing, Run):
            existing.replay_of_open(command)
        elif isinstance(existing, Decision):
            existing.replay_of_record(command)
        else:
            assert isinstance(existing, Action)
            existing.replay_of_request(command)

    def _save(self, aggregate: LedgerAggregate) -> None:
        new_events = aggregate.collect_events()
        self.saved_events.extend(new_events)
        self.aggregates[aggregate.id] = aggregate
        for new_event in new_events:
            if isinstance(new_event, Run.BasisAdmitted):
                self.admitted.setdefault(new_event.run_id, set()).update(new_event.input_ids)
            elif isinstance(new_event, Run.Opened):
                self.admitted.setdefault(new_event.run_id, set())

    def states(self) -> dict[UUID, dict[str, Any]]:
        return {aggregate_id: state_of(aggregate) for aggregate_id, aggregate in self.aggregates.items()}

    def event_trail(self) -> list[tuple[str, UUID, int, str]]:
        return [(type(e).__name__, e.originator_id, e.originator_version, e.token) for e in self.saved_events]


#: Read from the clock when a command runs, so two executions of one script differ.
CLOCK_FIELDS = {"_created_on", "_modified_on", "_pending_events", "recorded_at"}


def state_of(aggregate: LedgerAggregate) -> dict[str, Any]:
    """An aggregate's state, without the times read from the clock."""
    state = {key: value for key, value in vars(aggregate).items() if key not in CLOCK_FIELDS}
    if isinstance(aggregate, Decision):
        state["outcome_history"] = [
            {
                **{key: value for key, value in entry.items() if key not in CLOCK_FIELDS},
                # An entry without a back-dated valid time is in effect from when it was recorded.
                "effective_at": (
                    "when recorded"
                    if entry["effective_at"] == entry["recorded_at"]
                    else entry["effective_at"]
                ),
            }
            for entry in aggregate.outcome_history
        ]
    return state


# --- Strategies: valid scripts, and deliveries with duplicates ------------------------------


@st.composite
def scripts(draw: st.DrawFn, max_steps: int = 20) -> list[Command]:
    """A sequence of distinct commands, each valid where it stands, each with its own token."""
    opened = draw(st.lists(st.sampled_from(RUN_IDS), min_size=1, max_size=2, unique=True))
    script: list[Command] = [
        OpenRun(token=f"open-{run_id}", actor="scheduler", run_id=run_id, lane="credit") for run_id in opened
    ]
    decided: list[tuple[str, str]] = []
    # Each action's status, and whether it may still be retried.
    actions: dict[tuple[str, str], tuple[str, bool]] = {}

    for step in range(draw(st.integers(0, max_steps))):
        token = f"step-{step}"
        undecided = [(r, i) for r in opened for i in INPUT_IDS if (r, i) not in decided]
        committable = [
            key
            for key, (status, retryable) in actions.items()
            if status == "requested" or (status == "failed" and retryable)
        ]
        failable = [key for key, (status, _) in actions.items() if status in ("requested", "failed")]
        waivable = [key for key, (status, _) in actions.items() if status == "failed"]
        moves = ["admit"]
        moves += ["record"] if undecided else []
        moves += ["correct", "request"] if decided else []
        moves += ["commit"] if committable else []
        moves += ["fail"] if failable else []
        moves += ["waive"] if waivable else []
        move = draw(st.sampled_from(moves))

        if move == "admit":
            run_id = draw(st.sampled_from(opened))
            batch = draw(st.lists(st.sampled_from(INPUT_IDS), min_size=1, max_size=4))
            script.append(AdmitInputs(token=token, actor="loader", run_id=run_id, input_ids=tuple(batch)))
        elif move == "record":
            run_id, input_id = draw(st.sampled_from(undecided))
            decided.append((run_id, input_id))
            script.append(
                RecordDecision(
                    token=token,
                    actor="scorer",
                    run_id=run_id,
                    input_id=input_id,
                    outcome=draw(st.sampled_from(OUTCOMES)),
                    model=ModelRef("scorecard", "7"),
                    score=draw(st.none() | st.floats(0, 1)),
                )
            )
        elif move == "correct":
            run_id, input_id = draw(st.sampled_from(decided))
            script.append(
                CorrectDecision(
                    token=token,
                    actor="reviewer",
                    decision_id=decision_uuid(run_id, input_id),
                    outcome=draw(st.sampled_from(OUTCOMES)),
                    reason="second look",
                    effective_at=draw(st.sampled_from([None, BACK_DATED])),
                )
            )
        elif move == "request":
            run_id, input_id = draw(st.sampled_from(decided))
            actions[(run_id, f"key-{step}")] = ("requested", True)
            script.append(
                RequestAction(
                    token=token,
                    actor="dispatcher",
                    run_id=run_id,
                    action_key=f"key-{step}",
                    decision_id=decision_uuid(run_id, input_id),
                    kind="send_letter",
                    params={"input": input_id},
                )
            )
        elif move == "commit":
            run_id, key = draw(st.sampled_from(committable))
            actions[(run_id, key)] = ("committed", False)
            script.append(CommitAction(token=token, actor="mailer", action_id=action_uuid(run_id, key)))
        elif move == "fail":
            run_id, key = draw(st.sampled_from(failable))
            retryable = draw(st.booleans())
            actions[(run_id, key)] = ("failed", retryable)
            script.append(
                FailAction(
                    token=token,
                    actor="mailer",
                    action_id=action_uuid(run_id, key),
                    error="timeout",
                    retryable=retryable,
                )
            )
        else:
            run_id, key = draw(st.sampled_from(waivable))
            actions[(run_id, key)] = ("waived", False)
            script.append(
                WaiveAction(
                    token=token, actor="operator", action_id=action_uuid(run_id, key), reason="by hand"
                )
            )
    return script


#: A delivery, and whether it is a duplicate of an earlier one.
Delivery = tuple[Command, bool]


@st.composite
def deliveries_with_duplicates(draw: st.DrawFn, script: Sequence[Command]) -> list[Delivery]:
    """The script, with extra deliveries of its commands landing after the originals.
    Each delivery comes with whether it is a duplicate."""
    extras = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(script) - 1),  # which command comes again
                st.integers(0, len(script) - 1),  # after which step it lands, at the earliest
                st.sampled_from(["redelivered", "other_actor", "fresh_token"]),
            ),
            max_size=2 * len(script),
        )
    )
    ordered: list[tuple[tuple[int, int, int], Command, bool]] = [
        ((step, 0, 0), command, False) for step, command in enumerate(script)
    ]
    for number, (step, lands_after, how) in enumerate(extras):
        original = script[step]
        if how == "other_actor":
            again = dataclasses.replace(original, actor="a-retrying-proxy")
        elif how == "fresh_token" and isinstance(original, CREATION_COMMANDS):
            again = dataclasses.replace(original, token=f"{original.token}-again-{number}")
        else:
            again = original
        ordered.append(((max(step, lands_after), 1, number), again, True))
    ordered.sort(key=lambda delivery: delivery[0])
    return [(command, is_duplicate) for _, command, is_duplicate in ordered]


@st.composite
def scripts_with_duplicates(draw: st.DrawFn, max_steps: int = 20) -> tuple[list[Command], list[Delivery]]:
    script = draw(scripts(max_steps=max_steps))
    return script, draw(deliveries_with_duplicates(script))


# --- The same token with another request --------------------------------------------------


def changed_payloads(command: Command) -> list[Command]:
    """Other requests to the same aggregate under the same token, each of which differs
    from `command` in what it asks for."""
    same = {"token": command.token, "actor": command.actor}
    if isinstance(command, OpenRun):
        return [
            dataclasses.replace(command, lane="fraud"),
            dataclasses.replace(command, allow_empty=not command.allow_empty),
            dataclasses.replace(command, metadata={"changed": True}),
        ]
    if isinstance(command, AdmitInputs):
        return [
            dataclasses.replace(command, input_ids=(*command.input_ids, "input-extra")),
            CloseRun(**same, run_id=command.run_id),
        ]
    if isinstance(command, RecordDecision):
        other_outcome = next(outcome for outcome in OUTCOMES if outcome != command.outcome)
        return [
            dataclasses.replace(command, outcome=other_outcome),
            dataclasses.replace(command, score=2.5),
            dataclasses.replace(command, reasons=("changed",)),
            dataclasses.replace(command, model=ModelRef("scorecard", "8")),
        ]
    if isinstance(command, CorrectDecision):
        return [
            dataclasses.replace(command, reason="another reason"),
            dataclasses.replace(command, score=7.0),
        ]
    if isinstance(command, RequestAction):
        return [
            dataclasses.replace(command, kind="call_applicant"),
            dataclasses.replace(command, target="elsewhere"),
            dataclasses.replace(command, params={"changed": True}),
        ]
    if isinstance(command, CommitAction):
        return [
            dataclasses.replace(command, external_ref="another-ref"),
            FailAction(**same, action_id=command.action_id, error="changed"),
        ]
    if isinstance(command, FailAction):
        return [
            dataclasses.replace(command, error="another error"),
            dataclasses.replace(command, retryable=not command.retryable),
            CommitAction(**same, action_id=command.action_id),
        ]
    assert isinstance(command, WaiveAction)
    return [
        dataclasses.replace(command, reason="another reason"),
        CommitAction(**same, action_id=command.action_id),
    ]


@st.composite
def scripts_with_a_reused_token(draw: st.DrawFn) -> tuple[list[Command], Command]:
    """A script, and another request under the token of one of its commands."""
    script = draw(scripts())
    reused = draw(st.sampled_from(script))
    changed = draw(st.sampled_from(changed_payloads(reused)))
    assert changed.token == reused.token and changed.fingerprint != reused.fingerprint
    return script, changed
