"""Everything a front end needs, wired once: the commands, the queries, the closer and
the projections. The REST API and the CLI call only this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from prometheus_client import CollectorRegistry

from application.action_lists import ActionLists
from application.answers import Answers
from application.checkpoint_status import CheckpointCheck, check_latest_checkpoint
from application.closing import RunCloser
from application.commands import Commands
from application.dispatch.dispatcher import DISPATCHER_FOLLOWER, Dispatcher
from application.dispatch.metrics import DispatchMetrics
from application.election import Candidacy, LeaderElection, LocalElection
from application.follower_status import FollowerStatus, follower_statuses
from application.ledger import DecisionLedger, LedgerTuning
from application.projections.runtime import Difference, ProjectionFailure, Projections, ProjectionStatus
from application.projections.worker import ProjectionWorker
from application.proofs import SigningKey
from application.queries.aggregates import AggregateQueries
from application.queries.points import PointInLog
from application.queries.proofs import decision_inclusion_proof
from application.queries.read_models import ReadModels
from application.store_verification import ChainReport, StoreVerifier, verify_audit_log
from application.transparency_log import CheckpointScheduler, SigningKeys, TransparencyLog
from domain.clock import Clock, system_clock
from infrastructure.checkpoint_store import CHECKPOINTS_TABLE, open_checkpoint_store
from infrastructure.effectors import NO_EFFECTORS, Effectors

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Readiness:
    head_position: int
    projection_lag: dict[str, int]
    #: Projections stopped on an event they cannot apply: the service is not ready.
    failures: list[ProjectionFailure]
    followers: list[FollowerStatus]

    @property
    def ready(self) -> bool:
        return not self.failures


@dataclass
class LedgerService:
    ledger: DecisionLedger
    commands: Commands
    queries: AggregateQueries
    projections: Projections
    read_models: ReadModels
    closer: RunCloser
    signer: SigningKey
    library_env: dict[str, str]
    transparency: TransparencyLog
    checkpoint_interval: float = 60.0
    #: Who leads each follower across the processes on the database.
    election: LeaderElection = field(default_factory=LocalElection)
    #: How often a standing-by process tries to take the lead (seconds).
    leader_poll_s: float = 2.0
    worker: ProjectionWorker | None = field(default=None)
    effectors: Effectors = field(default=NO_EFFECTORS)
    dispatcher: Dispatcher | None = field(default=None)
    scheduler: CheckpointScheduler | None = field(default=None)

    @classmethod
    def build(
        cls,
        library_env: dict[str, str],
        signer: SigningKey,
        *,
        read_timeout: float = 5.0,
        close_timeout: float = 15.0,
        tuning: LedgerTuning | None = None,
        clock: Clock = system_clock,
        effectors: Effectors = NO_EFFECTORS,
        keys: Callable[[], SigningKeys] | None = None,
        origin: str = "decision-ledger/ledger",
        checkpoint_dir: Path | None = None,
        checkpoint_interval: float = 60.0,
        election: LeaderElection | None = None,
        leader_poll_s: float = 2.0,
    ) -> LedgerService:
        ledger = DecisionLedger(env=library_env, tuning=tuning, clock=clock)
        commands = Commands.over(ledger)
        projections = Projections(ledger)
        read_models = ReadModels(projections, wait_timeout=read_timeout)
        checkpoints = open_checkpoint_store(ledger.factory.datastore)  # type: ignore[attr-defined]
        ledger.recorder.protect(CHECKPOINTS_TABLE)  # type: ignore[attr-defined]
        transparency = TransparencyLog(
            projections,
            checkpoints,
            keys or _keys_of(signer, origin),
            origin,
            events=ledger.recorder,
            checkpoint_dir=checkpoint_dir,
        )
        closer = RunCloser(
            ledger,
            commands.runs,
            read_models,
            signer,
            catch_up_timeout=close_timeout,
            on_seal=transparency.make_checkpoint,
        )
        queries = AggregateQueries(ledger, Answers(ledger))
        return cls(
            ledger,
            commands,
            queries,
            projections,
            read_models,
            closer,
            signer,
            library_env,
            transparency,
            checkpoint_interval,
            election=election or LocalElection(),
            leader_poll_s=leader_poll_s,
            effectors=effectors,
        )

    # --- The point of the log a read is about ---------------------------------------------

    def position_of(self, point: PointInLog) -> int | None:
        """The position a point names (None: now); NothingKnownYet if the log held nothing then."""
        return point.position(self.ledger.index)

    def head_position(self) -> int:
        return self.ledger.index.head_position()

    def wait_for(self, position: int | None) -> None:
        """Read-your-writes: wait (bounded) until the read models reach a position."""
        self.read_models.wait_for(position)

    # --- Proofs and verification ------------------------------------------------------------

    def decision_proof(self, decision_id: UUID, *, as_of_position: int | None = None) -> dict[str, Any]:
        return decision_inclusion_proof(
            self.ledger, self.queries, self.read_models, decision_id, as_of_position
        )

    def verify_audit_log(
        self,
        verify_proof: Callable[[dict[str, Any]], None],
        *,
        from_position: int = 1,
        to_position: int | None = None,
        on_total: Callable[[int], None] | None = None,
        on_progress: Progress | None = None,
    ) -> tuple[ChainReport, int]:
        """Recompute the chain from the stored events and compare it with the audit log
        and every run proof; answers the report and how many newer events are unaudited."""
        index = self.ledger.index
        return verify_audit_log(
            self._store_verifier(),
            audited_to=self.projections.live_store("audit").position(),
            count_after=index.count_after,
            chain_hash_before=self.read_models.chain_hash_before,
            run_start=lambda run_id: self.read_models.audit(run_id=run_id, limit=1).records[0].position,
            verify_proof=verify_proof,
            from_position=from_position,
            to_position=to_position,
            on_total=on_total,
            on_progress=on_progress,
        )

    def checkpoint_status(self) -> CheckpointCheck:
        """The latest signed checkpoint, checked now against the key ring and the audit log's tree."""
        return check_latest_checkpoint(self.transparency)

    def verify_proof_against_store(self, proof: dict[str, Any]) -> None:
        """Recompute a run proof from the stored events as of its seal position."""
        self._store_verifier().verify_chain(to_position=proof["seal_position"], proofs=[proof])

    def _store_verifier(self) -> StoreVerifier:
        return StoreVerifier(self.ledger.recorder, self.read_models.audit_stream)

    # --- Projections -------------------------------------------------------------------------

    def readiness(self) -> Readiness:
        statuses = self.projections.status()
        lags = {status.name: status.lag for status in statuses}
        failures = [status.failure for status in statuses if status.failure is not None]
        followers = follower_statuses(
            self.projections, self.election, self.ledger.clock, statuses, dispatcher=bool(self.effectors)
        )
        return Readiness(self.head_position(), lags, failures, followers)

    def follower_status(self) -> list[FollowerStatus]:
        """Who leads each follower, how far it got and how far behind it is."""
        return follower_statuses(
            self.projections, self.election, self.ledger.clock, dispatcher=bool(self.effectors)
        )

    def leading(self) -> dict[str, bool]:
        """The followers this process leads now (none unless it runs them)."""
        leading = self.worker.leading() if self.worker is not None else {}
        if self.dispatcher is not None:
            leading[DISPATCHER_FOLLOWER] = self.dispatcher.leading
        return leading

    def projection_status(self) -> list[ProjectionStatus]:
        return self.projections.status()

    def events_after(self, position: int) -> int:
        return self.ledger.index.count_after(position)

    def rebuild_projection(self, name: str, on_progress: Progress | None = None) -> int:
        return self.projections.rebuild(name, on_progress=on_progress)

    def verify_projection(
        self, name: str, on_progress: Progress | None = None
    ) -> tuple[int, list[Difference]]:
        return self.projections.verify(name, on_progress=on_progress)

    def start_projections(self, on_failure: Callable[[ProjectionFailure], None] | None = None) -> None:
        """Follow the log in this process (the default for `serve`)."""
        if self.worker is None:
            self.worker = self._projection_worker(on_failure)
            self.worker.start()
        self.start_checkpoints()

    def follow_forever(self) -> None:
        """Follow the log in this process until interrupted (`projections run`); the
        follower of the log makes the periodic checkpoints."""
        self.start_checkpoints()
        self.worker = self._projection_worker()
        try:
            self.worker.run_forever()
        finally:
            self.worker = None

    def _projection_worker(
        self, on_failure: Callable[[ProjectionFailure], None] | None = None
    ) -> ProjectionWorker:
        return ProjectionWorker(
            self.projections,
            self.library_env,
            self.election,
            poll_s=self.leader_poll_s,
            on_failure=on_failure,
        )

    # --- Dispatch ------------------------------------------------------------------------------

    @property
    def actions(self) -> ActionLists:
        """Listing actions (by status, kind, run) for operators."""
        return ActionLists(self.ledger, self.projections, self.read_models, self.queries)

    @property
    def dispatched_kinds(self) -> frozenset[str]:
        """The action kinds the effectors receive: the ones the dispatcher carries out."""
        return self.effectors.kinds

    def start_dispatcher(
        self, concurrency: int, registry: CollectorRegistry | None = None
    ) -> Dispatcher | None:
        """Stand for the dispatcher in this process (none configured: no-op): one process on
        the database carries out the actions the effectors receive, the others stand by."""
        if self.dispatcher is None and self.effectors:
            self.dispatcher = Dispatcher(
                self.ledger,
                self.projections,
                self.effectors,
                concurrency=concurrency,
                metrics=DispatchMetrics(registry),
                candidacy=Candidacy(self.election, DISPATCHER_FOLLOWER, poll_s=self.leader_poll_s),
            )
            self.dispatcher.start()
        return self.dispatcher

    def start_checkpoints(self) -> None:
        """Make a checkpoint every checkpoint_interval seconds when the log grew."""
        if self.scheduler is None:
            self.scheduler = CheckpointScheduler(self.transparency, self.checkpoint_interval)
            self.scheduler.start()

    def close(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
            self.dispatcher = None
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        self.election.close()
        self.commands.close()
        self.ledger.close()


def _keys_of(signer: SigningKey, origin: str) -> Callable[[], SigningKeys]:
    """Checkpoints signed by the run-proof signer itself, when no key ring is given."""
    from infrastructure.keyring import KeyEntry, KeyRing

    ring = KeyRing([KeyEntry(origin, signer)]) if hasattr(signer, "private_key_raw") else None  # type: ignore[arg-type]

    def keys() -> SigningKeys:
        if ring is None:
            raise LookupError("this service has no signing key")
        return ring

    return keys
