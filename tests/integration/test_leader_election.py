"""One leader per follower name across processes: the election itself, in one process
with one election object per "process", on SQLite (file locks) and PostgreSQL
(advisory locks)."""

from __future__ import annotations

import threading

import psycopg
import pytest

from application.election import Candidacy, LeaderElection, Leadership, LeadershipLost
from application.ledger import DecisionLedger
from infrastructure.database import parse_database_url
from infrastructure.file_election import FileLockElection
from infrastructure.postgres_election import PostgresElection, advisory_key
from infrastructure.view_store import ViewStore, open_view_store


def election_on(database_url: str) -> LeaderElection:
    target = parse_database_url(database_url)
    if target.sqlite_path is not None:
        return FileLockElection(target.sqlite_path)
    return PostgresElection(target)


@pytest.fixture
def elections(ledger: DecisionLedger, database_url: str):
    made = [election_on(database_url) for _ in range(3)]
    try:
        yield made
    finally:
        for election in made:
            election.close()


def a_view_store(ledger: DecisionLedger) -> ViewStore:
    return open_view_store(
        ledger.factory.datastore, projection="fencetest", generation=1, upstream=ledger.name
    )  # type: ignore[attr-defined]


def test_one_process_leads_a_name_and_the_others_stand_by(elections: list[LeaderElection]) -> None:
    first, second, third = elections

    leader = first.try_lead("projection:runs")

    # Nobody else takes the same name; another name is free.
    assert leader is not None and leader.still_held()
    assert second.try_lead("projection:runs") is None
    assert third.try_lead("projection:runs") is None
    other = second.try_lead("projection:audit")
    assert other is not None
    # The status shows who leads, and that they hold it.
    records = third.leaders()
    assert records["projection:runs"].active and records["projection:runs"].epoch == leader.epoch
    assert records["projection:audit"].active


def test_a_release_lets_a_standby_take_over_with_a_newer_epoch(elections: list[LeaderElection]) -> None:
    first, second, _ = elections
    leader = first.try_lead("dispatcher")
    assert leader is not None

    leader.release()
    successor = second.try_lead("dispatcher")

    assert not leader.still_held()
    assert successor is not None and successor.epoch == leader.epoch + 1
    assert first.try_lead("dispatcher") is None


def test_the_old_leaders_fence_refuses_its_writes_once_a_successor_took_over(
    ledger: DecisionLedger, elections: list[LeaderElection]
) -> None:
    first, second, _ = elections
    store = a_view_store(ledger)
    leader = first.try_lead("projection:runs")
    assert leader is not None
    old_fence = leader.fence()
    canary = store.table("canary")
    with store.cursor(commit=True) as cursor:
        cursor.execute(f"CREATE TABLE {canary} (x INTEGER)")
        old_fence.check(cursor)  # current: passes

    leader.release()
    successor = second.try_lead("projection:runs")
    assert successor is not None

    # The old leader's write transaction fails its fence and commits nothing.
    with pytest.raises(LeadershipLost), store.cursor(commit=True) as cursor:
        cursor.execute(f"INSERT INTO {canary} VALUES (1)")
        old_fence.check(cursor)
    assert store.fetchall(f"SELECT x FROM {canary}") == []
    with store.cursor(commit=True) as cursor:
        successor.fence().check(cursor)


def test_a_candidacy_polls_and_takes_over_when_the_leader_goes(elections: list[LeaderElection]) -> None:
    first, second, _ = elections
    now = [0.0]
    leading = Candidacy(first, "projection:audit", poll_s=2.0, clock=lambda: now[0])
    standby = Candidacy(second, "projection:audit", poll_s=2.0, clock=lambda: now[0])

    assert leading.leading()
    assert not standby.leading()
    leading.resign()
    # Within its poll interval the standby does not try again...
    now[0] = 1.0
    assert not standby.leading()
    # ...and after it, it takes the lead.
    now[0] = 2.5
    assert standby.leading()
    assert not leading.leading()


def test_a_candidacy_that_lost_its_lock_lets_the_standbys_stand_first(
    elections: list[LeaderElection],
) -> None:
    first = elections[0]
    now = [0.0]
    leading = Candidacy(first, "projection:runs", poll_s=2.0, clock=lambda: now[0])
    assert leading.leading()
    leadership = leading.leadership
    assert leadership is not None

    # The lock goes (released behind the candidacy's back, as a cut connection would).
    leadership.release()
    assert not leading.leading()

    # One poll later it does not stand yet; two polls later it does.
    now[0] = 2.5
    assert not leading.leading()
    now[0] = 4.5
    assert leading.leading()


@pytest.mark.postgres
def test_postgres_a_terminated_lock_connection_loses_the_lead(postgres_schema) -> None:
    target = parse_database_url(postgres_schema.url)
    first, second = PostgresElection(target), PostgresElection(target)
    try:
        leader = first.try_lead("projection:runs")
        assert leader is not None
        # The leader's lock connection is cut from the server side.
        with psycopg.connect(target.conninfo, autocommit=True) as admin:
            key = advisory_key(target.schema, "projection:runs")
            terminated = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                " AND objid = %s::oid AND granted",
                (key & 0xFFFFFFFF,),
            ).fetchall()
        assert terminated == [(True,)]

        assert not leader.still_held()
        successor = second.try_lead("projection:runs")
        assert successor is not None and successor.epoch == leader.epoch + 1
        # The first process may stand again later, and finds the lead taken.
        assert first.try_lead("projection:runs") is None
    finally:
        first.close()
        second.close()


def test_a_take_over_waits_for_the_old_leaders_batch_in_flight(
    ledger: DecisionLedger, elections: list[LeaderElection]
) -> None:
    first, second, _ = elections
    store = a_view_store(ledger)
    canary = store.table("canary")
    with store.cursor(commit=True) as cursor:
        cursor.execute(f"CREATE TABLE {canary} (x INTEGER)")
    leader = first.try_lead("projection:runs")
    assert leader is not None
    old_fence = leader.fence()
    taken: list[Leadership | None] = []
    with store.cursor(commit=True) as cursor:
        # A batch of the old leader passed its fence, and is still writing...
        old_fence.check(cursor)
        cursor.execute(f"INSERT INTO {canary} VALUES (1)")
        # ...when it loses its lock and a standby takes over.
        leader.release()
        taking_over = threading.Thread(target=lambda: taken.append(second.try_lead("projection:runs")))
        taking_over.start()
        taking_over.join(timeout=1.0)
        # The take-over waits for the batch.
        assert taking_over.is_alive() and not taken
    # The batch committed; then the take-over completed, with a newer epoch.
    taking_over.join(timeout=30)
    successor = taken[0]
    assert successor is not None and successor.epoch == leader.epoch + 1
    assert store.fetchall(f"SELECT x FROM {canary}") == [{"x": 1}]
    # The old leader's next batch is refused.
    with pytest.raises(LeadershipLost), store.cursor(commit=True) as cursor:
        old_fence.check(cursor)
        cursor.execute(f"INSERT INTO {canary} VALUES (2)")
    assert store.fetchall(f"SELECT x FROM {canary}") == [{"x": 1}]


def test_a_followers_last_error_is_kept_until_the_next_take_over(elections: list[LeaderElection]) -> None:
    first, second, third = elections
    leader = first.try_lead("projection:audit")
    assert leader is not None

    leader.report_error("OperationalError: the server closed the connection")

    record = third.leaders()["projection:audit"]
    assert record.last_error == "OperationalError: the server closed the connection"
    assert record.last_error_at is not None
    # A new leader starts with a clean slate.
    leader.release()
    assert second.try_lead("projection:audit") is not None
    assert third.leaders()["projection:audit"].last_error is None
