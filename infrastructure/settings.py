"""The service's configuration: one pydantic-settings class, environment prefix
DECISION_LEDGER_. Built at start-up and passed along, never imported as a global."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infrastructure.database import DEFAULT_DATABASE_URL, DatabaseTarget, OutageBounds, parse_database_url


class Role(StrEnum):
    WRITER = "writer"
    OPERATOR = "operator"
    AUDITOR = "auditor"


class ServeRole(StrEnum):
    """What a `serve` process does: the REST API, the followers of the log, or both."""

    API = "api"
    FOLLOWERS = "followers"
    ALL = "all"


class ApiKeyEntry(BaseModel):
    """One API key, as its SHA-256: the key itself is never stored."""

    principal: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@:-]*$")
    roles: list[Role] = Field(min_length=1)
    key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ConfigurationError(ValueError):
    """The configuration cannot be used; the message says why, in one line."""


class Settings(BaseSettings):
    # Errors never quote a value: a database URL may hold a password, a key is secret.
    model_config = SettingsConfigDict(
        env_prefix="DECISION_LEDGER_", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    #: API worker processes. With more than one, the projections run in a worker of their own.
    workers: int = Field(default=1, ge=1, le=64)
    #: JSON list of {"principal", "roles", "key_sha256"} entries.
    api_keys: list[ApiKeyEntry] = Field(default_factory=list)
    #: A JSON file holding the same list.
    api_keys_file: Path | None = None
    #: A raw Ed25519 private key, 64 hex characters.
    signing_key: SecretStr | None = None
    signing_key_file: Path | None = None
    #: What `serve` runs: `all` (the API, and standing for every follower: any number of
    #: such processes may share a database, one leads each follower), `api` or `followers`.
    role: ServeRole = ServeRole.ALL
    #: false: `serve` leaves the followers to other processes (as `role=api` does).
    run_projections: bool = True
    #: How often a process standing by for a follower (a projection, the dispatcher) tries
    #: to take the lead (seconds). Failover after a leader dies takes at most about this
    #: long once its lock is free (at once for a killed process on the same network; for a
    #: vanished host, when the server's keepalives give up, `leader_dead_after_s`).
    leader_poll_s: float = Field(default=2.0, gt=0, le=60)
    #: PostgreSQL: the server ends the election session of a client that stopped answering
    #: after about this long (TCP keepalives of that one connection), freeing its locks.
    leader_dead_after_s: float = Field(default=6.0, ge=3, le=600)
    #: How long a close waits for the read models to reach its seal (seconds).
    close_timeout: float = Field(default=15.0, gt=0)
    #: How long a query waits for `min_position` (seconds).
    read_timeout: float = Field(default=5.0, gt=0, le=60)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    #: Memory for first answers, replayed byte for byte to redeliveries (0: off).
    replay_cache_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    #: Where the API processes of one server share those answers (`serve --workers N` makes
    #: a private one; one given here is emptied when `serve` starts); unset, each process
    #: keeps its own.
    shared_answers_dir: Path | None = None
    #: uvicorn's per-request access log (the Prometheus metrics count every request anyway).
    access_log: bool = False
    #: Seconds an idle client connection is kept open. Longer than a load balancer's idle
    #: timeout (nginx and AWS ALB: 60 s), so the proxy, not the server, closes it: a server
    #: closing a connection as a request arrives on it resets that request.
    keep_alive_s: int = Field(default=75, ge=1, le=3600)
    # How long a call waits on a PostgreSQL server that does not answer: with the database
    # down, requests are refused (503, Retry-After) within about retry_deadline + 1 s, and
    # served again by the same process once it returns (see infrastructure/postgres_outages.py).
    #: Seconds a call waits for a pooled connection (all broken, or all busy).
    database_pool_timeout: float = Field(default=OutageBounds.pool_timeout, gt=0, le=60)
    #: Seconds libpq waits to open a connection (libpq counts 2 at least).
    database_connect_timeout: int = Field(default=OutageBounds.connect_timeout, ge=2, le=60)
    #: Seconds a PostgreSQL writer waits for the events table's lock.
    database_lock_timeout: int = Field(default=OutageBounds.lock_timeout, ge=1, le=600)
    #: Seconds one database call may spend retrying failed attempts, waits included.
    database_retry_deadline: float = Field(default=OutageBounds.retry_deadline, ge=0, le=600)
    #: Seconds an SQLite writer waits for the database file's lock.
    sqlite_lock_timeout: float = Field(default=OutageBounds.sqlite_lock_timeout, ge=1, le=600)
    #: The effectors file (TOML): which action kinds the ledger carries out itself, and where.
    effectors_file: Path | None = None
    #: Run the dispatcher inside `serve` when effectors are configured (else run
    #: `decision-ledger dispatch run`).
    run_dispatcher: bool = True
    #: Deliveries in flight at once, per dispatcher process.
    dispatch_concurrency: int = Field(default=16, ge=1, le=512)
    #: A key ring file (infrastructure/keyring.py): several signing keys with validity periods.
    #: Takes precedence over signing_key / signing_key_file; `decision-ledger keys rotate` writes it.
    signing_keyring_file: Path | None = None
    #: The transparency log's name: the first line of every checkpoint and the signing key's
    #: name (default: decision-ledger/<database name>).
    checkpoint_origin: str | None = Field(default=None, min_length=1, max_length=200)
    #: A checkpoint is made at least this often (seconds) when the log grew, and at every seal.
    checkpoint_interval_s: float = Field(default=60.0, gt=0, le=86_400)
    #: Each checkpoint is also written here as a file (a directory meant to be synced elsewhere).
    checkpoint_dir: Path | None = None

    # --- Tuning (defaults measured in `make bench`) ------------------------------------------
    #: Concurrent saves in one process share a transaction.
    group_commit: bool = True
    #: PostgreSQL connections each process keeps open, and how many more it may open under
    #: load. The ledger's threads for commands that wait on the database follow their sum.
    pool_size: int = Field(default=2, ge=1, le=100)
    pool_max_overflow: int = Field(default=18, ge=0, le=500)
    #: PostgreSQL: let psycopg prepare statements it runs often. Set false behind PgBouncer
    #: in transaction mode (docs/deploying.md, "Connection budget").
    postgres_prepared_statements: bool = True
    #: Recent answers, by token, that a process replays without the database.
    answer_cache_entries: int = Field(default=20_000, ge=1)
    #: When recently saved events became known (answers need no second query).
    known_times_entries: int = Field(default=50_000, ge=1)
    #: Runs a process believes open, with their attempt.
    open_runs_entries: int = Field(default=10_000, ge=1)
    #: Token receipts a group commit's precheck found, kept for the retries that follow.
    found_receipts_entries: int = Field(default=10_000, ge=1)
    #: How often a command that lost a race runs again before giving up.
    max_command_attempts: int = Field(default=12, ge=1, le=100)

    @field_validator("database_url")
    @classmethod
    def _parse_url(cls, value: str) -> str:
        parse_database_url(value)
        return value

    def database(self) -> DatabaseTarget:
        return parse_database_url(self.database_url)

    def library_env(self) -> dict[str, str]:
        """The eventsourcing library's settings for this database, pool and bounds."""
        bounds = OutageBounds(
            pool_timeout=self.database_pool_timeout,
            connect_timeout=self.database_connect_timeout,
            lock_timeout=self.database_lock_timeout,
            retry_deadline=self.database_retry_deadline,
            sqlite_lock_timeout=self.sqlite_lock_timeout,
        )
        return self.database().library_env(
            bounds,
            pool_size=self.pool_size,
            max_overflow=self.pool_max_overflow,
            prepared_statements=self.postgres_prepared_statements,
        )

    @property
    def serves_api(self) -> bool:
        return self.role != ServeRole.FOLLOWERS

    @property
    def runs_dispatcher(self) -> bool:
        return self.role != ServeRole.API and self.run_dispatcher

    @property
    def runs_followers(self) -> bool:
        return self.role != ServeRole.API and self.run_projections

    @property
    def command_threads(self) -> int:
        """As many as the database pool can serve at once."""
        return self.pool_size + self.pool_max_overflow

    def all_api_keys(self) -> list[ApiKeyEntry]:
        keys = list(self.api_keys)
        if self.api_keys_file is not None:
            try:
                entries = json.loads(self.api_keys_file.read_text())
                keys += [ApiKeyEntry.model_validate(entry) for entry in entries]
            except OSError as error:
                raise ConfigurationError(f"cannot read {self.api_keys_file}: {error.strerror}") from None
            except (ValueError, ValidationError, TypeError) as error:
                first_line = str(error).splitlines()[0]
                raise ConfigurationError(
                    f"{self.api_keys_file} is not a list of API keys: {first_line}"
                ) from None
        return keys

    def origin(self) -> str:
        """The transparency log's origin line: a key name, so no spaces and no plus sign."""
        if self.checkpoint_origin is not None:
            origin = self.checkpoint_origin
        else:
            target = self.database()
            if target.backend == "sqlite":
                assert target.sqlite_path is not None
                origin = f"decision-ledger/{target.sqlite_path.name.split('.')[0]}"
            else:
                origin = f"decision-ledger/{target.dbname}" + (f"/{target.schema}" if target.schema else "")
        if "+" in origin or any(char.isspace() or ord(char) < 0x20 for char in origin):
            raise ConfigurationError(
                f"the checkpoint origin {origin!r} may not hold spaces, plus signs or control characters:"
                " set DECISION_LEDGER_CHECKPOINT_ORIGIN"
            )
        return origin

    @property
    def open_local_mode(self) -> bool:
        return not self.all_api_keys()
