"""Queries: aggregates as known at a point of the log, the read models, and proofs."""
