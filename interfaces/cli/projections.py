"""`decision-ledger projections`: run, rebuild, inspect and verify the read models."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer
from rich.table import Table

from application.service import LedgerService
from interfaces.cli.common import (
    DatabaseUrl,
    err,
    fail,
    load_settings,
    log_followers,
    out,
    service_for,
    tracked,
)

app = typer.Typer(help="Run, rebuild, inspect and verify the read models.", no_args_is_help=True)
ProjectionName = Annotated[str | None, typer.Option("--name", help="One projection (default: all)")]


@app.command("run")
def projections_run(database_url: DatabaseUrl = None) -> None:
    """Stand for every projection in this process (as `serve --role followers` does): one
    process on the database leads each, the others take over when it goes."""
    settings = load_settings(database_url)
    log_followers()
    # It signs: the follower of the log makes the periodic checkpoints.
    with service_for(settings, signing=True) as service:
        err.print(f"projection worker following {settings.database().describe()}; Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            service.follow_forever()


@app.command("status")
def projections_status(database_url: DatabaseUrl = None) -> None:
    """Each follower's leader (host, pid, since), generation, position and lag behind the
    log head (events and seconds), and its last error."""
    with service_for(load_settings(database_url)) as service:
        generations = {status.name: status.generation for status in service.projection_status()}
        table = Table(
            "follower", "leader", "since", "generation", "position", "lag (events)", "lag (s)", "last error"
        )
        for status in service.follower_status():
            leader = status.leader
            if leader is None:
                leader_text, since = "none yet", "-"
            else:
                state = "" if leader.active else " (gone; none leads)"
                leader_text = f"{leader.host} pid {leader.pid} epoch {leader.epoch}{state}"
                since = leader.since.isoformat(timespec="seconds")
            error = "-"
            if status.last_error:
                error = status.last_error.splitlines()[0][:120]
                if status.last_error_at is not None:
                    error += f" (at {status.last_error_at.isoformat(timespec='seconds')})"
            table.add_row(
                status.name,
                leader_text,
                since,
                str(generations.get(status.name.removeprefix("projection:")) or "-"),
                str(status.position),
                str(status.lag_positions),
                f"{status.lag_seconds:.1f}",
                error,
            )
        out.print(table)


@app.command("rebuild")
def projections_rebuild(name: ProjectionName = None, database_url: DatabaseUrl = None) -> None:
    """Rebuild views from position 0 into fresh tables, then swap them in atomically."""
    with service_for(load_settings(database_url)) as service:
        for projection in _projection_names(service, name):
            with tracked(f"rebuild {projection}") as (set_total, advance):
                set_total(service.events_after(0))
                generation = service.rebuild_projection(projection, on_progress=advance)
            out.print(f"{projection}: generation {generation} is live")


@app.command("verify")
def projections_verify(name: ProjectionName = None, database_url: DatabaseUrl = None) -> None:
    """Rebuild into scratch tables and compare with the live views, row by row."""
    with service_for(load_settings(database_url)) as service:
        failed = False
        for projection in _projection_names(service, name):
            with tracked(f"verify {projection}") as (set_total, advance):
                set_total(service.events_after(0))
                position, differences = service.verify_projection(projection, on_progress=advance)
            if differences:
                failed = True
                out.print(f"{projection}: {len(differences)} difference(s) as of position {position}:")
                for difference in differences:
                    out.print(
                        f"  {difference.table} [{difference.key}]: live={difference.live} rebuilt={difference.rebuilt}"
                    )
            else:
                out.print(f"{projection}: identical to a rebuild as of position {position}")
        if failed:
            raise typer.Exit(1)


def _projection_names(service: LedgerService, name: str | None) -> list[str]:
    names = service.projections.names
    if name is None:
        return names
    if name not in names:
        fail(f"no projection named {name!r}; choose from {', '.join(names)}")
    return [name]
