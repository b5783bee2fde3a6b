"""A synthetic fraud lane: card transactions, a scoring model, and an at-least-once
queue that delivers some decisions twice and out of order."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

MODEL = {"name": "fraud-gbm", "version": "2026.11"}
POLICY_VERSION = "fraud-policy-7"
DECLINE_AT = 0.5
REVIEW_AT = 0.3


@dataclass(frozen=True)
class Transaction:
    input_id: str
    amount: float
    foreign: bool
    night: bool
    new_merchant: bool
    card_velocity: int


@dataclass(frozen=True)
class Scored:
    transaction: Transaction
    score: float
    outcome: str
    reasons: tuple[str, ...]

    def decision_item(self, run_id: str) -> dict[str, Any]:
        """The batch item the lane sends: its idempotency key names the run and input, so
        every redelivery of it carries the same key."""
        return {
            "idempotency_key": f"decide-{run_id}-{self.transaction.input_id}",
            "input_id": self.transaction.input_id,
            "outcome": self.outcome,
            "score": round(self.score, 4),
            "model": MODEL,
            "policy_version": POLICY_VERSION,
            "reasons": list(self.reasons),
        }


def transactions(run_id: str, count: int, rng: random.Random) -> list[Transaction]:
    return [
        Transaction(
            input_id=f"{run_id}-txn-{number:06d}",
            amount=round(rng.lognormvariate(3.6, 1.1), 2),
            foreign=rng.random() < 0.12,
            night=rng.random() < 0.2,
            new_merchant=rng.random() < 0.25,
            card_velocity=min(int(rng.expovariate(0.6)), 12),
        )
        for number in range(count)
    ]


def score(transaction: Transaction) -> Scored:
    """A small logistic model: large, foreign, night-time, new-merchant, high-velocity
    payments score high."""
    weights = {
        "amount": 0.9 * max(math.log10(transaction.amount + 1) - 2.0, 0.0),
        "foreign": 1.6 if transaction.foreign else 0.0,
        "night": 0.9 if transaction.night else 0.0,
        "new_merchant": 0.7 if transaction.new_merchant else 0.0,
        "velocity": 0.45 * transaction.card_velocity,
    }
    logit = sum(weights.values()) - 3.2
    probability = 1.0 / (1.0 + math.exp(-logit))
    outcome = "decline" if probability >= DECLINE_AT else "review" if probability >= REVIEW_AT else "approve"
    reasons = tuple(sorted(name for name, weight in weights.items() if weight >= 0.9))
    return Scored(transaction, probability, outcome, reasons)


def at_least_once(items: list[Any], rng: random.Random, duplicates: float = 0.3) -> list[Any]:
    """Every item once, `duplicates` of them again, all shuffled: what a queue with
    redeliveries and no ordering guarantee hands a consumer."""
    deliveries = list(items) + rng.sample(items, int(len(items) * duplicates))
    rng.shuffle(deliveries)
    return deliveries
