"""`decision-ledger audit` and `proof`: check the hash chain, run proofs and inclusion proofs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from application.proof_checks import VerificationFailed, verify_inclusion_proof, verify_run_proof
from interfaces.cli.common import (
    DatabaseUrl,
    fail,
    load_settings,
    out,
    read_json,
    read_public_key,
    service_for,
    tracked,
)

audit_app = typer.Typer(help="Check the audit log's hash chain.", no_args_is_help=True)
proof_app = typer.Typer(help="Verify run proofs and inclusion proofs.", no_args_is_help=True)
PublicKey = Annotated[str, typer.Option(help="The signer's key, hex or a file holding it (GET /keys)")]


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
    pinned_key = None if public_key is None else read_public_key(public_key)

    def check_proof(proof: dict[str, Any]) -> None:
        verify_run_proof(proof, pinned_key)

    with service_for(load_settings(database_url)) as service:
        try:
            with tracked("audit verify") as (set_total, advance):
                report, unaudited = service.verify_audit_log(
                    check_proof,
                    from_position=from_position,
                    to_position=to_position,
                    on_total=set_total,
                    on_progress=advance,
                )
        except VerificationFailed as error:
            fail(str(error), code=1)
    note = f"; {unaudited} newer event(s) not yet in the audit log" if unaudited else ""
    if report.proofs_checked and pinned_key is None:
        note += "; proof signatures checked against the keys they carry (pin one with --public-key)"
    out.print(
        f"ok: {report.checked} events, chain intact up to position {report.last_position}"
        f" ({report.last_chain_hash[:16]}...), {report.proofs_checked} run proof(s) match{note}"
    )


@proof_app.command("verify")
def proof_verify(
    proof_file: Annotated[Path, typer.Argument(help="A run proof (GET /runs/{id}/proof)")],
    public_key: Annotated[
        str | None, typer.Option(help="The signer's key, hex or a file holding it (GET /keys); required")
    ] = None,
    database_url: Annotated[str | None, typer.Option(help="Also recompute it from this database")] = None,
) -> None:
    """Check a run proof's signature by the pinned key and its consistency; with a
    database, recompute it from the stored events as of its seal position."""
    if public_key is None:
        # Fail closed: a valid signature by a key nobody pinned proves nothing about its origin.
        fail("the signer is not trusted: pin its public key with --public-key (GET /keys)", code=1)
    proof = read_json(proof_file)
    try:
        verify_run_proof(proof, read_public_key(public_key))
    except VerificationFailed as error:
        fail(str(error), code=1)
    if database_url is None:
        out.print(f"ok: run {proof['run_id']!r} attempt {proof['attempt']} proof is signed and consistent")
        return
    with service_for(load_settings(database_url)) as service:
        try:
            service.verify_proof_against_store(proof)
        except VerificationFailed as error:
            fail(str(error), code=1)
    out.print(f"ok: run {proof['run_id']!r} attempt {proof['attempt']} proof matches the stored events")


@proof_app.command("verify-inclusion")
def proof_verify_inclusion(
    inclusion_file: Annotated[Path, typer.Argument(help="An inclusion proof (GET /decisions/{id}/proof)")],
    public_key: PublicKey,
) -> None:
    """Check a decision's inclusion proof with no database at all."""
    inclusion = read_json(inclusion_file)
    try:
        verify_inclusion_proof(inclusion, read_public_key(public_key))
    except VerificationFailed as error:
        fail(str(error), code=1)
    out.print(
        f"ok: decision {inclusion['decision_id']} is in run {inclusion['run_proof']['run_id']!r}'s committed proof"
    )
