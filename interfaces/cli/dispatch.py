"""The command line for carrying actions out: `dispatch run`, `actions list`, `actions redeliver`.

Thin, like the rest of the CLI: parse, call the application, print."""

from __future__ import annotations

import contextlib
import getpass
import json
import signal
import threading
import uuid
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.table import Table

from domain.commands import RedeliverAction
from interfaces.cli.common import DatabaseUrl, err, fail, load_settings, log_followers, out, service_for

dispatch_app = typer.Typer(help="Carry out the actions effectors receive.", no_args_is_help=True)
actions_app = typer.Typer(help="Actions: list them, redeliver failed ones.", no_args_is_help=True)

EffectorsFile = Annotated[
    Path | None,
    typer.Option(
        "--effectors-file", help="The effectors file (TOML); default DECISION_LEDGER_EFFECTORS_FILE"
    ),
]


@dispatch_app.command("run")
def dispatch_run(
    effectors_file: EffectorsFile = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=512, help="Deliveries in flight at once (default 16)")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Serve Prometheus metrics on 127.0.0.1:PORT")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Stand for the dispatcher in this process: one process on the database dispatches, the
    others stand by and take over when it goes (as `serve` does with an effectors file). The
    outbox projection must be followed too: by `serve` (the default) or `projections run`."""
    settings = load_settings(database_url, effectors_file=effectors_file, dispatch_concurrency=concurrency)
    log_followers()
    if settings.effectors_file is None:
        fail("no effectors file: give --effectors-file or set DECISION_LEDGER_EFFECTORS_FILE")
    with service_for(settings) as service:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        if metrics_port is not None:
            start_http_server(metrics_port, addr="127.0.0.1", registry=registry)
        dispatcher = service.start_dispatcher(settings.dispatch_concurrency, registry)
        assert dispatcher is not None
        names = ", ".join(effector.name for effector in service.effectors.all)
        err.print(
            f"dispatcher on {settings.database().describe()} to {names},"
            f" {settings.dispatch_concurrency} at a time, when it leads; Ctrl-C stops it",
            highlight=False,
        )
        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        with contextlib.suppress(KeyboardInterrupt):
            while not stopping.wait(1.0):
                pass


@actions_app.command("list")
def actions_list(
    status: Annotated[str | None, typer.Option(help="requested, committed, failed or waived")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this action kind")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Only this run's actions")] = None,
    after: Annotated[str | None, typer.Option(help="Page after this action ID")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="Page size")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Actions by status, kind and run (e.g. `--status failed` for dead letters)."""
    with service_for(load_settings(database_url)) as service:
        page = service.actions.list_actions(status=status, kind=kind, run_id=run_id, after=after, limit=limit)
        if as_json:
            print(json.dumps(_page_document(page), default=str))
            return
        table = Table("action_id", "run_id", "kind", "status", "dispatch", "attempts", "last_error")
        for action in page.actions:
            table.add_row(
                action.action_id,
                action.run_id,
                action.kind,
                action.status,
                action.dispatch,
                str(len(action.deliveries)),
                action.last_error or "",
            )
        out.print(table)
        if page.next_after:
            out.print(f"more: --after {page.next_after}")


def _page_document(page: Any) -> dict[str, Any]:
    return {
        "actions": [vars(action) for action in page.actions],
        "next_after": page.next_after,
        "as_of_position": page.as_of_position,
    }


@actions_app.command("redeliver")
def actions_redeliver(
    action_id: Annotated[str, typer.Argument(help="The failed action's ID")],
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key", help="Repeat a redelivery safely with the same key (default: a new one)"
        ),
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Who asks (default: cli:<user>)")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Start a fresh delivery schedule for a failed action (same webhook-id, same body)."""
    try:
        identifier = UUID(action_id)
    except ValueError:
        fail(f"{action_id!r} is not an action ID (a UUID)")
    key = idempotency_key or str(uuid.uuid4())
    with service_for(load_settings(database_url)) as service:
        result = service.commands.actions.redeliver(
            RedeliverAction(
                action_id=identifier, token=f"cli|redeliver|{key}", actor=actor or f"cli:{getpass.getuser()}"
            )
        )
    replay = " (a replay of an earlier redelivery)" if result.replayed else ""
    out.print(f"action {action_id} will be redelivered{replay}; idempotency key {key}", highlight=False)
