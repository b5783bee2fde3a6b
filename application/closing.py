"""Closing a run, fail-closed: seal, let the read models catch up to the seal, evaluate
reconciliation as of the seal, and record the verdict on the Run.

"It executed" is never "it succeeded". A run is committed only when the evidence
proves it reconciles; everything else, including evidence that cannot be gathered in
time, is red or an error that records nothing. A close interrupted after its seal is
resumed by the next close of the same run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from application.commands.runs import RunCommands
from application.ledger import DecisionLedger
from application.proofs import SigningKey, build_run_proof
from application.queries.read_models import ReadModels
from application.results import CloseView, CommandResult
from domain import errors
from domain.commands import CloseRun
from domain.idempotency import require_same_request
from domain.run import Reconciliation, Run, RunStatus, verdict_token


class RunCloser:
    def __init__(
        self,
        ledger: DecisionLedger,
        runs: RunCommands,
        read_models: ReadModels,
        signer: SigningKey,
        *,
        catch_up_timeout: float = 10.0,
        on_seal: Callable[[], Any] = lambda: None,
    ) -> None:
        self.ledger = ledger
        self.runs = runs
        self.read_models = read_models
        self.signer = signer
        self.catch_up_timeout = catch_up_timeout
        #: Called once the read models reached a seal: a signed checkpoint that covers it.
        self.on_seal = on_seal

    def close(self, command: CloseRun) -> CommandResult[CloseView]:
        finished = self.ledger.index.token_receipt(verdict_token(command.token))
        if finished is not None:
            require_same_request(finished.fingerprint, command.fingerprint)
            if finished.originator_version is None:
                raise errors.IdempotencyKeyReused("this idempotency key was used for another command")
            return self._verdict_at(command.run_id, finished.originator_version, replayed=True)
        run = self.ledger.load_run(command.run_id)
        if run.status != RunStatus.SEALED:
            sealed = self.runs.seal(command)  # raises RunNotOpen on a closed run
            run = self.ledger.load_run(command.run_id)
            if sealed.replayed and run.status != RunStatus.SEALED:
                # This token sealed an attempt that another close has since concluded.
                return self._verdict_of(run, sealed.view.attempt)
        seal_position = self.ledger.seal_position(run)
        # Fail closed: without views that reached the seal there is no evidence.
        self.read_models.wait_for(seal_position, timeout=self.catch_up_timeout)
        self.on_seal()
        evidence = self.read_models.evidence(command.run_id, seal_position)
        result = self.runs.record_verdict(
            command, evidence, lambda sealed_run: self._proof(sealed_run, evidence)
        )
        verdict = self._close_view(command.run_id, result.view.verdicts[-1], result.position)
        return CommandResult(verdict, result.version, result.position, result.replayed)

    def _proof(self, run: Run, evidence: Reconciliation) -> dict[str, Any]:
        material = self.read_models.proof_material(run.run_id, evidence.seal_position)
        at_seal = self.read_models.audit_record_at(evidence.seal_position)
        if at_seal is None or len(material.leaf_hashes) != evidence.events_expected:
            raise errors.ProjectionsBehind("the audit log does not yet cover the seal")
        return build_run_proof(
            run,
            evidence,
            material,
            at_seal.chain_hash,
            self.ledger.clock(),
            self.signer,
        )

    def _verdict_at(self, run_id: str, version: int, *, replayed: bool) -> CommandResult[CloseView]:
        at_verdict = self.runs.run_at_version(run_id, version)
        view = self._close_view(run_id, at_verdict.view.verdicts[-1], at_verdict.position)
        return CommandResult(view, at_verdict.version, at_verdict.position, replayed)

    def _verdict_of(self, run: Run, attempt: int) -> CommandResult[CloseView]:
        for verdict in reversed(run.verdicts):
            if verdict["attempt"] == attempt:
                position = self.ledger.position_of(run.id, run.version)
                return CommandResult(
                    self._close_view(run.run_id, verdict, position), run.version, position, True
                )
        raise errors.RunNotOpen(f"run {run.run_id!r} is {run.status}; it cannot be closed")

    @staticmethod
    def _close_view(run_id: str, verdict: dict[str, Any], position: int) -> CloseView:
        return CloseView(
            run_id=run_id,
            verdict=verdict["verdict"],
            attempt=verdict["attempt"],
            seal_position=verdict["seal_position"],
            reasons=verdict["reasons"],
            summary=verdict["summary"],
            proof_digest=verdict["proof_digest"],
            position=position,
        )
