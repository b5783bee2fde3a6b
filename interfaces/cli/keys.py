"""`decision-ledger keys` (the proof-signing key) and `api-keys` (keys for the REST API)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from domain.errors import LedgerError
from infrastructure.settings import ApiKeyEntry, ConfigurationError, Role
from interfaces.cli.common import DatabaseUrl, err, fail, load_settings

keys_app = typer.Typer(help="The signing keys: show them, rotate in a new one.", no_args_is_help=True)
api_keys_app = typer.Typer(help="API keys for the REST API.", no_args_is_help=True)


@keys_app.command("show")
def keys_show(database_url: DatabaseUrl = None) -> None:
    """Print the keys that verify run proofs and checkpoints (as GET /keys)."""
    from interfaces.bootstrap import keys_for

    settings = load_settings(database_url)
    try:
        ring = keys_for(settings)()
        current = ring.current(datetime.now(UTC)).signer
    except (LedgerError, ConfigurationError) as error:
        fail(getattr(error, "detail", str(error)))
    document = {
        "algorithm": current.algorithm,
        "public_key": current.public_key,
        "key_id": current.key_id,
        "keys": [entry.public() for entry in ring.entries],
    }
    print(json.dumps(document, indent=2))


@keys_app.command("rotate")
def keys_rotate(
    keyring: Annotated[
        Path | None, typer.Option(help="The key ring file (default: DECISION_LEDGER_SIGNING_KEYRING_FILE)")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="The new key's signed-note name (default: the origin)")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a new signing key, valid from now; retire the current one for signing (it still
    verifies what it signed). A ring that does not exist yet starts with the configured key."""
    from interfaces.bootstrap import KeyRing, keyring_path, keys_for

    settings = load_settings(database_url)
    path = keyring or keyring_path(settings)
    if path is None:
        fail(
            "say where the key ring lives: --keyring FILE or DECISION_LEDGER_SIGNING_KEYRING_FILE"
            " (it starts with the configured key, which it then retires)"
        )
    try:
        ring = KeyRing.load(path) if path.exists() else keys_for(settings)()
        rotated = ring.rotated(datetime.now(UTC), name or settings.origin())
        rotated.save(path)
    except (LedgerError, ConfigurationError) as error:
        fail(getattr(error, "detail", str(error)))
    except OSError as error:
        fail(f"cannot write the key ring at {path}: {error.strerror}")
    err.print(f"key ring {path}: {len(rotated.entries)} keys; the new key signs from now on")
    if settings.signing_keyring_file is None and keyring is not None:
        err.print(f"serve with DECISION_LEDGER_SIGNING_KEYRING_FILE={path} to sign with it")
    print(json.dumps(rotated.entries[-1].public(), indent=2))


@api_keys_app.command("new")
def api_keys_new(
    principal: Annotated[str, typer.Option(help="Who the key acts as (recorded as the actor)")],
    role: Annotated[list[Role], typer.Option(help="writer, operator or auditor; repeat for several")],
) -> None:
    """Make a new API key. Prints the key once, and the entry (its hash) to configure."""
    from interfaces.api.security import hash_api_key, new_api_key

    key = new_api_key()
    try:
        entry = ApiKeyEntry(principal=principal, roles=role, key_sha256=hash_api_key(key))
    except ValidationError as error:
        fail(error.errors()[0]["msg"])
    print(f"key (shown once): {key}")
    print(f"entry for DECISION_LEDGER_API_KEYS or the keys file: {entry.model_dump_json()}")
