"""Append-only enforcement: the one refusal every trigger raises, on both back ends, and
PostgreSQL's triggers that raise it."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.sql import SQL, Composed, Identifier

APPEND_ONLY_MESSAGE = "decision-ledger: the ledger is append-only; {operation} is refused"


def postgres_append_only_triggers(schema: str, tables: Sequence[str], refuse_function: str) -> list[Composed]:
    """Triggers that make each table refuse UPDATE, DELETE and TRUNCATE, by calling the
    schema's refusing function."""
    function = SQL("{}.{}").format(Identifier(schema), Identifier(refuse_function))
    statements: list[Composed] = []
    for table in tables:
        statements += [
            SQL(
                "CREATE OR REPLACE TRIGGER {trigger} BEFORE UPDATE OR DELETE ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION {function}()"
            ).format(
                trigger=Identifier(f"{table}_append_only"),
                table=SQL("{}.{}").format(Identifier(schema), Identifier(table)),
                function=function,
            ),
            SQL(
                "CREATE OR REPLACE TRIGGER {trigger} BEFORE TRUNCATE ON {table}"
                " FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            ).format(
                trigger=Identifier(f"{table}_no_truncate"),
                table=SQL("{}.{}").format(Identifier(schema), Identifier(table)),
                function=function,
            ),
        ]
    return statements
