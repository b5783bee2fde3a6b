"""The decision ledger's domain model: Run, Decision and Action aggregates.

Pure code: no I/O, no clock reads and no randomness while events are applied.
"""
