"""The life of a run: open, admit its basis, seal, then commit or reject on the
evidence of a reconciliation, and reopen after a rejection.

The domain tests drive the Run aggregate directly, with no database. The same commands
through the application: tests/integration/test_run_commands.py.
"""

from __future__ import annotations

import pytest

from domain.basis import EMPTY_BASIS_DIGEST, basis_digest
from domain.commands import ReopenRun
from domain.errors import (
    IdempotencyKeyReused,
    InvalidCommand,
    RunAlreadyExists,
    RunNotOpen,
    RunNotRejected,
    RunNotSealed,
)
from domain.identity import run_uuid
from domain.limits import MAX_BASIS_BATCH
from domain.run import Reconciliation, RejectionReason, Run, RunStatus, verdict_token
from tests.support.commands import RUN_ID, admit_command, close_command, open_command


def pending_event_names(aggregate: Run) -> list[str]:
    """The events an aggregate has triggered since it was last saved (and clears them)."""
    return [type(domain_event).__name__ for domain_event in aggregate.collect_events()]


def no_problem(code: str) -> RejectionReason:
    return RejectionReason(code, 0)


def clean_evidence(run: Run, **problems: object) -> Reconciliation:
    """Evidence that agrees with the run in every respect, unless told otherwise."""
    fields: dict[str, object] = {
        "seal_position": 42,
        "admitted_count": run.admitted_count,
        "basis_digest": run.basis_digest,
        "decision_count": run.admitted_count,
        "missing": no_problem("missing"),
        "unexpected": no_problem("unexpected"),
        "pending": no_problem("pending"),
        "failed": no_problem("failed"),
        "events_expected": 9,
        "audit_records": 9,
        "summary": {"approve": run.admitted_count},
    }
    fields.update(problems)
    return Reconciliation(**fields)  # type: ignore[arg-type]


def sealed_run(*input_ids: str, allow_empty: bool = False) -> Run:
    """A run that admitted these inputs and was sealed; its events are already saved."""
    run = Run.open(open_command(allow_empty=allow_empty))
    if input_ids:
        run.admit(admit_command("admit-1", *input_ids), already_admitted=set())
    run.seal(close_command())
    run.collect_events()
    return run


# --- Opening ----------------------------------------------------------------------


def test_opening_a_run_starts_its_first_attempt_with_an_empty_basis() -> None:
    # The scheduler opens the day's credit run.
    run = Run.open(open_command(metadata={"batch": "nightly"}))

    # It is open, in its first attempt, and has admitted nothing yet.
    assert run.id == run_uuid(RUN_ID)
    assert (run.status, run.attempt) == (RunStatus.OPEN, 1)
    assert (run.admitted_count, run.basis_digest) == (0, EMPTY_BASIS_DIGEST)
    assert run.metadata == {"batch": "nightly"}

    # One Opened event says who opened which run, under which token.
    [opened] = run.collect_events()
    assert type(opened).__name__ == "Opened"
    assert (opened.run_id, opened.actor, opened.token, opened.attempt) == (
        RUN_ID,
        "scheduler",
        "open-1",
        1,
    )


def test_opening_the_same_run_again_is_a_replay_whatever_the_token() -> None:
    # The run was opened once.
    run = Run.open(open_command(token="open-1"))
    run.collect_events()

    # The same request, redelivered or resent under a new token, answers version 1 ...
    assert run.replay_of_open(open_command(token="open-1")) == Run.INITIAL_VERSION
    assert run.replay_of_open(open_command(token="open-2")) == Run.INITIAL_VERSION

    # ... and triggers nothing.
    assert pending_event_names(run) == []


def test_opening_an_existing_run_with_other_settings_is_refused() -> None:
    # The run was opened in the credit lane.
    run = Run.open(open_command(token="open-1"))

    # Another client asks for the same run ID in another lane.
    with pytest.raises(RunAlreadyExists):
        run.replay_of_open(open_command(token="open-2", lane="fraud"))


def test_reusing_the_open_token_for_other_settings_is_refused() -> None:
    # The run was opened under token open-1.
    run = Run.open(open_command(token="open-1"))

    # The same token now arrives with another lane: the key was reused, not replayed.
    with pytest.raises(IdempotencyKeyReused):
        run.replay_of_open(open_command(token="open-1", lane="fraud"))


@pytest.mark.parametrize(
    "bad_run_id",
    ["", " leading-space", "-starts-with-a-dash", "has space", "x" * 129, "nul\x00byte"],
)
def test_a_run_id_outside_the_pattern_is_an_invalid_command(bad_run_id: str) -> None:
    # The command is refused before any aggregate sees it, naming the field.
    with pytest.raises(InvalidCommand) as refused:
        open_command(run_id=bad_run_id)
    assert refused.value.field == "run_id"


@pytest.mark.parametrize("bad_lane", ["", "-dash-first", "with space", "l" * 65, "tab\there"])
def test_a_lane_that_is_not_a_label_is_an_invalid_command(bad_lane: str) -> None:
    with pytest.raises(InvalidCommand) as refused:
        open_command(lane=bad_lane)
    assert refused.value.field == "lane"


@pytest.mark.parametrize("bad_token", ["", "t" * 1025])
def test_a_token_that_is_empty_or_too_long_is_an_invalid_command(bad_token: str) -> None:
    with pytest.raises(InvalidCommand) as refused:
        open_command(token=bad_token)
    assert refused.value.field == "token"


# --- Admitting the basis -------------------------------------------------------------


def test_admitting_batches_counts_each_distinct_input_once() -> None:
    # An open run admits two batches that overlap, one with a duplicate inside it.
    run = Run.open(open_command())
    run.admit(admit_command("admit-1", "a", "b", "a"), already_admitted=set())
    # The membership index knows "b" by now, so the second batch adds only "c".
    run.admit(admit_command("admit-2", "b", "c"), already_admitted={"b"})

    # Three distinct inputs, and the digest is the set's, whatever the order.
    assert run.admitted_count == 3
    assert run.basis_digest == basis_digest(["c", "b", "a"])

    # Each BasisAdmitted event carries only what it newly admitted.
    events = run.collect_events()
    assert [list(e.input_ids) for e in events[1:]] == [["a", "b"], ["c"]]
    assert [e.batch_size for e in events[1:]] == [3, 2]


def test_redelivering_an_admission_replays_it_without_a_new_event() -> None:
    # A batch was admitted under token admit-1.
    run = Run.open(open_command())
    run.admit(admit_command("admit-1", "a", "b"), already_admitted=set())
    run.collect_events()

    # The loader retries the same batch under the same token.
    replayed_version = run.admit(admit_command("admit-1", "a", "b"), already_admitted={"a", "b"})

    # It gets the version of the first admission; nothing new happens.
    assert replayed_version == 2
    assert run.admitted_count == 2
    assert pending_event_names(run) == []


def test_reusing_an_admission_token_for_another_batch_is_refused() -> None:
    run = Run.open(open_command())
    run.admit(admit_command("admit-1", "a"), already_admitted=set())

    with pytest.raises(IdempotencyKeyReused):
        run.admit(admit_command("admit-1", "z"), already_admitted=set())
    assert run.admitted_count == 1


def test_a_basis_batch_larger_than_the_limit_is_an_invalid_command() -> None:
    oversize_batch = tuple(f"input-{number}" for number in range(MAX_BASIS_BATCH + 1))

    # One more than the limit is refused ...
    with pytest.raises(InvalidCommand) as refused:
        admit_command("admit-big", *oversize_batch)
    assert refused.value.field == "input_ids"

    # ... while a batch exactly at the limit is accepted.
    assert len(admit_command("admit-max", *oversize_batch[:MAX_BASIS_BATCH]).input_ids) == (MAX_BASIS_BATCH)


def test_an_empty_basis_batch_is_an_invalid_command() -> None:
    with pytest.raises(InvalidCommand):
        admit_command("admit-empty")


def test_an_input_id_with_a_control_character_is_an_invalid_command() -> None:
    with pytest.raises(InvalidCommand) as refused:
        admit_command("admit-1", "fine", "line\nbreak")
    assert refused.value.field == "input_ids[1]"


def test_a_sealed_run_admits_nothing() -> None:
    run = sealed_run("a")

    with pytest.raises(RunNotOpen):
        run.admit(admit_command("admit-late", "b"), already_admitted=set())
    assert run.admitted_count == 1


# --- Sealing ------------------------------------------------------------------------


def test_sealing_closes_the_run_to_new_work() -> None:
    # The run admitted its basis and is sealed.
    run = Run.open(open_command())
    run.admit(admit_command("admit-1", "a"), already_admitted=set())
    run.seal(close_command("close-1"))

    # It is sealed and a Sealed event says so.
    assert run.status == RunStatus.SEALED
    assert pending_event_names(run) == ["Opened", "BasisAdmitted", "Sealed"]

    # Redelivering the close replays it; a second, different close is refused.
    assert run.seal(close_command("close-1")) == 3
    with pytest.raises(RunNotOpen):
        run.seal(close_command("close-2"))
    assert pending_event_names(run) == []


# --- Committing ---------------------------------------------------------------------


def test_a_sealed_run_that_reconciles_commits_with_its_proof() -> None:
    # A sealed run whose evidence agrees on everything.
    run = sealed_run("a", "b")
    evidence = clean_evidence(run)

    # There is nothing to reject it for, so it commits.
    assert run.rejection_reasons(evidence) == []
    run.commit(close_command(), evidence, proof={"root": "abc"}, proof_digest="d1g357")

    # The verdict remembers where the run was sealed and which proof backs it.
    assert run.status == RunStatus.COMMITTED
    assert run.seal_position == 42
    assert run.latest_verdict == {
        "attempt": 1,
        "verdict": "committed",
        "seal_position": 42,
        "reasons": [],
        "summary": {"approve": 2},
        "proof_digest": "d1g357",
        "proof": {"root": "abc"},
    }

    # The verdict's token derives from the close's, so it cannot clash with it.
    [committed] = run.collect_events()
    assert committed.token == verdict_token("close-1") != "close-1"


def test_an_empty_run_that_allows_it_commits() -> None:
    run = sealed_run(allow_empty=True)

    run.commit(close_command(), clean_evidence(run, decision_count=0), None, None)

    assert run.status == RunStatus.COMMITTED


def test_an_open_run_cannot_commit_or_be_rejected() -> None:
    run = Run.open(open_command())

    with pytest.raises(RunNotSealed):
        run.commit(close_command(), clean_evidence(run), None, None)
    with pytest.raises(RunNotSealed):
        run.reject(close_command(), clean_evidence(run, missing=RejectionReason("missing", 1)))
    assert run.status == RunStatus.OPEN


def test_committing_is_refused_while_the_evidence_gives_reasons() -> None:
    # The reconciliation found a missing decision.
    run = sealed_run("a", "b")
    evidence = clean_evidence(run, missing=RejectionReason("missing", 1, ["b"]), decision_count=1)

    # The run must not commit: it stays sealed and triggers nothing.
    with pytest.raises(RunNotSealed):
        run.commit(close_command(), evidence, None, None)
    assert run.status == RunStatus.SEALED
    assert pending_event_names(run) == []


# --- Rejecting ----------------------------------------------------------------------


@pytest.mark.parametrize("code", ["missing", "unexpected", "pending", "failed"])
def test_a_run_with_problem_counts_is_rejected_for_them(code: str) -> None:
    # The reconciliation found one problem of this kind.
    run = sealed_run("a", "b")
    evidence = clean_evidence(run, **{code: RejectionReason(code, 1, ["b"])})

    # The run is rejected, and the verdict names the problem with its samples.
    run.reject(close_command(), evidence)
    assert run.status == RunStatus.REJECTED
    assert run.latest_verdict is not None
    assert run.latest_verdict["reasons"] == [{"code": code, "count": 1, "sample_ids": ["b"]}]
    assert run.latest_verdict["proof_digest"] is None


def test_an_empty_basis_is_rejected_unless_the_run_allows_it() -> None:
    # The run admitted nothing and did not say an empty run is fine.
    run = sealed_run()
    evidence = clean_evidence(run, decision_count=0)

    # Fail closed: it is rejected for its empty basis.
    assert run.rejection_reasons(evidence) == [RejectionReason("empty_basis", 0)]
    run.reject(close_command(), evidence)
    assert run.status == RunStatus.REJECTED


def test_a_basis_without_any_decision_is_rejected() -> None:
    run = sealed_run("a", "b", "c")

    reasons = run.rejection_reasons(clean_evidence(run, decision_count=0))

    assert reasons == [RejectionReason("no_decisions", 3)]


def test_evidence_about_another_basis_or_an_incomplete_audit_is_a_reason() -> None:
    run = sealed_run("a", "b")

    # The read model saw a different basis, and fewer audit records than events.
    evidence = clean_evidence(run, admitted_count=1, basis_digest=basis_digest(["a"]), audit_records=7)

    assert [reason.code for reason in run.rejection_reasons(evidence)] == [
        "basis_mismatch",
        "audit_incomplete",
    ]


def test_a_run_that_reconciles_must_not_be_rejected() -> None:
    run = sealed_run("a")

    with pytest.raises(RunNotSealed):
        run.reject(close_command(), clean_evidence(run))
    assert run.status == RunStatus.SEALED


# --- Reopening -----------------------------------------------------------------------


def test_reopening_a_rejected_run_starts_its_next_attempt() -> None:
    # The first attempt was rejected for a failed action.
    run = sealed_run("a")
    run.reject(close_command(), clean_evidence(run, failed=RejectionReason("failed", 1)))
    run.collect_events()

    # An operator reopens it.
    run.reopen(ReopenRun(token="reopen-1", actor="operator", run_id=RUN_ID, reason="retry"))

    # It is open again, in attempt 2, with the first verdict kept in its history.
    assert (run.status, run.attempt, run.seal_position) == (RunStatus.OPEN, 2, None)
    assert [verdict["verdict"] for verdict in run.verdicts] == ["rejected"]

    # Work in the new attempt is attributed to attempt 2.
    run.admit(admit_command("admit-2", "b"), already_admitted={"a"})
    reopened, admitted = run.collect_events()
    assert (reopened.attempt, admitted.attempt) == (2, 2)


def test_a_redelivered_reopen_is_a_replay_not_a_third_attempt() -> None:
    run = sealed_run("a")
    run.reject(close_command(), clean_evidence(run, pending=RejectionReason("pending", 1)))
    reopen = ReopenRun(token="reopen-1", actor="operator", run_id=RUN_ID, reason="retry")
    run.reopen(reopen)
    run.collect_events()

    assert run.reopen(reopen) == run.version
    assert run.attempt == 2
    assert pending_event_names(run) == []


@pytest.mark.parametrize("verdict", ["open", "sealed", "committed"])
def test_only_a_rejected_run_can_be_reopened(verdict: str) -> None:
    # A run that is open, sealed, or committed.
    run = Run.open(open_command(allow_empty=True))
    if verdict != "open":
        run.seal(close_command())
    if verdict == "committed":
        run.commit(close_command(), clean_evidence(run, decision_count=0), None, None)

    # Reopening it is refused, and it stays in its first attempt.
    with pytest.raises(RunNotRejected):
        run.reopen(ReopenRun(token="reopen-1", actor="operator", run_id=RUN_ID, reason="x"))
    assert (run.status, run.attempt) == (verdict, 1)
