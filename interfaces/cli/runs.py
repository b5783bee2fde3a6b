"""`decision-ledger runs` and `decisions`: what the ledger knew, now or as of then."""

from __future__ import annotations

import json
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.table import Table

from interfaces.cli.common import (
    DatabaseUrl,
    as_of_position,
    fail,
    load_settings,
    out,
    parse_time,
    service_for,
)

runs_app = typer.Typer(help="Runs.", no_args_is_help=True)
decisions_app = typer.Typer(help="Decisions.", no_args_is_help=True)
AsOf = Annotated[str | None, typer.Option("--as-of", help="A position, or an RFC 3339 time")]


@runs_app.command("show")
def runs_show(run_id: str, as_of: AsOf = None, database_url: DatabaseUrl = None) -> None:
    """The run summary, now or as of an earlier point."""
    with service_for(load_settings(database_url)) as service:
        summary = service.read_models.summary(run_id, as_of_position=as_of_position(service, as_of))
        table = Table(title=f"run {run_id} as of position {summary.as_of_position}", show_header=False)
        for field_name, value in vars(summary).items():
            table.add_row(field_name, _shown(value))
        out.print(table)


@decisions_app.command("show")
def decisions_show(
    decision_id: str,
    as_of: AsOf = None,
    valid_at: Annotated[
        str | None, typer.Option("--valid-at", help="Which outcome applied at this time")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """A decision as known then, with the outcome in force at a valid time."""
    try:
        identifier = UUID(decision_id)
    except ValueError:
        fail(f"{decision_id!r} is not a decision ID (a UUID)")
    moment = None if valid_at is None else parse_time(valid_at, "--valid-at")
    with service_for(load_settings(database_url)) as service:
        decision = service.queries.decision(
            identifier, as_of_position=as_of_position(service, as_of), valid_at=moment
        )
        table = Table(
            title=f"decision {decision_id} (version {decision.version}, position {decision.position})",
            show_header=False,
        )
        for field_name, value in vars(decision).items():
            table.add_row(field_name, _shown(value))
        out.print(table)


def _shown(value: Any) -> str:
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
