"""`decision-ledger demo`: a fraud lane against a fresh ledger, told with rich output.

It serves the API and the console on loopback over a new SQLite database in a temporary
directory, starts a local webhook receiver (the card processor), and plays three acts:

1. a run whose decisions all arrive (30% of them twice, out of order): green, proof verified;
2. a run that loses 5% of its decisions and meets one effector outage: red, with reasons;
3. the remediation: reopen, send the missing decisions, redeliver the failed action: green.

The lane only requests a block-card action for each decline; the ledger's own dispatcher
carries each out as a signed Standard Webhook to the card processor (the receiver), retries
it on its schedule, and dead-letters it when the schedule is used up. The remediation
redelivers that action through the API, and the dispatcher delivers it.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from application.proof_checks import VerificationFailed, verify_run_proof
from interfaces.demo.client import DemoFailed, LedgerClient
from interfaces.demo.lane import Scored, at_least_once, score, transactions
from interfaces.demo.receiver import WebhookReceiver
from interfaces.demo.server import BLOCK_CARD, ledger_server, write_effectors_file
from interfaces.threaded_server import free_port

DROPPED_SHARE = 0.05
#: How long the dispatcher may take to settle a run's actions (seconds).
DISPATCH_TIMEOUT_S = 120.0
#: Where an action stands with the dispatcher while it still has to send it.
UNSETTLED = ("waiting", "in_flight")


@dataclass
class ActOutcome:
    run_id: str
    verdict: str
    attempt: int
    reasons: list[dict[str, Any]] = field(default_factory=list)
    proof_verified: bool | None = None


@dataclass
class DemoReport:
    console_url: str
    acts: list[ActOutcome] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        verdicts = [act.verdict for act in self.acts]
        proofs = [act.proof_verified for act in self.acts if act.verdict == "committed"]
        return verdicts == ["committed", "rejected", "committed"] and all(proofs) and len(proofs) == 2


class Demo:
    def __init__(self, base_url: str, receiver: WebhookReceiver, out: Console, seed: int, size: int) -> None:
        self.base_url = base_url
        self.api = LedgerClient(httpx.Client(base_url=base_url, timeout=60))
        self.receiver = receiver
        self.out = out
        self.rng = random.Random(seed)
        self.size = size

    def shutdown(self) -> None:
        self.api.http.close()

    # --- The lane's steps -----------------------------------------------------------------

    def open_and_admit(self, run_id: str) -> list[Scored]:
        self.api.post("/runs", f"open-{run_id}", {"run_id": run_id, "lane": "fraud"})
        batch = transactions(run_id, self.size, self.rng)
        self.api.post(f"/runs/{run_id}/basis", f"basis-{run_id}", {"input_ids": [t.input_id for t in batch]})
        scored = [score(transaction) for transaction in batch]
        outcomes = {
            name: sum(1 for s in scored if s.outcome == name) for name in ("approve", "review", "decline")
        }
        self.out.print(
            f"  opened [bold]{run_id}[/], admitted {len(batch):,} transactions;"
            f" the model says {outcomes['approve']:,} approve, {outcomes['review']:,} review,"
            f" {outcomes['decline']:,} decline"
        )
        return scored

    def deliver(self, run_id: str, scored: list[Scored]) -> dict[str, str]:
        """Send the decisions at least once, shuffled; answer each input's decision ID."""
        deliveries = at_least_once([s.decision_item(run_id) for s in scored], self.rng)
        counts, ids = self.api.send_decisions(run_id, deliveries)
        self.out.print(
            f"  delivered {len(deliveries):,} messages for {len(scored):,} decisions (30% redelivered, shuffled):"
            f" [green]{counts['created']:,} recorded[/], [cyan]{counts['replayed']:,} replays answered, not"
            f" recorded again[/]"
            + (
                f", [red]{counts['conflict'] + counts['invalid']} refused[/]"
                if counts["conflict"] + counts["invalid"]
                else ""
            )
        )
        if counts["conflict"] or counts["invalid"]:
            raise DemoFailed(f"the ledger refused decisions of {run_id}: {counts}")
        return ids

    def request_blocks(self, run_id: str, scored: list[Scored], decision_ids: dict[str, str]) -> list[str]:
        """Request a block-card action for each decline (the ledger's dispatcher carries
        them out); answer the actions' IDs."""
        action_ids = []
        for s in scored:
            if s.outcome != "decline":
                continue
            input_id = s.transaction.input_id
            action = self.api.post(
                f"/runs/{run_id}/actions",
                f"block-card-{input_id}",
                {
                    "decision_id": decision_ids[input_id],
                    "kind": BLOCK_CARD,
                    "target": f"card-of-{input_id}",
                    "params": {"amount": s.transaction.amount},
                },
            )
            action_ids.append(action["action_id"])
        return action_ids

    def await_dispatch(self, action_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Wait until the dispatcher has settled every action (delivered, or dead-lettered);
        answer each action as the ledger then has it."""
        pending, settled = list(action_ids), {}
        deadline = time.monotonic() + DISPATCH_TIMEOUT_S
        while pending:
            for action_id in list(pending):
                action = self.api.get(f"/actions/{action_id}")
                if action["dispatch"] not in UNSETTLED:
                    settled[action_id] = action
                    pending.remove(action_id)
            if pending:
                if time.monotonic() > deadline:
                    raise DemoFailed(f"the dispatcher did not settle {len(pending)} action(s) in time")
                time.sleep(0.1)
        return settled

    def dispatch(self, run_id: str, scored: list[Scored], decision_ids: dict[str, str]) -> list[str]:
        """The declines' actions, carried out by the dispatcher; answer the dead-lettered ones."""
        requested = self.request_blocks(run_id, scored, decision_ids)
        if not requested:
            self.out.print("  none of them is a decline: no block-card action to carry out")
            return []
        actions = list(self.await_dispatch(requested).values())
        delivered = sum(1 for action in actions if action["dispatch"] == "delivered")
        dead = [action["action_id"] for action in actions if action["dispatch"] == "dead_lettered"]
        attempts = sum(len(action["deliveries"]) for action in actions)
        outage = f", [red]{len(dead)} dead-lettered[/] after {attempts - delivered} failed attempts"
        self.out.print(
            f"  the ledger's dispatcher delivered [green]{delivered:,} block-card webhooks[/] to the card"
            f" processor ({attempts:,} signed attempts){outage if dead else ''}"
        )
        return dead

    def close(self, run_id: str, key: str) -> ActOutcome:
        answer = self.api.post(f"/runs/{run_id}/close", key)
        outcome = ActOutcome(run_id, answer["verdict"], answer["attempt"], answer["reasons"])
        self.show_verdict(outcome)
        if outcome.verdict == "committed":
            outcome.proof_verified = self.verify_proof(run_id)
        self.out.print(f"  see it: {self.base_url}/console/runs/{outcome.run_id}")
        return outcome

    def verify_proof(self, run_id: str) -> bool:
        proof = self.api.get(f"/runs/{run_id}/proof")
        public_key = self.api.get("/keys")["public_key"]
        try:
            verify_run_proof(proof, public_key)
        except VerificationFailed as failure:
            self.out.print(f"  [red]proof of {run_id} does NOT verify: {failure}[/]")
            return False
        self.out.print(f"  proof of [bold]{run_id}[/] verified offline against key {proof.get('key_id', '')}")
        return True

    def show_verdict(self, outcome: ActOutcome) -> None:
        colour = "green" if outcome.verdict == "committed" else "red"
        self.out.print(f"  verdict of attempt {outcome.attempt}: [bold {colour}]{outcome.verdict.upper()}[/]")
        if outcome.reasons:
            table = Table("reason", "count", "for example", title="why it is red", title_justify="left")
            for reason in outcome.reasons:
                table.add_row(reason["code"], f"{reason['count']:,}", ", ".join(reason["sample_ids"][:3]))
            self.out.print(table)

    # --- The three acts -------------------------------------------------------------------

    def green_run(self, run_id: str) -> ActOutcome:
        self.out.rule("[bold]1. A clean run")
        scored = self.open_and_admit(run_id)
        ids = self.deliver(run_id, scored)
        dead = self.dispatch(run_id, scored, ids)
        if dead:
            raise DemoFailed(f"the card processor failed {len(dead)} action(s) of the clean run")
        return self.close(run_id, f"close-{run_id}")

    def red_run(self, run_id: str) -> tuple[ActOutcome, list[Scored], list[str]]:
        self.out.rule("[bold]2. A run that loses decisions and meets an outage")
        scored = self.open_and_admit(run_id)
        dropped = set(self.rng.sample(range(len(scored)), max(1, int(len(scored) * DROPPED_SHARE))))
        kept = [s for index, s in enumerate(scored) if index not in dropped]
        self.out.print(f"  the queue loses {len(dropped):,} decisions ({DROPPED_SHARE:.0%})")
        ids = self.deliver(run_id, kept)
        declines = [s for s in kept if s.outcome == "decline"]
        if declines:
            self.receiver.down_for.add(declines[0].transaction.input_id)
            self.out.print(f"  the card processor is down for the card of {declines[0].transaction.input_id}")
        failed = self.dispatch(run_id, kept, ids)
        return self.close(run_id, f"close-{run_id}-1"), scored, failed

    def remediate(self, run_id: str, scored: list[Scored], failed_actions: list[str]) -> ActOutcome:
        self.out.rule("[bold]3. Remediation")
        self.api.post(
            f"/runs/{run_id}/reopen",
            f"reopen-{run_id}",
            {"reason": "resend lost decisions, retry the failed block"},
        )
        missing = set(self.api.missing(run_id))
        resend = [s for s in scored if s.transaction.input_id in missing]
        self.out.print(
            f"  reopened; the ledger names {len(missing):,} missing inputs, which the lane scores and sends again"
        )
        ids = self.deliver(run_id, resend)
        self.dispatch(run_id, resend, ids)
        self.receiver.down_for.clear()
        self.out.print("  the card processor is back")
        for action_id in failed_actions:
            self.api.post(f"/actions/{action_id}/redeliver", f"redeliver-{action_id}")
        for action_id, action in self.await_dispatch(failed_actions).items():
            delivered = action["dispatch"] == "delivered"
            self.out.print(
                f"  redelivered the dead-lettered block-card action {action_id[:8]}… (same webhook-id):"
                + (
                    f" [green]delivered[/] on attempt {action['deliveries'][-1]['attempt']}, {action['status']},"
                    f" ref {action['external_ref']}"
                    if delivered
                    else f" [red]{action['dispatch']} again[/]"
                )
            )
        return self.close(run_id, f"close-{run_id}-2")


def run_demo(
    out: Console,
    *,
    transactions_per_run: int,
    seed: int,
    port: int | None,
    wait: bool,
    at_the_end: Callable[[str], None] | None = None,
) -> DemoReport:
    """`at_the_end` is called with the server's base URL once the story is told (for the
    README's screenshot), while the server still serves."""
    with tempfile.TemporaryDirectory(prefix="decision-ledger-demo-") as directory:
        receiver = WebhookReceiver().start()
        effectors_file = write_effectors_file(Path(directory), receiver.url, receiver.secret)
        try:
            with ledger_server(Path(directory), port or free_port(), effectors_file) as base_url:
                out.print(
                    Panel.fit(
                        f"decision-ledger demo: a fraud lane on a fresh ledger in {directory}\n"
                        f"console  {base_url}/console\nAPI docs {base_url}/docs\nwebhooks {receiver.url}",
                        border_style="blue",
                    )
                )
                report = DemoReport(f"{base_url}/console")
                demo = Demo(base_url, receiver, out, seed, transactions_per_run)
                try:
                    report.acts.append(demo.green_run("fraud-day-1"))
                    red, scored, failed = demo.red_run("fraud-day-2")
                    report.acts.append(red)
                    report.acts.append(demo.remediate("fraud-day-2", scored, failed))
                finally:
                    demo.shutdown()
                summarise(out, report)
                if at_the_end is not None:
                    at_the_end(base_url)
                if wait:
                    out.print(f"\nThe console is at [bold]{report.console_url}[/]; Ctrl-C stops the demo.")
                    try:
                        while True:
                            time.sleep(3600)
                    except KeyboardInterrupt:
                        out.print("stopped")
                return report
        finally:
            receiver.stop()


def summarise(out: Console, report: DemoReport) -> None:
    table = Table("run", "attempt", "verdict", "proof", title="The demo's runs", title_justify="left")
    for act in report.acts:
        colour = "green" if act.verdict == "committed" else "red"
        proof = {True: "verified", False: "NOT verified", None: "–"}[act.proof_verified]
        table.add_row(act.run_id, str(act.attempt), f"[{colour}]{act.verdict}[/]", proof)
    out.print(table)
    out.print(
        "[bold green]every run ended as the story says[/]"
        if report.succeeded
        else "[bold red]the story went wrong[/]"
    )
