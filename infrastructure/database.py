"""One database URL chooses the back end. This is the only place that parses it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from domain.errors import InvalidCommand

DEFAULT_DATABASE_URL = "sqlite:///decision-ledger.sqlite3"


class InvalidDatabaseUrl(InvalidCommand):
    slug = "invalid-database-url"


@dataclass(frozen=True)
class DatabaseTarget:
    backend: Literal["sqlite", "postgres"]
    sqlite_path: Path | None = None
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = ""
    dbname: str = ""
    schema: str = ""

    def library_env(self, *, pool_size: int = 2, max_overflow: int = 18) -> dict[str, str]:
        """The eventsourcing library's own settings for this database."""
        if self.backend == "sqlite":
            assert self.sqlite_path is not None
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "APPLICATION_RECORDER_TOPIC": "infrastructure.sqlite_store:SQLiteLedgerRecorder",
                "SQLITE_DBNAME": str(self.sqlite_path),
                "SQLITE_LOCK_TIMEOUT": "30",
            }
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "APPLICATION_RECORDER_TOPIC": "infrastructure.postgres_store:PostgresLedgerRecorder",
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_SCHEMA": self.schema,
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(max_overflow),
            "POSTGRES_CONNECT_TIMEOUT": "10",
            "POSTGRES_LOCK_TIMEOUT": "10",
        }

    def describe(self) -> str:
        """The target without credentials, for logs and status lines."""
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
    `postgresql://user[:password]@host[:port]/dbname[?schema=name]`."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if parts.netloc or not path.startswith("/") or len(path) < 2:
            raise InvalidDatabaseUrl(
                f"a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path, got {url!r}"
            )
        # sqlite:///x is relative to the working directory; sqlite:////x is absolute.
        return DatabaseTarget(backend="sqlite", sqlite_path=Path(path[1:]).absolute())
    if parts.scheme in ("postgresql", "postgres"):
        dbname = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not dbname:
            raise InvalidDatabaseUrl(f"a PostgreSQL URL is postgresql://user@host:port/dbname, got {url!r}")
        try:
            port = parts.port or 5432
        except ValueError:
            raise InvalidDatabaseUrl(f"the port in {url!r} is not a number") from None
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
        f"unsupported database URL {url!r}: use sqlite:///path or postgresql://user@host/db"
    )
