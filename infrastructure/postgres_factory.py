"""The library's PostgreSQL infrastructure factory, with psycopg's prepared statements
made optional.

psycopg prepares a statement on the server once it has run five times on a connection.
Behind PgBouncer in transaction mode consecutive transactions may run on different
server connections, where that prepared statement does not exist; with
POSTGRES_PREPARED_STATEMENTS=no every connection of the pool is opened with
`prepare_threshold=None`, which turns preparing off (even for an explicit `prepare=True`).
"""

from __future__ import annotations

from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import Environment, EnvType, strtobool


class LedgerPostgresFactory(PostgresFactory):
    POSTGRES_PREPARED_STATEMENTS = "POSTGRES_PREPARED_STATEMENTS"

    def __init__(self, env: Environment | EnvType) -> None:
        super().__init__(env)
        if not strtobool(self.env.get(self.POSTGRES_PREPARED_STATEMENTS) or "yes"):
            # The pool has not opened yet (it opens on first use) and passes these keyword
            # arguments to every connection it makes.
            kwargs = self.datastore.pool.kwargs
            assert isinstance(kwargs, dict)  # the library passes a dict
            kwargs["prepare_threshold"] = None
