"""The composition root: settings in, a wired LedgerService out."""

from __future__ import annotations

from pathlib import Path

from application.election import LeaderElection
from application.ledger import LedgerTuning
from application.service import LedgerService
from domain.clock import Clock, system_clock
from infrastructure.effectors import load_effectors
from infrastructure.file_election import FileLockElection
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
    return LedgerService.build(
        settings.library_env(),
        signer_for(settings) if signing else NoSigningKey(),
        read_timeout=settings.read_timeout,
        close_timeout=settings.close_timeout,
        tuning=ledger_tuning(settings),
        clock=clock,
        effectors=effectors,
        election=election_for(settings),
        leader_poll_s=settings.leader_poll_s,
    )
