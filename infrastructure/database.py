"""One database URL chooses the back end. This is the only place that parses it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from application.redaction import redacted
from domain.errors import InvalidCommand

DEFAULT_DATABASE_URL = "sqlite:///decision-ledger.sqlite3"

#: The password part of any URL's user info: `scheme://user:PASSWORD@`.


class InvalidDatabaseUrl(InvalidCommand):
    slug = "invalid-database-url"


@dataclass(frozen=True)
class OutageBounds:
    """How long a call waits on a PostgreSQL server that does not answer, so that with the
    database down a request is refused (503) within seconds, and served again as soon as
    it returns. Settings (infrastructure/settings.py) carries each one; see there."""

    #: Seconds a call waits for a pooled connection (every one broken or busy).
    pool_timeout: float = 1.5
    #: Seconds libpq waits to open a connection (libpq counts 2 at least).
    connect_timeout: int = 2
    #: Seconds a writer waits for the events table's lock (PostgreSQL's lock_timeout).
    lock_timeout: int = 3
    #: Seconds one call may spend retrying a failed attempt, waits included.
    retry_deadline: float = 3.0
    #: Seconds an SQLite writer waits for the database file's lock.
    sqlite_lock_timeout: float = 30.0


#: Names of the bounds in the library's environment (read by infrastructure/postgres_outages.py).
POOL_TIMEOUT_ENV = "LEDGER_POOL_TIMEOUT"
CONNECT_TIMEOUT_ENV = "LEDGER_CONNECT_TIMEOUT"
RETRY_DEADLINE_ENV = "LEDGER_RETRY_DEADLINE"
#: "no": psycopg never prepares statements (PgBouncer in transaction mode).
PREPARED_STATEMENTS_ENV = "LEDGER_PREPARED_STATEMENTS"


@dataclass(frozen=True)
class DatabaseTarget:
    backend: Literal["sqlite", "postgres"]
    sqlite_path: Path | None = None
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = field(default="", repr=False)
    dbname: str = ""
    schema: str = ""

    def library_env(
        self,
        bounds: OutageBounds | None = None,
        *,
        pool_size: int = 2,
        max_overflow: int = 18,
        prepared_statements: bool = True,
    ) -> dict[str, str]:
        """The eventsourcing library's own settings for this database."""
        bounds = bounds or OutageBounds()
        if self.backend == "sqlite":
            assert self.sqlite_path is not None
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "APPLICATION_RECORDER_TOPIC": "infrastructure.sqlite_store:SQLiteLedgerRecorder",
                "SQLITE_DBNAME": str(self.sqlite_path),
                "SQLITE_LOCK_TIMEOUT": str(round(bounds.sqlite_lock_timeout)),
            }
        return {
            "PERSISTENCE_MODULE": "infrastructure.postgres_outages:LedgerPostgresFactory",
            "APPLICATION_RECORDER_TOPIC": "infrastructure.postgres_store:PostgresLedgerRecorder",
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_SCHEMA": self.schema,
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(max_overflow),
            # The library's "connect timeout" is the pool's wait, in whole seconds; the
            # factory sets the exact one, and libpq's own, from the LEDGER_ values.
            "POSTGRES_CONNECT_TIMEOUT": str(max(1, math.ceil(bounds.pool_timeout))),
            "POSTGRES_LOCK_TIMEOUT": str(bounds.lock_timeout),
            POOL_TIMEOUT_ENV: str(bounds.pool_timeout),
            CONNECT_TIMEOUT_ENV: str(bounds.connect_timeout),
            RETRY_DEADLINE_ENV: str(bounds.retry_deadline),
            PREPARED_STATEMENTS_ENV: "yes" if prepared_statements else "no",
        }

    def describe(self) -> str:
        """The target without credentials, for logs and status lines (see also `redacted`)."""
        if self.backend == "sqlite":
            return f"sqlite:///{self.sqlite_path}"
        schema = f"?schema={self.schema}" if self.schema else ""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}{schema}"

    @property
    def conninfo(self) -> str:
        """A libpq connection string, for tools that talk to PostgreSQL directly."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=self.dbname,
        )


def parse_database_url(url: str) -> DatabaseTarget:
    """`sqlite:///relative.sqlite3`, `sqlite:////absolute.sqlite3` or
    `postgresql://user[:password]@host[:port]/dbname[?schema=name]`. A refusal quotes the
    URL with its password masked."""
    parts = urlsplit(url)
    shown = redacted(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if parts.netloc or not path.startswith("/") or len(path) < 2:
            raise InvalidDatabaseUrl(
                f"a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path, got {shown!r}"
            )
        # sqlite:///x is relative to the working directory; sqlite:////x is absolute.
        return DatabaseTarget(backend="sqlite", sqlite_path=Path(path[1:]).absolute())
    if parts.scheme in ("postgresql", "postgres"):
        dbname = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not dbname:
            raise InvalidDatabaseUrl(f"a PostgreSQL URL is postgresql://user@host:port/dbname, got {shown!r}")
        try:
            port = parts.port or 5432
        except ValueError:
            raise InvalidDatabaseUrl(f"the port in {shown!r} is not a number") from None
        query = parse_qs(parts.query)
        return DatabaseTarget(
            backend="postgres",
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            dbname=dbname,
            schema=query.get("schema", [""])[0],
        )
    raise InvalidDatabaseUrl(
        f"unsupported database URL {shown!r}: use sqlite:///path or postgresql://user@host/db"
    )
