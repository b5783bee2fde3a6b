"""`decision-ledger keys` (the proof-signing key) and `api-keys` (keys for the REST API)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from pydantic import ValidationError

from domain.errors import LedgerError
from infrastructure.settings import ApiKeyEntry, ConfigurationError, Role
from interfaces.cli.common import DatabaseUrl, fail, load_settings

keys_app = typer.Typer(help="The proof-signing key.", no_args_is_help=True)
api_keys_app = typer.Typer(help="API keys for the REST API.", no_args_is_help=True)


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
    from interfaces.api.security import hash_api_key, new_api_key

    key = new_api_key()
    try:
        entry = ApiKeyEntry(principal=principal, roles=role, key_sha256=hash_api_key(key))
    except ValidationError as error:
        fail(error.errors()[0]["msg"])
    print(f"key (shown once): {key}")
    print(f"entry for DECISION_LEDGER_API_KEYS or the keys file: {entry.model_dump_json()}")
