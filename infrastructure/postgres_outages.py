"""Bounded waits on a PostgreSQL server that is down, and recovery when it returns.

The library retries each failed call ten times, each attempt waiting for a pooled
connection up to its "connect timeout": with the server down, one call could wait
minutes. Here a call waits for a connection `pool_timeout` seconds at most, and retries
a failed attempt only while another full attempt still fits in `retry_deadline` (both
from Settings, through the environment, see `OutageBounds`). The API answers what is
still failing then with 503 and Retry-After. The pool keeps reconnecting in the
background, so the same process serves again once the server is back.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment
from psycopg_pool import PoolTimeout

from infrastructure.database import (
    CONNECT_TIMEOUT_ENV,
    POOL_TIMEOUT_ENV,
    PREPARED_STATEMENTS_ENV,
    RETRY_DEADLINE_ENV,
    OutageBounds,
)
from infrastructure.postgres_ddl import SerialisedAggregateRecorder, SerialisedTrackingRecorder

ResultT = TypeVar("ResultT")

#: Pause before the first retry; each later one pauses longer, up to MAX_PAUSE.
FIRST_PAUSE = 0.1
MAX_PAUSE = 0.5


class LedgerPostgresFactory(PostgresFactory):
    """The library's PostgreSQL factory, with the ledger's outage bounds applied to the
    connection pool it makes, and pinned on its datastore for the recorders sharing it.
    Its recorders make their tables under the schema's DDL lock (postgres_ddl.py)."""

    aggregate_recorder_class = SerialisedAggregateRecorder
    tracking_recorder_class = SerialisedTrackingRecorder

    def __init__(self, env: Environment):
        super().__init__(env)
        defaults = OutageBounds()
        pool = self.datastore.pool
        # psycopg_pool: how long getconn() waits when no connection is free or can be made.
        pool.timeout = float(self.env.get(POOL_TIMEOUT_ENV) or defaults.pool_timeout)
        connect_timeout = int(float(self.env.get(CONNECT_TIMEOUT_ENV) or defaults.connect_timeout))
        assert isinstance(pool.kwargs, dict)
        pool.kwargs["connect_timeout"] = max(2, connect_timeout)
        deadline = float(self.env.get(RETRY_DEADLINE_ENV) or defaults.retry_deadline)
        self.datastore.retry_deadline = deadline  # type: ignore[attr-defined]
        if (self.env.get(PREPARED_STATEMENTS_ENV) or "yes") == "no":
            # Behind PgBouncer in transaction mode: psycopg then never prepares a statement
            # (not even one run with prepare=True); the pool passes this to every connection.
            pool.kwargs["prepare_threshold"] = None


def retrying(datastore: PostgresDatastore, call: Callable[[], ResultT]) -> ResultT:
    """`call()`, attempted again after a connection or server failure while a whole new
    attempt (a pause, then at most the pool's wait) still fits in the datastore's deadline.
    An attempt that waited the pool's whole timeout is not retried: the pool was already
    retrying its connections all that time (the server is down, or every connection busy)."""
    deadline = float(getattr(datastore, "retry_deadline", OutageBounds.retry_deadline))
    pool_wait = float(datastore.pool.timeout)
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return call()
        except (InterfaceError, OperationalError) as error:
            if isinstance(error.__cause__, PoolTimeout):
                raise
            attempt += 1
            pause = min(FIRST_PAUSE * attempt, MAX_PAUSE) * random.uniform(0.8, 1.2)
            if time.monotonic() - started + pause + pool_wait > deadline:
                raise
            time.sleep(pause)
