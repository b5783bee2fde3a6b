"""Events are stored as canonical JSON (application/stored_form.py), so the audit chain
can hash an event around its state as stored (audit_chain.as_stored_event_bytes) and get
exactly its canonical bytes, without writing the state again."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder
from hypothesis import given
from hypothesis import strategies as st

from application.audit_chain import as_stored_event_bytes, canonical_event_bytes
from application.stored_form import CanonicalJSONTranscoder, parse_stored_state

TOPIC = "domain.decision:Decision.Recorded"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",))),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(st.characters(exclude_categories=("Cs",)), max_size=8), children, max_size=4
        )
    ),
    max_leaves=20,
)


def transcoder(kind: type[JSONTranscoder]) -> JSONTranscoder:
    coder = kind()
    coder.register(DatetimeAsISO())
    return coder


def both_ways(state: dict[str, Any], stored: bytes, aggregate_id: UUID, position: int) -> tuple[bytes, bytes]:
    parsed = json.loads(stored)
    return (
        as_stored_event_bytes(position, TOPIC, aggregate_id, 3, parsed, stored),
        canonical_event_bytes(position, TOPIC, aggregate_id, 3, parsed),
    )


@given(
    state=st.dictionaries(
        st.text(max_size=12).filter(lambda key: key != "timestamp"), json_values, max_size=8
    )
)
def test_a_state_stored_canonically_hashes_as_stored_to_its_canonical_bytes(state: dict[str, Any]) -> None:
    state["timestamp"] = datetime(2026, 12, 2, 17, 0, 0, 123456, tzinfo=UTC)
    stored = transcoder(CanonicalJSONTranscoder).encode(state)
    as_stored, canonical = both_ways(state, stored, uuid4(), 12)
    assert as_stored == canonical


def test_a_state_stored_in_the_librarys_form_does_not_and_is_written_canonically_instead() -> None:
    state = {"timestamp": datetime(2026, 12, 2, tzinfo=UTC), "run_id": "r", "outcome": "approve"}
    stored = transcoder(JSONTranscoder).encode(state)
    assert stored != transcoder(CanonicalJSONTranscoder).encode(state)  # keys in insertion order
    as_stored, canonical = both_ways(state, stored, uuid4(), 7)
    assert as_stored != canonical
    assert json.loads(as_stored) == json.loads(canonical)


def test_the_canonical_transcoder_refuses_nan_as_canonical_json_does() -> None:
    try:
        transcoder(CanonicalJSONTranscoder).encode({"score": float("nan")})
    except ValueError:
        return
    raise AssertionError("NaN was stored")


def _outcome(parse: Any, data: bytes) -> str:
    try:
        return repr(parse(data))  # repr: NaN equals NaN, and -0.0 differs from 0.0
    except ValueError as error:
        return f"{type(error).__name__}: {error}"


#: Bytes near a stored state: JSON text, then maybe spaces, a BOM, another encoding, a
#: cut, extra data, or a surrogate escape; and any bytes at all.
around_json = st.one_of(
    st.tuples(
        json_values,
        st.sampled_from(["", " ", "\n", "\ufeff"]),
        st.sampled_from(["", " ", "x", "{}", '"\\ud800"']),
        st.sampled_from(["utf-8", "utf-16", "utf-8-sig"]),
        st.booleans(),
    ).map(
        lambda case: (case[1] + json.dumps(case[0], allow_nan=True) + case[2]).encode(case[3])[
            : -1 if case[4] else None
        ]
    ),
    st.binary(max_size=24),
    st.sampled_from([b"NaN", b"-Infinity", b'"\xed\xa0\x80"', b"1e400", b"", b"[1,2", b"12 "]),
    # Integers at and beyond 64 bits (orjson reads some as floats), and digits in text.
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30)]).map(
        lambda number: json.dumps({"n": number, "id": "0123456789012345678901"}).encode()
    ),
)


@given(around_json)
def test_a_stored_state_parses_exactly_as_json_loads_parses_it(data: bytes) -> None:
    assert _outcome(parse_stored_state, data) == _outcome(json.loads, data)
