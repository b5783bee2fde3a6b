"""How the ledger stores an event's state: the library's JSON transcoder, writing
canonical JSON (domain/canonical.py: sorted keys, no white space, UTF-8, no NaN).

The stored state is then byte for byte the `state` member of the event's canonical
bytes (application/audit_chain.py), so `audit verify` can hash the event around the
bytes as stored, instead of parsing the state and writing it again. Events stored in
another form (before this one) are read as before, and verified the longer way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.scanner import make_scanner
from typing import Any

from eventsourcing.persistence import JSONTranscoder

from domain.canonical import CANONICAL_JSON_OPTIONS


class CanonicalJSONTranscoder(JSONTranscoder):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = json.JSONEncoder(default=self._encode_obj, **CANONICAL_JSON_OPTIONS)


#: json's own scanner, in C (what json.loads runs once it has found the text and the value).
_scan_value: Callable[[str, int], tuple[Any, int]] = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def parse_stored_state(stored: bytes) -> Any:
    """A stored state parsed exactly as json.loads parses it, and quicker in the usual
    case, UTF-8 holding one JSON value and nothing else: json's C scanner is called on it
    directly, without detecting the encoding or looking for white space around the value.
    Any other bytes (another encoding, white space, a malformed or trailing value) are
    handed to json.loads itself, which answers or raises as it always does."""
    try:
        text = stored.decode("utf-8")
        value, end = _scan_value(text, 0)
    except (UnicodeDecodeError, StopIteration):
        return json.loads(stored)
    if end != len(text):
        return json.loads(stored)
    return value
