"""The dispatch command line: `dispatch run` on its own, `actions list`, `actions redeliver`,
and the one-line refusals of a bad effectors file (nothing starts, nothing is written)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from domain.commands import FailAction
from tests.support.api import CONSOLE_SCRIPT, serve_refused
from tests.support.dispatch import (
    ledger_service,
    open_run_with_decisions,
    request,
    settled,
    wait_for_action,
)
from tests.support.webhook_receiver import ScriptedReceiver, new_secret, serving


def cli(*arguments: str, **settings: str) -> subprocess.CompletedProcess[str]:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("DECISION_LEDGER_")
    }
    environment |= {f"DECISION_LEDGER_{name.upper()}": value for name, value in settings.items()}
    environment["COLUMNS"] = "250"  # tables print whole IDs
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *arguments], env=environment, capture_output=True, text=True, timeout=120
    )


def effectors_toml(path: Path, url: str, secret: str) -> Path:
    path.write_text(
        f'[[effectors]]\nname = "card-service"\nurl = "{url}"\nkinds = ["block-card"]\n'
        f'secret = "{secret}"\ntimeout_s = 2\nretry_schedule_s = [0, 0.1]\n'
    )
    return path


def test_a_bad_effectors_file_stops_serve_and_dispatch_run_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "effectors.toml"
    bad.write_text('[[effectors]]\nname = "card-service"\nurl = "ftp://x/hooks"\nkinds = ["block-card"]\n')

    refused = serve_refused(tmp_path, "--effectors-file", str(bad))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("error: the effectors file")
    assert "url must be an http:// or https:// URL" in refused.stderr
    assert not (tmp_path / "ledger.sqlite3").exists()  # nothing started, nothing written

    database = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    for result in (
        cli("dispatch", "run", "--database-url", database, "--effectors-file", str(bad)),
        cli("dispatch", "run", "--database-url", database, effectors_file=str(tmp_path / "absent.toml")),
        cli("dispatch", "run", "--database-url", database),
    ):
        assert result.returncode == 2, result
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: "), (
            result.stderr
        )
    assert "no effectors file" in result.stderr
    assert not (tmp_path / "other.sqlite3").exists()


def test_dispatch_run_alone_delivers_and_stops_on_sigterm(
    database_url: str, signing_key_hex: str, tmp_path: Path
) -> None:
    receiver = ScriptedReceiver(script=["ok"])
    with serving(receiver) as url, ledger_service(database_url, signing_key_hex) as service:
        # This process follows the log (as `serve` would); the dispatcher runs alone.
        effectors = effectors_toml(tmp_path / "effectors.toml", url, receiver.secret)
        environment = {
            name: value for name, value in os.environ.items() if not name.startswith("DECISION_LEDGER_")
        }
        dispatcher = subprocess.Popen(
            [
                str(CONSOLE_SCRIPT),
                "dispatch",
                "run",
                "--database-url",
                database_url,
                "--effectors-file",
                str(effectors),
            ],
            env=environment,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            open_run_with_decisions(service, ["card-1", "card-2"])
            action_ids = [request(service, "card-1"), request(service, "card-2")]
            for action_id in action_ids:
                view = wait_for_action(service, action_id, settled)
                assert view.status == "committed" and view.deliveries[0]["effector"] == "card-service"
        finally:
            dispatcher.send_signal(signal.SIGTERM)
            _, stderr = dispatcher.communicate(timeout=60)
        assert dispatcher.returncode == 0, stderr
        assert "dispatcher on" in stderr and "card-service" in stderr
        assert receiver.effects == {str(action_id): 1 for action_id in action_ids}


def test_actions_list_and_redeliver(database_url: str, signing_key_hex: str) -> None:
    with ledger_service(database_url, signing_key_hex) as service:
        open_run_with_decisions(service, ["card-1", "card-2"])
        failed = request(service, "card-1")
        pending = request(service, "card-2")
        result = service.commands.actions.fail(
            FailAction(token="fail-1", actor="lane-a", action_id=failed, error="card service down")
        )
        assert service.projections.wait_for(result.position, timeout=30)

    # `actions list --status failed` shows the failed action only.
    listed = cli("actions", "list", "--status", "failed", "--json", "--database-url", database_url)
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    assert [action["action_id"] for action in page["actions"]] == [str(failed)]
    assert page["actions"][0]["last_error"] == "card service down"
    table = cli("actions", "list", "--run-id", "cards-2026-12-02", "--database-url", database_url)
    assert str(failed)[:8] in table.stdout and str(pending)[:8] in table.stdout

    # Redeliver it; the same key again is a replay; another key is refused (already pending).
    first = cli(
        "actions", "redeliver", str(failed), "--idempotency-key", "k-1", "--database-url", database_url
    )
    assert first.returncode == 0, first.stderr
    assert "will be redelivered" in first.stdout and "replay" not in first.stdout
    again = cli(
        "actions", "redeliver", str(failed), "--idempotency-key", "k-1", "--database-url", database_url
    )
    assert again.returncode == 0 and "a replay" in again.stdout
    other = cli(
        "actions", "redeliver", str(failed), "--idempotency-key", "k-2", "--database-url", database_url
    )
    assert (
        other.returncode == 2
        and other.stderr.strip() == f"error: action {failed} is already being redelivered"
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("actions", "redeliver", "not-a-uuid"), "'not-a-uuid' is not an action ID (a UUID)"),
        (("actions", "redeliver", "00000000-0000-0000-0000-000000000001"), "not found"),
        (("actions", "list", "--status", "lost"), "status must be one of"),
        (("actions", "list", "--kind", "bad kind"), "kind must match"),
        (("actions", "list", "--after", "x"), "after must be an action ID"),
    ],
)
def test_bad_action_commands_are_one_line(
    database_url: str, arguments: tuple[str, ...], message: str
) -> None:
    result = cli(*arguments, "--database-url", database_url)
    assert result.returncode == 2, result
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr


def test_a_secret_is_never_printed(tmp_path: Path) -> None:
    secret = new_secret()
    path = tmp_path / "effectors.toml"
    path.write_text(
        f'[[effectors]]\nname = "x"\nurl = "http://127.0.0.1:1/"\nkinds = ["a", "a"]\nsecret = "{secret}"\n'
    )
    result = cli(
        "dispatch",
        "run",
        "--database-url",
        f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "--effectors-file",
        str(path),
    )
    assert result.returncode == 2 and secret not in result.stderr + result.stdout
