"""The one refusal every append-only trigger raises, on both back ends."""

APPEND_ONLY_MESSAGE = "decision-ledger: the ledger is append-only; {operation} is refused"
