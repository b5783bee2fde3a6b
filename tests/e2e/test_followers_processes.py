"""Several `serve` processes on one database, as on several hosts behind a load balancer:
one leads each projection, the others stand by and take over when it dies or is cut off.

Real processes, no special flags. On PostgreSQL (advisory locks) and on SQLite (file
locks, one host), except the partition test, which cuts a PostgreSQL connection.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
import pytest

from infrastructure.database import parse_database_url
from infrastructure.postgres_election import advisory_key, lock_ids
from tests.support.api import serve_refused
from tests.support.serve_processes import (
    PROJECTION_FOLLOWERS,
    ServeProcess,
    WriteLoad,
    close,
    leaders,
    led_by,
    open_run,
    projections_cli,
    record_decisions,
    serve_processes,
    wait_until,
)

#: Kill-and-take-over cycles per test (each kills the leader once): 2 by default (the
#: first process, then the survivor after a third joined); DECISION_LEDGER_FAILOVER_CYCLES=12
#: for the long run that would show a 1-in-10 failure (docs/deploying.md).
FAILOVER_CYCLES = int(os.environ.get("DECISION_LEDGER_FAILOVER_CYCLES", "2"))
#: The acceptance bound: a close sent to the survivor right after the kill succeeds within it.
FAILOVER_CLOSE_WITHIN_S = 15.0


def assert_quiet(*processes) -> None:
    for process in processes:
        assert process.trouble() == [], (process.name, process.log()[-4000:])


def taken_over(database_url: str, before: dict) -> bool:
    """Every follower is led again, each under a newer epoch than `before`."""
    now = leaders(database_url)
    return all(
        name in now and now[name].active and now[name].epoch > before[name].epoch
        for name in PROJECTION_FOLLOWERS
    )


def assert_views_equal_a_rebuild(database_url: str, directory: Path) -> None:
    result = projections_cli("verify", database_url, directory)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("identical to a rebuild") == len(PROJECTION_FOLLOWERS), result.stdout


def test_two_serve_processes_share_the_followers_without_conflicts(
    database_url: str, tmp_path: Path, signing_key_hex: str
) -> None:
    with serve_processes(database_url, tmp_path, signing_key_hex) as start:
        # Two processes, started the same way, on one database.
        first, second = start("first"), start("second")
        assert wait_until(lambda: all(name in leaders(database_url) for name in PROJECTION_FOLLOWERS), 15)

        # Writes reach both: runs opened on either, decisions alternating between them.
        run_ids = [f"run-{number}" for number in range(4)]
        with first.client() as one, second.client() as two:
            for index, run_id in enumerate(run_ids):
                open_run((one, two)[index % 2], run_id)
            loads = [WriteLoad(process, f"load-{process.name}") for process in (first, second)]
            for load in loads:
                load.__enter__()
            try:
                for run_id in run_ids:
                    inputs = [f"{run_id}-txn-{number}" for number in range(30)]
                    record_decisions(one, run_id, inputs[::2])
                    record_decisions(two, run_id, inputs[1::2])
            finally:
                for load in loads:
                    load.__exit__(None, None, None)
            assert all(load.written > 0 for load in loads)

            # Every run closes, on whichever process is asked.
            for index, run_id in enumerate([*run_ids, "load-first", "load-second"]):
                response = close((two, one)[index % 2], run_id)
                assert response.status_code == 200, response.text

        # One process led each projection; the other stood by.
        records = leaders(database_url)
        assert all(records[name].active for name in PROJECTION_FOLLOWERS)
        assert {records[name].pid for name in PROJECTION_FOLLOWERS} <= {first.pid, second.pid}
        assert all(records[name].epoch == 1 for name in PROJECTION_FOLLOWERS), records
        # The CLI names the leader of each follower.
        status = projections_cli("status", database_url, tmp_path)
        assert status.returncode == 0, status.stderr
        for name in PROJECTION_FOLLOWERS:
            line = next(line for line in status.stdout.splitlines() if name in line)
            assert f"pid {records[name].pid}" in line, status.stdout

    # Neither log shows a view conflict or a restarted follower; the views equal a rebuild.
    assert_quiet(first, second)
    assert_views_equal_a_rebuild(database_url, tmp_path)


def test_killing_the_leader_hands_the_projections_to_a_survivor(
    database_url: str, tmp_path: Path, signing_key_hex: str
) -> None:
    with serve_processes(database_url, tmp_path, signing_key_hex) as start:
        leader = start("process-0")
        assert wait_until(lambda: led_by(database_url, leader.pid), 15), leaders(database_url)
        survivor = start("process-1")
        killed = []
        for cycle in range(FAILOVER_CYCLES):
            # A run with decisions on the survivor, and writes going on while the leader dies.
            run_id = f"run-{cycle}"
            with survivor.client() as client:
                open_run(client, run_id)
                record_decisions(client, run_id, [f"txn-{number}" for number in range(10)])
            with WriteLoad(survivor, f"load-{cycle}"):
                time.sleep(0.3)
                leader.kill()
                killed_at = time.monotonic()
                killed.append(leader)

                # A close sent to the survivor succeeds within 15 s of the kill.
                with survivor.client() as client:
                    response = close(client, run_id)
                took = time.monotonic() - killed_at
                assert response.status_code == 200, (cycle, response.text, survivor.log()[-3000:])
                assert took < FAILOVER_CLOSE_WITHIN_S, (cycle, took)
                print(f"cycle {cycle}: close on the survivor answered {took:.2f} s after the kill")
            with survivor.client() as client:
                assert close(client, f"load-{cycle}").status_code == 200
            assert led_by(database_url, survivor.pid), leaders(database_url)

            # A new process joins; the survivor now leads, and is the next to be killed.
            leader, survivor = survivor, start(f"process-{cycle + 2}")

        records = leaders(database_url)
        assert all(records[name].epoch == FAILOVER_CYCLES + 1 for name in PROJECTION_FOLLOWERS), records

    assert_quiet(leader, survivor, *killed)
    assert_views_equal_a_rebuild(database_url, tmp_path)


@pytest.mark.postgres
def test_a_leader_cut_off_from_its_lock_stops_before_the_standby_takes_over(
    postgres_schema, tmp_path: Path, signing_key_hex: str
) -> None:
    database_url = postgres_schema.url
    target = parse_database_url(database_url)
    with serve_processes(database_url, tmp_path, signing_key_hex) as start:
        leader = start("leader")
        assert wait_until(lambda: led_by(database_url, leader.pid), 15)
        standby = start("standby")

        cut_off = []
        for cycle in range(FAILOVER_CYCLES):
            before = leaders(database_url)
            cut_off.append(leader)
            with WriteLoad(leader, f"load-{cycle}") as load:
                assert wait_until(lambda: load.written >= 20, 30)
                # The leader's lock connection is terminated; the process itself runs on.
                with psycopg.connect(target.conninfo, autocommit=True) as admin:
                    classid, objid = lock_ids(advisory_key(target.schema, "projection:runs"))
                    cut = admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                        " AND granted AND classid = %s::oid AND objid = %s::oid",
                        (classid, objid),
                    ).fetchall()
                assert cut == [(True,)]
                # Every follower is taken over, with a newer epoch (the standby stands first:
                # the cut-off process waits two polls before it stands again).
                assert wait_until(lambda seen=before: taken_over(database_url, seen), 15), leaders(
                    database_url
                )
            with leader.client() as client:
                assert close(client, f"load-{cycle}").status_code == 200
            runs_leader = leaders(database_url)["projection:runs"].pid
            leader, standby = (standby, leader) if runs_leader == standby.pid else (leader, standby)

        # The cut-off leader noticed and stopped its runners; the take-over waited for its
        # last batch (the fence), so nothing was applied twice.
        for process in cut_off:
            assert "lost the lead" in process.log(), process.log()[-3000:]
    assert_quiet(leader, standby)
    assert_views_equal_a_rebuild(database_url, tmp_path)


def test_roles_split_the_api_from_the_followers(
    database_url: str, tmp_path: Path, signing_key_hex: str
) -> None:
    with serve_processes(database_url, tmp_path, signing_key_hex) as start:
        # One process serves only the API; another (no HTTP) only follows the log.
        api = start("api", arguments=("--role", "api"))
        followers = ServeProcess(
            "followers", database_url, tmp_path, signing_key_hex, arguments=("--role", "followers")
        )
        followers.start_without_http()
        try:
            assert wait_until(lambda: led_by(database_url, followers.pid), 30), leaders(database_url)
            # A run written and closed through the API process: the followers process made the views.
            with api.client() as client:
                open_run(client, "run-roles")
                record_decisions(client, "run-roles", ["txn-1", "txn-2"])
                assert close(client, "run-roles").status_code == 200
                followers_here = client.get("/readyz").json()["detail"]["followers"]
            assert {entry["leader"]["pid"] for entry in followers_here} == {followers.pid}
        finally:
            followers.stop()
    assert_quiet(api, followers)


def test_an_unknown_role_is_refused_in_one_line(tmp_path: Path) -> None:
    result = serve_refused(tmp_path, "--role", "everything")

    assert result.returncode != 0
    assert "everything" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "ledger.sqlite3").exists()
