"""The server process: its uvicorn worker factory, the directory several workers share,
and its garbage-collector tuning."""

from __future__ import annotations

import gc
import http.client
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from uvicorn.importer import import_from_string

from application.ports import StoredAnswer
from infrastructure.answer_stores import SharedAnswers
from infrastructure.settings import Settings
from interfaces import serving
from interfaces.serving import YOUNG_GENERATION_THRESHOLD, tune_garbage_collector
from tests.support.api import CONSOLE_SCRIPT, free_port, serve_refused
from tests.support.servers import wait_until_live


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_tuning_freezes_what_start_up_built_and_collects_young_objects_in_bigger_batches(
    restored_gc: None,
) -> None:
    _, middle, oldest = gc.get_threshold()

    tune_garbage_collector()

    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, middle, oldest)


def test_each_worker_builds_its_app_from_the_environment(
    restored_gc: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, signing_key_hex: str
) -> None:
    # uvicorn starts each of several workers from this import string (serve_api's factory).
    monkeypatch.setenv("DECISION_LEDGER_DATABASE_URL", f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    monkeypatch.setenv("DECISION_LEDGER_SIGNING_KEY", signing_key_hex)
    factory = import_from_string("interfaces.serving:worker_app")

    app = factory()

    assert isinstance(app, FastAPI)
    assert app.state.settings.database_url == f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD


def environment_without_settings() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("DECISION_LEDGER_")}


def two_workers(tmp_path: Path, signing_key_hex: str, **settings: Any) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        signing_key=signing_key_hex,
        workers=2,
        run_projections=False,
        **settings,
    )


def test_several_workers_share_answers_in_a_private_directory_removed_afterwards(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, signing_key_hex: str
) -> None:
    # serve_api hands the workers their settings through the environment: give it a copy.
    monkeypatch.setattr(os, "environ", environment_without_settings())
    seen: dict[str, Any] = {}

    def fake_uvicorn_run(target: str, **options: Any) -> None:
        directory = Path(os.environ["DECISION_LEDGER_SHARED_ANSWERS_DIR"])
        seen.update(target=target, workers=options["workers"], directory=directory)
        seen["mode"] = stat.S_IMODE(directory.stat().st_mode)

    monkeypatch.setattr(serving.uvicorn, "run", fake_uvicorn_run)
    settings = two_workers(tmp_path, signing_key_hex)

    serving.serve_api(settings)

    # The workers were pointed at a directory only this user can read, gone once they stopped.
    assert seen["target"] == "interfaces.serving:worker_app" and seen["workers"] == 2
    assert seen["mode"] == 0o700
    assert not seen["directory"].exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_a_shared_answers_directory_it_cannot_use(tmp_path: Path, workers: str) -> None:
    not_a_directory = tmp_path / "answers"
    not_a_directory.write_text("a file")

    result = serve_refused(tmp_path, "--workers", workers, shared_answers_dir=str(not_a_directory))

    # Refused before any worker starts or anything is written, in one line that names the directory.
    assert not (tmp_path / "ledger.sqlite3").exists()
    assert result.returncode != 0
    assert "cannot share answers in" in result.stderr
    assert str(not_a_directory) in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_forgets_answers_a_server_kept_in_a_directory_it_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, signing_key_hex: str
) -> None:
    # An earlier server kept an answer in the directory this one is configured with.
    monkeypatch.setattr(os, "environ", environment_without_settings())
    monkeypatch.setattr(serving.uvicorn, "run", lambda *arguments, **options: None)
    settings = two_workers(tmp_path, signing_key_hex, shared_answers_dir=tmp_path / "answers")
    kept = StoredAnswer(b"digest", 201, [], b"an answer of another life of the database", None)
    earlier = SharedAnswers(tmp_path / "answers", settings.replay_cache_bytes, settings.database().describe())
    earlier.put(("local", "/runs/r/decisions", b"d-1"), kept)
    earlier.close()

    serving.serve_api(settings)

    # The directory is the operator's, so it stays; what it held is forgotten.
    again = SharedAnswers(tmp_path / "answers", settings.replay_cache_bytes, settings.database().describe())
    try:
        assert again.get(("local", "/runs/r/decisions", b"d-1")) is None
    finally:
        again.close()
    assert (tmp_path / "answers").is_dir()


@pytest.mark.parametrize("workers", [1, 2])
def test_uvicorn_keeps_idle_connections_open_longer_than_a_load_balancer_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, signing_key_hex: str, workers: int
) -> None:
    monkeypatch.setattr(os, "environ", environment_without_settings())
    seen: dict[str, Any] = {}
    monkeypatch.setattr(serving.uvicorn, "run", lambda *arguments, **options: seen.update(options))
    monkeypatch.setattr(serving, "create_app", lambda settings: FastAPI())

    serving.serve_api(
        two_workers(tmp_path, signing_key_hex) if workers == 2 else one_worker(tmp_path, signing_key_hex)
    )

    # nginx's and AWS ALB's idle timeouts are 60 s: the proxy must be the side that closes.
    assert seen["timeout_keep_alive"] == Settings.model_fields["keep_alive_s"].default > 60


def one_worker(tmp_path: Path, signing_key_hex: str) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        signing_key=signing_key_hex,
        run_projections=False,
    )


def test_an_idle_keep_alive_connection_is_still_served_after_uvicorns_default_timeout(
    tmp_path: Path, signing_key_hex: str
) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    environment = environment_without_settings() | {"DECISION_LEDGER_SIGNING_KEY": signing_key_hex}
    with log.open("wb") as output:
        server = subprocess.Popen(
            [
                str(CONSOLE_SCRIPT),
                "serve",
                "--port",
                str(port),
                "--database-url",
                f"sqlite:///{tmp_path / 'l.sqlite3'}",
            ],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_live(server, f"http://127.0.0.1:{port}", log)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/healthz")
            first = connection.getresponse()
            first.read()
            assert first.status == 200
            kept = connection.sock

            # Idle past uvicorn's own default (5 s), where a request used to meet a closing socket.
            time.sleep(6.5)
            connection.request("GET", "/healthz")
            again = connection.getresponse()
            again.read()
            assert again.status == 200
            assert connection.sock is kept  # the same connection, not a new one
        finally:
            connection.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("value", ["0", "-5", "3601", "soon"])
def test_serve_refuses_a_keep_alive_it_cannot_use(tmp_path: Path, value: str) -> None:
    result = serve_refused(tmp_path, keep_alive_s=value)

    # Refused in one line naming the setting, before anything is written.
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "keep_alive_s" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ledger.sqlite3").exists()
