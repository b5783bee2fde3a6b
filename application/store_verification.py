"""Verification against the store: recompute the audit chain, and every run proof,
from the stored events themselves, never from the views. Every failure raises
VerificationFailed naming the first position that differs."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from application.audit_chain import (
    GENESIS_CHAIN_HASH,
    as_stored_event_bytes,
    canonical_event_bytes,
    leaf_hash,
    merkle_root,
    next_chain_hash,
)
from application.gc_pauses import fewer_collections
from application.proof_checks import VerificationFailed, require
from application.proofs import heads_root
from application.read_ahead import read_ahead
from application.stored_form import parse_stored_state
from domain.basis import EMPTY_BASIS_DIGEST, extend_basis_digest

Progress = Callable[[int], None]

#: Events checked between two calls of a progress callback.
PROGRESS_EVERY = 1000


@dataclass
class ChainReport:
    checked: int = 0
    last_position: int = 0
    last_chain_hash: str = GENESIS_CHAIN_HASH
    proofs_checked: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class RunFold:
    """A run's events folded from the store, independent of the views."""

    leaves: list[str] = field(default_factory=list)
    admitted: int = 0
    basis_digest: str = EMPTY_BASIS_DIGEST
    outcomes: dict[str, str] = field(default_factory=dict)
    action_status: dict[str, str] = field(default_factory=dict)
    admitted_inputs: set[str] = field(default_factory=set)
    decided_inputs: set[str] = field(default_factory=set)
    decision_heads: dict[str, int] = field(default_factory=dict)

    def absorb(self, topic: str, aggregate_id: str, version: int, state: dict[str, Any]) -> None:
        kind = topic.rsplit(":", 1)[-1]
        if kind == "Run.BasisAdmitted":
            self.admitted += len(state["input_ids"])
            self.basis_digest = extend_basis_digest(self.basis_digest, state["input_ids"])
            self.admitted_inputs.update(state["input_ids"])
        elif kind in ("Decision.Recorded", "Decision.Corrected"):
            if kind == "Decision.Recorded":
                self.decided_inputs.add(state["input_id"])
            # The outcome in force is the one recorded last (corrections never take
            # effect in the future).
            self.outcomes[aggregate_id] = state["outcome"]
            self.decision_heads[aggregate_id] = version
        elif kind.startswith("Action."):
            self.action_status[aggregate_id] = {
                "Action.Requested": "requested",
                "Action.Committed": "committed",
                "Action.Failed": "failed",
                "Action.Waived": "waived",
            }[kind]

    def by_outcome(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def actions_by_status(self) -> dict[str, int]:
        counts = dict.fromkeys(("requested", "committed", "failed", "waived"), 0)
        for status in self.action_status.values():
            counts[status] += 1
        return counts


class StoreVerifier:
    """Recomputes the chain, and run proofs, from the stored events."""

    PAGE = 2000

    def __init__(
        self, recorder: Any, audit_records: Callable[[int, int | None], Generator[dict[str, Any], None, None]]
    ) -> None:
        self.recorder = recorder
        self.audit_records = audit_records

    def stored_events(self, after: int = 0, up_to: int | None = None) -> Generator[Any, None, None]:
        """The stored events after a position, in order; each page is read while the
        one before is checked."""
        for page in read_ahead(self._pages(after, up_to), name="verify-pages"):
            yield from page

    def _pages(self, after: int, up_to: int | None) -> Iterator[Sequence[Any]]:
        position = after
        while True:
            page = self.recorder.stored_events_between(position, up_to, self.PAGE)
            if not page:
                return
            yield page
            position = page[-1].id

    def committed_proofs(self) -> list[dict[str, Any]]:
        proofs: list[dict[str, Any]] = []
        position = 0
        while True:
            page = self.recorder.select_notifications(
                start=position, limit=self.PAGE, topics=["domain.run:Run.Committed"], inclusive_of_start=False
            )
            if not page:
                return proofs
            for notification in page:
                state = parse_stored_state(notification.state)
                if state.get("proof"):
                    proofs.append(state["proof"])
            position = page[-1].id

    def verify_chain(
        self,
        *,
        from_position: int = 1,
        to_position: int | None = None,
        starting_hash: str = GENESIS_CHAIN_HASH,
        proofs: list[dict[str, Any]] | None = None,
        on_progress: Progress | None = None,
    ) -> ChainReport:
        """Recompute h_n over the stored events and compare it with the audit log, and
        with the chain hash and Merkle root of every run proof sealed in the range.
        Raises VerificationFailed naming the first position that differs."""
        proofs = proofs or []
        walk = _ChainWalk(
            ChainReport(last_chain_hash=starting_hash),
            seals={proof["seal_position"]: proof for proof in proofs},
            folds={proof["run_id"]: RunFold() for proof in proofs},
        )
        if from_position <= 1:
            # Positions start at 1: anything stored below is invisible to a walk from 0,
            # yet the application still loads it into its aggregate.
            stray = self.recorder.select_notifications(start=None, limit=1, stop=0)
            if stray:
                raise VerificationFailed(
                    f"position {stray[0].id}: a stored event lies before the first position (inserted after the fact?)"
                )
        # Both are read ahead by threads: closing them stops the threads before anything
        # can close the connections they read with (a failure ends the walk early).
        with (
            fewer_collections(),
            closing(self.audit_records(from_position - 1, to_position)) as recorded,
            closing(self.stored_events(from_position - 1, to_position)) as events,
        ):
            for notification in events:
                walk.step(notification, recorded)
                if on_progress and walk.report.checked % PROGRESS_EVERY == 0:
                    on_progress(PROGRESS_EVERY)
            if on_progress and walk.report.checked % PROGRESS_EVERY:
                on_progress(walk.report.checked % PROGRESS_EVERY)
            leftover = next(recorded, None)
            if leftover is not None:
                raise VerificationFailed(
                    f"position {leftover['position']}: the audit log records an event the store no longer has (deleted?)"
                )
        for seal_position in walk.seals:
            if to_position is None or seal_position <= to_position:
                raise VerificationFailed(
                    f"position {seal_position}: a run proof is sealed at a position the store does not have"
                )
        return walk.report


@dataclass
class _ChainWalk:
    """The walk over the stored events: the chain so far (in the report), the runs whose
    proofs are sealed in the range, folded as their events pass, and those concluded."""

    report: ChainReport
    seals: dict[int, dict[str, Any]]
    folds: dict[str, RunFold]
    concluded: set[str] = field(default_factory=set)

    def step(self, notification: Any, recorded: Iterator[dict[str, Any]]) -> None:
        """Check one stored event against the next audit record, and fold it."""
        state = _parsed_state(notification)
        audit = next(recorded, None)
        if audit is None:
            raise VerificationFailed(
                f"position {notification.id}: a stored event has no audit record (inserted after the fact?)"
            )
        if audit["position"] != notification.id:
            first = min(audit["position"], notification.id)
            raise VerificationFailed(
                f"position {first}: the stored events and the audit log disagree on which events exist "
                f"(store has {notification.id}, audit log has {audit['position']}): an event was deleted, "
                "inserted or moved"
            )
        event_bytes, chain = _chained(notification, state, self.report.last_chain_hash, audit["chain_hash"])
        if audit["chain_hash"] != chain:
            raise VerificationFailed(
                f"position {notification.id}: the recomputed chain hash differs from the audit log "
                "(the event was edited, or events were reordered)"
            )
        run_id = state.get("run_id")
        if run_id in self.concluded:
            raise VerificationFailed(
                f"position {notification.id}: an event of run {run_id!r} was stored after its commit"
            )
        if run_id in self.folds:
            fold = self.folds[run_id]
            fold.leaves.append(leaf_hash(event_bytes))
            fold.absorb(
                notification.topic, str(notification.originator_id), notification.originator_version, state
            )
            if notification.topic.endswith(":Run.Committed"):
                self.concluded.add(run_id)
        if notification.id in self.seals:
            _check_proof_at_seal(self.seals.pop(notification.id), chain, self.folds)
            self.report.proofs_checked += 1
        self.report.checked += 1
        self.report.last_position = notification.id
        self.report.last_chain_hash = chain


def _check_proof_at_seal(proof: dict[str, Any], chain: str, folds: dict[str, RunFold]) -> None:
    where = f"run {proof['run_id']!r} attempt {proof['attempt']}"
    if proof["chain_hash_at_seal"] != chain:
        raise VerificationFailed(
            f"position {proof['seal_position']}: the chain hash at the seal of {where} differs from its proof"
        )
    fold = folds[proof["run_id"]]
    require(
        merkle_root(fold.leaves) == proof["merkle"]["root"]
        and len(fold.leaves) == proof["merkle"]["tree_size"],
        f"{where}: the Merkle root over its stored events differs from its proof",
    )
    require(
        (fold.admitted, fold.basis_digest) == (proof["basis"]["count"], proof["basis"]["digest"]),
        f"{where}: the basis recomputed from the store differs from its proof",
    )
    require(
        fold.by_outcome() == proof["decisions"]["by_outcome"],
        f"{where}: the decision outcomes recomputed from the store differ from its proof",
    )
    require(
        len(fold.outcomes) == proof["decisions"]["count"],
        f"{where}: the decision count recomputed from the store differs from its proof",
    )
    require(
        heads_root(fold.decision_heads) == proof.get("decision_heads", {}).get("root"),
        f"{where}: the decision heads recomputed from the store differ from its proof",
    )
    actions = fold.actions_by_status()
    require(
        actions["committed"] == proof["actions"].get("committed")
        and actions["waived"] == proof["actions"].get("waived"),
        f"{where}: the actions recomputed from the store differ from its proof",
    )
    recomputed = {
        "missing": len(fold.admitted_inputs - fold.decided_inputs),
        "unexpected": len(fold.decided_inputs - fold.admitted_inputs),
        "pending": actions["requested"],
        "failed": actions["failed"],
    }
    require(
        recomputed == proof["reconciliation"],
        f"{where}: the reconciliation recomputed from the store ({recomputed}) differs from its proof",
    )


def _parsed_state(notification: Any) -> dict[str, Any]:
    try:
        state = parse_stored_state(notification.state)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError included
        raise _unreadable(notification, error) from None
    if not isinstance(state, dict):
        raise _unreadable(notification, "its state is not a JSON object")
    return state


def _chained(notification: Any, state: dict[str, Any], chain: str, recorded: str) -> tuple[bytes, str]:
    """(the event's canonical bytes, the chain hash after it). The state as stored is
    canonical when the ledger wrote it: the event is hashed around it as it is. Otherwise
    (stored in an earlier form, or edited) the state is written canonically."""
    try:
        as_stored = as_stored_event_bytes(
            notification.id,
            notification.topic,
            notification.originator_id,
            notification.originator_version,
            state,
            notification.state,
        )
    except ValueError:  # an envelope field that is not canonical JSON: the long way says why
        as_stored = None
    if as_stored is not None:
        next_chain = next_chain_hash(chain, as_stored)
        if next_chain == recorded:
            return as_stored, next_chain
    event_bytes = _canonical_bytes(notification, state)
    return event_bytes, next_chain_hash(chain, event_bytes)


def _canonical_bytes(notification: Any, state: dict[str, Any]) -> bytes:
    try:
        return canonical_event_bytes(
            notification.id,
            notification.topic,
            notification.originator_id,
            notification.originator_version,
            state,
        )
    except ValueError as error:  # NaN, or a lone surrogate, cannot be canonical JSON
        raise _unreadable(notification, error) from None


def _unreadable(notification: Any, error: object) -> VerificationFailed:
    return VerificationFailed(
        f"position {notification.id}: the stored event cannot be read ({error}): it was edited"
    )


def verify_audit_log(
    verifier: StoreVerifier,
    *,
    audited_to: int,
    count_after: Callable[[int], int],
    chain_hash_before: Callable[[int], str],
    run_start: Callable[[str], int],
    verify_proof: Callable[[dict[str, Any]], None],
    from_position: int = 1,
    to_position: int | None = None,
    on_total: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
) -> tuple[ChainReport, int]:
    """Check every committed run proof sealed in [from_position, to_position], then
    recompute the chain and compare it with the audit log and those proofs. A proof is
    checked against its whole run, so the chain is recomputed from the first event of the
    earliest such run. Answers the report and how many newer events the audit log does
    not cover yet."""
    up_to = audited_to if to_position is None else min(to_position, audited_to)
    proofs = [
        proof for proof in verifier.committed_proofs() if from_position <= proof["seal_position"] <= up_to
    ]
    for proof in proofs:
        try:
            verify_proof(proof)
        except VerificationFailed as error:
            raise VerificationFailed(f"run {proof.get('run_id')!r}: {error}") from None
    start = min([from_position, *(run_start(proof["run_id"]) for proof in proofs)])
    if on_total is not None:
        on_total(count_after(start - 1) - count_after(up_to))
    report = verifier.verify_chain(
        from_position=start,
        to_position=up_to,
        starting_hash=chain_hash_before(start),
        proofs=proofs,
        on_progress=on_progress,
    )
    unaudited = count_after(up_to) if to_position is None else 0
    return report, unaudited
