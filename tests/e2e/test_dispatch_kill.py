"""SIGKILL of `decision-ledger serve` while deliveries are in flight, then a restart:
every action ends committed, and the dedupe receiver counts exactly one effect per action.

The receiver applies each effect, then answers only after a pause, so at the kill some
attempts are applied and unanswered, some answered and unrecorded, some not sent yet.
The restarted server resends what has no recorded outcome (after the effector's
timeout), with the same webhook-id. Several kill/restart cycles per back end."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.api import CONSOLE_SCRIPT, free_port
from tests.support.servers import wait_until_live
from tests.support.webhook_receiver import ScriptedReceiver, serving

pytestmark = pytest.mark.slow

CYCLES = 6
ACTIONS_PER_CYCLE = 12


def start_server(
    database_url: str, signing_key_hex: str, workdir: Path, effectors: Path, port: int
) -> tuple[subprocess.Popen[bytes], Path]:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("DECISION_LEDGER_")
    }
    environment |= {
        "DECISION_LEDGER_SIGNING_KEY": signing_key_hex,
        "DECISION_LEDGER_DISPATCH_CONCURRENCY": "4",
    }
    log = workdir / f"server-{time.monotonic_ns()}.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [
                str(CONSOLE_SCRIPT),
                *("serve", "--port", str(port), "--database-url", database_url),
                *("--effectors-file", str(effectors)),
            ],
            cwd=workdir,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return server, log


def post(
    client: httpx.Client, path: str, key: str, body: dict[str, object] | None = None
) -> dict[str, object]:
    response = client.post(path, json=body, headers={"Idempotency-Key": key})
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_sigkill_mid_delivery_then_restart_commits_each_action_once(
    database_url: str, signing_key_hex: str, tmp_path: Path
) -> None:
    receiver = ScriptedReceiver(script=["hang"], hang_s=0.4)
    with serving(receiver) as url:
        effectors = tmp_path / "effectors.toml"
        effectors.write_text(
            f'[[effectors]]\nname = "card-service"\nurl = "{url}"\nkinds = ["block-card"]\n'
            f'secret = "{receiver.secret}"\ntimeout_s = 1\nretry_schedule_s = [0, 0.2, 0.2, 0.2, 0.2]\n'
        )
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        server, log = start_server(database_url, signing_key_hex, tmp_path, effectors, port)
        action_ids: list[str] = []
        try:
            for cycle in range(CYCLES):
                wait_until_live(server, base_url, log)
                with httpx.Client(base_url=base_url, timeout=30) as client:
                    run_id = f"cards-{cycle}"
                    post(client, "/runs", f"open-{run_id}", {"run_id": run_id, "lane": "cards"})
                    inputs = [f"card-{n}" for n in range(ACTIONS_PER_CYCLE)]
                    post(client, f"/runs/{run_id}/basis", f"basis-{run_id}", {"input_ids": inputs})
                    already_sent = len(receiver.requests)
                    for input_id in inputs:
                        decision = post(
                            client,
                            f"/runs/{run_id}/decisions",
                            f"decide-{run_id}-{input_id}",
                            {
                                "input_id": input_id,
                                "outcome": "block",
                                "model": {"name": "gbm", "version": "7"},
                            },
                        )
                        action = post(
                            client,
                            f"/runs/{run_id}/actions",
                            f"block-{run_id}-{input_id}",
                            {"decision_id": decision["decision_id"], "kind": "block-card"},
                        )
                        action_ids.append(str(action["action_id"]))
                # Kill while deliveries are in flight: some sent, not all answered.
                deadline = time.monotonic() + 30
                while len(receiver.requests) < already_sent + 3:
                    assert time.monotonic() < deadline, "no delivery started"
                    time.sleep(0.005)
                server.send_signal(signal.SIGKILL)
                server.wait(timeout=30)
                server, log = start_server(database_url, signing_key_hex, tmp_path, effectors, port)

            # After the last restart, every action of every cycle ends committed.
            wait_until_live(server, base_url, log)
            with httpx.Client(base_url=base_url, timeout=30) as client:
                deadline = time.monotonic() + 120
                for action_id in action_ids:
                    while (action := client.get(f"/actions/{action_id}").json())["status"] != "committed":
                        assert action["status"] == "requested", action
                        assert time.monotonic() < deadline, action
                        time.sleep(0.05)
                    assert action["external_ref"] == f"ref-{action_id[:8]}"
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    # Exactly one effect per action, however many times each was sent.
    assert receiver.effects == dict.fromkeys(action_ids, 1)
    # Some were sent more than once (the kills caught them in flight): the dedupe held.
    assert len(receiver.requests) > len(action_ids)
