"""One dispatcher across several `serve` processes on one database, as on several hosts.

Every process is given the same effectors file and stands for the follower "dispatcher",
as for the projections: one delivers, the others stand by. SIGKILL the one that delivers:
a survivor takes over and delivers what is pending. Real processes, no special flags, a
receiver on 127.0.0.1; on PostgreSQL (advisory locks) and SQLite (file locks).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from application.election import LeaderRecord
from tests.support.api import decision_body, keyed
from tests.support.serve_processes import (
    ServeProcess,
    leaders,
    open_run,
    projections_cli,
    serve_processes,
    wait_until,
)
from tests.support.webhook_receiver import ScriptedReceiver, serving

DISPATCHER = "dispatcher"
#: Kill-and-take-over cycles (each kills the process that delivers): 2 by default,
#: DECISION_LEDGER_FAILOVER_CYCLES=12 for the long run (as for the projections).
FAILOVER_CYCLES = int(os.environ.get("DECISION_LEDGER_FAILOVER_CYCLES", "2"))
#: Actions requested at each step.
ACTIONS = 10
#: Every action requested is delivered within this (a take-over, plus the wait before an
#: attempt cut short by the kill is presumed lost: the effector's timeout, plus a second).
DELIVERED_WITHIN_S = 30.0


def write_effectors(directory: Path, url: str, secret: str) -> Path:
    path = directory / "effectors.toml"
    path.write_text(
        f'[[effectors]]\nname = "card-service"\nurl = "{url}"\nkinds = ["block-card"]\n'
        f'secret = "{secret}"\ntimeout_s = 1\nretry_schedule_s = [0, 0.2, 0.2, 0.2]\n'
    )
    return path


def request_actions(client: httpx.Client, run_id: str, count: int) -> list[str]:
    """A run with `count` decisions, each with an action requested: their action IDs."""
    open_run(client, run_id)
    action_ids = []
    for number in range(count):
        input_id = f"{run_id}-txn-{number}"
        decision = client.post(
            f"/runs/{run_id}/decisions", json=decision_body(input_id), headers=keyed(f"decide-{input_id}")
        )
        assert decision.status_code == 201, decision.text
        action = client.post(
            f"/runs/{run_id}/actions",
            json={"decision_id": decision.json()["decision_id"], "kind": "block-card"},
            headers=keyed(f"block-{input_id}"),
        )
        assert action.status_code == 201, action.text
        action_ids.append(action.json()["action_id"])
    return action_ids


def wait_committed(client: httpx.Client, action_ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for action_id in action_ids:
        while (action := client.get(f"/actions/{action_id}").json())["status"] != "committed":
            assert action["status"] == "requested", action
            assert time.monotonic() < deadline, action
            time.sleep(0.05)


def dispatcher_leader(database_url: str) -> LeaderRecord | None:
    record = leaders(database_url).get(DISPATCHER)
    return record if record is not None and record.active else None


def metric(process: ServeProcess, prefix: str) -> float:
    """The sum of the samples whose line starts with `prefix`, in the process's /metrics."""
    with process.client() as client:
        text = client.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def deliveries(process: ServeProcess) -> float:
    return metric(process, "decision_ledger_deliveries_total{")


def test_one_serve_process_dispatches_and_a_survivor_takes_over(
    database_url: str, tmp_path: Path, signing_key_hex: str
) -> None:
    receiver = ScriptedReceiver(script=["ok"])
    with serving(receiver) as url, serve_processes(database_url, tmp_path, signing_key_hex) as start:
        arguments = ("--effectors-file", str(write_effectors(tmp_path, url, receiver.secret)))
        processes = [start("process-0", arguments=arguments), start("process-1", arguments=arguments)]
        assert wait_until(lambda: dispatcher_leader(database_url) is not None, 15), leaders(database_url)

        # Actions requested through both processes: one process delivers them, each once.
        action_ids: list[str] = []
        for index, process in enumerate(processes):
            with process.client() as client:
                action_ids += request_actions(client, f"run-{index}", ACTIONS)
        with processes[0].client() as client:
            wait_committed(client, action_ids, DELIVERED_WITHIN_S)
        assert [len(receiver.requests_for(action_id)) for action_id in action_ids] == [1] * len(action_ids)
        leader = dispatcher_leader(database_url)
        assert leader is not None and leader.epoch == 1
        assert {process.pid: deliveries(process) for process in processes} == {
            process.pid: len(action_ids) if process.pid == leader.pid else 0 for process in processes
        }
        assert sum(process.log().count(f"leading {DISPATCHER}") for process in processes) == 1
        # The leader is visible like the projections': /readyz, metrics, `projections status`.
        for process in processes:
            with process.client() as client:
                followers = client.get("/readyz").json()["detail"]["followers"]
            shown = next(entry for entry in followers if entry["name"] == DISPATCHER)
            assert shown["leader"]["pid"] == leader.pid, followers
            here = metric(process, f'decision_ledger_follower_leader{{follower="{DISPATCHER}"}}')
            assert here == (1.0 if process.pid == leader.pid else 0.0)
        status = projections_cli("status", database_url, tmp_path)
        assert status.returncode == 0, status.stderr
        line = next(line for line in status.stdout.splitlines() if DISPATCHER in line)
        assert f"pid {leader.pid}" in line, status.stdout

        killed: list[ServeProcess] = []
        for cycle in range(FAILOVER_CYCLES):
            record = dispatcher_leader(database_url)
            assert record is not None
            leading = next(process for process in processes if process.pid == record.pid)
            survivor = next(process for process in processes if process is not leading)
            with survivor.client() as client:
                # Some actions pending as the leader dies, more requested while none leads.
                before_kill = request_actions(client, f"before-kill-{cycle}", ACTIONS)
                leading.kill()
                killed_at = time.monotonic()
                killed.append(leading)
                after_kill = request_actions(client, f"after-kill-{cycle}", ACTIONS)
                wait_committed(client, before_kill + after_kill, DELIVERED_WITHIN_S)
            took = time.monotonic() - killed_at
            print(f"cycle {cycle}: every pending action delivered {took:.2f} s after the kill")
            taken_over = dispatcher_leader(database_url)
            assert taken_over is not None, leaders(database_url)
            assert (taken_over.pid, taken_over.epoch) == (survivor.pid, record.epoch + 1)
            # What was requested after the kill was sent once, by the survivor.
            assert [len(receiver.requests_for(action_id)) for action_id in after_kill] == [1] * ACTIONS
            action_ids += before_kill + after_kill
            # A new process joins and stands by; the survivor is the next to be killed.
            processes = [survivor, start(f"process-{cycle + 2}", arguments=arguments)]

    # One effect per action: an attempt the kill cut short was sent again with the same
    # webhook-id, and the receiver applied it once.
    assert receiver.effects == dict.fromkeys(action_ids, 1)
    for process in [*processes, *killed]:
        assert process.trouble() == [], (process.name, process.log()[-4000:])
