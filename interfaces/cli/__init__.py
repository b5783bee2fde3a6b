"""The command line: thin wrappers over the application, one module per group of
sub-commands. Bad input gets one line on stderr and exit code 2; a verification that
fails exits 1."""

from __future__ import annotations

import sys

import typer

from interfaces.cli import audit, demo, dispatch, keys, projections, runs, serve

app = typer.Typer(
    help="decision-ledger: a governed decisioning ledger.", no_args_is_help=True, add_completion=False
)
app.command()(serve.serve)
app.command()(demo.demo)
for sub_app, name in (
    (projections.app, "projections"),
    (audit.audit_app, "audit"),
    (audit.proof_app, "proof"),
    (keys.keys_app, "keys"),
    (keys.api_keys_app, "api-keys"),
    (runs.runs_app, "runs"),
    (runs.decisions_app, "decisions"),
    (dispatch.dispatch_app, "dispatch"),
    (dispatch.actions_app, "actions"),
):
    app.add_typer(sub_app, name=name)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
