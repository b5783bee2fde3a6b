"""The demo lane: `decision-ledger demo`."""
