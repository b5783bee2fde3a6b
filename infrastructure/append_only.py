"""Append-only enforcement: the one refusal every trigger raises, on both back ends, and
PostgreSQL's triggers that raise it."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.sql import SQL, Composed, Identifier

APPEND_ONLY_MESSAGE = "decision-ledger: the ledger is append-only; {operation} is refused"


#: Each trigger's name suffix, and when it fires.
_TRIGGERS = (
    ("append_only", "BEFORE UPDATE OR DELETE ON {table} FOR EACH ROW"),
    ("no_truncate", "BEFORE TRUNCATE ON {table} FOR EACH STATEMENT"),
)


def postgres_append_only_triggers(schema: str, tables: Sequence[str], refuse_function: str) -> list[Composed]:
    """Triggers that make each table refuse UPDATE, DELETE and TRUNCATE, by calling the
    schema's refusing function."""
    function = SQL("{}.{}").format(Identifier(schema), Identifier(refuse_function))
    return [
        SQL("CREATE OR REPLACE TRIGGER {trigger} " + when + " EXECUTE FUNCTION {function}()").format(
            trigger=Identifier(f"{table}_{suffix}"),
            table=SQL("{}.{}").format(Identifier(schema), Identifier(table)),
            function=function,
        )
        for table in tables
        for suffix, when in _TRIGGERS
    ]
