"""What every benchmark shares: a database of its own, the real server as a
subprocess, free ports, percentiles.

Every PostgreSQL benchmark works in a fresh schema that it creates and drops, so it
never touches a schema it did not create; every SQLite benchmark works in a temporary
file.
"""

from __future__ import annotations

import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from infrastructure.database import DatabaseTarget, parse_database_url

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
#: The console script the harness serves with (the real server, as deployed).
SERVER_SCRIPT = Path(sys.executable).with_name("decision-ledger")
DEFAULT_POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: The library names the events table after the application (PostgreSQL) or not (SQLite).
PG_EVENTS_TABLE = "decisionledger_events"
SQLITE_EVENTS_TABLE = "stored_events"


# --- Databases of our own ------------------------------------------------------------------


@contextmanager
def postgres_schema(base_url: str = DEFAULT_POSTGRES_URL, prefix: str = "bench") -> Iterator[DatabaseTarget]:
    """A fresh schema, created here and dropped on the way out."""
    import psycopg
    from psycopg import sql

    base = parse_database_url(base_url)
    if base.backend != "postgres":
        raise SystemExit(f"{base_url!r} is not a PostgreSQL URL")
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base.conninfo, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield replace(base, schema=schema)
    finally:
        drop_schema(base, schema)


def drop_schema(base: DatabaseTarget, schema: str) -> None:
    import psycopg
    from psycopg import sql

    for attempt in range(5):
        try:
            with psycopg.connect(base.conninfo, autocommit=True) as connection:
                connection.execute("SET lock_timeout = '20s'")
                connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            return
        except psycopg.Error as error:  # a straggling connection holds a lock: try again
            if attempt == 4:
                print(f"warning: could not drop schema {schema}: {error}", file=sys.stderr)
            time.sleep(1)


@contextmanager
def new_database(target: DatabaseTarget, default_schema_prefix: str = "bench") -> Iterator[DatabaseTarget]:
    """The database a benchmark was told to use, which must not exist yet: a new SQLite
    file, or a new PostgreSQL schema (`target.schema`, else a generated name). What the
    benchmark made is removed on the way out."""
    if target.backend == "sqlite":
        assert target.sqlite_path is not None
        if target.sqlite_path.exists():
            raise SystemExit(f"{target.describe()} exists; the benchmark wants a new file")
        try:
            yield target
        finally:
            for suffix in ("", "-wal", "-shm", "-journal", ".signing-key"):
                Path(f"{target.sqlite_path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg
    from psycopg import sql

    schema = target.schema or f"{default_schema_prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(target.conninfo, autocommit=True) as connection:
        try:
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        except psycopg.errors.DuplicateSchema:
            raise SystemExit(
                f"schema {schema!r} exists; name a new one, the benchmark drops it at the end"
            ) from None
    try:
        yield replace(target, schema=schema)
    finally:
        drop_schema(target, schema)


@contextmanager
def sqlite_file(prefix: str = "bench-") -> Iterator[DatabaseTarget]:
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        yield parse_database_url(f"sqlite:///{Path(directory) / 'ledger.sqlite3'}")


@contextmanager
def database(
    backend: str, postgres_url: str = DEFAULT_POSTGRES_URL, prefix: str = "bench"
) -> Iterator[DatabaseTarget]:
    if backend == "postgres":
        with postgres_schema(postgres_url, prefix) as target:
            yield target
    else:
        with sqlite_file(prefix + "-") as target:
            yield target


def url_of(target: DatabaseTarget) -> str:
    """A database URL the server's --database-url accepts."""
    if target.backend == "sqlite":
        return f"sqlite:///{target.sqlite_path}"  # sqlite_path is absolute: sqlite:////abs
    password = f":{target.password}" if target.password else ""
    schema = f"?schema={target.schema}" if target.schema else ""
    return f"postgresql://{target.user}{password}@{target.host}:{target.port}/{target.dbname}{schema}"


def count_events(target: DatabaseTarget) -> int:
    """How many events the ledger's events table holds."""
    if target.backend == "sqlite":
        import sqlite3

        with sqlite3.connect(str(target.sqlite_path)) as connection:
            return connection.execute(f"SELECT count(*) FROM {SQLITE_EVENTS_TABLE}").fetchone()[0]
    import psycopg
    from psycopg import sql

    with psycopg.connect(target.conninfo) as connection:
        statement = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(target.schema), sql.Identifier(PG_EVENTS_TABLE)
        )
        return connection.execute(statement).fetchone()[0]


# --- The real server, as a subprocess -------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """`decision-ledger serve` on a free loopback port; stopped on the way out.

    With `profile="pyinstrument"` the server runs under pyinstrument (every thread,
    bench/profiled_serve.py), which writes its report to `profile_output` on shutdown.
    (py-spy needs no help here: the harness attaches it to the running server.)"""

    target: DatabaseTarget
    run_projections: bool = False
    group_commit: bool = True
    workers: int = 1
    profile: str | None = None
    profile_output: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 60.0
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        serve = [
            str(SERVER_SCRIPT),
            "serve",
            "--port",
            str(self.port),
            "--database-url",
            url_of(self.target),
            "--workers",
            str(self.workers),
        ]
        if self.profile == "pyinstrument":
            assert self.profile_output is not None
            return [sys.executable, "-m", "bench.profiled_serve", str(self.profile_output), *serve[1:]]
        return serve

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("DECISION_LEDGER_")}
        env.update(
            DECISION_LEDGER_SIGNING_KEY=secrets.token_hex(32),
            DECISION_LEDGER_RUN_PROJECTIONS="true" if self.run_projections else "false",
            GROUP_COMMIT="y" if self.group_commit else "n",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self) -> Server:
        import httpx

        self.port = free_port()
        log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False)  # noqa: SIM115
        self.log_path = Path(log.name)
        self.process = subprocess.Popen(
            self.command(),
            env=self.environment(),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"the server exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                try:
                    if client.get(f"{self.base_url}/healthz").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"the server did not answer /healthz within {self.startup_timeout:.0f} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        # SIGINT to the server's own process group (it was started in a session of its
        # own): uvicorn shuts down gracefully, and a profiler around it writes its report.
        try:
            os.killpg(process.pid, signal.SIGINT)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=120 if self.profile else 30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far."""
        try:
            import psutil
        except ImportError:
            return float("nan")
        assert self.process is not None
        server = psutil.Process(self.process.pid)
        total = 0.0
        for process in [server, *server.children(recursive=True)]:  # API and projection workers
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.log_path is not None and exc[0] is None:
            self.log_path.unlink(missing_ok=True)


def py_spy_path() -> str | None:
    import shutil

    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def wait_ready(base_url: str, timeout: float = 600.0, poll: float = 0.5) -> dict[str, Any]:
    """Wait until /readyz reports every projection's lag as 0; its detail."""
    import httpx

    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    with httpx.Client(timeout=10.0) as client:
        while time.monotonic() < deadline:
            response = client.get(f"{base_url}/readyz")
            if response.status_code == 200:
                last = response.json().get("detail", {})
                lags = last.get("projection_lag", {})
                if lags and all(lag == 0 for lag in lags.values()):
                    return last
            time.sleep(poll)
    raise RuntimeError(f"the projections did not catch up within {timeout:.0f} s: {last}")


# --- Load-generator processes ---------------------------------------------------------------


def run_loadgen(
    spec: dict[str, Any], timeout: float = 1800.0, server: Server | None = None
) -> dict[str, Any]:
    """Drive the server from a separate process (bench.loadgen); its result. With the
    server, the result also says how much CPU the server used meanwhile (warm-up
    included): `server_cpu_s`, `server_cores` and `server_cpu_ms_per_request`."""
    import json

    with tempfile.TemporaryDirectory(prefix="bench-loadgen-") as directory:
        spec_path = Path(directory) / "spec.json"
        out_path = Path(directory) / "result.json"
        spec_path.write_text(json.dumps(spec))
        cpu_before = server.cpu_seconds() if server is not None else 0.0
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-m", "bench.loadgen", str(spec_path), str(out_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        wall = time.perf_counter() - started
        if completed.returncode != 0 or not out_path.exists():
            raise RuntimeError(
                f"the load generator failed ({completed.returncode}):\n{completed.stderr[-3000:]}"
            )
        result = json.loads(out_path.read_text())
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        loadgen_cpu = (children.ru_utime - children_before.ru_utime) + (
            children.ru_stime - children_before.ru_stime
        )
        result.update(loadgen_cpu_s=loadgen_cpu, loadgen_cores=loadgen_cpu / wall if wall else float("nan"))
        if server is not None:
            cpu = server.cpu_seconds() - cpu_before
            total_requests = result["requests"] + int(spec.get("warmup", 0) or 0)
            result.update(
                server_cpu_s=cpu,
                server_cores=cpu / wall if wall else float("nan"),
                server_cpu_ms_per_request=1000 * cpu / total_requests if total_requests else float("nan"),
            )
        return result


# --- Numbers --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on the sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    if not latencies_s:
        return {
            "p50_ms": float("nan"),
            "p90_ms": float("nan"),
            "p99_ms": float("nan"),
            "mean_ms": float("nan"),
            "max_ms": float("nan"),
        }
    return {
        "p50_ms": percentile(latencies_s, 50) * 1000,
        "p90_ms": percentile(latencies_s, 90) * 1000,
        "p99_ms": percentile(latencies_s, 99) * 1000,
        "mean_ms": statistics.fmean(latencies_s) * 1000,
        "max_ms": max(latencies_s) * 1000,
    }


def decision_body(input_id: str, number: int) -> dict[str, Any]:
    """A realistic decision: an outcome, a score, a model and reason codes."""
    decline = number % 5 == 0
    return {
        "input_id": input_id,
        "outcome": "decline" if decline else "approve",
        "score": round((number * 7919 % 1000) / 1000, 3),
        "model": {"name": "gbm", "version": "7"},
        "policy_version": "2026-11",
        "reasons": ["velocity", "geo-mismatch"] if decline else [],
    }
