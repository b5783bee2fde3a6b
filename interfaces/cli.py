"""The command line: thin wrappers over the application. Bad input gets one line on
stderr and exit code 2; a verification that fails exits 1."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn
from uuid import UUID

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from application.service import LedgerService
from application.verification import (
    StoreVerifier,
    VerificationFailed,
    verify_inclusion_proof,
    verify_run_proof,
)
from domain.errors import LedgerError
from infrastructure.settings import ConfigurationError, Role, Settings

app = typer.Typer(
    help="decision-ledger: a governed decisioning ledger.", no_args_is_help=True, add_completion=False
)
projections_app = typer.Typer(help="Run, rebuild, inspect and verify the read models.", no_args_is_help=True)
audit_app = typer.Typer(help="Check the audit log's hash chain.", no_args_is_help=True)
proof_app = typer.Typer(help="Verify run proofs and inclusion proofs.", no_args_is_help=True)
keys_app = typer.Typer(help="The proof-signing key.", no_args_is_help=True)
api_keys_app = typer.Typer(help="API keys for the REST API.", no_args_is_help=True)
runs_app = typer.Typer(help="Runs.", no_args_is_help=True)
decisions_app = typer.Typer(help="Decisions.", no_args_is_help=True)
for sub_app, name in (
    (projections_app, "projections"),
    (audit_app, "audit"),
    (proof_app, "proof"),
    (keys_app, "keys"),
    (api_keys_app, "api-keys"),
    (runs_app, "runs"),
    (decisions_app, "decisions"),
):
    app.add_typer(sub_app, name=name)

out = Console()
err = Console(stderr=True)
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="sqlite:///file or postgresql://user@host/db (default: settings)"),
]


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def load_settings(database_url: str | None = None, **overrides: Any) -> Settings:
    try:
        values = {key: value for key, value in overrides.items() if value is not None}
        if database_url is not None:
            values["database_url"] = database_url
        return Settings(**values)
    except ValidationError as error:
        problem = error.errors()[0]
        fail(f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}")
    except LedgerError as error:
        fail(error.detail)


@contextmanager
def service_for(settings: Settings, *, signing: bool = False) -> Iterator[LedgerService]:
    """The service, for a command. Only commands that sign get (or make) a signing key."""
    from interfaces.bootstrap import build_service

    try:
        service = build_service(settings, signing=signing)
    except (LedgerError, ConfigurationError) as error:
        fail(getattr(error, "detail", str(error)))
    except Exception as error:  # the database is unreachable, or refuses us
        fail(f"cannot open {settings.database().describe()}: {str(error).splitlines()[0]}")
    try:
        yield service
    except LedgerError as error:
        fail(error.detail)
    finally:
        service.close()


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9} events/s"),
        TimeRemainingColumn(),
        console=err,
    )


@contextmanager
def tracked(description: str, total: int) -> Iterator[Any]:
    with progress_bar() as bar:
        task = bar.add_task(description, total=total, rate="-")

        def advance(count: int) -> None:
            bar.advance(task, count)
            speed = bar.tasks[task].speed
            bar.update(task, rate=f"{speed:,.0f}" if speed else "-")

        yield advance


# --- Serving ------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000)")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="API worker processes (default 1)")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Serve the REST API with uvicorn (OpenAPI at /openapi.json, docs at /docs)."""
    from interfaces.api.security import refuse_open_mode_off_loopback
    from interfaces.serving import serve_api

    settings = load_settings(database_url, host=host, port=port, workers=workers)
    try:
        refuse_open_mode_off_loopback(settings.host, settings.open_local_mode)
    except ConfigurationError as error:
        fail(str(error))
    mode = "open local mode (no API keys)" if settings.open_local_mode else "API keys required"
    err.print(
        f"decision-ledger on {settings.database().describe()}, {mode}, {settings.workers} worker(s)",
        highlight=False,
    )
    try:
        serve_api(settings)
    except (LedgerError, ConfigurationError) as error:
        fail(getattr(error, "detail", str(error)))


# --- Projections ------------------------------------------------------------------------------


@projections_app.command("run")
def projections_run(database_url: DatabaseUrl = None) -> None:
    """Follow the log in this process, so API processes can share one worker
    (serve them with DECISION_LEDGER_RUN_PROJECTIONS=false)."""
    settings = load_settings(database_url)
    with service_for(settings) as service:
        from application.projections.runtime import ProjectionWorker

        err.print(f"projection worker following {settings.database().describe()}; Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            ProjectionWorker(service.projections, service.library_env).run_forever()


@projections_app.command("status")
def projections_status(database_url: DatabaseUrl = None) -> None:
    """Each view's generation, position and lag behind the log head."""
    with service_for(load_settings(database_url)) as service:
        table = Table("projection", "generation", "position", "head", "lag (events)")
        for status in service.projections.status():
            table.add_row(
                status.name,
                str(status.generation or "-"),
                str(status.position),
                str(status.head),
                str(status.lag),
            )
        out.print(table)


@projections_app.command("rebuild")
def projections_rebuild(
    name: Annotated[str | None, typer.Option("--name", help="One projection (default: all)")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Rebuild views from position 0 into fresh tables, then swap them in atomically."""
    with service_for(load_settings(database_url)) as service:
        names = _projection_names(service, name)
        total = service.ledger.index.count_after(0)
        for projection in names:
            with tracked(f"rebuild {projection}", total) as advance:
                generation = service.projections.rebuild(projection, on_progress=advance)
            out.print(f"{projection}: generation {generation} is live")


@projections_app.command("verify")
def projections_verify(
    name: Annotated[str | None, typer.Option("--name", help="One projection (default: all)")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Rebuild into scratch tables and compare with the live views, row by row."""
    with service_for(load_settings(database_url)) as service:
        failed = False
        for projection in _projection_names(service, name):
            total = service.projections.live_store(projection).position()
            with tracked(f"verify {projection}", service.ledger.index.count_after(0)) as advance:
                position, differences = service.projections.verify(projection, on_progress=advance)
            if differences:
                failed = True
                out.print(f"{projection}: {len(differences)} difference(s) as of position {position}:")
                for difference in differences:
                    out.print(
                        f"  {difference.table} [{difference.key}]: live={difference.live} rebuilt={difference.rebuilt}"
                    )
            else:
                out.print(f"{projection}: identical to a rebuild as of position {position or total}")
        if failed:
            raise typer.Exit(1)


def _projection_names(service: LedgerService, name: str | None) -> list[str]:
    if name is None:
        return service.projections.names
    if name not in service.projections.names:
        fail(f"no projection named {name!r}; choose from {', '.join(service.projections.names)}")
    return [name]


# --- Audit and proofs ---------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    from_position: Annotated[int, typer.Option("--from", min=1, help="First position to check")] = 1,
    to_position: Annotated[int | None, typer.Option("--to", min=1, help="Last position to check")] = None,
    public_key: Annotated[
        str | None, typer.Option(help="Pin run proofs to this key (hex, or a file holding it; GET /keys)")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Recompute the hash chain from the stored events; compare it with the audit log
    and with every run proof. Names the first position that differs."""
    with service_for(load_settings(database_url)) as service:
        audited_to = service.projections.live_store("audit").position()
        up_to = audited_to if to_position is None else min(to_position, audited_to)
        verifier = StoreVerifier(service.ledger.recorder, service.read_models.audit_stream)
        proofs = verifier.committed_proofs() if from_position == 1 else []
        pinned_key = _read_key(public_key)
        for proof in proofs:
            try:
                verify_run_proof(proof, pinned_key)
            except VerificationFailed as error:
                fail(f"run {proof.get('run_id')!r}: {error}", code=1)
        total = service.ledger.index.count_after(from_position - 1) - service.ledger.index.count_after(up_to)
        try:
            with tracked("audit verify", total) as advance:
                report = verifier.verify_chain(
                    from_position=from_position,
                    to_position=up_to,
                    starting_hash=service.read_models.chain_hash_before(from_position),
                    proofs=[proof for proof in proofs if proof["seal_position"] <= up_to],
                    on_progress=advance,
                )
        except VerificationFailed as error:
            fail(str(error), code=1)
        unaudited = service.ledger.index.count_after(up_to) if to_position is None else 0
        note = f"; {unaudited} newer event(s) not yet in the audit log" if unaudited else ""
        if proofs and pinned_key is None:
            note += "; proof signatures checked against the keys they carry (pin one with --public-key)"
        out.print(
            f"ok: {report.checked} events, chain intact up to position {report.last_position}"
            f" ({report.last_chain_hash[:16]}...), {report.proofs_checked} run proof(s) match{note}"
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as error:
        fail(f"cannot read {path}: {error.strerror}")
    except ValueError as error:
        fail(f"{path} is not JSON: {error}")


def _read_key(public_key: str | None) -> str | None:
    if public_key is None:
        return None
    candidate = Path(public_key)
    text = candidate.read_text().strip() if candidate.is_file() else public_key.strip()
    try:
        if len(bytes.fromhex(text)) != 32:
            raise ValueError
    except ValueError:
        fail("--public-key must be 64 hex characters, or a file holding them")
    return text


@proof_app.command("verify")
def proof_verify(
    proof_file: Annotated[Path, typer.Argument(help="A run proof (GET /runs/{id}/proof)")],
    public_key: Annotated[str | None, typer.Option(help="Hex key, or a file holding it (GET /keys)")] = None,
    database_url: Annotated[str | None, typer.Option(help="Also recompute it from this database")] = None,
) -> None:
    """Check a run proof's signature and consistency; with a database, recompute it
    from the stored events as of its seal position."""
    proof = _read_json(proof_file)
    try:
        verify_run_proof(proof, _read_key(public_key))
    except VerificationFailed as error:
        fail(str(error), code=1)
    if public_key is None:
        print(
            "warning: no --public-key given: the signature was checked against the key the proof carries,"
            " which proves integrity, not origin",
            file=sys.stderr,
        )
    if database_url is None:
        out.print(f"ok: run {proof['run_id']!r} attempt {proof['attempt']} proof is signed and consistent")
        return
    with service_for(load_settings(database_url)) as service:
        verifier = StoreVerifier(service.ledger.recorder, service.read_models.audit_stream)
        try:
            verifier.verify_chain(to_position=proof["seal_position"], proofs=[proof])
        except VerificationFailed as error:
            fail(str(error), code=1)
    out.print(f"ok: run {proof['run_id']!r} attempt {proof['attempt']} proof matches the stored events")


@proof_app.command("verify-inclusion")
def proof_verify_inclusion(
    inclusion_file: Annotated[Path, typer.Argument(help="An inclusion proof (GET /decisions/{id}/proof)")],
    public_key: Annotated[str, typer.Option(help="Hex key, or a file holding it (GET /keys)")],
) -> None:
    """Check a decision's inclusion proof with no database at all."""
    inclusion = _read_json(inclusion_file)
    key = _read_key(public_key)
    assert key is not None
    try:
        verify_inclusion_proof(inclusion, key)
    except VerificationFailed as error:
        fail(str(error), code=1)
    out.print(
        f"ok: decision {inclusion['decision_id']} is in run {inclusion['run_proof']['run_id']!r}'s committed proof"
    )


@keys_app.command("show")
def keys_show(database_url: DatabaseUrl = None) -> None:
    """Print the public key that verifies run proofs."""
    from interfaces.bootstrap import signer_for

    try:
        signer = signer_for(load_settings(database_url))
    except (LedgerError, ConfigurationError) as error:
        fail(getattr(error, "detail", str(error)))
    print(
        json.dumps({"algorithm": signer.algorithm, "public_key": signer.public_key, "key_id": signer.key_id})
    )


@api_keys_app.command("new")
def api_keys_new(
    principal: Annotated[str, typer.Option(help="Who the key acts as (recorded as the actor)")],
    role: Annotated[list[Role], typer.Option(help="writer, operator or auditor; repeat for several")],
) -> None:
    """Make a new API key. Prints the key once, and the entry (its hash) to configure."""
    from infrastructure.settings import ApiKeyEntry
    from interfaces.api.security import hash_api_key, new_api_key

    key = new_api_key()
    try:
        entry = ApiKeyEntry(principal=principal, roles=role, key_sha256=hash_api_key(key))
    except ValidationError as error:
        fail(error.errors()[0]["msg"])
    print(f"key (shown once): {key}")
    print(f"entry for DECISION_LEDGER_API_KEYS or the keys file: {entry.model_dump_json()}")


# --- Time travel ---------------------------------------------------------------------------------


def _as_of(service: LedgerService, as_of: str | None) -> int | None:
    if as_of is None:
        return None
    if as_of.isdigit():
        return int(as_of)
    try:
        moment = datetime.fromisoformat(as_of)
    except ValueError:
        fail(f"--as-of takes a position or an RFC 3339 time with an offset, got {as_of!r}")
    if moment.utcoffset() is None:
        fail("--as-of needs a UTC offset, e.g. 2026-01-31T14:00:00+00:00")
    position = service.ledger.index.position_at(moment)
    if position is None:
        fail(f"nothing was recorded at or before {as_of}")
    return position


@runs_app.command("show")
def runs_show(
    run_id: str,
    as_of: Annotated[str | None, typer.Option("--as-of", help="A position, or an RFC 3339 time")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The run summary, now or as of an earlier point."""
    with service_for(load_settings(database_url)) as service:
        position = _as_of(service, as_of)
        summary = service.read_models.summary(run_id, as_of_position=position)
        table = Table(title=f"run {run_id} as of position {summary.as_of_position}", show_header=False)
        for field_name, value in vars(summary).items():
            table.add_row(field_name, json.dumps(value) if isinstance(value, dict) else str(value))
        out.print(table)


@decisions_app.command("show")
def decisions_show(
    decision_id: str,
    as_of: Annotated[str | None, typer.Option("--as-of", help="A position, or an RFC 3339 time")] = None,
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
    moment = None
    if valid_at is not None:
        try:
            moment = datetime.fromisoformat(valid_at)
        except ValueError:
            fail(f"--valid-at takes an RFC 3339 time with an offset, got {valid_at!r}")
        if moment.utcoffset() is None:
            fail("--valid-at needs a UTC offset")
    with service_for(load_settings(database_url)) as service:
        decision = service.ledger.get_decision(
            identifier, as_of_position=_as_of(service, as_of), valid_at=moment
        )
        table = Table(
            title=f"decision {decision_id} (version {decision.version}, position {decision.position})",
            show_header=False,
        )
        for field_name, value in vars(decision).items():
            table.add_row(
                field_name, json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
            )
        out.print(table)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
