"""Making a checkpoint and answering a consistency proof cost O(log n): their latency at
1M events against the same at 10k, in the same run (target: at most 2x).

The audit projection's tree tables (application/projections/tree_levels.py) are filled
with the leaves of N made-up stored events by the projection's own writer, in the real
database, so the measured code is production's: TransparencyLog.make_checkpoint (tree
size, root from the stored perfect subtrees, Ed25519 signature, insert) after one more
leaf was appended, and TransparencyLog.consistency between a random earlier size and the
current one. Writing a million real events through the ledger would only make the setup
slower: the tree tables hold the same rows either way.

    python -m bench.transparency                      # a temporary PostgreSQL schema
    python -m bench.transparency --backend sqlite
    python -m bench.transparency --sizes 10000,100000,1000000 --repetitions 200
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from application.ledger import DecisionLedger
from application.projections.runtime import Projections
from application.projections.tree_levels import TreeLevelsWriter
from application.transparency_log import TransparencyLog
from bench.common import DEFAULT_POSTGRES_URL, database
from infrastructure.checkpoint_store import open_checkpoint_store
from infrastructure.keyring import KeyEntry, KeyRing
from infrastructure.signing import Signer

ORIGIN = "decision-ledger/bench"
FILL_PAGE = 50_000
WARM_UP = 5


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--sizes", default="10000,1000000", help="tree sizes, smallest (the baseline) first")
    parser.add_argument("--repetitions", type=int, default=100)
    arguments = parser.parse_args()
    arguments.sizes = sorted(int(size) for size in arguments.sizes.split(","))
    if arguments.repetitions < 5 or arguments.sizes[0] < 2:
        parser.error("--repetitions must be at least 5 and every size at least 2")
    return arguments


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fake_event(position: int) -> SimpleNamespace:
    """A stored event as the recorder returns one (its state bytes about a decision's size)."""
    state = b'{"run_id":"bench","input_id":"input-%08d","outcome":"approve","score":0.5}' % position
    return SimpleNamespace(
        originator_id=uuid.UUID(int=position),
        originator_version=1,
        topic="domain.decision:Decision.Recorded",
        state=state,
    )


class TreeFiller:
    def __init__(self, projections: Projections) -> None:
        self.store = projections.live_store("audit")
        self.writer = TreeLevelsWriter(projections.live_tables("audit"))
        self.size = 0

    def grow_to(self, size: int) -> None:
        while self.size < size:
            page_end = min(size, self.size + FILL_PAGE)
            with self.store.cursor(commit=True) as cursor:
                self.writer.begin(cursor)
                for position in range(self.size + 1, page_end + 1):
                    self.writer.append(position, fake_event(position))
                self.writer.flush(cursor)
            self.size = page_end
            if self.size % 200_000 == 0:
                say(f"  tree at {self.size:,} leaves")


def median_seconds(action: Callable[[], object], before: Callable[[], object], repetitions: int) -> float:
    """The median of `repetitions` timed calls, after a few untimed ones (caches, plans)."""
    samples = []
    for _ in range(WARM_UP):
        before()
        action()
    for _ in range(repetitions):
        before()
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    arguments = parse_arguments()
    keyring = KeyRing([KeyEntry(ORIGIN, Signer(Ed25519PrivateKey.generate()))])
    rng = random.Random(17)
    results: dict[int, tuple[float, float]] = {}
    with database(arguments.backend, arguments.postgres_url, "bench_tlog") as target:
        ledger = DecisionLedger(env=target.library_env())
        try:
            projections = Projections(ledger)
            log = TransparencyLog(
                projections,
                open_checkpoint_store(ledger.factory.datastore),
                lambda: keyring,
                ORIGIN,  # type: ignore[attr-defined]
            )
            filler = TreeFiller(projections)
            for size in arguments.sizes:
                say(f"filling the tree to {size:,} leaves ...")
                filler.grow_to(size)
                checkpoint = median_seconds(
                    log.make_checkpoint, lambda: filler.grow_to(filler.size + 1), arguments.repetitions
                )
                consistency = median_seconds(
                    lambda: log.consistency(rng.randrange(1, filler.size), filler.size),
                    lambda: None,
                    arguments.repetitions,
                )
                results[size] = (checkpoint, consistency)
        finally:
            ledger.close()
    baseline = arguments.sizes[0]
    print(f"transparency log on {arguments.backend}, median of {arguments.repetitions}")
    print(f"  {'tree size':>12}  {'checkpoint':>12}  {'ratio':>6}  {'consistency':>12}  {'ratio':>6}")
    for size, (checkpoint, consistency) in results.items():
        print(
            f"  {size:>12,}  {checkpoint * 1000:>9.2f} ms  {checkpoint / results[baseline][0]:>5.2f}x"
            f"  {consistency * 1000:>9.2f} ms  {consistency / results[baseline][1]:>5.2f}x"
        )


if __name__ == "__main__":
    main()
