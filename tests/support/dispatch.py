"""What the dispatch tests share: a ledger with its projections and a dispatcher running,
a receiver on 127.0.0.1, and the steps of the README's walk-through."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from application.dispatch.dispatcher import Dispatcher
from application.results import ActionView
from application.service import LedgerService
from domain.commands import ModelRef, OpenRun, RecordDecision, RequestAction
from domain.identity import decision_uuid
from infrastructure.database import parse_database_url
from infrastructure.effectors import Effector, Effectors
from infrastructure.signing import Signer

RUN_ID = "cards-2026-12-02"
KIND = "block-card"


def effectors_for(url: str, secret: str, *, schedule: tuple[float, ...], timeout_s: float = 2.0) -> Effectors:
    effector = Effector(
        name="card-service",
        url=url,
        kinds=frozenset({KIND}),
        secret=secret,
        timeout_s=timeout_s,
        retry_schedule_s=schedule,
    )
    return Effectors(by_kind={KIND: effector})


@contextmanager
def ledger_service(database_url: str, signing_key_hex: str) -> Iterator[LedgerService]:
    service = LedgerService.build(
        parse_database_url(database_url).library_env(), Signer.from_hex(signing_key_hex)
    )
    service.start_projections()
    try:
        yield service
    finally:
        service.close()


@contextmanager
def dispatching(service: LedgerService, effectors: Effectors, concurrency: int = 4) -> Iterator[Dispatcher]:
    dispatcher = Dispatcher(
        service.ledger, service.projections, effectors, concurrency=concurrency, poll_interval_s=0.02
    )
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        dispatcher.stop()


def open_run_with_decisions(service: LedgerService, inputs: list[str], run_id: str = RUN_ID) -> None:
    service.commands.runs.open(OpenRun(token=f"open-{run_id}", actor="lane-a", run_id=run_id, lane="cards"))
    from domain.commands import AdmitInputs

    service.commands.runs.admit(
        AdmitInputs(token=f"admit-{run_id}", actor="lane-a", run_id=run_id, input_ids=tuple(inputs))
    )
    for input_id in inputs:
        service.commands.decisions.record(
            RecordDecision(
                token=f"record-{run_id}-{input_id}",
                actor="lane-a",
                run_id=run_id,
                input_id=input_id,
                outcome="block",
                model=ModelRef(name="gbm", version="7"),
            )
        )


def request(service: LedgerService, input_id: str, *, kind: str = KIND, run_id: str = RUN_ID) -> UUID:
    result = service.commands.actions.request(
        RequestAction(
            token=f"request-{run_id}-{input_id}",
            actor="lane-a",
            run_id=run_id,
            action_key=f"block-{input_id}",
            decision_id=decision_uuid(run_id, input_id),
            kind=kind,
            target=f"card-of-{input_id}",
            params={"reason": "fraud", "input": input_id},
        )
    )
    return UUID(result.view.action_id)


def wait_for_action(service: LedgerService, action_id: UUID, until: Any, timeout: float = 30.0) -> ActionView:
    """Poll the action until `until(view)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        view = service.queries.action(action_id)
        if until(view):
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"action {action_id} never reached the expected state: {view}")
        time.sleep(0.02)


def settled(view: ActionView) -> bool:
    return view.dispatch in ("delivered", "dead_lettered", "stopped", "none")
