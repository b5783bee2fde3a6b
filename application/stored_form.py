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

import orjson
from eventsourcing.persistence import JSONTranscoder

from domain.canonical import CANONICAL_JSON_OPTIONS


class StoredFormRefused(ValueError):
    """The application was configured to store events in another form (encrypted or
    compressed): the audit chain and the views read them as canonical JSON."""


class CanonicalJSONTranscoder(JSONTranscoder):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = json.JSONEncoder(default=self._encode_obj, **CANONICAL_JSON_OPTIONS)


#: json's own scanner, in C (what json.loads runs once it has found the text and the value).
_scan_value: Callable[[str, int], tuple[Any, int]] = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]

#: Each digit to "0" and any other byte to a space: a run of 19 digits (maybe an integer
#: beyond 64 bits, which orjson reads as a float) is then found by a plain byte search.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGITS = b"0" * 19


def parse_stored_state(stored: bytes) -> Any:
    """A stored state parsed exactly as json.loads parses it, and quicker: by orjson when
    it accepts the bytes and no integer in them may be beyond its 64 bits (it refuses
    what it cannot read as json does: NaN, a BOM, a lone surrogate, an infinite float),
    else as json.loads does."""
    if _LONG_DIGITS not in stored.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(stored)
        except orjson.JSONDecodeError:
            pass
    return _parse_as_json_does(stored)


def _parse_as_json_does(stored: bytes) -> Any:
    """json's C scanner on UTF-8 holding one JSON value and nothing else, skipping the
    encoding's detection and the search for white space; any other bytes are handed to
    json.loads itself, which answers or raises as it always does."""
    try:
        text = stored.decode("utf-8")
        value, end = _scan_value(text, 0)
    except (UnicodeDecodeError, StopIteration):
        return json.loads(stored)
    if end != len(text):
        return json.loads(stored)
    return value
