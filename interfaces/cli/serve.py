"""`decision-ledger serve`: the REST API, the followers of the log, or both."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from application.stored_form import StoredFormRefused
from domain.errors import LedgerError
from infrastructure.settings import ConfigurationError, ServeRole
from interfaces.cli.common import DatabaseUrl, err, fail, load_settings, log_followers, service_for


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000)")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="API worker processes (default 1)")] = None,
    effectors_file: Annotated[
        Path | None, typer.Option("--effectors-file", help="Effectors (TOML) the dispatcher delivers to")
    ] = None,
    role: Annotated[
        ServeRole | None,
        typer.Option(
            help="all: the API, standing for every projection (one process on the database leads"
            " each); api: the API only; followers: the projections (and the dispatcher) only,"
            " no HTTP (default all)"
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Serve the REST API with uvicorn (OpenAPI at /openapi.json, docs at /docs), and
    dispatch the actions the effectors file names. Start as many as you like on one
    database: one of them leads each projection at a time."""
    from application.ledger import DecisionLedger
    from interfaces.api.security import refuse_open_mode_off_loopback
    from interfaces.bootstrap import load_effectors
    from interfaces.serving import serve_api

    settings = load_settings(
        database_url, host=host, port=port, workers=workers, effectors_file=effectors_file, role=role
    )
    log_followers()
    if not settings.serves_api:
        try:
            load_effectors(settings.effectors_file)
        except ConfigurationError as error:
            fail(str(error))
        with service_for(settings) as service:
            err.print(f"followers of {settings.database().describe()}; Ctrl-C stops them", highlight=False)
            if settings.runs_dispatcher:
                service.start_dispatcher(settings.dispatch_concurrency)
            with contextlib.suppress(KeyboardInterrupt):
                service.follow_forever()
        return
    try:
        DecisionLedger.refuse_other_stored_forms(settings.library_env())
        refuse_open_mode_off_loopback(settings.host, settings.open_local_mode)
        load_effectors(settings.effectors_file)  # a bad file: one line, and nothing starts
    except (ConfigurationError, StoredFormRefused) as error:
        fail(str(error))
    mode = "open local mode (no API keys)" if settings.open_local_mode else "API keys required"
    followers = "standing for the projections" if settings.runs_followers else "no followers"
    err.print(
        f"decision-ledger on {settings.database().describe()}, {mode}, {settings.workers} worker(s),"
        f" {followers}",
        highlight=False,
    )
    try:
        serve_api(settings)
    except (LedgerError, ConfigurationError, StoredFormRefused) as error:
        fail(getattr(error, "detail", str(error)))
