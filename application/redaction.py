"""What an error message, a log line or a status line may show of a database URL: never
its password. One function, used wherever such text leaves the process."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/@:]*:)[^\s/]*@")


def redacted(text: str) -> str:
    """The text with the password of every URL in it masked: what an error message, a log
    line or a status line may show of a database URL."""
    return _URL_PASSWORD.sub(r"\1***@", text)
