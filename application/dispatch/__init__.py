"""Carrying actions out: the outbox dispatcher and what it needs."""
