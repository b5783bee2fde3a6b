"""The benchmark harness behind `make bench` (`python -m bench`).

It measures baselines and scenarios in the same run and reports every scenario as a
ratio against its baseline, because this machine is shared and noisy: absolute
figures move from run to run, same-run ratios much less. See bench/README.md.

    python -m bench                               # quick scale, everything
    python -m bench --scale full                  # the big sizes
    python -m bench --only single replay          # some scenarios
    python -m bench --only single --profile       # and profile the concurrency-32 run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import baselines as baseline_module
from bench.baselines import Baseline
from bench.common import (
    DEFAULT_POSTGRES_URL,
    RESULTS,
    ROOT,
    Server,
    count_events,
    database,
    py_spy_path,
    run_loadgen,
)

# --- Scale ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    baseline_seconds: float
    single_seconds: float
    single_concurrency: tuple[int, ...]
    batch_requests: int
    replay_requests: int
    mixed_inputs: int
    mixed_runs_per_worker: int
    profile_seconds: float
    proofs_args: tuple[str, ...]
    run_load_args: tuple[str, ...]
    #: --sizes for bench/rebuild.py (its peak RSS line compares the largest with the smallest).
    rebuild_sizes: str
    as_of_sizes: tuple[int, ...]
    as_of_requests: int


SCALES = {
    "quick": Scale(
        baseline_seconds=2.0,
        single_seconds=8.0,
        single_concurrency=(1, 8, 32, 128),
        batch_requests=5,
        replay_requests=400,
        mixed_inputs=8,
        mixed_runs_per_worker=1,
        profile_seconds=30.0,
        proofs_args=("--events", "5000", "--repetitions", "1"),
        run_load_args=("--inputs", "50000", "--batches", "200", "--repetitions", "3"),
        rebuild_sizes="10000,50000",
        as_of_sizes=(10_000, 100_000),
        as_of_requests=200,
    ),
    "full": Scale(
        baseline_seconds=8.0,
        single_seconds=45.0,
        single_concurrency=(1, 8, 32, 128),
        batch_requests=30,
        replay_requests=5000,
        mixed_inputs=40,
        mixed_runs_per_worker=3,
        profile_seconds=45.0,
        proofs_args=(),
        run_load_args=(),
        rebuild_sizes="100000,1000000",
        as_of_sizes=(10_000, 100_000, 1_000_000),
        as_of_requests=500,
    ),
}

SCENARIOS = (
    "single",
    "single-sqlite",
    "batch",
    "replay",
    "mixed",
    "rebuild",
    "proofs",
    "inclusion-proofs",
    "run-load",
    "as-of",
)
NEEDS_BASELINES = {"single", "single-sqlite", "batch", "mixed"}

# Targets (same-run ratios).
T_SINGLE_PG = 1.2
T_BATCH = 0.8
T_REPLAY = 2.0
T_TAIL = 5.0
T_SINGLE_SQLITE = 1.0
T_AS_OF = 1.5
T_REBUILD = 0.5
T_VERIFY = 0.5
T_REBUILD_RSS = 1.2
T_INCLUSION_PROOF = 3.0


# --- Rows -----------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    backend: str
    concurrency: int | None = None
    requests: int | None = None
    throughput: float | None = None
    unit: str = "req/s"
    p50_ms: float | None = None
    p99_ms: float | None = None
    baseline: str | None = None
    baseline_rate: float | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Bench:
    arguments: argparse.Namespace
    scale: Scale
    stamp: str
    rows: list[Row] = field(default_factory=list)
    baselines: dict[str, Baseline] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def postgres_url(self) -> str:
        return self.arguments.postgres_url

    def say(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def baseline(self, name: str, backend: str, threads: int = 1) -> Baseline:
        return self.baselines[f"{name}/{backend}@{threads}"]


def adjacent(bench: Bench, name: str, backend: str) -> Baseline:
    """The single-threaded baseline measured again, right next to a scenario. The
    start-of-run figure stays in the baseline rows and in the JSON."""
    again = baseline_module.measure_one(name, backend, 1, bench.scale.baseline_seconds, bench.postgres_url)
    bench.raw.setdefault("baselines_adjacent", []).append(asdict(again))
    first = bench.baseline(name, backend)
    bench.say(
        f"  {name} ({backend}, 1 thread) again: {again.items_per_s:,.0f} items/s "
        f"(start of run: {first.items_per_s:,.0f})"
    )
    return again


def bracketed(before: Baseline, after: Baseline) -> Baseline:
    """The mean of a baseline measured just before and just after a scenario: on this
    machine a neighbour's burst can move one short measurement by several times."""
    merged = replace(
        before,
        saves=before.saves + after.saves,
        seconds=before.seconds + after.seconds,
        saves_per_s=(before.saves_per_s + after.saves_per_s) / 2,
        items_per_s=(before.items_per_s + after.items_per_s) / 2,
        p50_ms=(before.p50_ms + after.p50_ms) / 2,
        p99_ms=(before.p99_ms + after.p99_ms) / 2,
        cpu_ms_per_save=(before.cpu_ms_per_save + after.cpu_ms_per_save) / 2,
    )
    _brackets[id(merged)] = (merged, before, after)
    return merged


#: The two measurements behind each bracketed baseline (which is kept alive here too, so
#: its id stays its own).
_brackets: dict[int, tuple[Baseline, Baseline, Baseline]] = {}


def ratio_row(
    row: Row, baseline: Baseline, *, items: bool, target: float | None, threaded: Baseline | None
) -> Row:
    row.baseline = f"{baseline.name} {'pg' if baseline.backend == 'postgres' else baseline.backend} 1 thread"
    first = _first_of.get((baseline.name, baseline.backend))
    if id(baseline) in _brackets:
        row.baseline += " (around)"
        _, before, after = _brackets[id(baseline)]
        rates = [b.items_per_s if items else b.saves_per_s for b in (before, after)]
        start_rate = (first.items_per_s if items else first.saves_per_s) if first else float("nan")
        row.notes.append(
            f"baseline: mean of {rates[0]:,.1f}/s just before and {rates[1]:,.1f}/s just after "
            f"(start of run: {start_rate:,.1f}/s)"
        )
    row.baseline_rate = baseline.items_per_s if items else baseline.saves_per_s
    if row.throughput is not None and row.baseline_rate:
        row.ratio = row.throughput / row.baseline_rate
    if threaded is not None and row.throughput is not None:
        rate = threaded.items_per_s if items else threaded.saves_per_s
        row.notes.append(
            f"vs the same baseline with 32 threads ({rate:,.0f}/s): {row.throughput / rate:.2f}x"
        )
    if target is not None and row.ratio is not None:
        row.target = f">= {target:g}x"
        row.met = row.ratio >= target
    return row


def cpu_note(row: Row, result: dict[str, Any], baseline: Baseline, per: int = 1) -> None:
    """CPU per request against the library's CPU per save: steadier than throughput on a
    busy machine (neither includes the database server's CPU)."""
    server = result.get("server_cpu_ms_per_request")
    if server and baseline.cpu_ms_per_save == baseline.cpu_ms_per_save:
        library = baseline.cpu_ms_per_save / baseline.per_save * per
        row.notes.append(
            f"CPU: the server spent {server:.2f} ms per request, the bare library {library:.2f} ms for the same "
            f"work (efficiency ratio {library / server:.2f}x)"
        )


# --- Server-driving helpers -------------------------------------------------------------------


def post(server: Server, path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.base_url}{path}", json=body, headers={"Idempotency-Key": key}, timeout=60)
    if response.status_code >= 400:
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:300]}")
    return response.json()


def checked(bench: Bench, scenario: str, result: dict[str, Any], row: Row) -> None:
    """Note the server's CPU use and any request that did not succeed; a scenario with
    errors is not met."""
    if "server_cores" in result:
        row.notes.append(
            f"server process used {result['server_cores']:.2f} cores, "
            f"{result['server_cpu_ms_per_request']:.1f} ms CPU per request; "
            f"the load generator {result.get('loadgen_cores', float('nan')):.2f} cores"
        )
    if result.get("transport_retries"):
        row.notes.append(
            f"{result['transport_retries']} request(s) re-sent after a transport error (same key)"
        )
    if result.get("error_count"):
        message = f"{scenario}: {result['error_count']} failed requests, e.g. {result['errors'][:2]}"
        row.notes.append(message)
        row.met = False if row.met is not None else None
        bench.failures.append(message)


def load_row(scenario: str, backend: str, result: dict[str, Any], *, items: bool = False) -> Row:
    return Row(
        scenario=scenario,
        backend=backend,
        concurrency=result["concurrency"],
        requests=result["requests"],
        throughput=result["items_per_s"] if items else result["throughput_rps"],
        unit="decisions/s" if items else "req/s",
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
    )


def decisions_spec(server: Server, run_id: str, concurrency: int, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": server.base_url,
        "workload": "decisions",
        "concurrency": concurrency,
        "run_id": run_id,
        "key_prefix": f"c{concurrency}",
        **extra,
    }


# --- Scenarios ----------------------------------------------------------------------------------


#: The start-of-run single-threaded baselines, to tell them from re-measured ones.
_first_of: dict[tuple[str, str], Baseline] = {}


def run_baselines(bench: Bench) -> None:
    bench.say(f"baselines ({bench.scale.baseline_seconds:g} s each) ...")
    measured = baseline_module.measure_all(
        bench.scale.baseline_seconds, bench.postgres_url, progress=bench.say
    )
    bench.raw["baselines"] = [asdict(baseline) for baseline in measured]
    for baseline in measured:
        bench.baselines[f"{baseline.name}/{baseline.backend}@{baseline.threads}"] = baseline
        if baseline.threads == 1:
            _first_of[(baseline.name, baseline.backend)] = baseline
        bench.rows.append(
            Row(
                scenario=f"baseline {baseline.name}",
                backend=baseline.backend,
                concurrency=baseline.threads,
                requests=baseline.saves,
                throughput=baseline.items_per_s,
                unit="rows/s" if baseline.name.startswith("psycopg") else "aggregates/s",
                p50_ms=baseline.p50_ms,
                p99_ms=baseline.p99_ms,
                notes=[
                    f"{baseline.saves_per_s:,.0f} transactions/s, {baseline.per_save} per transaction, "
                    f"{baseline.cpu_ms_per_save:.2f} ms CPU per transaction (client side)"
                ],
            )
        )


def single_decisions(bench: Bench, backend: str, concurrency: int) -> dict[str, Any]:
    """Single-decision POSTs at one concurrency, in a fresh database, projections off."""
    with (
        database(backend, bench.postgres_url) as target,
        Server(target, workers=bench.arguments.workers) as server,
    ):
        post(server, "/runs", "open-bench", {"run_id": "bench", "lane": "fraud"})
        before = count_events(target)
        result = run_loadgen(
            decisions_spec(
                server,
                "bench",
                concurrency,
                duration=bench.scale.single_seconds,
                warmup=max(20, 2 * concurrency),
            ),
            server=server,
        )
        result["events_written"] = count_events(target) - before
    return result


def scenario_single(bench: Bench) -> None:
    lib32 = bench.baseline("lib-save-1", "postgres", 32)
    before = adjacent(bench, "lib-save-1", "postgres")
    for concurrency in bench.scale.single_concurrency:
        bench.say(f"single-decision POSTs, PostgreSQL, concurrency {concurrency} ...")
        result = single_decisions(bench, "postgres", concurrency)
        after = adjacent(bench, "lib-save-1", "postgres")
        baseline, before = bracketed(before, after), after
        bench.raw[f"single/postgres/c{concurrency}"] = result
        row = load_row("single-decision POST", "postgres", result)
        ratio_row(
            row, baseline, items=False, target=T_SINGLE_PG if concurrency == 32 else None, threaded=lib32
        )
        cpu_note(row, result, baseline)
        checked(bench, "single", result, row)
        bench.rows.append(row)
        bench.say(f"  {row.throughput:,.0f} req/s, p50 {row.p50_ms:.1f} ms, p99 {row.p99_ms:.1f} ms")
        if concurrency == 32:
            tail = Row(
                scenario="latency tail (p99/p50)",
                backend="postgres",
                concurrency=32,
                requests=result["requests"],
                throughput=None,
                unit="",
                p50_ms=result["p50_ms"],
                p99_ms=result["p99_ms"],
                baseline="p50, same run (ms)",
                baseline_rate=result["p50_ms"],
                ratio=result["p99_ms"] / result["p50_ms"],
                target=f"<= {T_TAIL:g}x",
            )
            tail.met = tail.ratio is not None and tail.ratio <= T_TAIL
            bench.rows.append(tail)


def scenario_single_sqlite(bench: Bench) -> None:
    bench.say("single-decision POSTs, SQLite, concurrency 32 ...")
    before = adjacent(bench, "lib-save-1", "sqlite")
    result = single_decisions(bench, "sqlite", 32)
    baseline = bracketed(before, adjacent(bench, "lib-save-1", "sqlite"))
    bench.raw["single/sqlite/c32"] = result
    row = load_row("single-decision POST", "sqlite", result)
    ratio_row(
        row,
        baseline,
        items=False,
        target=T_SINGLE_SQLITE,
        threaded=bench.baseline("lib-save-1", "sqlite", 32),
    )
    cpu_note(row, result, baseline)
    checked(bench, "single-sqlite", result, row)
    bench.rows.append(row)
    bench.say(f"  {row.throughput:,.0f} req/s, p50 {row.p50_ms:.1f} ms, p99 {row.p99_ms:.1f} ms")


def scenario_batch(bench: Bench) -> None:
    bench.say(f"batch endpoint, 1,000 decisions a request, {bench.scale.batch_requests} requests ...")
    before_baseline = adjacent(bench, "lib-save-1000", "postgres")
    with (
        database("postgres", bench.postgres_url) as target,
        Server(target, workers=bench.arguments.workers) as server,
    ):
        post(server, "/runs", "open-bench", {"run_id": "bench", "lane": "fraud"})
        before = count_events(target)
        result = run_loadgen(
            {
                "base_url": server.base_url,
                "workload": "batch",
                "concurrency": 1,
                "run_id": "bench",
                "key_prefix": "batch",
                "batch_size": 1000,
                "requests": bench.scale.batch_requests,
                "warmup": 1,
            },
            server=server,
        )
        result["events_written"] = count_events(target) - before
    bench.raw["batch"] = result
    baseline = bracketed(before_baseline, adjacent(bench, "lib-save-1000", "postgres"))
    row = load_row("batch POST, 1,000/request", "postgres", result, items=True)
    ratio_row(
        row,
        baseline,
        items=True,
        target=T_BATCH,
        threaded=bench.baseline("lib-save-1000", "postgres", 32),
    )
    row.notes.append(f"{result['throughput_rps']:.2f} requests/s")
    # The baseline saves trivial aggregates; this one saves the ledger's own decisions.
    decisions = bench.baseline("lib-save-1000-decisions", "postgres")
    row.notes.append(
        f"vs the bare library saving 1,000 of the ledger's Decision aggregates a transaction "
        f"(start of run, {decisions.items_per_s:,.0f}/s): {row.throughput / decisions.items_per_s:.2f}x"
    )
    cpu_note(row, result, baseline, per=1000)
    checked(bench, "batch", result, row)
    bench.rows.append(row)
    bench.say(f"  {row.throughput:,.0f} decisions/s, p50 {row.p50_ms:.0f} ms a request")


def scenario_replay(bench: Bench) -> None:
    """With several API processes a re-sent request reaches the process that answered it
    first (answered from memory) or another one (answered by the ledger, from the token's
    receipt): the storm runs with the configured workers, and with one process."""
    for workers in dict.fromkeys((bench.arguments.workers, 1)):
        replay_storm(bench, workers)


def replay_storm(bench: Bench, workers: int) -> None:
    requests = bench.scale.replay_requests
    processes = f"{workers} API process{'es' if workers > 1 else ''}"
    bench.say(
        f"replay storm ({processes}): {requests} single-decision POSTs at concurrency 32, then the same again ..."
    )
    with database("postgres", bench.postgres_url) as target, Server(target, workers=workers) as server:
        post(server, "/runs", "open-bench", {"run_id": "bench", "lane": "fraud"})
        spec = decisions_spec(server, "bench", 32, requests=requests, warmup=64, key_prefix="storm")
        before_write = count_events(target)
        write = run_loadgen(spec, server=server)
        before_replay = count_events(target)
        replay = run_loadgen(spec, server=server)  # the same keys and bodies, warm-up included
        after_replay = count_events(target)
    write["events_written"] = before_replay - before_write
    replay["events_written"] = after_replay - before_replay
    bench.raw.setdefault("replay", {})[f"workers={workers}"] = {"write": write, "replay": replay}
    write_row = load_row(f"replay storm: first sent ({workers}w)", "postgres", write)
    write_row.notes.append(f"{write['events_written']} events written (warm-up included); {processes}")
    checked(bench, "replay (write)", write, write_row)
    bench.rows.append(write_row)
    row = load_row(f"replay storm: re-sent ({workers}w)", "postgres", replay)
    row.baseline = "first delivery (c=32)"
    row.baseline_rate = write["throughput_rps"]
    row.ratio = replay["throughput_rps"] / write["throughput_rps"]
    row.target = f">= {T_REPLAY:g}x, 0 events"
    replayed = replay["replayed"].get("true", 0)
    row.met = row.ratio >= T_REPLAY and replay["events_written"] == 0
    row.notes.append(
        f"events before {before_replay}, after {after_replay}: {replay['events_written']} written; "
        f"{replayed} of {replay['requests']} answers marked Idempotent-Replayed; {processes}"
    )
    if replayed != replay["requests"]:
        row.met = False
        bench.failures.append(f"replay: only {replayed} of {replay['requests']} answers were replays")
    checked(bench, "replay", replay, row)
    bench.rows.append(row)
    bench.say(
        f"  first {write['throughput_rps']:,.0f} req/s, replay {replay['throughput_rps']:,.0f} req/s "
        f"({row.ratio:.2f}x), {replay['events_written']} events written"
    )


def scenario_mixed(bench: Bench) -> None:
    scale = bench.scale
    bench.say(
        f"mixed lane: 32 workers x {scale.mixed_runs_per_worker} run(s) of {scale.mixed_inputs} inputs, "
        "30% re-deliveries, projections on ..."
    )
    before = adjacent(bench, "lib-save-1", "postgres")
    with (
        database("postgres", bench.postgres_url) as target,
        Server(target, run_projections=True, workers=bench.arguments.workers) as server,
    ):
        result = run_loadgen(
            {
                "base_url": server.base_url,
                "workload": "mixed",
                "concurrency": 32,
                "key_prefix": "mixed",
                "inputs_per_run": scale.mixed_inputs,
                "runs_per_worker": scale.mixed_runs_per_worker,
                "duplicate_rate": 0.3,
            },
            server=server,
        )
    bench.raw["mixed"] = result
    baseline = bracketed(before, adjacent(bench, "lib-save-1", "postgres"))
    row = load_row("mixed lane, 30% re-sent", "postgres", result)
    ratio_row(row, baseline, items=False, target=None, threaded=None)
    committed = result["verdicts"].get("committed", 0)
    row.target = "every close committed"
    row.met = committed == result["runs"] and result["mismatched_replays"] == 0 and not result["error_count"]
    row.notes.append(
        f"{result['runs']} runs closed: {result['verdicts']}; {result['original_requests']} requests + "
        f"{result['duplicate_requests']} re-deliveries, {result['mismatched_replays']} re-deliveries answered differently"
    )
    close = result["tags"].get("close")
    if close:  # a close waits for the projections: how closely they follow the writes
        row.notes.append(
            f"close after the lane's last write: p50 {close['p50_ms']:.1f} ms, p99 {close['p99_ms']:.1f} ms"
            f" ({close['requests']} closes)"
        )
    checked(bench, "mixed", result, row)
    bench.rows.append(row)
    bench.say(f"  {row.throughput:,.0f} req/s, verdicts {result['verdicts']}")


# --- The other issues' benchmarks, run as they are ------------------------------------------------


_CELLS = re.compile(r"\s{2,}")


def run_module(
    bench: Bench, module: str, args: tuple[str, ...], timeout: float = 1800
) -> tuple[str, list[list[str]]]:
    command = [sys.executable, "-m", module, *args]
    bench.say(f"  $ {' '.join(command[1:])}")
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        raise RuntimeError(f"{module} exited {completed.returncode}: {completed.stderr[-2000:]}")
    rows = [_CELLS.split(line.strip()) for line in completed.stdout.splitlines() if line.startswith("  ")]
    return completed.stdout, rows


def seconds_of(text: str) -> float | None:
    match = re.match(r"([\d,.]+)\s*(ms|s)\b", text.strip())
    if not match:
        return None
    value = float(match.group(1).replace(",", ""))
    return value / 1000 if match.group(2) == "ms" else value


def rate_of(text: str) -> float | None:
    match = re.match(r"([\d,.]+)", text.strip())
    return float(match.group(1).replace(",", "")) if match else None


def find_cells(rows: list[list[str]], prefix: str) -> list[str] | None:
    for cells in rows:
        if cells and cells[0].lower().startswith(prefix.lower()):
            return cells
    return None


def scenario_proofs(bench: Bench) -> None:
    if not (ROOT / "bench" / "proofs.py").exists():
        bench.rows.append(
            Row("audit verify / proof time", "postgres", notes=["bench/proofs.py is not there"])
        )
        return
    bench.say("audit verify and proof time (bench/proofs.py) ...")
    output, rows = run_module(bench, "bench.proofs", bench.scale.proofs_args)
    bench.raw["proofs"] = {"args": list(bench.scale.proofs_args), "stdout": output, "rows": rows}
    for prefix, label in (
        ("audit verify", "audit verify (chain + proof)"),
        ("proof verify", "proof verify --database-url"),
        ("RunCloser.close", "close (seal .. signed proof)"),
        ("of which building the proof", "building the proof"),
        ("one decision's inclusion proof", "one inclusion proof"),
    ):
        cells = find_cells(rows, prefix)
        if cells is None:
            continue
        seconds = seconds_of(cells[1]) if len(cells) > 1 else None
        rate = rate_of(cells[2]) if len(cells) > 2 and "events/s" in cells[2] else None
        bench.rows.append(
            Row(
                scenario=label,
                backend="postgres",
                requests=None,
                throughput=rate,
                unit="events/s" if rate else "",
                p50_ms=seconds * 1000 if seconds is not None else None,
                notes=[" | ".join(cells)],
            )
        )
    bench.say("  " + "\n  ".join(line for line in output.splitlines() if line.strip()))


def scenario_inclusion_proofs(bench: Bench) -> None:
    """Issue 16, acceptance 4: GET /decisions/{id}/proof on runs of 1k and 100k decisions
    (the same sizes at both scales: the target is about 100k)."""
    from bench import inclusion_proofs

    bench.say("inclusion proofs on runs of 1k and 100k decisions (bench/inclusion_proofs.py) ...")
    report = inclusion_proofs.measure([1_000, 100_000], postgres_url=bench.postgres_url, progress=bench.say)
    bench.raw["inclusion-proofs"] = report
    smallest = report["sizes"][0]
    for entry in report["sizes"]:
        row = Row(
            scenario=f"GET decision proof @ {short_count(entry['decisions'])} decisions",
            backend="postgres",
            concurrency=1,
            requests=entry["requests"],
            throughput=None,
            unit="",
            p50_ms=entry["p50_ms"],
            p99_ms=entry["p99_ms"],
            baseline=f"p50 @ {short_count(smallest['decisions'])} (ms)",
            baseline_rate=smallest["p50_ms"],
            ratio=entry["p50_ms"] / smallest["p50_ms"],
        )
        if entry is report["sizes"][-1] and entry is not smallest:
            row.target = f"<= {T_INCLUSION_PROOF:g}x"
            row.met = row.ratio <= T_INCLUSION_PROOF
        bench.rows.append(row)


def scenario_run_load(bench: Bench) -> None:
    bench.say("run loading with and without snapshots (bench/run_load.py) ...")
    output, rows = run_module(
        bench, "bench.run_load", ("--database-url", bench.postgres_url, *bench.scale.run_load_args)
    )
    bench.raw["run-load"] = {"args": list(bench.scale.run_load_args), "stdout": output, "rows": rows}
    with_cells, without_cells = (
        find_cells(rows, "load with snapshots"),
        find_cells(rows, "load without snapshots"),
    )
    inputs = find_cells(rows, "inputs admitted")
    if with_cells and without_cells:
        with_s, without_s = seconds_of(with_cells[1]), seconds_of(without_cells[1])
        row = Row(
            scenario="load a big run (snapshots)",
            backend="postgres",
            unit="",
            p50_ms=with_s * 1000 if with_s is not None else None,
            baseline="without snapshots (ms)",
            baseline_rate=without_s * 1000 if without_s is not None else None,
            ratio=(without_s / with_s) if with_s and without_s else None,
            notes=[f"ratio is without/with (speed-up); {inputs[1] if inputs else ''}"],
        )
        bench.rows.append(row)
    bench.say("  " + "\n  ".join(line for line in output.splitlines() if line.strip()))


def module_options(module: str) -> set[str]:
    """The long options a benchmark script's --help lists."""
    completed = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", completed.stdout))


def rebuild_table(output: str) -> list[dict[str, str]]:
    """bench/rebuild.py's table: a header naming "rebuild s" and "events/s", then a row per size."""
    lines = output.splitlines()
    header_at = next((i for i, line in enumerate(lines) if "rebuild s" in line and "events/s" in line), None)
    measured: list[dict[str, str]] = []
    if header_at is not None:
        header = _CELLS.split(lines[header_at].strip())
        for line in lines[header_at + 1 :]:
            cells = _CELLS.split(line.strip())
            if len(cells) != len(header) or not cells[0].replace(",", "").isdigit():
                break
            measured.append(dict(zip(header, cells, strict=True)))
    return measured


def scenario_rebuild(bench: Bench) -> None:
    """bench/rebuild.py on each back end: the rebuild of the runs view and `audit verify`
    against the library's read+decode rate on the same log, and the rebuild's peak memory
    as the log grows."""
    for backend in ("postgres", "sqlite"):
        bench.say(f"projection rebuild and audit verify on {backend} (bench/rebuild.py) ...")
        args: tuple[str, ...] = ("--backend", backend, "--verify")
        if backend == "postgres":
            args += ("--database-url", bench.postgres_url)
        if bench.scale.rebuild_sizes:
            args += ("--sizes", bench.scale.rebuild_sizes)
        output, _ = run_module(bench, "bench.rebuild", args, timeout=3600)
        measured = rebuild_table(output)
        bench.raw.setdefault("rebuild", {})[backend] = {
            "args": list(args),
            "stdout": output,
            "rows": measured,
        }
        if not measured:
            raise RuntimeError(f"could not read bench/rebuild.py's table:\n{output[-1500:]}")
        for entry in measured:
            events = short_count(int(entry["events"].replace(",", "")))
            library = rate_of(entry["library events/s"])
            for scenario, rate_key, target in (
                (f"rebuild runs view @ {events} events", "events/s", T_REBUILD),
                (f"audit verify @ {events} events", "verify events/s", T_VERIFY),
            ):
                rate = rate_of(entry.get(rate_key, "-"))
                row = Row(scenario=scenario, backend=backend, throughput=rate, unit="events/s")
                row.baseline, row.baseline_rate = "library read+decode (around)", library
                if rate is not None and library:
                    row.ratio = rate / library
                    row.target, row.met = f">= {target:g}x", row.ratio >= target
                row.notes.append(
                    f"rebuild {entry['rebuild s']} s, history written in {entry['write s']} s;"
                    f" peak RSS MB (sampled / kernel) {entry['peak RSS MB (sampled / kernel)']}"
                )
                bench.rows.append(row)
        rss_ratio = next((line for line in output.splitlines() if line.startswith("peak RSS at")), None)
        if rss_ratio is not None:
            ratio = float(rss_ratio.rsplit(":", 1)[1])
            bench.rows.append(
                Row(
                    scenario="rebuild peak RSS, largest / smallest log",
                    backend=backend,
                    unit="",
                    ratio=ratio,
                    target=f"<= {T_REBUILD_RSS:g}x",
                    met=ratio <= T_REBUILD_RSS,
                    notes=[rss_ratio],
                )
            )
        bench.say("  " + "\n  ".join(line for line in output.splitlines() if line.strip()))


def short_count(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1000 and count % 1000 == 0:
        return f"{count // 1000}k"
    return f"{count:,}"


def scenario_as_of(bench: Bench) -> None:
    from bench import as_of

    sizes = list(bench.scale.as_of_sizes)
    bench.say(f"as-of reads against histories of {', '.join(f'{size:,}' for size in sizes)} events ...")
    report = as_of.measure(
        sizes, requests=bench.scale.as_of_requests, postgres_url=bench.postgres_url, progress=bench.say
    )
    bench.raw["as-of"] = report
    smallest = report["sizes"][0]
    for entry in report["sizes"]:
        for endpoint, path in (("summary", "as_of GET run summary"), ("decision", "as_of GET decision")):
            stats = entry[endpoint]
            row = Row(
                scenario=f"{path} @ {short_count(entry['events'])} events",
                backend="postgres",
                concurrency=1,
                requests=stats["requests"],
                throughput=None,
                unit="",
                p50_ms=stats["p50_ms"],
                p99_ms=stats["p99_ms"],
                baseline=f"p50 @ {short_count(smallest['events'])} (ms)",
                baseline_rate=smallest[endpoint]["p50_ms"],
                ratio=stats["p50_ms"] / smallest[endpoint]["p50_ms"],
            )
            if entry is report["sizes"][-1] and entry is not smallest:
                row.target = f"<= {T_AS_OF:g}x" + ("" if entry["events"] >= 1_000_000 else " (at 1M)")
                row.met = row.ratio <= T_AS_OF
            bench.rows.append(row)


def scenario_profile(bench: Bench) -> None:
    """Single-decision POSTs at concurrency 32 (PostgreSQL) with the server profiled.

    py-spy attaches to the running server after a warm-up and samples every thread,
    idle or not, for the timed part only. Without py-spy, the server runs under
    pyinstrument from the start (bench/profiled_serve.py profiles every thread)."""

    from bench.profile_report import summarise

    profiler = bench.arguments.profiler or ("py-spy" if py_spy_path() else "pyinstrument")
    seconds = bench.scale.profile_seconds
    bench.say(
        f"profile: single-decision POSTs, PostgreSQL, concurrency 32, {seconds:g} s under {profiler} ..."
    )
    with database("postgres", bench.postgres_url) as target:
        if profiler == "py-spy":
            output = RESULTS / f"{bench.stamp}-profile-c32.pyspy.txt"
            server = Server(target, workers=1)  # py-spy follows one process
        else:
            output = RESULTS / f"{bench.stamp}-profile-c32.pyinstrument"
            server = Server(target, profile="pyinstrument", profile_output=output)
        with server:
            post(server, "/runs", "open-bench", {"run_id": "bench", "lane": "fraud"})
            spec = decisions_spec(server, "bench", 32, requests=200, key_prefix="profile-warm")
            run_loadgen(spec)  # warm-up, unprofiled (py-spy) or profiled too (pyinstrument)
            recorder = None
            if profiler == "py-spy":
                assert server.process is not None
                recorder = PySpyPhases(server.process.pid, output, seconds)
                recorder.start()
            result = run_loadgen(
                {**spec, "key_prefix": "profile", "requests": None, "duration": seconds + 3}, server=server
            )
            if recorder is not None:
                recorder.join(timeout=180)
                recorder.check()
    summary_path = RESULTS / f"{bench.stamp}-profile-summary.txt"
    summary = (
        f"under the profiler: {result['throughput_rps']:,.0f} req/s, p50 {result['p50_ms']:.0f} ms, "
        f"p99 {result['p99_ms']:.0f} ms; the server process used {result.get('server_cores', float('nan')):.2f} cores, "
        f"{result.get('server_cpu_ms_per_request', float('nan')):.1f} ms CPU per request; "
        f"CPU pressure (some, avg10) {cpu_pressure()}\n\n" + summarise(output, profiler)
    )
    summary_path.write_text(summary)
    bench.raw["profile"] = {
        "profiler": profiler,
        "load": {
            key: result.get(key)
            for key in (
                "requests",
                "throughput_rps",
                "p50_ms",
                "p99_ms",
                "server_cores",
                "server_cpu_ms_per_request",
            )
        },
        "report": str(output),
        "gil_report": str(gil_report(output)) if profiler == "py-spy" else None,
        "summary_file": str(summary_path),
        "summary": summary,
    }
    bench.say(
        f"  {result['throughput_rps']:,.0f} req/s under the profiler (p50 {result['p50_ms']:.0f} ms); "
        f"report {output.relative_to(ROOT)}, summary {summary_path.relative_to(ROOT)}"
    )


class PySpyPhases(threading.Thread):
    """py-spy on the running server, in two phases of half the time each: first every
    thread, idle or not (`--idle`, wall-clock: where a request waits), then only the
    thread holding the GIL (`--gil`: where the CPU goes). Raw collapsed stacks:
    OUTPUT, and OUTPUT with `.pyspy-gil.` for `.pyspy.` in its name."""

    def __init__(self, pid: int, output: Path, seconds: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.output, self.seconds = pid, output, seconds
        self.errors: list[str] = []

    def run(self) -> None:
        half = max(1, int(self.seconds / 2))
        for flag, path in (("--idle", self.output), ("--gil", gil_report(self.output))):
            completed = subprocess.run(
                [
                    py_spy_path() or "py-spy",
                    "record",
                    "--pid",
                    str(self.pid),
                    "--rate",
                    "200",
                    "--duration",
                    str(half),
                    "--format",
                    "raw",
                    "--threads",
                    flag,
                    "--nonblocking",
                    "--output",
                    str(path),
                ],
                capture_output=True,
                text=True,
            )
            if completed.returncode != 0 or not path.exists():
                self.errors.append(f"py-spy {flag}: {completed.stderr[-1000:]}")

    def check(self) -> None:
        if self.errors:
            raise RuntimeError("; ".join(self.errors))


def gil_report(output: Path) -> Path:
    return output.with_name(output.name.replace(".pyspy.", ".pyspy-gil."))


SCENARIO_FUNCTIONS: dict[str, Callable[[Bench], None]] = {
    "single": scenario_single,
    "single-sqlite": scenario_single_sqlite,
    "batch": scenario_batch,
    "replay": scenario_replay,
    "mixed": scenario_mixed,
    "rebuild": scenario_rebuild,
    "proofs": scenario_proofs,
    "inclusion-proofs": scenario_inclusion_proofs,
    "run-load": scenario_run_load,
    "as-of": scenario_as_of,
}


# --- Output -------------------------------------------------------------------------------------


def number(value: float | None, digits: int = 0) -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    return f"{value:,.{digits}f}"


def print_table(bench: Bench, wall_seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 220)
    table = Table(
        title=f"decision-ledger bench, {bench.arguments.scale} scale, {bench.stamp} (wall {wall_seconds:,.0f} s)",
        show_lines=False,
    )
    for header, justify in (
        ("scenario", "left"),
        ("back end", "left"),
        ("conc.", "right"),
        ("requests", "right"),
        ("throughput", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("baseline", "left"),
        ("baseline rate", "right"),
        ("ratio", "right"),
        ("target", "left"),
        ("met?", "center"),
    ):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for row in bench.rows:
        throughput = f"{number(row.throughput, 1 if (row.throughput or 0) < 100 else 0)} {row.unit}".strip()
        met = "—" if row.met is None else ("[green]yes[/]" if row.met else "[red]NO[/]")
        table.add_row(
            row.scenario,
            row.backend,
            number(row.concurrency),
            number(row.requests),
            throughput if row.throughput is not None else "—",
            number(row.p50_ms, 1),
            number(row.p99_ms, 1),
            row.baseline or "—",
            number(row.baseline_rate, 1 if (row.baseline_rate or 0) < 100 else 0),
            f"{row.ratio:.2f}x" if row.ratio is not None else "—",
            row.target or "—",
            met,
        )
    console.print(table)
    notes = [
        (row.scenario, note)
        for row in bench.rows
        for note in row.notes
        if not row.scenario.startswith("baseline")
    ]
    if notes:
        console.print("Notes:", highlight=False)
        for scenario, note in notes:
            console.print(f"  [{scenario}] {note}", highlight=False, markup=False)
    if "profile" in bench.raw:
        console.print(f"Profile summary ({bench.raw['profile']['summary_file']}):", highlight=False)
        console.print(bench.raw["profile"]["summary"], highlight=False, markup=False)


def cpu_pressure() -> float | None:
    """The share of the last 10 s in which some runnable task waited for a CPU (PSI)."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return float(first.split("avg10=")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None


def load_average() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="quick")
    parser.add_argument(
        "--only", nargs="+", metavar="SCENARIO", help=f"some of: {', '.join(SCENARIOS)}, profile"
    )
    parser.add_argument("--profile", action="store_true", help="also profile the server at concurrency 32")
    parser.add_argument("--profiler", choices=("py-spy", "pyinstrument"), help="default: py-spy if installed")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="API worker processes of the server under test (serve --workers)",
    )
    arguments = parser.parse_args(argv)
    selected = [name for chunk in (arguments.only or SCENARIOS) for name in chunk.split(",") if name]
    if "profile" in selected:  # `--only profile`: just the profiled run
        arguments.profile = True
        selected.remove("profile")
    unknown = sorted(set(selected) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")

    started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    bench = Bench(arguments, SCALES[arguments.scale], stamp)
    load_before = load_average()
    pressure_before = cpu_pressure()
    if NEEDS_BASELINES & set(selected):
        baselines_started = time.perf_counter()
        run_baselines(bench)
        bench.raw.setdefault("scenario_seconds", {})["baselines"] = round(
            time.perf_counter() - baselines_started, 1
        )
    for name in SCENARIOS:
        if name not in selected:
            continue
        scenario_started = time.perf_counter()
        try:
            SCENARIO_FUNCTIONS[name](bench)
        except Exception as error:  # report it, run the rest
            message = f"{name}: {type(error).__name__}: {str(error)[:2000]}"
            bench.failures.append(message)
            bench.rows.append(Row(name, "—", notes=[f"FAILED: {message}"], met=False))
            bench.say(f"  FAILED: {message}")
        bench.raw.setdefault("scenario_seconds", {})[name] = round(time.perf_counter() - scenario_started, 1)
        bench.say(f"  ({name}: {time.perf_counter() - scenario_started:,.0f} s)")
    if arguments.profile:
        try:
            scenario_profile(bench)
        except Exception as error:
            bench.failures.append(f"profile: {type(error).__name__}: {error}")
            bench.say(f"  profile FAILED: {error}")
    wall = time.perf_counter() - started

    output = RESULTS / f"{stamp}.json"
    output.write_text(
        json.dumps(
            {
                "started_utc": stamp,
                "scale": arguments.scale,
                "argv": sys.argv,
                "wall_seconds": wall,
                "scenarios": selected,
                "profile": arguments.profile,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average_before": load_before,
                    "load_average_after": load_average(),
                    "cpu_pressure_avg10_before": pressure_before,
                    "cpu_pressure_avg10_after": cpu_pressure(),
                },
                "targets_use": "the single-threaded bare-library rates (the 32-thread rates are reported beside them)",
                "rows": [asdict(row) for row in bench.rows],
                "failures": bench.failures,
                "raw": bench.raw,
            },
            indent=2,
            default=str,
        )
    )
    print_table(bench, wall)
    print(
        f"\nJSON: {output.relative_to(ROOT)}   wall time: {wall:,.0f} s   "
        f"load average before/after: {load_before} / {load_average()}"
    )
    if bench.failures:
        print("Failures:\n  " + "\n  ".join(bench.failures))
        sys.exit(1)
