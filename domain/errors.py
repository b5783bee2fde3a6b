"""Typed domain errors. The interface layer maps each class to a status, once."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error the ledger raises on purpose."""

    #: Stable slug used in problem+json `type` URIs.
    slug = "ledger-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidCommand(LedgerError):
    """A command's values break a rule that holds before anything is executed."""

    slug = "invalid-command"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class InvalidQuery(InvalidCommand):
    """A query parameter breaks a rule its schema cannot express (a time without an offset)."""

    location = "query"


# --- Not found -------------------------------------------------------------


class NotFound(LedgerError):
    slug = "not-found"


class RunNotFound(NotFound):
    slug = "run-not-found"


class DecisionNotFound(NotFound):
    slug = "decision-not-found"


class ActionNotFound(NotFound):
    slug = "action-not-found"


class ProofNotFound(NotFound):
    slug = "proof-not-found"


class CheckpointNotFound(NotFound):
    """No checkpoint of that tree size: the log has not grown that far."""

    slug = "checkpoint-not-found"


class NothingKnownYet(NotFound):
    """An as-of read asked about a point before the thing existed."""

    slug = "nothing-known-yet"


# --- Conflicts with the current state ---------------------------------------


class Conflict(LedgerError):
    slug = "conflict"


class RunAlreadyExists(Conflict):
    slug = "run-already-exists"


class RunNotOpen(Conflict):
    slug = "run-not-open"


class RunNotSealed(Conflict):
    slug = "run-not-sealed"


class RunNotRejected(Conflict):
    slug = "run-not-rejected"


class DecisionAlreadyRecorded(Conflict):
    slug = "decision-already-recorded"


class ActionAlreadyCommitted(Conflict):
    slug = "action-already-committed"


class ActionNotRetryable(Conflict):
    slug = "action-not-retryable"


class ActionTransitionRefused(Conflict):
    slug = "action-transition-refused"


# --- Idempotency -------------------------------------------------------------


class IdempotencyKeyReused(LedgerError):
    slug = "idempotency-key-reused"


# --- Service health ----------------------------------------------------------


class ProjectionFailed(LedgerError):
    """A projection stopped on an event it cannot apply; it will not catch up by itself."""

    slug = "projection-failed"


class NoValidSigningKey(LedgerError):
    """No signing key is valid now: nothing can be signed until one is rotated in."""

    slug = "no-valid-signing-key"


class ProjectionsBehind(LedgerError):
    """The read models did not catch up within the allowed time."""

    slug = "projections-behind"


# --- Transparency log (checkpoints, signed notes, Merkle proofs) -------------


class MalformedTransparencyText(InvalidCommand):
    """A signed note, checkpoint, tlog-proof or verifier key that does not follow its format."""

    slug = "transparency-text-malformed"


class TreeSizeInvalid(InvalidCommand):
    """A leaf index or tree sizes that no proof can be made for (index past the size, from > to)."""

    slug = "tree-size-invalid"


class VerificationFailed(LedgerError):
    """Evidence was checked and does not hold: a signature, a proof or a root differs."""

    slug = "verification-failed"


class NoteNotVerified(VerificationFailed):
    """No signature on a note is from a trusted key (an unknown key's signature proves nothing)."""

    slug = "note-not-verified"


class SignatureInvalid(VerificationFailed):
    """A trusted key's signature on a note does not verify: the whole note is refused."""

    slug = "signature-invalid"


class ProofInvalid(VerificationFailed):
    """A Merkle inclusion or consistency proof does not lead to the root it claims."""

    slug = "proof-invalid"
