"""The lane's side of the ledger's API: each call checked, decisions sent in batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

DECISION_BATCH = 500


class DemoFailed(Exception):
    """The ledger answered something the demo's story does not allow."""


class LedgerClient:
    """The lane's side of the API, each call checked."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def post(self, path: str, key: str, body: Any = None, expect: tuple[int, ...] = (200, 201)) -> Any:
        response = self.http.post(path, json=body, headers={"Idempotency-Key": key})
        if response.status_code not in expect:
            raise DemoFailed(f"POST {path} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        if response.status_code != 200:
            raise DemoFailed(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    def send_decisions(
        self, run_id: str, items: list[dict[str, Any]]
    ) -> tuple[dict[str, int], dict[str, str]]:
        """Send in batches; answer the counts of each item status, and each input's decision ID."""
        counts = {"created": 0, "replayed": 0, "conflict": 0, "invalid": 0}
        decision_ids: dict[str, str] = {}
        for number, chunk in enumerate(batches(items)):
            answer = self.post(
                f"/runs/{run_id}/decisions/batch",
                f"batch-{run_id}-{len(items)}-{number}",
                {"decisions": chunk},
            )
            for name, count in answer["counts"].items():
                counts[name] += count
            for item in answer["items"]:
                if item.get("decision_id"):
                    decision_ids[item["input_id"]] = item["decision_id"]
        return counts, decision_ids

    def missing(self, run_id: str) -> list[str]:
        ids: list[str] = []
        after = None
        while True:
            params: dict[str, Any] = {"category": "missing", "limit": 1000}
            if after:
                params["after"] = after
            page = self.get(f"/runs/{run_id}/reconciliation", **params)["categories"]["missing"]
            ids += page["ids"]
            after = page.get("next_after")
            if not after:
                return ids


def batches(items: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The consumer's batches, in delivery order: a batch never carries one input twice
    (the ledger refuses that), so a redelivery goes out in a later batch."""
    batch: list[dict[str, Any]] = []
    inputs: set[str] = set()
    for item in items:
        if len(batch) == DECISION_BATCH or item["input_id"] in inputs:
            yield batch
            batch, inputs = [], set()
        batch.append(item)
        inputs.add(item["input_id"])
    if batch:
        yield batch
