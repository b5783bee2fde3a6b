"""A transparency log over the whole event log: Merkle trees (RFC 6962 / RFC 9162), the
leaf bytes of an event, and the C2SP text formats (signed-note, tlog-checkpoint, tlog-proof).

Pure: no I/O. Stored tree levels are reached through `merkle.NodeReader`.
"""
