"""What the console's pages show, gathered from the application's queries: the one
module that knows which LedgerService call answers which part of a page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from application.action_lists import ActionListPage
from application.checkpoint_status import CheckpointCheck
from application.proof_checks import VerificationFailed, verify_run_proof
from application.queries.points import PointInLog
from application.results import (
    AuditPage,
    CategoryPage,
    ReconciliationView,
    RunListPage,
    RunSummaryView,
    RunView,
)
from application.service import LedgerService
from domain import errors

#: How many IDs each reconciliation category, and how many events the timeline, show a page.
CATEGORY_PAGE = 20
TIMELINE_PAGE = 50


def badge(status: str) -> str:
    """The colour of a run's verdict: green committed, red rejected, amber undecided."""
    return {"committed": "green", "rejected": "red"}.get(status, "amber")


@dataclass(frozen=True)
class ProofStatus:
    attempt: int
    digest: str
    verified: bool
    detail: str


@dataclass(frozen=True)
class RunPage:
    run: RunView
    summary: RunSummaryView
    current: RunSummaryView
    reconciliation: ReconciliationView
    timeline: AuditPage
    proof: ProofStatus | None
    as_of_position: int | None
    key_id: str
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def slider_value(self) -> int:
        return self.summary.as_of_position if self.as_of_position is not None else self.current.last_position


def runs(
    service: LedgerService,
    *,
    lane: str | None,
    status: str | None,
    after: str | None,
    limit: int,
    min_position: int | None = None,
) -> RunListPage:
    service.read_models.wait_for(min_position)
    return service.read_models.list_runs(status=status, lane=lane, after=after, limit=limit)


def position_at(service: LedgerService, moment: datetime) -> int:
    position = service.position_of(PointInLog(as_of=moment))
    assert position is not None  # a time always names a position (or NothingKnownYet)
    return position


def run_page(
    service: LedgerService,
    run_id: str,
    *,
    as_of_position: int | None,
    category_after: dict[str, str | None],
    timeline_after: int,
) -> RunPage:
    read_models = service.read_models
    current = read_models.summary(run_id)
    if as_of_position is not None and as_of_position < current.first_position:
        raise errors.NothingKnownYet(
            f"run {run_id!r} was opened at position {current.first_position}; nothing of it is known"
            f" at position {as_of_position}"
        )
    summary = (
        current if as_of_position is None else read_models.summary(run_id, as_of_position=as_of_position)
    )
    reconciliation = _reconciliation(service, summary, category_after)
    run = service.queries.run(run_id, as_of_position=as_of_position)
    timeline = read_models.audit(
        run_id=run_id, after=timeline_after, limit=TIMELINE_PAGE, as_of_position=summary.as_of_position
    )
    return RunPage(
        run=run,
        summary=summary,
        current=current,
        reconciliation=reconciliation,
        timeline=timeline,
        proof=proof_status(service, run),
        as_of_position=as_of_position,
        key_id=service.signer.key_id,
        verdicts=list(reversed(run.verdicts)),
    )


def _reconciliation(
    service: LedgerService, summary: RunSummaryView, category_after: dict[str, str | None]
) -> ReconciliationView:
    """Each category paged on its own cursor; one the summary counts as empty is not queried
    (on a big run, an empty category's query still walks every input)."""
    counts = {
        "missing": summary.missing_count,
        "unexpected": summary.unexpected_count,
        "pending": summary.actions["pending"],
        "failed": summary.actions["failed"],
    }
    pages = {}
    for name, after in category_after.items():
        if counts[name] == 0:
            pages[name] = CategoryPage(0, [], None)
            continue
        view = service.read_models.reconciliation(
            summary.run_id,
            as_of_position=summary.as_of_position,
            limit=CATEGORY_PAGE,
            category=name,
            after=after,
        )
        pages[name] = view.categories[name]
    return ReconciliationView(summary.run_id, summary.as_of_position, pages)


def proof_status(service: LedgerService, run: RunView) -> ProofStatus | None:
    """The latest proof of the run, checked against the key this server signs with."""
    for verdict in reversed(run.verdicts):
        proof = verdict.get("proof")
        if not proof:
            continue
        try:
            verify_run_proof(proof, service.signer.public_key)
        except VerificationFailed as failure:
            return ProofStatus(verdict["attempt"], verdict["proof_digest"], False, str(failure))
        return ProofStatus(
            verdict["attempt"],
            verdict["proof_digest"],
            True,
            f"signature and counts verified against key {service.signer.key_id}",
        )
    return None


def proof_of(service: LedgerService, run_id: str) -> dict[str, Any]:
    return service.queries.latest_proof(run_id)


@dataclass(frozen=True)
class ActionsPage:
    #: Each action as the ledger has it, with its deliveries (the dispatcher's attempts).
    listing: ActionListPage
    #: Each listed run's status: an operator acts on an action only while its run is open.
    run_status: dict[str, str]
    #: The kinds the effectors receive: only those actions can be redelivered.
    dispatched_kinds: frozenset[str]


def actions(
    service: LedgerService,
    *,
    status: str | None,
    kind: str | None,
    run_id: str | None,
    after: str | None,
    limit: int,
    min_position: int | None = None,
) -> ActionsPage:
    service.read_models.wait_for(min_position)
    listing = service.actions.list_actions(status=status, kind=kind, run_id=run_id, after=after, limit=limit)
    run_status = {
        run: service.read_models.summary(run).status for run in {row.run_id for row in listing.actions}
    }
    return ActionsPage(listing, run_status, service.dispatched_kinds)


@dataclass(frozen=True)
class AuditOverview:
    head_position: int
    chain_hash: str
    records: AuditPage
    algorithm: str
    public_key: str
    key_id: str
    checkpoint: CheckpointCheck


def audit(service: LedgerService, *, after: int, limit: int) -> AuditOverview:
    records = service.read_models.audit(after=after, limit=limit)
    head = records.as_of_position
    return AuditOverview(
        head_position=head,
        chain_hash=service.read_models.chain_hash_before(head + 1),
        records=records,
        algorithm=service.signer.algorithm,
        public_key=service.signer.public_key,
        key_id=service.signer.key_id,
        checkpoint=service.checkpoint_status(),
    )
