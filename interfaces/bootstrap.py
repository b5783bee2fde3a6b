"""The composition root: settings in, a wired LedgerService out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

from application.election import LeaderElection
from application.ledger import LedgerTuning
from application.proofs import SigningKey
from application.service import LedgerService
from domain.clock import Clock, system_clock
from infrastructure.effectors import load_effectors
from infrastructure.file_election import FileLockElection
from infrastructure.keyring import CurrentSigner, KeyEntry, KeyRing, KeyRingFile
from infrastructure.postgres_election import PostgresElection
from infrastructure.settings import ConfigurationError, Settings
from infrastructure.signing import Signer

#: Where open local mode keeps its generated key when the database is not a file.
LOCAL_KEY_FILE = Path("decision-ledger.signing-key")


def signer_for(settings: Settings) -> Signer:
    if settings.signing_key is not None:
        return Signer.from_hex(settings.signing_key.get_secret_value())
    if settings.signing_key_file is not None:
        return Signer.from_file(settings.signing_key_file)
    if not settings.open_local_mode:
        raise ConfigurationError(
            "API keys are configured but no signing key is: set DECISION_LEDGER_SIGNING_KEY"
            " or DECISION_LEDGER_SIGNING_KEY_FILE"
        )
    target = settings.database()
    if target.sqlite_path is not None:
        return Signer.kept_at(target.sqlite_path.with_name(target.sqlite_path.name + ".signing-key"))
    return Signer.kept_at(LOCAL_KEY_FILE.absolute())


def local_keyring_path(settings: Settings) -> Path | None:
    """Open local mode's key ring (made by `keys rotate`), beside its generated key."""
    if (
        not settings.open_local_mode
        or settings.signing_key is not None
        or settings.signing_key_file is not None
    ):
        return None
    target = settings.database()
    if target.sqlite_path is not None:
        return target.sqlite_path.with_name(target.sqlite_path.name + ".keyring.json")
    return LOCAL_KEY_FILE.absolute().with_name(LOCAL_KEY_FILE.name + ".keyring.json")


def keyring_path(settings: Settings) -> Path | None:
    """The key ring file in use, or the one `keys rotate` would make."""
    return settings.signing_keyring_file or local_keyring_path(settings)


def keys_for(settings: Settings) -> Callable[[], KeyRing]:
    """The signing keys: a key ring file if there is one, else the one configured key."""
    path = keyring_path(settings)
    if path is not None and (settings.signing_keyring_file is not None or path.exists()):
        return KeyRingFile(path)
    ring = KeyRing([KeyEntry(settings.origin(), signer_for(settings))])
    return lambda: ring


def _no_keys() -> KeyRing:
    raise ConfigurationError("this command has no signing key")


class NoSigningKey:
    """For commands that only read and verify: signing is refused, and no key is made."""

    algorithm = "ed25519"
    public_key = ""
    key_id = ""

    def sign(self, message: bytes) -> str:
        raise ConfigurationError("this command has no signing key")


def ledger_tuning(settings: Settings) -> LedgerTuning:
    return LedgerTuning(
        group_commit=settings.group_commit,
        command_threads=settings.command_threads,
        max_command_attempts=settings.max_command_attempts,
        answer_cache_entries=settings.answer_cache_entries,
        known_times_entries=settings.known_times_entries,
        open_runs_entries=settings.open_runs_entries,
        found_receipts_entries=settings.found_receipts_entries,
    )


def election_for(settings: Settings) -> LeaderElection:
    """One follower of each name across every process on the database."""
    target = settings.database()
    if target.sqlite_path is not None:
        return FileLockElection(target.sqlite_path)
    return PostgresElection(target, dead_after_s=settings.leader_dead_after_s)


def build_service(settings: Settings, *, signing: bool = True, clock: Clock = system_clock) -> LedgerService:
    """The effectors file is read first: a bad one is refused before anything is opened."""
    effectors = load_effectors(settings.effectors_file)
    keys = keys_for(settings) if signing else _no_keys
    return LedgerService.build(
        settings.library_env(),
        cast(SigningKey, CurrentSigner(keys) if signing else NoSigningKey()),
        read_timeout=settings.read_timeout,
        close_timeout=settings.close_timeout,
        tuning=ledger_tuning(settings),
        clock=clock,
        effectors=effectors,
        keys=keys,
        origin=settings.origin(),
        checkpoint_dir=settings.checkpoint_dir,
        checkpoint_interval=settings.checkpoint_interval_s,
        election=election_for(settings),
        leader_poll_s=settings.leader_poll_s,
    )
