"""The load generator: a process of its own that drives a running server.

    python -m bench.loadgen SPEC.json RESULT.json

Closed loop: each of `concurrency` workers sends its next request only when the answer
to its previous one has arrived, over a connection per worker. The client is
bench/leanhttp.py by default (httpx spends more CPU per request than the server does,
which on 2 cores measures the client); `"client": "httpx"` in the spec selects httpx. It stops after `requests` requests, or after `duration` seconds, whichever
the spec names; `warmup` requests (with keys of their own) go first, untimed.

Workloads (the spec's "workload"):

- decisions: POST /runs/{run_id}/decisions, request i with Idempotency-Key
  `{key_prefix}-{i}` and input `{key_prefix}-in-{i}`. Re-running the same spec
  re-sends the same keys and bodies: a replay storm.
- batch: POST /runs/{run_id}/decisions/batch, `batch_size` decisions per request.
- mixed: one run per worker: open, admit the basis, decide each input, request an
  action for each decline and commit it, re-sending `duplicate_rate` of the requests
  (at-least-once delivery), then close; every close must come back `committed`.
- get: GET the spec's `urls` (each with a tag; absolute URLs may name several servers,
  then give `connections`), round-robin; latency per tag.

Every POST carries an Idempotency-Key. A re-sent request must get the same status and
`Idempotent-Replayed: true`; the result counts those that did not.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench import leanhttp
from bench.common import decision_body, latency_summary

JSON_HEADERS = {"content-type": "application/json"}


class Recorder:
    """Latencies, statuses and replay flags of the timed requests."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.by_tag: dict[str, list[float]] = {}
        self.statuses: Counter[int] = Counter()
        self.replayed: Counter[str] = Counter()
        self.errors: list[str] = []
        self.error_count = 0
        self.transport_retries = 0
        self.items = 0
        self.timing = False
        self.last_done = 0.0

    def note(self, started: float, response: httpx.Response | None, tag: str = "", error: str = "") -> None:
        if not self.timing:
            return
        finished = time.perf_counter()
        self.last_done = finished
        self.latencies.append(finished - started)
        if tag:
            self.by_tag.setdefault(tag, []).append(finished - started)
        if response is None:
            self.error_count += 1
            if len(self.errors) < 10:
                self.errors.append(error)
            return
        self.statuses[response.status_code] += 1
        flag = response.headers.get("idempotent-replayed")
        if flag is not None:
            self.replayed[flag] += 1
        if response.status_code >= 400:
            self.error_count += 1
            if len(self.errors) < 10:
                self.errors.append(
                    f"{response.status_code} {response.request.url.path}: {response.text[:300]}"
                )


#: Re-sends after a transport error (a keep-alive connection the server closed just as
#: it was reused). Safe: a POST carries its Idempotency-Key, so the server answers a
#: re-send with the first answer. Counted in the result as `transport_retries`.
TRANSPORT_RETRIES = 2


async def send(
    client: httpx.AsyncClient,
    recorder: Recorder,
    method: str,
    path: str,
    *,
    key: str | None = None,
    body: bytes | None = None,
    tag: str = "",
) -> httpx.Response | None:
    headers = dict(JSON_HEADERS)
    if key is not None:
        headers["Idempotency-Key"] = key
    started = time.perf_counter()
    for attempt in range(TRANSPORT_RETRIES + 1):
        try:
            response = await client.request(method, path, content=body, headers=headers)
            break
        except (httpx.TransportError, leanhttp.TransportError) as error:
            if attempt == TRANSPORT_RETRIES:
                recorder.note(started, None, tag, f"{type(error).__name__}: {error}")
                return None
            recorder.transport_retries += recorder.timing
    recorder.note(started, response, tag)
    return response


# --- Workloads ------------------------------------------------------------------------------


class Workload:
    """Hands out request numbers; `requests` of them or until `duration` has passed."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.next_number = 0
        self.limit: int | None = spec.get("requests")
        self.deadline: float | None = None

    def take(self) -> int | None:
        if self.limit is not None and self.next_number >= self.limit:
            return None
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return None
        number = self.next_number
        self.next_number += 1
        return number

    async def worker(self, client: httpx.AsyncClient, recorder: Recorder, worker_number: int) -> None:
        while (number := self.take()) is not None:
            await self.one(client, recorder, number)

    async def one(self, client: httpx.AsyncClient, recorder: Recorder, number: int) -> None:
        raise NotImplementedError


class Decisions(Workload):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.path = f"/runs/{spec['run_id']}/decisions"
        self.prefix = spec["key_prefix"]
        self._bodies: dict[int, bytes] = {}
        if self.limit is not None:  # build the bodies before the clock starts
            self._bodies = {number: self.body(number) for number in range(self.limit)}

    def body(self, number: int) -> bytes:
        return json.dumps(decision_body(f"{self.prefix}-in-{number}", number)).encode()

    async def one(self, client: httpx.AsyncClient, recorder: Recorder, number: int) -> None:
        body = self._bodies.get(number) or self.body(number)
        await send(client, recorder, "POST", self.path, key=f"{self.prefix}-{number}", body=body)
        recorder.items += recorder.timing


class Batch(Workload):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.path = f"/runs/{spec['run_id']}/decisions/batch"
        self.prefix = spec["key_prefix"]
        self.size = int(spec.get("batch_size", 1000))

    def body(self, number: int) -> bytes:
        decisions = []
        for item in range(self.size):
            serial = number * self.size + item
            decisions.append(
                {
                    **decision_body(f"{self.prefix}-in-{serial}", serial),
                    "idempotency_key": f"{self.prefix}-{serial}",
                }
            )
        return json.dumps({"decisions": decisions}).encode()

    async def one(self, client: httpx.AsyncClient, recorder: Recorder, number: int) -> None:
        body = self.body(number)  # built untimed below: `send` starts its clock after this
        response = await send(
            client, recorder, "POST", self.path, key=f"{self.prefix}-batch-{number}", body=body
        )
        if response is not None and response.status_code == 200 and recorder.timing:
            counts = response.json()["counts"]
            recorder.items += counts.get("created", 0) + counts.get("replayed", 0)


class Gets(Workload):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.urls: list[tuple[str, str]] = [(entry["tag"], entry["url"]) for entry in spec["urls"]]

    async def one(self, client: httpx.AsyncClient, recorder: Recorder, number: int) -> None:
        tag, url = self.urls[number % len(self.urls)]
        await send(client, recorder, "GET", url, tag=tag)
        recorder.items += recorder.timing


class Mixed(Workload):
    """A lane per worker: open, admit, decide, act, commit, close, with re-deliveries."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.inputs = int(spec.get("inputs_per_run", 50))
        self.duplicate_rate = float(spec.get("duplicate_rate", 0.3))
        self.prefix = spec["key_prefix"]
        self.verdicts: list[str] = []
        self.duplicates = 0
        self.mismatched_replays = 0
        self.originals = 0
        self.lanes_done = 0

    async def worker(self, client: httpx.AsyncClient, recorder: Recorder, worker_number: int) -> None:
        lanes = int(self.spec.get("runs_per_worker", 1))
        for lane in range(lanes):
            if self.deadline is not None and time.perf_counter() >= self.deadline:
                return
            await self.lane(
                client,
                recorder,
                f"{self.prefix}-w{worker_number}-l{lane}",
                random.Random(worker_number * 1000 + lane),
            )

    async def lane(
        self, client: httpx.AsyncClient, recorder: Recorder, run_id: str, rng: random.Random
    ) -> None:
        sent: list[tuple[str, str, str, bytes, int]] = []

        async def post(path: str, key: str, body: dict[str, Any]) -> httpx.Response | None:
            data = json.dumps(body).encode()
            response = await send(client, recorder, "POST", path, key=key, body=data)
            self.originals += 1
            if response is not None:
                sent.append(("POST", path, key, data, response.status_code))
                if rng.random() < self.duplicate_rate:
                    await self.redeliver(client, recorder, rng.choice(sent[-8:]))
            return response

        inputs = [f"{run_id}-txn-{number}" for number in range(self.inputs)]
        await post("/runs", f"open-{run_id}", {"run_id": run_id, "lane": "fraud"})
        await post(f"/runs/{run_id}/basis", f"basis-{run_id}", {"input_ids": inputs})
        for number, input_id in enumerate(inputs):
            body = decision_body(input_id, number)
            response = await post(f"/runs/{run_id}/decisions", f"decide-{input_id}", body)
            if body["outcome"] != "decline" or response is None or response.status_code != 201:
                continue
            decision_id = response.json()["decision_id"]
            response = await post(
                f"/runs/{run_id}/actions",
                f"block-{input_id}",
                {"decision_id": decision_id, "kind": "block-card"},
            )
            if response is None or response.status_code != 201:
                continue
            action_id = response.json()["action_id"]
            await post(
                f"/actions/{action_id}/commit", f"commit-{input_id}", {"external_ref": f"psp-{input_id}"}
            )
        # Tagged: a close waits for the projections to reach the run's last write.
        response = await send(
            client, recorder, "POST", f"/runs/{run_id}/close", key=f"close-{run_id}", body=b"{}", tag="close"
        )
        self.originals += 1
        verdict = (
            response.json().get("verdict", f"HTTP {response.status_code}")
            if response is not None
            else "error"
        )
        if response is not None and rng.random() < self.duplicate_rate:
            await self.redeliver(
                client,
                recorder,
                ("POST", f"/runs/{run_id}/close", f"close-{run_id}", b"{}", response.status_code),
            )
        self.verdicts.append(str(verdict))
        self.lanes_done += 1

    async def redeliver(
        self, client: httpx.AsyncClient, recorder: Recorder, request: tuple[str, str, str, bytes, int]
    ) -> None:
        method, path, key, body, status = request
        self.duplicates += 1
        response = await send(client, recorder, method, path, key=key, body=body)
        if (
            response is None
            or response.status_code != status
            or (status < 400 and response.headers.get("idempotent-replayed") != "true")
        ):
            self.mismatched_replays += 1


WORKLOADS: dict[str, type[Workload]] = {"decisions": Decisions, "batch": Batch, "get": Gets, "mixed": Mixed}


# --- Running one spec --------------------------------------------------------------------------


async def drive(spec: dict[str, Any]) -> dict[str, Any]:
    concurrency = int(spec["concurrency"])
    connections = max(concurrency, int(spec.get("connections", 0)))
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them.
    limits = httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=2.0
    )
    recorder = Recorder()
    client_kind = spec.get("client", "lean")
    client_cm: Any = (
        httpx.AsyncClient(base_url=spec["base_url"], limits=limits, timeout=spec.get("timeout", 120.0))
        if client_kind == "httpx"
        else leanhttp.LeanClient(spec["base_url"], connections, timeout=spec.get("timeout", 120.0))
    )
    async with client_cm as client:
        warmup = int(spec.get("warmup", 0))
        if warmup:
            warm = WORKLOADS[spec["workload"]](
                {**spec, "requests": warmup, "key_prefix": spec.get("key_prefix", "") + "-warm"}
            )
            await asyncio.gather(*(warm.worker(client, recorder, number) for number in range(concurrency)))
        workload = WORKLOADS[spec["workload"]](spec)
        recorder.timing = True
        started = time.perf_counter()
        if spec.get("duration"):
            workload.deadline = started + float(spec["duration"])
        await asyncio.gather(*(workload.worker(client, recorder, number) for number in range(concurrency)))
        elapsed = (recorder.last_done or time.perf_counter()) - started
    result: dict[str, Any] = {
        "client": client_kind,
        "workload": spec["workload"],
        "concurrency": concurrency,
        "requests": len(recorder.latencies),
        "elapsed_s": elapsed,
        "throughput_rps": len(recorder.latencies) / elapsed if elapsed > 0 else 0.0,
        "items": recorder.items,
        "items_per_s": recorder.items / elapsed if elapsed > 0 else 0.0,
        **latency_summary(recorder.latencies),
        "status_counts": {str(status): count for status, count in sorted(recorder.statuses.items())},
        "replayed": dict(recorder.replayed),
        "error_count": recorder.error_count,
        "transport_retries": recorder.transport_retries,
        "errors": recorder.errors,
        "tags": {
            tag: {"requests": len(values), **latency_summary(values)}
            for tag, values in recorder.by_tag.items()
        },
    }
    if isinstance(workload, Mixed):
        result.update(
            verdicts=dict(Counter(workload.verdicts)),
            runs=workload.lanes_done,
            original_requests=workload.originals,
            duplicate_requests=workload.duplicates,
            mismatched_replays=workload.mismatched_replays,
        )
    return result


def main() -> None:
    spec_path, out_path = Path(sys.argv[1]), Path(sys.argv[2])
    result = asyncio.run(drive(json.loads(spec_path.read_text())))
    out_path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
