"""Everything a front end needs, wired once: the ledger, its read models, the closer
and the projection runtime."""

from __future__ import annotations

from dataclasses import dataclass, field

from application.closing import RunCloser
from application.ledger import DecisionLedger
from application.projections.runtime import Projections, ProjectionWorker
from application.proofs import SigningKey
from application.read_models import ReadModels


@dataclass
class LedgerService:
    ledger: DecisionLedger
    projections: Projections
    read_models: ReadModels
    closer: RunCloser
    signer: SigningKey
    library_env: dict[str, str]
    worker: ProjectionWorker | None = field(default=None)

    @classmethod
    def build(
        cls,
        library_env: dict[str, str],
        signer: SigningKey,
        *,
        read_timeout: float = 5.0,
        close_timeout: float = 15.0,
    ) -> LedgerService:
        ledger = DecisionLedger(env=library_env)
        projections = Projections(ledger)
        read_models = ReadModels(projections, wait_timeout=read_timeout)
        closer = RunCloser(ledger, read_models, signer, catch_up_timeout=close_timeout)
        return cls(ledger, projections, read_models, closer, signer, library_env)

    def start_projections(self) -> None:
        """Follow the log in this process (the default for `serve`)."""
        if self.worker is None:
            self.worker = ProjectionWorker(self.projections, self.library_env)
            self.worker.start()

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        self.ledger.close()
