"""Real `decision-ledger serve` processes on one database, as an operator runs them on
several hosts: no special flag, one shared signing key, each on a loopback port of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from application.election import LeaderRecord
from application.projections.runtime import PROJECTION_KINDS
from infrastructure.database import parse_database_url
from infrastructure.settings import Settings
from interfaces.bootstrap import election_for
from tests.support.api import CONSOLE_SCRIPT, decision_body, free_port, keyed

PROJECTION_FOLLOWERS = tuple(f"projection:{name}" for name in PROJECTION_KINDS)
#: What a log must never show when several processes share the followers.
TROUBLE = ("duplicate key", "violates unique constraint", "restarting it", "Traceback")


@dataclass
class ServeProcess:
    name: str
    database_url: str
    directory: Path
    signing_key_hex: str
    extra_env: dict[str, str] = field(default_factory=dict)
    arguments: tuple[str, ...] = ()
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> ServeProcess:
        """Start it and wait until it answers HTTP."""
        self.start_without_http()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
                try:
                    if client.get(f"{self.base_url}/healthz").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"{self.name} did not answer within {timeout} s:\n{self.log()}")

    def start_without_http(self) -> ServeProcess:
        """Start it (a process of `--role followers` serves no HTTP)."""
        self.port = free_port()
        environment = {
            name: value for name, value in os.environ.items() if not name.startswith("DECISION_LEDGER_")
        }
        environment |= {"DECISION_LEDGER_SIGNING_KEY": self.signing_key_hex, "PYTHONUNBUFFERED": "1"}
        environment |= self.extra_env
        command = [
            str(CONSOLE_SCRIPT),
            "serve",
            "--port",
            str(self.port),
            "--database-url",
            self.database_url,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, *self.arguments],
                cwd=self.directory,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to release anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """Ctrl-C, as an operator stops it; SIGKILL if it does not stop in time."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def trouble(self) -> list[str]:
        return [line for line in self.log().splitlines() if any(word in line for word in TROUBLE)]


@contextmanager
def serve_processes(
    database_url: str, directory: Path, signing_key_hex: str
) -> Iterator[Callable[..., ServeProcess]]:
    """A factory of started serve processes, every one stopped on the way out."""
    started: list[ServeProcess] = []

    def start(name: str, **options: Any) -> ServeProcess:
        process = ServeProcess(name, database_url, directory, signing_key_hex, **options)
        started.append(process)
        return process.start()

    try:
        yield start
    finally:
        for process in started:
            process.stop()


def leaders(database_url: str) -> dict[str, LeaderRecord]:
    election = election_for(Settings(database_url=database_url))
    try:
        return election.leaders()
    finally:
        election.close()


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def led_by(database_url: str, pid: int) -> bool:
    """Every projection is led, actively, by this process."""
    records = leaders(database_url)
    return all(
        name in records and records[name].active and records[name].pid == pid for name in PROJECTION_FOLLOWERS
    )


def open_run(client: httpx.Client, run_id: str) -> None:
    response = client.post("/runs", json={"run_id": run_id, "lane": "fraud"}, headers=keyed(f"open-{run_id}"))
    assert response.status_code == 201, response.text


def record_decisions(client: httpx.Client, run_id: str, input_ids: list[str]) -> None:
    for input_id in input_ids:
        response = client.post(
            f"/runs/{run_id}/decisions",
            json=decision_body(input_id),
            headers=keyed(f"decide-{run_id}-{input_id}"),
        )
        assert response.status_code == 201, response.text


def close(client: httpx.Client, run_id: str) -> httpx.Response:
    return client.post(f"/runs/{run_id}/close", headers=keyed(f"close-{run_id}"))


class WriteLoad:
    """Decisions posted in a background thread, to keep the followers busy while a test
    kills or cuts a process; it tolerates the refusals of a process being killed."""

    def __init__(self, process: ServeProcess, run_id: str) -> None:
        self.process = process
        self.run_id = run_id
        self.written = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)

    def __enter__(self) -> WriteLoad:
        with self.process.client() as client:
            open_run(client, self.run_id)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=60)

    def _write(self) -> None:
        with self.process.client(timeout=10) as client:
            while not self._stopping.is_set():
                input_id = f"load-{self.written:05d}"
                try:
                    response = client.post(
                        f"/runs/{self.run_id}/decisions",
                        json=decision_body(input_id),
                        headers=keyed(f"decide-{self.run_id}-{input_id}"),
                    )
                except httpx.HTTPError:
                    continue
                if response.status_code == 201:
                    self.written += 1


def projections_cli(command: str, database_url: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CONSOLE_SCRIPT), "projections", command, "--database-url", database_url],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "250"},
    )


def database_is_postgres(database_url: str) -> bool:
    return parse_database_url(database_url).backend == "postgres"
