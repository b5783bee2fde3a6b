"""`decision-ledger audit` and `proof`: check the hash chain, saved checkpoints, run proofs,
inclusion proofs and tlog-proofs. Every command needs the keys you trust (fails closed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from application.proof_checks import verify_inclusion_proof, verify_run_proof
from application.transparency.checkpoints import VerifiedCheckpoint, open_checkpoint
from application.transparency.leaves import parse_event_leaf
from application.transparency.merkle import leaf_hash
from application.transparency.tlog_proofs import TlogProof
from domain.errors import LedgerError, VerificationFailed
from infrastructure.settings import ConfigurationError, Settings
from interfaces.cli.common import DatabaseUrl, fail, load_settings, out, read_json, service_for, tracked
from interfaces.trusted_keys import NoTrustedKeys, TrustedKeys, trusted_keys

audit_app = typer.Typer(
    help="Check the audit log's hash chain and the saved checkpoints.", no_args_is_help=True
)
proof_app = typer.Typer(help="Verify run proofs, inclusion proofs and tlog-proofs.", no_args_is_help=True)
TrustedKeyOption = Annotated[
    list[str] | None,
    typer.Option(help="A trusted key: 64 hex, a verifier key, or a file holding one (GET /keys); repeatable"),
]
TrustedKeysFileOption = Annotated[
    list[Path] | None,
    typer.Option("--trusted-keys", help="Trusted keys: GET /keys saved as JSON, or one a line"),
]


def _trusted(public_keys: list[str] | None, trusted_key_files: list[Path] | None) -> TrustedKeys:
    try:
        return trusted_keys(public_keys or [], trusted_key_files or [])
    except NoTrustedKeys as error:
        fail(error.detail, code=1)
    except LedgerError as error:
        fail(error.detail)


@audit_app.command("verify")
def audit_verify(
    from_position: Annotated[int, typer.Option("--from", min=1, help="First position to check")] = 1,
    to_position: Annotated[int | None, typer.Option("--to", min=1, help="Last position to check")] = None,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint", help="A saved checkpoint (GET /checkpoint), or a directory of them; repeatable"
        ),
    ] = None,
    public_key: TrustedKeyOption = None,
    trusted_keys_file: TrustedKeysFileOption = None,
    database_url: DatabaseUrl = None,
) -> None:
    """With --checkpoint, recompute the Merkle tree from the stored events and compare it
    with each saved checkpoint; then recompute the hash chain and compare it with the audit
    log and with every run proof sealed in the range. Names the first position that differs."""
    trusted = _trusted(public_key, trusted_keys_file)
    settings = load_settings(database_url)
    saved = _saved_checkpoints(checkpoint or [], trusted, settings)

    def check_proof(proof: dict[str, Any]) -> None:
        verify_run_proof(proof, trusted.run_proof_key(proof))

    with service_for(settings) as service:
        try:
            # The signed checkpoints first: kept elsewhere, they are the stronger evidence.
            checked = (
                service.transparency.audit_checkpoints(
                    [opened.checkpoint for opened in saved], from_position=from_position
                )
                if saved
                else None
            )
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
    if checked is not None:
        sizes = ", ".join(str(size) for size in checked.checkpoints_checked)
        note += f"; {len(checked.checkpoints_checked)} signed checkpoint(s) match (tree sizes {sizes})"
    out.print(
        f"ok: {report.checked} events, chain intact up to position {report.last_position}"
        f" ({report.last_chain_hash[:16]}...), {report.proofs_checked} run proof(s) match{note}"
    )


def _saved_checkpoints(
    paths: list[Path], trusted: TrustedKeys, settings: Settings
) -> list[VerifiedCheckpoint]:
    """Each file (or each file in a directory) opened with the trusted keys, of this log."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                child for child in path.iterdir() if child.is_file() and not child.name.startswith(".")
            )
        else:
            files.append(path)
    if paths and not files:
        fail("--checkpoint names no checkpoint file")
    try:
        origin = settings.origin()
    except ConfigurationError as error:
        fail(str(error))
    opened = []
    for path in files:
        try:
            note = path.read_bytes()
        except OSError as error:
            fail(f"cannot read {path}: {error.strerror}")
        try:
            opened.append(open_checkpoint(note, trusted.for_note(note), origin))
        except LedgerError as error:
            code = 1 if isinstance(error, VerificationFailed) else 2
            fail(f"{path}: {error.detail} (the checkpoint origin expected is {origin!r})", code=code)
    return opened


@proof_app.command("verify")
def proof_verify(
    proof_file: Annotated[Path, typer.Argument(help="A run proof (GET /runs/{id}/proof)")],
    public_key: TrustedKeyOption = None,
    trusted_keys_file: TrustedKeysFileOption = None,
    database_url: Annotated[str | None, typer.Option(help="Also recompute it from this database")] = None,
) -> None:
    """Check a run proof's signature (by a trusted key, which its key_id must name) and its
    consistency; with a database, recompute it from the stored events as of its seal."""
    trusted = _trusted(public_key, trusted_keys_file)
    proof = read_json(proof_file)
    try:
        verify_run_proof(proof, trusted.run_proof_key(proof))
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
    public_key: TrustedKeyOption = None,
    trusted_keys_file: TrustedKeysFileOption = None,
) -> None:
    """Check a decision's inclusion proof with no database at all."""
    trusted = _trusted(public_key, trusted_keys_file)
    inclusion = read_json(inclusion_file)
    try:
        run_proof = inclusion.get("run_proof") if isinstance(inclusion, dict) else None
        verify_inclusion_proof(inclusion, trusted.run_proof_key(run_proof))
    except VerificationFailed as error:
        fail(str(error), code=1)
    out.print(
        f"ok: decision {inclusion['decision_id']} is in run {inclusion['run_proof']['run_id']!r}'s committed proof"
    )


@proof_app.command("verify-tlog")
def proof_verify_tlog(
    proof_file: Annotated[
        Path, typer.Argument(help="A C2SP tlog-proof (GET /runs/{id}/proof?format=tlog-proof)")
    ],
    public_key: TrustedKeyOption = None,
    trusted_keys_file: TrustedKeysFileOption = None,
) -> None:
    """Check a tlog-proof offline: its checkpoint is signed by a trusted key, and the event
    its extra data holds is the leaf at its index in that checkpoint's tree."""
    trusted = _trusted(public_key, trusted_keys_file)
    try:
        proof = TlogProof.parse(proof_file.read_bytes())
        if proof.extra is None:
            fail("the tlog-proof carries no extra data: the event's leaf bytes are needed to check it")
        leaf = parse_event_leaf(proof.extra)
        verified = proof.verify(leaf_hash(proof.extra), trusted.for_note(proof.checkpoint_note))
    except OSError as error:
        fail(f"cannot read {proof_file}: {error.strerror}")
    except VerificationFailed as error:
        fail(error.detail, code=1)
    except LedgerError as error:
        fail(error.detail)
    checkpoint = verified.checkpoint
    out.print(
        f"ok: the event at position {leaf.position} ({leaf.topic}, aggregate {leaf.aggregate_id} version "
        f"{leaf.version}) is leaf {proof.index} of {checkpoint.origin}'s tree of size {checkpoint.size}"
    )
