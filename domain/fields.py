"""One definition per kind of field: the patterns and checks every edge (the API's
schemas, the CLI) and every command use. What passes here, every projection can apply
and every answer can serialise."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from domain.canonical import canonical_json
from domain.errors import InvalidCommand
from domain.limits import MAX_DOCUMENT_BYTES, MAX_TEXT_LENGTH, MAX_TOKEN_LENGTH

#: Run IDs: they name a run in URLs and in the natural keys of its decisions.
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
#: Outcomes, reason codes, lanes and action kinds.
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"
#: Input IDs: any printable text, no control characters.
INPUT_ID_PATTERN = r"^[^\x00-\x1f\x7f]{1,256}$"
#: A client's Idempotency-Key: visible ASCII.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"

_RUN_ID = re.compile(RUN_ID_PATTERN)
_LABEL = re.compile(LABEL_PATTERN)
_INPUT_ID = re.compile(INPUT_ID_PATTERN)
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_run_id(run_id: Any, *, field: str = "run_id") -> str:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise InvalidCommand(f"{field} must match {RUN_ID_PATTERN}, got {run_id!r}", field=field)
    return run_id


def is_idempotency_key(value: str) -> bool:
    return bool(_IDEMPOTENCY_KEY.fullmatch(value))


def require_token(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TOKEN_LENGTH or _CONTROL.search(value):
        raise InvalidCommand(
            f"the idempotency token must be 1 to {MAX_TOKEN_LENGTH} characters, none of them control characters",
            field="token",
        )
    return value


def require_label(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not _LABEL.fullmatch(value):
        raise InvalidCommand(f"{field_name} must match {LABEL_PATTERN}", field=field_name)
    return value


def require_input_id(value: Any, field_name: str = "input_id") -> str:
    if not isinstance(value, str) or not _INPUT_ID.fullmatch(value):
        raise InvalidCommand(f"{field_name} must be 1 to 256 printable characters", field=field_name)
    return value


def require_text(value: Any, field_name: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise InvalidCommand(
            f"{field_name} must be non-blank text of at most {max_length} characters",
            field=field_name,
        )
    return value


def optional_text(value: Any, field_name: str, *, max_length: int = MAX_TEXT_LENGTH) -> str | None:
    return None if value is None else require_text(value, field_name, max_length=max_length)


def require_document(value: Any, field_name: str) -> dict[str, Any]:
    """A JSON object small enough to keep in an event."""
    if not isinstance(value, dict):
        raise InvalidCommand(f"{field_name} must be a JSON object", field=field_name)
    try:
        encoded = canonical_json(value)
    except (TypeError, ValueError) as error:
        raise InvalidCommand(f"{field_name} is not plain JSON: {error}", field=field_name) from None
    if len(encoded) > MAX_DOCUMENT_BYTES:
        raise InvalidCommand(
            f"{field_name} must be at most {MAX_DOCUMENT_BYTES} bytes of JSON", field=field_name
        )
    return value


def require_utc_offset(
    value: Any, field_name: str, *, error: type[InvalidCommand] = InvalidCommand
) -> datetime:
    """A time must say which offset from UTC it is in: a naive time means nothing."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise error(f"{field_name} must carry a UTC offset, e.g. 2026-01-31T14:00:00Z", field=field_name)
    return value
