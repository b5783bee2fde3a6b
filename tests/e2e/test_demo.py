"""`decision-ledger demo --no-wait`: the three acts end as the story says, and a demo that
cannot start says why in one line. (The demo runs on its own embedded SQLite database.)"""

from __future__ import annotations

import re
import socket
import subprocess

from tests.support.api import CONSOLE_SCRIPT


def run_demo(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CONSOLE_SCRIPT), "demo", "--no-wait", *arguments],
        capture_output=True,
        text=True,
        timeout=240,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": "/tmp"},
    )


def test_the_demo_closes_green_red_then_green_with_every_proof_verified() -> None:
    finished = run_demo("--transactions", "300", "--seed", "11")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    story = finished.stdout
    assert "300 recorded, 90 replays answered, not recorded again" in story
    assert "verdict of attempt 1: COMMITTED" in story
    assert "the queue loses 15 decisions (5%)" in story
    assert "verdict of attempt 1: REJECTED" in story
    assert "│ missing │ 15" in story and "│ failed  │ 1" in story
    # The declines' webhooks went out through the ledger's dispatcher; the outage's action
    # was dead-lettered after its three attempts, then redelivered and delivered.
    assert story.count("the ledger's dispatcher delivered") >= 2  # the remediation may resend no decline
    assert "1 dead-lettered after 3 failed attempts" in story
    assert "the card processor is back" in story
    assert re.search(
        r"redelivered the dead-lettered block-card action \S+ \(same webhook-id\): delivered on"
        r" attempt 4, committed, ref blk-\d{5}",
        story,
    ), story
    assert "verdict of attempt 2: COMMITTED" in story
    assert story.count("verified offline against key") == 2
    assert "every run ended as the story says" in story
    assert "/console" in story


def test_a_demo_that_cannot_start_says_why_in_one_line() -> None:
    refused = run_demo("--transactions", "5")
    assert refused.returncode == 2
    assert "--transactions" in refused.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run_demo("--port", str(taken.getsockname()[1]))
        assert busy.returncode == 1, busy.stdout + busy.stderr
        assert busy.stderr.strip().splitlines() == [
            f"error: demo failed: port {taken.getsockname()[1]} on 127.0.0.1 cannot be used:"
            " Address already in use"
        ]
