"""Explicit limits on what a command may carry. The API schemas reuse them."""

from __future__ import annotations

MAX_BASIS_BATCH = 10_000
MAX_DECISION_BATCH = 1_000
MAX_INPUT_ID_LENGTH = 256
MAX_LABEL_LENGTH = 64
MAX_TEXT_LENGTH = 2_000
MAX_NAME_LENGTH = 128
MAX_REASON_CODES = 64
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_TOKEN_LENGTH = 1_024

#: Outcomes, reason codes, lanes and action kinds.
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"
#: Input IDs: any printable text, no control characters.
INPUT_ID_PATTERN = r"^[^\x00-\x1f\x7f]{1,256}$"
