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
