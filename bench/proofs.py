"""How fast the audit chain verifies, and how long a big run's proof takes to make.

The script writes one run of N decisions (about N events): it opens the run, admits
the inputs in batches of 10,000 and records the decisions with
DecisionLedger.record_decision_batch in batches of 1,000. It brings the read models up
to the head with Projections.catch_up, then measures:

- `audit verify`: StoreVerifier.verify_chain over every stored event, with the run's
  proof checked at its seal, as the command line does (events per second);
- the close: RunCloser.close end to end (seal, wait for the views, evidence, verdict
  and signed proof), and within it the proof-building part (the run's audit records,
  the Merkle root over them, the signature);
- for reference, `proof verify --database-url` (the chain up to the seal, recomputing
  the proof) and one decision's inclusion proof (GET /decisions/{id}/proof).

    python -m bench.proofs                                     # a temporary PostgreSQL schema
    python -m bench.proofs --events 20000
    python -m bench.proofs --database-url 'sqlite:///bench-proofs.sqlite3'

The default is a fresh schema in the local test database, dropped at the end. A
`--database-url` names a new SQLite file or a PostgreSQL database (with an optional
`?schema=` that must not exist yet); the script removes what it created.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from application.audit_chain import merkle_root
from application.caching import BoundedLRU
from application.proof_checks import verify_run_proof
from application.service import LedgerService
from application.store_verification import StoreVerifier
from bench.common import DEFAULT_POSTGRES_URL, new_database
from domain.canonical import fingerprint
from domain.commands import AdmitInputs, CloseRun, ModelRef, OpenRun, RecordDecision
from domain.identity import decision_uuid
from domain.limits import MAX_BASIS_BATCH, MAX_DECISION_BATCH
from infrastructure.database import DatabaseTarget, parse_database_url
from infrastructure.signing import Signer

RUN_ID = "bench-proofs"
MODEL = ModelRef("bench-model", "1")
OUTCOMES = ("approve", "decline", "refer")

T = TypeVar("T")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        help=f"sqlite:///new-file or postgresql://user@host/db[?schema=new_schema] "
        f"(default: a temporary schema in {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument(
        "--events", type=int, default=100_000, help="decisions to record (about as many events)"
    )
    parser.add_argument("--repetitions", type=int, default=3, help="runs of each verification")
    arguments = parser.parse_args()
    if arguments.events < 1 or arguments.repetitions < 1:
        parser.error("--events and --repetitions must be positive")
    return arguments


# --- Where the benchmark runs ----------------------------------------------------------------


def benchmark_database(database_url: str | None) -> AbstractContextManager[DatabaseTarget]:
    """A database target of the benchmark's own, removed afterwards."""
    return new_database(parse_database_url(database_url or DEFAULT_POSTGRES_URL), "bench_proofs")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(action: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


# --- The history --------------------------------------------------------------------------------


def write_run(service: LedgerService, decisions: int) -> None:
    """Open the run, admit its inputs 10,000 at a time, decide them 1,000 at a time."""
    commands = service.commands
    commands.runs.open(OpenRun(token="bench-open", actor="bench", run_id=RUN_ID, lane="bench"))
    input_ids = [f"input-{number:08d}" for number in range(decisions)]
    for start in range(0, decisions, MAX_BASIS_BATCH):
        commands.runs.admit(
            AdmitInputs(
                token=f"bench-admit-{start}",
                actor="bench",
                run_id=RUN_ID,
                input_ids=tuple(input_ids[start : start + MAX_BASIS_BATCH]),
            )
        )
    for start in range(0, decisions, MAX_DECISION_BATCH):
        batch = input_ids[start : start + MAX_DECISION_BATCH]
        items = [
            RecordDecision(
                token=f"bench-decide-{input_id}",
                actor="bench",
                run_id=RUN_ID,
                input_id=input_id,
                outcome=OUTCOMES[number % len(OUTCOMES)],
                model=MODEL,
                score=(number % 1000) / 1000,
            )
            for number, input_id in enumerate(batch, start=start)
        ]
        result = commands.batches.record(
            RUN_ID,
            items,
            f"bench-batch-{start}",
            fingerprint("bench_batch", {"first": batch[0], "count": len(batch)}),
        )
        created = sum(1 for item in result.view.items if item.status == "created")
        if created != len(batch):
            raise SystemExit(f"batch at {start}: only {created} of {len(batch)} decisions were created")
        if (start // MAX_DECISION_BATCH) % 10 == 9:
            say(f"  recorded {start + len(batch):,} decisions")


def catch_up_views(service: LedgerService) -> int:
    """Apply every stored event to the live views; the events applied."""
    applied = 0

    def count(events: int) -> None:
        nonlocal applied
        applied += events

    for name in service.projections.names:
        projection = service.projections.kind(name).build(
            service.projections.live_store(name), service.ledger
        )
        service.projections.catch_up(projection, on_progress=count)
    return applied


# --- The measurements --------------------------------------------------------------------------


def verify_everything(service: LedgerService) -> Any:
    """What `decision-ledger audit verify` does, without the progress bar."""
    verifier = StoreVerifier(service.ledger.recorder, service.read_models.audit_stream)
    proofs = verifier.committed_proofs()
    for proof in proofs:
        verify_run_proof(proof, service.signer.public_key)
    return verifier.verify_chain(proofs=proofs)


def verify_against_store(service: LedgerService, proof: dict[str, Any]) -> Any:
    """What `decision-ledger proof verify PROOF --database-url URL` does."""
    verify_run_proof(proof, service.signer.public_key)
    verifier = StoreVerifier(service.ledger.recorder, service.read_models.audit_stream)
    return verifier.verify_chain(to_position=proof["seal_position"], proofs=[proof])


def close_with_timings(service: LedgerService) -> tuple[dict[str, float], dict[str, Any]]:
    """Close the run, timing the whole close and the proof-building step inside it."""
    closer = service.closer
    timings: dict[str, float] = {}
    build_proof = closer._proof  # the step we time: wrapped, not changed

    def timed_proof(run: Any, evidence: Any) -> dict[str, Any]:
        seconds, proof = timed(lambda: build_proof(run, evidence))
        timings["proof"] = seconds
        return proof

    closer._proof = timed_proof  # type: ignore[method-assign]
    try:
        timings["close"], result = timed(
            lambda: closer.close(CloseRun(token="bench-close", actor="bench", run_id=RUN_ID))
        )
    finally:
        del closer._proof
    if result.view.verdict != "committed":
        raise SystemExit(f"the run was not committed: {result.view.reasons}")
    proof = service.queries.run(RUN_ID).verdicts[-1]["proof"]
    return timings, proof


def proof_parts(service: LedgerService, seal_position: int) -> dict[str, float]:
    """The proof-building step again, part by part: the records, the root."""
    service.read_models._material = BoundedLRU(32)  # measure the read, not the cache
    seconds_records, material = timed(lambda: service.read_models.proof_material(RUN_ID, seal_position))
    leaves = material.leaf_hashes
    seconds_root, _ = timed(lambda: merkle_root(leaves))
    seconds_evidence, _ = timed(lambda: service.read_models.evidence(RUN_ID, seal_position))
    return {
        "records": seconds_records,
        "root": seconds_root,
        "evidence": seconds_evidence,
        "leaves": len(leaves),
    }


def rate(events: int, seconds: float) -> str:
    return f"{events / seconds:,.0f} events/s"


def seconds_text(seconds: float) -> str:
    return f"{seconds:,.3f} s" if seconds >= 1 else f"{seconds * 1000:,.1f} ms"


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    print(title)
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def main() -> None:
    arguments = parse_arguments()
    with benchmark_database(arguments.database_url) as target:
        say(f"benchmark database: {target.describe()}")
        service = LedgerService.build(
            target.library_env(), Signer(Ed25519PrivateKey.generate()), close_timeout=300
        )
        try:
            say(f"writing one run of {arguments.events:,} decisions ...")
            seconds_write, _ = timed(lambda: write_run(service, arguments.events))
            say("bringing the views up to the head ...")
            seconds_views, applied = timed(lambda: catch_up_views(service))

            # The close needs the views to follow the seal: a worker, from the head on.
            service.start_projections()
            say("closing the run ...")
            close_timings, proof = close_with_timings(service)
            seal_position = proof["seal_position"]
            service.read_models.wait_for(service.ledger.index.head_position(), timeout=60)
            parts = proof_parts(service, seal_position)

            say("verifying ...")
            chain_runs = [timed(lambda: verify_everything(service)) for _ in range(arguments.repetitions)]
            report = chain_runs[0][1]
            assert report.proofs_checked == 1, report
            chain_seconds = statistics.median(seconds for seconds, _ in chain_runs)
            store_seconds = statistics.median(
                timed(lambda: verify_against_store(service, proof))[0] for _ in range(arguments.repetitions)
            )
            decision_id = decision_uuid(RUN_ID, f"input-{arguments.events // 2:08d}")
            inclusion_seconds, inclusion = timed(lambda: service.decision_proof(decision_id))
            assert inclusion["tree_size"] == proof["merkle"]["tree_size"]
        finally:
            service.close()

    events = report.checked
    print()
    print_table(
        f"bench.proofs on {target.backend}: one run, {arguments.events:,} decisions, {events:,} events "
        f"(median of {arguments.repetitions} for the verifications)",
        [
            ("step", "time", "rate"),
            (
                "write the run (admit 10k, record 1k a batch)",
                seconds_text(seconds_write),
                rate(events, seconds_write),
            ),
            ("views catch-up (runs + audit log)", seconds_text(seconds_views), rate(applied, seconds_views)),
            (
                "audit verify: chain over all events + proof",
                seconds_text(chain_seconds),
                rate(events, chain_seconds),
            ),
            (
                "proof verify --database-url (up to the seal)",
                seconds_text(store_seconds),
                rate(seal_position, store_seconds),
            ),
            ("RunCloser.close (seal .. signed proof)", seconds_text(close_timings["close"]), ""),
            (
                "  of which building the proof",
                seconds_text(close_timings["proof"]),
                f"{proof['merkle']['tree_size']:,} leaves",
            ),
            ("    the run's audit records", seconds_text(parts["records"]), f"{parts['leaves']:,} rows"),
            (
                "    the Merkle root",
                seconds_text(parts["root"]),
                f"{parts['leaves'] / parts['root']:,.0f} leaves/s",
            ),
            ("  evidence as of the seal (views)", seconds_text(parts["evidence"]), ""),
            ("one decision's inclusion proof", seconds_text(inclusion_seconds), ""),
        ],
    )


if __name__ == "__main__":
    main()
