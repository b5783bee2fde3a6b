"""The index rows of a save, derived from the events themselves so they can never disagree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from application.ports import LedgerIndexRows
from domain.action import Action
from domain.decision import Decision
from domain.ledger_aggregate import LedgerAggregate
from domain.run import Run


@dataclass(frozen=True)
class TokenAnswer:
    """The answer to a command that produced no event of its own (a batch), kept under
    its token in the same transaction as the events it caused."""

    token: str
    fingerprint: str
    answer: str


def index_rows_for(domain_events: Sequence[Any], answers: Sequence[TokenAnswer] = ()) -> LedgerIndexRows:
    rows = LedgerIndexRows()
    for domain_event in domain_events:
        if not isinstance(domain_event, LedgerAggregate.Event):
            continue
        originator_id, version = domain_event.originator_id, domain_event.originator_version
        rows.events.append((originator_id, version, domain_event.run_id))
        rows.tokens.append((domain_event.token, domain_event.fingerprint, originator_id, version, None))
        if isinstance(domain_event, Run.BasisAdmitted):
            rows.basis.extend((domain_event.run_id, input_id) for input_id in domain_event.input_ids)
        elif isinstance(domain_event, Run.Sealed):
            rows.seals.append((domain_event.run_id, domain_event.attempt))
        elif isinstance(domain_event, (Decision.Event, Action.Event)) and not is_delivery_record(
            domain_event
        ):
            # Carrying an action out goes on after a seal: the verdict reads the seal's position.
            gate = (domain_event.run_id, domain_event.attempt)
            if gate not in rows.gates:
                rows.gates.append(gate)
    rows.tokens.extend((answer.token, answer.fingerprint, None, None, answer.answer) for answer in answers)
    return rows


def is_delivery_record(domain_event: Any) -> bool:
    """Whether an event records the dispatcher's work (or an operator's redelivery): history
    of carrying the action out, which a sealed run attempt does not refuse."""
    return (
        isinstance(domain_event, (Action.DeliveryStarted, Action.DeliveryFailed, Action.RedeliveryRequested))
        or getattr(domain_event, "delivery", None) is not None
    )
