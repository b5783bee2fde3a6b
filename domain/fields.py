"""One definition per kind of field: the patterns and checks every edge (the API's
schemas, the CLI) and every command use. What passes here, every projection can apply
and every answer can serialise."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
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
#: Times the ledger keeps, once converted to UTC (every back end and every answer can hold them).
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
#: How deeply a JSON document (metadata, params, result) may nest.
MAX_DOCUMENT_DEPTH = 32

_RUN_ID = re.compile(RUN_ID_PATTERN)
_LABEL = re.compile(LABEL_PATTERN)
_INPUT_ID = re.compile(INPUT_ID_PATTERN)
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: C0 controls other than tab and newline, and DEL: no text the ledger keeps holds them.
_UNSAFE_CONTROLS = r"\x00-\x08\x0b-\x1f\x7f"
#: Free text as the API documents it: at least one character that is not blank, and none
#: of the unsafe controls (lone surrogates cannot travel in UTF-8 JSON at all).
TEXT_PATTERN = rf"^[^{_UNSAFE_CONTROLS}]*[^\s{_UNSAFE_CONTROLS}\x85\ufeff][^{_UNSAFE_CONTROLS}]*$"
_UNSAFE_IN_TEXT = re.compile(rf"[{_UNSAFE_CONTROLS}\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def require_clean_text(value: str, field_name: str) -> str:
    """Text every store and every answer can hold: no NUL or other C0 control but tab and
    newline, and no lone surrogate."""
    if _UNSAFE_IN_TEXT.search(value):
        raise InvalidCommand(
            f"{field_name} must not contain control characters (other than tab and newline) or lone surrogates",
            field=field_name,
        )
    return value


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
    if not isinstance(value, str) or not _INPUT_ID.fullmatch(value) or _SURROGATE.search(value):
        raise InvalidCommand(f"{field_name} must be 1 to 256 printable characters", field=field_name)
    return value


def require_text(value: Any, field_name: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise InvalidCommand(
            f"{field_name} must be non-blank text of at most {max_length} characters",
            field=field_name,
        )
    return require_clean_text(value, field_name)


def optional_text(value: Any, field_name: str, *, max_length: int = MAX_TEXT_LENGTH) -> str | None:
    return None if value is None else require_text(value, field_name, max_length=max_length)


def require_document(value: Any, field_name: str) -> dict[str, Any]:
    """A JSON object small enough to keep in an event: bounded depth and size, finite
    numbers only, and clean text in every key and string."""
    if not isinstance(value, dict):
        raise InvalidCommand(f"{field_name} must be a JSON object", field=field_name)
    _check_json_value(value, field_name, depth=1)
    try:
        encoded = canonical_json(value)
    except (TypeError, ValueError) as error:
        raise InvalidCommand(f"{field_name} is not plain JSON: {error}", field=field_name) from None
    if len(encoded) > MAX_DOCUMENT_BYTES:
        raise InvalidCommand(
            f"{field_name} must be at most {MAX_DOCUMENT_BYTES} bytes of JSON", field=field_name
        )
    return value


def _check_json_value(value: Any, field_name: str, depth: int) -> None:
    if depth > MAX_DOCUMENT_DEPTH:
        raise InvalidCommand(f"{field_name} nests deeper than {MAX_DOCUMENT_DEPTH} levels", field=field_name)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidCommand(f"{field_name} has a key that is not text", field=field_name)
            require_clean_text(key, field_name)
            _check_json_value(item, field_name, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json_value(item, field_name, depth + 1)
    elif isinstance(value, str):
        require_clean_text(value, field_name)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidCommand(f"{field_name} holds a number that is not finite", field=field_name)
    elif value is not None and not isinstance(value, (bool, int, float)):
        raise InvalidCommand(f"{field_name} is not plain JSON", field=field_name)


def require_utc_offset(
    value: Any, field_name: str, *, error: type[InvalidCommand] = InvalidCommand
) -> datetime:
    """A time must say which offset from UTC it is in: a naive time means nothing."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise error(f"{field_name} must carry a UTC offset, e.g. 2026-01-31T14:00:00Z", field=field_name)
    return value


def require_moment(value: Any, field_name: str, *, error: type[InvalidCommand] = InvalidCommand) -> datetime:
    """A time with a UTC offset that, converted to UTC, lies in the range the ledger keeps
    (1970-01-01 to 9999-12-31 UTC)."""
    moment = require_utc_offset(value, field_name, error=error)
    try:
        in_utc = moment.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST_TIME <= in_utc <= LATEST_TIME:
        raise error(
            f"{field_name} must lie between {EARLIEST_TIME.isoformat()} and {LATEST_TIME.isoformat()} once in UTC",
            field=field_name,
        )
    return moment
