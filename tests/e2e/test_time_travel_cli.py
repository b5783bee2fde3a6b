"""Time travel from the command line: `runs show --as-of` and `decisions show --as-of
--valid-at`, run as the installed console script against a SQLite file that the README's
story was written to through the application.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support.story import RUN_ID, Story, moment, shared_client, tell_the_story

CONSOLE_SCRIPT = Path(sys.executable).with_name("decision-ledger")


@dataclass(frozen=True)
class Shown:
    """What a `show` command printed: its title and its table of fields."""

    title: str
    fields: dict[str, str]


@dataclass(frozen=True)
class Ledger:
    """A SQLite ledger file holding the story, and the command line over it."""

    directory: Path
    database_url: str
    story: Story

    def run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("DECISION_LEDGER_")
        }
        # A wide console, so no value wraps onto a second line.
        environment.update(COLUMNS="250", NO_COLOR="1")
        return subprocess.run(
            [str(CONSOLE_SCRIPT), *arguments, "--database-url", self.database_url],
            capture_output=True,
            text=True,
            env=environment,
            cwd=self.directory,
            timeout=60,
            check=False,
        )

    def show(self, *arguments: str) -> Shown:
        completed = self.run(*arguments)
        assert completed.returncode == 0, completed.stderr
        lines = [line for line in completed.stdout.splitlines() if line.strip()]
        rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if line.startswith("│")]
        return Shown(title=lines[0].strip(), fields={name: value for name, value in rows})

    def refuses(self, *arguments: str) -> str:
        """Bad input: exit code 2 and one line on stderr, which it returns."""
        completed = self.run(*arguments)
        assert completed.returncode == 2, (completed.stdout, completed.stderr)
        assert completed.stdout == ""
        [line] = completed.stderr.splitlines()
        assert line.startswith("error: ")
        return line


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    directory = tmp_path_factory.mktemp("time-travel-cli")
    database_url = f"sqlite:///{directory / 'ledger.sqlite3'}"
    # The story is written through the application, and the views catch up with it before the API stops.
    with shared_client(database_url) as client:
        story = tell_the_story(client)
        assert client.get(f"/runs/{RUN_ID}/summary", params={"min_position": story.head}).status_code == 200
    yield Ledger(directory, database_url, story)


def test_runs_show_as_of_a_position_prints_the_summary_then(ledger: Ledger) -> None:
    # As of the first seal: attempt 1, sealed, with app-2 still missing.
    sealed = ledger.story.steps["sealed"]
    shown = ledger.show("runs", "show", RUN_ID, "--as-of", str(sealed.position))
    assert shown.title == f"run {RUN_ID} as of position {sealed.position}"
    assert (shown.fields["status"], shown.fields["attempt"], shown.fields["missing_count"]) == (
        "sealed",
        "1",
        "1",
    )
    assert shown.fields["as_of_position"] == str(sealed.position)

    # As of the commit: attempt 2, committed, nothing missing.
    committed = ledger.story.steps["committed"]
    shown = ledger.show("runs", "show", RUN_ID, "--as-of", str(committed.position))
    assert (shown.fields["status"], shown.fields["attempt"], shown.fields["missing_count"]) == (
        "committed",
        "2",
        "0",
    )


def test_runs_show_as_of_a_time_prints_the_summary_known_then(ledger: Ledger) -> None:
    # At the moment the first verdict became known, the run was rejected with app-2 missing.
    rejected = ledger.story.steps["rejected"]
    shown = ledger.show("runs", "show", RUN_ID, "--as-of", rejected.known_at)
    assert shown.title == f"run {RUN_ID} as of position {rejected.position}"
    assert (shown.fields["status"], shown.fields["attempt"], shown.fields["missing_count"]) == (
        "rejected",
        "1",
        "1",
    )


def test_decisions_show_prints_the_outcome_in_effect_then_as_known_then(ledger: Ledger) -> None:
    story = ledger.story
    decision_id = story.approval["decision_id"]
    decided_at = story.approval["recorded_at"]

    # At the decision time, as known when it was recorded: approve (version 1).
    shown = ledger.show(
        "decisions",
        "show",
        decision_id,
        "--as-of",
        str(story.steps["decided"].position),
        "--valid-at",
        decided_at,
    )
    assert (shown.fields["outcome"], shown.fields["version"]) == ("approve", "1")

    # At the same valid time, as known once the back-dated correction was recorded: decline.
    shown = ledger.show(
        "decisions",
        "show",
        decision_id,
        "--as-of",
        story.steps["corrected"].known_at,
        "--valid-at",
        decided_at,
    )
    assert (shown.fields["outcome"], shown.fields["version"]) == ("decline", "2")
    assert moment(shown.fields["valid_at"]) == moment(decided_at)

    # Before the decision time, no outcome was in effect.
    before = (moment(decided_at) - timedelta(seconds=1)).isoformat()
    assert "no outcome" in ledger.refuses("decisions", "show", decision_id, "--valid-at", before)


def test_a_malformed_as_of_exits_2_with_a_one_line_error(ledger: Ledger) -> None:
    # Neither a position nor a time.
    line = ledger.refuses("runs", "show", RUN_ID, "--as-of", "yesterday")
    assert line == "error: --as-of takes a position or an RFC 3339 time with an offset, got 'yesterday'"

    # A time without an offset names no instant.
    line = ledger.refuses(
        "decisions", "show", ledger.story.approval["decision_id"], "--as-of", "2026-01-31T14:00:00"
    )
    assert line == "error: --as-of must carry a UTC offset, e.g. 2026-01-31T14:00:00Z"
