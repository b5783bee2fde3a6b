"""An inclusion proof costs O(log n): the p50 of GET /decisions/{id}/proof on a committed
run of 100,000 decisions against the same on a run of 1,000, in one run (issue 16,
acceptance 4: at most 3x).

Both runs are written through the real server's HTTP API, into one database: open, admit
the basis 10,000 inputs a request, record the decisions with POST
/runs/{id}/decisions/batch (1,000 a request), and close once /readyz reports every
projection caught up. Then one load-generator process reads the inclusion proofs of
`--decisions` decisions spread over each run, one request at a time, interleaving the
runs request by request (as bench/as_of.py does), so a noisy neighbour slows both alike;
one untimed pass over every URL goes first.

    python -m bench.inclusion_proofs                        # PostgreSQL, a temporary schema
    python -m bench.inclusion_proofs --backend sqlite
    python -m bench.inclusion_proofs --sizes 1000,100000 --requests 400
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

import httpx

from bench.common import DEFAULT_POSTGRES_URL, Server, database, decision_body, run_loadgen, wait_ready
from domain.limits import MAX_BASIS_BATCH, MAX_DECISION_BATCH

#: Issue 16, acceptance 4: p50(largest) / p50(smallest) at most this.
TARGET_RATIO = 3.0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    if response.status_code not in (200, 201):
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:500]}")
    answer: dict[str, Any] = response.json()
    return answer


def write_run(client: httpx.Client, run_id: str, decisions: int) -> list[str]:
    """Open the run, admit its basis, record a decision for every input; its decision IDs."""
    post(client, "/runs", {"run_id": run_id, "lane": "fraud"})
    input_ids = [f"{run_id}-txn-{number:07d}" for number in range(decisions)]
    for start in range(0, decisions, MAX_BASIS_BATCH):
        post(client, f"/runs/{run_id}/basis", {"input_ids": input_ids[start : start + MAX_BASIS_BATCH]})
    decision_ids: list[str] = []
    for start in range(0, decisions, MAX_DECISION_BATCH):
        items = [
            {**decision_body(input_id, number), "idempotency_key": f"decide-{input_id}"}
            for number, input_id in enumerate(input_ids[start : start + MAX_DECISION_BATCH], start=start)
        ]
        answer = post(client, f"/runs/{run_id}/decisions/batch", {"decisions": items})
        created = [item["decision_id"] for item in answer["items"] if item["status"] == "created"]
        if len(created) != len(items):
            raise RuntimeError(f"a batch of {run_id} created {len(created)} of {len(items)} decisions")
        decision_ids += created
    return decision_ids


def close_run(client: httpx.Client, base_url: str, run_id: str) -> dict[str, Any]:
    wait_ready(base_url)  # the close waits for the views to reach its seal; let them catch up first
    verdict = post(client, f"/runs/{run_id}/close", {})
    if verdict["verdict"] != "committed":
        raise RuntimeError(f"{run_id} closed {verdict['verdict']}: {verdict.get('reasons')}")
    return verdict


def spread(items: list[str], count: int) -> list[str]:
    """`count` items evenly spaced over the list."""
    count = min(count, len(items))
    return [items[(index * len(items)) // count] for index in range(count)]


def measure(
    sizes: list[int],
    *,
    backend: str = "postgres",
    requests: int = 400,
    decisions: int = 50,
    postgres_url: str = DEFAULT_POSTGRES_URL,
    progress: Any = say,
) -> dict[str, Any]:
    sizes = sorted(set(sizes))
    with (
        database(backend, postgres_url, "bench_inclusion") as target,
        Server(target, run_projections=True) as server,
    ):
        urls_by_size: list[list[dict[str, str]]] = []
        written: dict[int, dict[str, Any]] = {}
        with httpx.Client(base_url=server.base_url, timeout=600.0) as client:
            for size in sizes:
                run_id = f"proofs-{size}"
                started = time.perf_counter()
                decision_ids = write_run(client, run_id, size)
                write_s = time.perf_counter() - started
                started = time.perf_counter()
                verdict = close_run(client, server.base_url, run_id)
                close_s = time.perf_counter() - started
                written[size] = {
                    "write_s": write_s,
                    "close_s": close_s,
                    "seal_position": verdict["seal_position"],
                }
                progress(
                    f"  inclusion proofs: run of {size:,} decisions written in {write_s:.0f} s,"
                    f" caught up and closed in {close_s:.0f} s"
                )
                urls_by_size.append(
                    [
                        {"tag": f"proof@{size}", "url": f"{server.base_url}/decisions/{decision_id}/proof"}
                        for decision_id in spread(decision_ids, decisions)
                    ]
                )
            ready = wait_ready(server.base_url)
        # Interleaved: decision i of every run, then decision i + 1, ...
        interleaved = [url for group in zip(*urls_by_size, strict=False) for url in group]
        spec = {
            "workload": "get",
            "base_url": server.base_url,
            "concurrency": 1,
            "requests": requests * len(sizes),
            "warmup": len(interleaved),
            "urls": interleaved,
        }
        result = run_loadgen(spec, server=server)
    if result["error_count"]:
        raise RuntimeError(f"inclusion proofs failed: {result['errors'][:3]}")
    rows = [{"decisions": size, **written[size], **result["tags"][f"proof@{size}"]} for size in sizes]
    smallest, largest = rows[0], rows[-1]
    return {
        "backend": backend,
        "sizes": rows,
        "ready": ready,
        "ratio_p50_largest_over_smallest": largest["p50_ms"] / smallest["p50_ms"],
        "server_cpu_ms_per_request": result.get("server_cpu_ms_per_request"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--sizes", default="1000,100000", help="decisions per run, the baseline first")
    parser.add_argument("--requests", type=int, default=400, help="timed requests per run")
    parser.add_argument("--decisions", type=int, default=50, help="decisions read, spread over each run")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    arguments = parser.parse_args()
    sizes = [int(size.replace("_", "")) for size in arguments.sizes.split(",")]
    if len(sizes) < 2 or min(sizes) < 1 or arguments.requests < 1 or arguments.decisions < 1:
        parser.error("give two sizes or more, and positive --requests and --decisions")
    report = measure(
        sizes,
        backend=arguments.backend,
        requests=arguments.requests,
        decisions=arguments.decisions,
        postgres_url=arguments.postgres_url,
    )
    if arguments.json:
        print(json.dumps(report, indent=2, default=str))
        return
    print(f"GET /decisions/{{id}}/proof on {report['backend']}, one request at a time, runs interleaved")
    print(f"  {'decisions':>10}  {'requests':>8}  {'p50 ms':>8}  {'p99 ms':>8}  {'ratio':>6}")
    baseline = report["sizes"][0]["p50_ms"]
    for row in report["sizes"]:
        print(
            f"  {row['decisions']:>10,}  {row['requests']:>8}  {row['p50_ms']:>8.2f}  {row['p99_ms']:>8.2f}"
            f"  {row['p50_ms'] / baseline:>5.2f}x"
        )
    ratio = report["ratio_p50_largest_over_smallest"]
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    largest, smallest = report["sizes"][-1]["decisions"], report["sizes"][0]["decisions"]
    print(f"p50({largest:,}) / p50({smallest:,}): {ratio:.2f} (target <= {TARGET_RATIO:g}: {verdict})")


if __name__ == "__main__":
    main()
