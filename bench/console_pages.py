"""Console pages on a big run: p50 and p99 of each page, against the real server.

A run of 100,000 decisions (by default): 101,000 inputs admitted, 100,000 decided, so
1,000 are missing; 500 block-card actions, 50 of them failed; closed (red). Then the
server is started with its projections on, /readyz must report a lag of 0, and one
client reads, one request at a time and interleaved, after an untimed warm-up pass:

    /console                                   the runs page
    /console/runs/<run>                        the run page (summary, reconciliation, verdicts, timeline)
    /console/runs/<run>?as_of_position=<mid>   the run page as of the middle of its history
    /console/runs/<run>?missing_after=<id>     a later page of the missing inputs
    /console/actions?status=failed             the actions page
    /console/audit                             the audit page
    /runs/<run>/summary                        baseline: the JSON API's summary of the same run

Target: every page's p50 under 200 ms. The ratio to the JSON summary's p50 (measured in
the same run) is printed too, since absolute times move with the machine's load.

    python -m bench.console_pages                         # SQLite, 100,000 decisions
    python -m bench.console_pages --backend postgres --decisions 20000
"""

from __future__ import annotations

import argparse
import json
import time
from uuid import UUID

import httpx

from bench.common import Server, database, latency_summary, wait_ready
from infrastructure.database import DatabaseTarget

RUN_ID = "console-bench"
BATCH = 1_000
TARGET_P50_MS = 200.0


def build_run(target: DatabaseTarget, decisions: int, actions: int, failed: int) -> float:
    """Write the run's history with the ledger itself; the seconds it took."""
    from application.commands import Commands
    from application.ledger import DecisionLedger
    from domain.canonical import fingerprint
    from domain.commands import AdmitInputs, FailAction, ModelRef, OpenRun, RecordDecision, RequestAction

    started = time.perf_counter()
    ledger = DecisionLedger(env=target.library_env())
    commands = Commands.over(ledger)
    try:
        commands.runs.open(OpenRun(token="open", actor="bench", run_id=RUN_ID, lane="fraud"))
        admitted = decisions + decisions // 100
        for start in range(0, admitted, 10_000):
            inputs = tuple(f"txn-{number:07d}" for number in range(start, min(start + 10_000, admitted)))
            commands.runs.admit(
                AdmitInputs(token=f"basis-{start}", actor="bench", run_id=RUN_ID, input_ids=inputs)
            )
        decision_ids: list[str] = []
        for start in range(0, decisions, BATCH):
            items = [
                RecordDecision(
                    run_id=RUN_ID,
                    input_id=f"txn-{number:07d}",
                    outcome="decline" if number % 7 == 0 else "approve",
                    score=round((number * 7919 % 1000) / 1000, 3),
                    model=ModelRef("gbm", "7"),
                    policy_version="2026-11",
                    reasons=(),
                    features_digest=None,
                    token=f"decide-{number}",
                    actor="bench",
                )
                for number in range(start, min(start + BATCH, decisions))
            ]
            result = commands.batches.record(
                RUN_ID, items, f"batch-{start}", fingerprint("bench_batch", {"start": start})
            )
            decision_ids += [item.decision_id for item in result.view.items if item.decision_id][:10]
        for number in range(min(actions, len(decision_ids))):
            action = commands.actions.request(
                RequestAction(
                    run_id=RUN_ID,
                    action_key=f"block-{number}",
                    decision_id=UUID(decision_ids[number]),
                    kind="block-card",
                    target=None,
                    params={},
                    token=f"action-{number}",
                    actor="bench",
                )
            )
            if number < failed:
                commands.actions.fail(
                    FailAction(
                        action_id=UUID(action.view.action_id),
                        error="gateway timeout",
                        retryable=True,
                        token=f"fail-{number}",
                        actor="bench",
                    )
                )
    finally:
        commands.close()
        ledger.close()
    return time.perf_counter() - started


def measure(base_url: str, urls: dict[str, str], rounds: int) -> dict[str, dict[str, float]]:
    latencies: dict[str, list[float]] = {name: [] for name in urls}
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for name, url in urls.items():  # warm-up, untimed
            response = client.get(url)
            if response.status_code != 200:
                raise SystemExit(f"{name}: GET {url} answered {response.status_code}: {response.text[:300]}")
        for _ in range(rounds):
            for name, url in urls.items():
                started = time.perf_counter()
                response = client.get(url)
                latencies[name].append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise SystemExit(f"{name}: GET {url} answered {response.status_code}")
    return {name: latency_summary(values) for name, values in latencies.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--actions", type=int, default=500)
    parser.add_argument("--failed", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    options = parser.parse_args()

    with database(options.backend, prefix="console") as target:
        print(f"writing a run of {options.decisions:,} decisions on {options.backend} ...", flush=True)
        build_s = build_run(target, options.decisions, options.actions, options.failed)
        print(
            f"  written in {build_s:.0f} s; starting the server, waiting for the read models ...", flush=True
        )
        with Server(target, run_projections=True, startup_timeout=120) as server:
            ready = wait_ready(server.base_url, timeout=1800)
            closed = httpx.post(
                f"{server.base_url}/runs/{RUN_ID}/close", headers={"Idempotency-Key": "close"}, timeout=600
            )
            if closed.status_code != 200:
                raise SystemExit(f"close answered {closed.status_code}: {closed.text[:300]}")
            head = closed.json()["position"]
            httpx.get(f"{server.base_url}/runs", params={"min_position": head}, timeout=60)
            summary = httpx.get(f"{server.base_url}/runs/{RUN_ID}/summary", timeout=60).json()
            middle = (summary["first_position"] + summary["last_position"]) // 2
            urls = {
                "runs page": "/console",
                "run page": f"/console/runs/{RUN_ID}",
                "run page as of the middle": f"/console/runs/{RUN_ID}?as_of_position={middle}",
                "run page, later missing IDs": f"/console/runs/{RUN_ID}?missing_after=txn-{options.decisions + 100:07d}",
                "actions page (failed)": "/console/actions?status=failed",
                "audit page": "/console/audit",
                "baseline: GET /runs/{id}/summary": f"/runs/{RUN_ID}/summary",
            }
            figures = measure(server.base_url, urls, options.rounds)
    baseline = figures["baseline: GET /runs/{id}/summary"]["p50_ms"]
    print(
        f"\n{options.decisions:,} decisions, {summary['event_count']:,} run events, head {head:,};"
        f" projections were ready at {ready.get('head_position')}; {options.rounds} rounds\n"
    )
    print(f"{'page':<36} {'p50 ms':>8} {'p99 ms':>8} {'x baseline':>11}  p50 < {TARGET_P50_MS:.0f} ms")
    for name, figure in figures.items():
        met = "yes" if figure["p50_ms"] < TARGET_P50_MS else "NO"
        print(
            f"{name:<36} {figure['p50_ms']:8.1f} {figure['p99_ms']:8.1f} {figure['p50_ms'] / baseline:10.1f}x  {met}"
        )
    if options.json:
        print(
            json.dumps(
                {"decisions": options.decisions, "backend": options.backend, "figures": figures}, indent=2
            )
        )
    if any(figure["p50_ms"] >= TARGET_P50_MS for figure in figures.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
