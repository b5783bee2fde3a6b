"""How the ledger stores an event's state: the library's JSON transcoder, writing
canonical JSON (domain/canonical.py: sorted keys, no white space, UTF-8, no NaN).

The stored state is then byte for byte the `state` member of the event's canonical
bytes (application/audit_chain.py), so `audit verify` can hash the event around the
bytes as stored, instead of parsing the state and writing it again. Events stored in
another form (before this one) are read as before, and verified the longer way.
"""

from __future__ import annotations

import json

from eventsourcing.persistence import JSONTranscoder

from domain.canonical import CANONICAL_JSON_OPTIONS


class CanonicalJSONTranscoder(JSONTranscoder):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = json.JSONEncoder(default=self._encode_obj, **CANONICAL_JSON_OPTIONS)
