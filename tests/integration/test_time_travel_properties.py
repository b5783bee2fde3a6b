"""Property: every as-of answer is a fresh fold of the events up to that point.

Hypothesis writes random histories: runs opened, batches admitted (with duplicates,
within a batch and across batches), decisions recorded (some for inputs never
admitted), corrected (some back-dated), actions requested and committed, failed or
waived, runs closed and reopened. Each next command is drawn from those the state then
allows. The history runs on a fresh database per example, of each back end (a SQLite
file, or a PostgreSQL schema of its own); then, at random cut
positions, every as-of answer must equal what the events up to the cut say:

- runs, decisions and actions from `DecisionLedger.get_*(as_of_position=)` equal the
  aggregates refolded from `ledger.events.get(id)`, cut at the position;
- summaries, reconciliations and the run listing from `ReadModels` (their live
  projections caught up first) equal an independent fold written here.

A last test walks one run past two snapshots, so as-of runs start from them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from application.answers import Answers
from application.projections.base import utc_text
from application.queries.aggregates import AggregateQueries
from application.service import LedgerService
from domain.action import Action
from domain.basis import basis_digest
from domain.commands import (
    AdmitInputs,
    CloseRun,
    CommitAction,
    CorrectDecision,
    FailAction,
    ModelRef,
    OpenRun,
    RecordDecision,
    ReopenRun,
    RequestAction,
    WaiveAction,
)
from domain.decision import Decision
from domain.errors import LedgerError, NothingKnownYet
from domain.identity import decision_uuid, run_uuid
from domain.run import Run
from infrastructure.database import parse_database_url
from infrastructure.signing import Signer
from tests.support.databases import fresh_database_like
from tests.support.ledger_commands import commands_of
from tests.support.views import catch_up_views

RUN_IDS = ("run-a", "run-b")
INPUT_IDS = tuple(f"input-{number}" for number in range(5))
OUTCOMES = ("approve", "decline", "refer")
BACK_DATED = datetime(2020, 1, 1, tzinfo=UTC)
MODEL = ModelRef("scorecard", "7")

#: Each example replays a history on a fresh database, so shrinking a failure would take minutes (and
#: outlast the test timeout): a failure is reported as drawn, every draw labelled.
history_settings = settings(
    max_examples=20,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    # The `database_url` fixture only names the back end: each example gets a database of its own.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


# --- A ledger service on an empty database, its views caught up by hand ---------------------------


@contextmanager
def service_on(database_url: str) -> Iterator[LedgerService]:
    """A LedgerService on an empty database, with no projection worker: the test
    catches the views up itself, so they are exactly where it says."""
    signer = Signer.from_hex(Ed25519PrivateKey.generate().private_bytes_raw().hex())
    service = LedgerService.build(parse_database_url(database_url).library_env(), signer)
    try:
        yield service
    finally:
        service.close()


def close_run(service: LedgerService, command: CloseRun) -> None:
    """A close, with the views caught up between its seal and its verdict."""
    service.commands.runs.seal(command)
    catch_up_views(service)
    service.closer.close(command)


# --- Random histories ----------------------------------------------------------------------------


@dataclass
class RandomHistory:
    """Plays a random history on a ledger, drawing each next command from those the
    current state allows, so that nearly every command lands."""

    service: LedgerService
    data: st.DataObject
    decided: list[tuple[str, str]] = field(default_factory=list)
    requested: list[tuple[str, UUID]] = field(default_factory=list)
    refused: int = 0

    def status(self, run_id: str) -> str | None:
        try:
            return self.service.queries.run(run_id).status
        except LedgerError:
            return None

    def runs_in(self, *statuses: str | None) -> list[str]:
        return [run_id for run_id in RUN_IDS if self.status(run_id) in statuses]

    def actions_in(self, *statuses: str, retryable_only: bool = False) -> list[UUID]:
        open_runs = self.runs_in("open")
        chosen = []
        for run_id, action_id in self.requested:
            action = self.service.queries.action(action_id)
            if run_id in open_runs and action.status in statuses and (action.retryable or not retryable_only):
                chosen.append(action_id)
        return chosen

    def draw(self, strategy: st.SearchStrategy[Any], label: str) -> Any:
        return self.data.draw(strategy, label=label)

    def play(self, steps: int) -> None:
        for step in range(steps):
            token, actor = f"step-{step}", "lane"
            open_runs = self.runs_in("open")
            open_decisions = [(run_id, input_id) for run_id, input_id in self.decided if run_id in open_runs]
            undecided = [
                (run_id, input_id)
                for run_id in open_runs
                for input_id in INPUT_IDS
                if (run_id, input_id) not in self.decided
            ]
            moves = {
                "open": bool(self.runs_in(None)),
                "admit": bool(open_runs),
                "decide": bool(undecided),
                "correct": bool(open_decisions),
                "request": bool(open_decisions),
                "commit": bool(self.actions_in("requested") + self.actions_in("failed", retryable_only=True)),
                "fail": bool(self.actions_in("requested", "failed")),
                "waive": bool(self.actions_in("failed")),
                "close": bool(open_runs),
                "reopen": bool(self.runs_in("rejected")),
            }
            move = self.draw(
                st.sampled_from([name for name, possible in moves.items() if possible]), f"move {step}"
            )
            try:
                self.execute(move, token, actor, step, open_runs, undecided, open_decisions)
            except LedgerError:
                self.refused += 1

    def execute(
        self,
        move: str,
        token: str,
        actor: str,
        step: int,
        open_runs: list[str],
        undecided: list[tuple[str, str]],
        open_decisions: list[tuple[str, str]],
    ) -> None:
        ledger = self.service.ledger
        if move == "open":
            run_id = self.draw(st.sampled_from(self.runs_in(None)), "run to open")
            commands_of(ledger).runs.open(OpenRun(token=token, actor=actor, run_id=run_id, lane="credit"))
        elif move == "admit":
            # A batch may repeat an input, and may admit inputs admitted (or decided) before.
            run_id = self.draw(st.sampled_from(open_runs), "run to admit to")
            batch = self.draw(st.lists(st.sampled_from(INPUT_IDS), min_size=1, max_size=4), "batch")
            commands_of(ledger).runs.admit(
                AdmitInputs(token=token, actor=actor, run_id=run_id, input_ids=tuple(batch))
            )
        elif move == "decide":
            # The input may never have been admitted: the decision is then unexpected.
            run_id, input_id = self.draw(st.sampled_from(undecided), "input to decide")
            outcome = self.draw(st.sampled_from(OUTCOMES), "outcome")
            commands_of(ledger).decisions.record(
                RecordDecision(
                    token=token, actor=actor, run_id=run_id, input_id=input_id, outcome=outcome, model=MODEL
                )
            )
            self.decided.append((run_id, input_id))
        elif move == "correct":
            run_id, input_id = self.draw(st.sampled_from(open_decisions), "decision to correct")
            outcome = self.draw(st.sampled_from(OUTCOMES), "corrected outcome")
            effective_at = self.draw(st.sampled_from([None, BACK_DATED]), "effective_at")
            commands_of(ledger).decisions.correct(
                CorrectDecision(
                    token=token,
                    actor=actor,
                    decision_id=decision_uuid(run_id, input_id),
                    outcome=outcome,
                    reason="second look",
                    effective_at=effective_at,
                )
            )
        elif move == "request":
            run_id, input_id = self.draw(st.sampled_from(open_decisions), "decision to act on")
            answer = commands_of(ledger).actions.request(
                RequestAction(
                    token=token,
                    actor=actor,
                    run_id=run_id,
                    action_key=f"letter-{step}",
                    decision_id=decision_uuid(run_id, input_id),
                    kind="letter",
                )
            )
            self.requested.append((run_id, UUID(answer.view.action_id)))
        elif move == "commit":
            candidates = self.actions_in("requested") + self.actions_in("failed", retryable_only=True)
            action_id = self.draw(st.sampled_from(candidates), "action to commit")
            commands_of(ledger).actions.commit(CommitAction(token=token, actor=actor, action_id=action_id))
        elif move == "fail":
            action_id = self.draw(st.sampled_from(self.actions_in("requested", "failed")), "action to fail")
            retryable = self.draw(st.booleans(), "retryable")
            commands_of(ledger).actions.fail(
                FailAction(
                    token=token, actor=actor, action_id=action_id, error="timeout", retryable=retryable
                )
            )
        elif move == "waive":
            action_id = self.draw(st.sampled_from(self.actions_in("failed")), "action to waive")
            commands_of(ledger).actions.waive(
                WaiveAction(token=token, actor=actor, action_id=action_id, reason="by hand")
            )
        elif move == "close":
            run_id = self.draw(st.sampled_from(open_runs), "run to close")
            close_run(self.service, CloseRun(token=token, actor=actor, run_id=run_id))
        else:
            run_id = self.draw(st.sampled_from(self.runs_in("rejected")), "run to reopen")
            commands_of(ledger).runs.reopen(
                ReopenRun(token=token, actor=actor, run_id=run_id, reason="remediate")
            )


# --- The log, and folds of it ----------------------------------------------------------------------


@dataclass(frozen=True)
class Logged:
    position: int
    run_id: str
    event: Any


@dataclass
class Log:
    """Every stored event, with the position the index gives it."""

    entries: list[Logged]

    @classmethod
    def read(cls, service: LedgerService) -> Log:
        ledger = service.ledger
        entries = []
        for run_id in RUN_IDS:
            rows = [row for row in ledger.index.events_between(0, None, 2**31) if row.run_id == run_id]
            versions: dict[UUID, dict[int, Any]] = {}
            for row in rows:
                if row.originator_id not in versions:
                    versions[row.originator_id] = {
                        event.originator_version: event for event in ledger.events.get(row.originator_id)
                    }
                entries.append(
                    Logged(row.position, run_id, versions[row.originator_id][row.originator_version])
                )
        return cls(sorted(entries, key=lambda entry: entry.position))

    def up_to(self, cut: int) -> list[Logged]:
        return [entry for entry in self.entries if entry.position <= cut]

    def aggregate_kinds(self) -> dict[UUID, type]:
        """Each aggregate in the log, and its class."""
        kinds = {}
        for entry in self.entries:
            kinds[entry.event.originator_id] = next(
                kind for kind in (Run, Decision, Action) if isinstance(entry.event, kind.Event)
            )
        return kinds


def refold(log: Log, aggregate_id: UUID, cut: int) -> tuple[Any, int] | None:
    """The aggregate as its events up to the cut make it, and the position of the last one."""
    events = [entry for entry in log.up_to(cut) if entry.event.originator_id == aggregate_id]
    if not events:
        return None
    aggregate = None
    for entry in sorted(events, key=lambda entry: entry.event.originator_version):
        aggregate = entry.event.mutate(aggregate)
    return aggregate, events[-1].position


@dataclass
class RunFold:
    """What the events of one run up to a cut say, folded independently of the projections."""

    status: str = "open"
    attempt: int = 1
    admitted: set[str] = field(default_factory=set)
    decided: dict[str, UUID] = field(default_factory=dict)
    outcome: dict[UUID, str] = field(default_factory=dict)
    corrected: set[UUID] = field(default_factory=set)
    actions: dict[UUID, str] = field(default_factory=dict)
    event_count: int = 0

    @classmethod
    def of(cls, entries: list[Logged]) -> RunFold:
        fold = cls()
        for entry in entries:
            fold.event_count += 1
            event = entry.event
            if isinstance(event, Run.Opened):
                fold.status, fold.attempt = "open", event.attempt
            elif isinstance(event, Run.BasisAdmitted):
                fold.admitted.update(event.input_ids)
            elif isinstance(event, Run.Sealed):
                fold.status = "sealed"
            elif isinstance(event, Run.Committed):
                fold.status = "committed"
            elif isinstance(event, Run.Rejected):
                fold.status = "rejected"
            elif isinstance(event, Run.Reopened):
                fold.status, fold.attempt = "open", event.attempt
            elif isinstance(event, Decision.Recorded):
                fold.decided[event.input_id] = event.originator_id
                fold.outcome[event.originator_id] = event.outcome
            elif isinstance(event, Decision.Corrected):
                fold.outcome[event.originator_id] = event.outcome
                fold.corrected.add(event.originator_id)
            elif isinstance(event, Action.Requested):
                fold.actions[event.originator_id] = "requested"
            elif isinstance(event, Action.Committed):
                fold.actions[event.originator_id] = "committed"
            elif isinstance(event, Action.Failed):
                fold.actions[event.originator_id] = "failed"
            elif isinstance(event, Action.Waived):
                fold.actions[event.originator_id] = "waived"
            else:
                raise AssertionError(f"unexpected event {type(event).__qualname__}")
        return fold

    def actions_in(self, status: str) -> list[str]:
        return sorted(str(action_id) for action_id, current in self.actions.items() if current == status)

    def summary(self) -> dict[str, Any]:
        statuses = Counter(self.actions.values())
        return {
            "status": self.status,
            "attempt": self.attempt,
            "admitted_count": len(self.admitted),
            "basis_digest": basis_digest(sorted(self.admitted)),
            "decision_count": len(self.decided),
            "outcome_counts": dict(Counter(self.outcome.values())),
            "corrected_count": len(self.corrected),
            "missing_count": len(self.admitted - self.decided.keys()),
            "unexpected_count": len(self.decided.keys() - self.admitted),
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
            "event_count": self.event_count,
            "audit_records": self.event_count,
        }

    def reconciliation(self) -> dict[str, list[str]]:
        return {
            "missing": sorted(self.admitted - self.decided.keys()),
            "unexpected": sorted(self.decided.keys() - self.admitted),
            "pending": self.actions_in("requested"),
            "failed": self.actions_in("failed"),
        }


def outcome_in_effect(log: Log, decision_id: UUID, cut: int, valid_at: datetime) -> str | None:
    """Among the outcomes known at the cut and in effect at `valid_at`, the one recorded last."""
    in_effect = [
        (entry.event.originator_version, entry.event.outcome)
        for entry in log.up_to(cut)
        if entry.event.originator_id == decision_id
        and (
            entry.event.timestamp if isinstance(entry.event, Decision.Recorded) else entry.event.effective_at
        )
        <= valid_at
    ]
    return max(in_effect)[1] if in_effect else None


# --- Comparing the answers with the folds ------------------------------------------------------------


def summary_fields(summary: Any) -> dict[str, Any]:
    return {key: getattr(summary, key) for key in RunFold().summary()}


def check_runs(service: LedgerService, log: Log, cut: int) -> None:
    for run_id in RUN_IDS:
        entries = [entry for entry in log.up_to(cut) if entry.run_id == run_id]
        refolded = refold(log, run_uuid(run_id), cut)
        if refolded is None:
            # Not opened yet: the run, its summary and its reconciliation are unknown, and it is not listed.
            with pytest.raises(NothingKnownYet):
                service.queries.run(run_id, as_of_position=cut)
            with pytest.raises(NothingKnownYet):
                service.read_models.summary(run_id, as_of_position=cut)
            with pytest.raises(NothingKnownYet):
                service.read_models.reconciliation(run_id, as_of_position=cut)
            continue

        # The run as of the cut is the run refolded from its events up to the cut.
        run, last_position = refolded
        view = service.queries.run(run_id, as_of_position=cut)
        assert (
            view.status,
            view.attempt,
            view.admitted_count,
            view.basis_digest,
            view.version,
            view.position,
        ) == (
            run.status,
            run.attempt,
            run.admitted_count,
            run.basis_digest,
            run.version,
            last_position,
        ), (run_id, cut)
        assert view.verdicts == run.verdicts, (run_id, cut)

        # The summary and the reconciliation say what the independent fold says.
        fold = RunFold.of(entries)
        summary = service.read_models.summary(run_id, as_of_position=cut)
        assert summary.as_of_position == cut
        assert summary_fields(summary) == fold.summary(), (run_id, cut)
        # Its bounds are the run's first and last events by then, and it was updated when
        # the last one was recorded (a summary read between two anchors too).
        last = entries[-1].event
        recorded = service.ledger.index.event_position(last.originator_id, last.originator_version)
        assert recorded is not None
        assert (summary.event_count, summary.first_position, summary.last_position) == (
            len(entries),
            entries[0].position,
            entries[-1].position,
        ), (run_id, cut)
        assert summary.updated_at == utc_text(recorded.recorded_at), (run_id, cut)
        reconciliation = service.read_models.reconciliation(run_id, as_of_position=cut, limit=1000)
        assert {
            name: page.ids for name, page in reconciliation.categories.items()
        } == fold.reconciliation(), (run_id, cut)
        assert {name: page.count for name, page in reconciliation.categories.items()} == {
            name: len(ids) for name, ids in fold.reconciliation().items()
        }, (run_id, cut)

    # The listing holds the runs opened by then, each with its status then.
    listing = service.read_models.list_runs(as_of_position=cut)
    expected = [
        (run_id, RunFold.of([entry for entry in log.up_to(cut) if entry.run_id == run_id]).status)
        for run_id in RUN_IDS
        if refold(log, run_uuid(run_id), cut) is not None
    ]
    assert [(summary.run_id, summary.status) for summary in listing.runs] == expected, cut
    # A listed summary is the summary read alone.
    for listed in listing.runs:
        assert listed == service.read_models.summary(listed.run_id, as_of_position=cut), cut


def check_decisions_and_actions(service: LedgerService, log: Log, cut: int) -> None:
    now = datetime.now(UTC)
    for aggregate_id, kind in log.aggregate_kinds().items():
        if kind is Run:
            continue
        refolded = refold(log, aggregate_id, cut)
        read = service.queries.decision if kind is Decision else service.queries.action
        if refolded is None:
            # Not created yet: nothing was known of it.
            with pytest.raises(NothingKnownYet):
                read(aggregate_id, as_of_position=cut)
            continue
        aggregate, last_position = refolded
        if kind is Action:
            # The action as of the cut is the action refolded.
            view = service.queries.action(aggregate_id, as_of_position=cut)
            assert (view.status, view.failures, view.retryable, view.version, view.position) == (
                aggregate.status,
                aggregate.failures,
                aggregate.retryable,
                aggregate.version,
                last_position,
            ), (aggregate_id, cut)
            continue

        # The decision as of the cut is the decision refolded ...
        view = service.queries.decision(aggregate_id, as_of_position=cut)
        assert (view.outcome, view.score, view.version, view.position, view.corrections) == (
            aggregate.outcome,
            aggregate.score,
            aggregate.version,
            last_position,
            aggregate.corrections,
        ), (aggregate_id, cut)

        # ... and at any valid time, the outcome known then and in effect then applies.
        for valid_at in (BACK_DATED - timedelta(days=1), BACK_DATED, now):
            expected = outcome_in_effect(log, aggregate_id, cut, valid_at)
            if expected is None:
                with pytest.raises(NothingKnownYet):
                    service.queries.decision(aggregate_id, as_of_position=cut, valid_at=valid_at)
            else:
                answer = service.queries.decision(aggregate_id, as_of_position=cut, valid_at=valid_at)
                assert answer.outcome == expected, (aggregate_id, cut, valid_at)


@history_settings
@given(data=st.data())
def test_every_as_of_answer_is_a_fold_of_the_events_up_to_that_point(
    database_url: str, data: st.DataObject
) -> None:
    with fresh_database_like(database_url) as url, service_on(url) as service:
        # A random history runs; each command is one the state allows, so none is refused.
        history = RandomHistory(service, data)
        history.play(data.draw(st.integers(4, 28), label="steps"))
        assert history.refused == 0
        # The views catch up with the log.
        catch_up_views(service)
        head = service.ledger.index.head_position()
        log = Log.read(service)
        assert [entry.position for entry in log.entries] == list(range(1, head + 1))

        # At random cuts, and at the head, every answer is what the events up to the cut say.
        cuts = data.draw(st.lists(st.integers(1, head), max_size=4, unique=True), label="cuts")
        for cut in sorted({*cuts, head}):
            check_runs(service, log, cut)
            check_decisions_and_actions(service, log, cut)


# --- Past the snapshots ----------------------------------------------------------------------------


def test_an_as_of_run_read_from_a_snapshot_is_the_run_refolded(database_url: str) -> None:
    with service_on(database_url) as service:
        ledger = service.ledger
        # A run admits eighteen inputs one by one and is closed red (nothing decided), twice over.
        commands_of(ledger).runs.open(OpenRun(token="open", actor="lane", run_id="run-a", lane="credit"))
        admitted = []
        for attempt in (1, 2):
            for number in range(18):
                admitted.append(f"input-{attempt}-{number}")
                commands_of(ledger).runs.admit(
                    AdmitInputs(
                        token=f"admit-{admitted[-1]}", actor="lane", run_id="run-a", input_ids=(admitted[-1],)
                    )
                )
            close_run(service, CloseRun(token=f"close-{attempt}", actor="lane", run_id="run-a"))
            commands_of(ledger).runs.reopen(
                ReopenRun(token=f"reopen-{attempt}", actor="lane", run_id="run-a", reason="decide them")
            )

        # The third attempt decides every input and closes green.
        for input_id in admitted:
            commands_of(ledger).decisions.record(
                RecordDecision(
                    token=f"decide-{input_id}",
                    actor="lane",
                    run_id="run-a",
                    input_id=input_id,
                    outcome="approve",
                    model=MODEL,
                )
            )
        close_run(service, CloseRun(token="close-3", actor="lane", run_id="run-a"))
        catch_up_views(service)
        head = ledger.index.head_position()
        log = Log.read(service)

        # The run's own history is long enough for the application to have snapshotted it twice.
        assert AggregateQueries(ledger, Answers(ledger)).run("run-a").verdicts[-1]["verdict"] == "committed"
        snapshots = list(ledger.snapshots.get(run_uuid("run-a")))  # type: ignore[union-attr]
        assert [snapshot.originator_version for snapshot in snapshots] == [20, 40]

        # As of every position, the run read (from a snapshot where there is one) is the run refolded,
        # and its summary is the independent fold.
        for cut in range(1, head + 1):
            run, _ = refold(log, run_uuid("run-a"), cut)  # type: ignore[misc]
            view = AggregateQueries(ledger, Answers(ledger)).run("run-a", as_of_position=cut)
            assert (
                view.status,
                view.attempt,
                view.admitted_count,
                view.basis_digest,
                view.verdicts,
                view.version,
            ) == (
                run.status,
                run.attempt,
                run.admitted_count,
                run.basis_digest,
                run.verdicts,
                run.version,
            ), cut
            summary = service.read_models.summary("run-a", as_of_position=cut)
            assert summary_fields(summary) == RunFold.of(log.up_to(cut)).summary(), cut
