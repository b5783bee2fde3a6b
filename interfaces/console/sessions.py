"""The console's session cookie and CSRF tokens.

The API key is entered once; the cookie then carries the SHA-256 of the key (never the
key), a random nonce and the time it was issued, signed with HMAC-SHA256. It is
HttpOnly and SameSite=Strict. Every form carries a CSRF token derived from the
session's nonce, so a form rendered for one session is refused in another.

The HMAC secret is derived from the proof-signing key (Ed25519 signatures are
deterministic), so every API process of one server accepts the same cookies and no
secret is stored anywhere else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol

COOKIE_NAME = "dl_console"
COOKIE_PATH = "/console"
#: How long a session holds after the key was entered.
SESSION_LIFETIME_SECONDS = 12 * 3600
_SECRET_MESSAGE = b"decision-ledger console session secret v1"


class MessageSigner(Protocol):
    def sign(self, message: bytes) -> str: ...


@dataclass(frozen=True)
class Session:
    """Who the browser is: the hash of the key it entered (None before a login, and in
    open local mode), and the nonce its CSRF tokens come from."""

    key_sha256: str | None
    nonce: str
    issued_at: int

    @classmethod
    def anonymous(cls) -> Session:
        return cls(None, secrets.token_urlsafe(18), int(time.time()))

    @classmethod
    def for_key(cls, key_sha256: str) -> Session:
        # A fresh nonce at login: a token seen before the login is worthless after it.
        return cls(key_sha256, secrets.token_urlsafe(18), int(time.time()))


class SessionCodec:
    def __init__(self, secret: bytes, lifetime: int = SESSION_LIFETIME_SECONDS) -> None:
        self._secret = secret
        self.lifetime = lifetime

    @classmethod
    def from_signer(cls, signer: MessageSigner) -> SessionCodec:
        try:
            signature = signer.sign(_SECRET_MESSAGE)
        except Exception:  # a service without a signing key: sessions of this process only
            signature = secrets.token_hex(32)
        return cls(hashlib.sha256(b"console|" + signature.encode("ascii")).digest())

    def encode(self, session: Session) -> str:
        payload = json.dumps(
            {"k": session.key_sha256, "n": session.nonce, "t": session.issued_at}, separators=(",", ":")
        ).encode("utf-8")
        body = _b64(payload)
        return f"{body}.{self._mac(b'session|' + body.encode('ascii'))}"

    def decode(self, value: str | None) -> Session | None:
        """The session a cookie names, or None when it is missing, forged, malformed or old."""
        if not value or len(value) > 1024 or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        if not value.isascii() or not _same(mac, self._mac(b"session|" + body.encode("ascii"))):
            return None
        try:
            fields: Any = json.loads(_unb64(body))
            session = Session(fields["k"], fields["n"], int(fields["t"]))
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(session.nonce, str) or not (
            session.key_sha256 is None or isinstance(session.key_sha256, str)
        ):
            return None
        if not 0 <= time.time() - session.issued_at <= self.lifetime:
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return self._mac(b"csrf|" + session.nonce.encode("ascii"))

    def csrf_valid(self, session: Session, token: str | None) -> bool:
        return bool(token) and _same(str(token), self.csrf_token(session))

    def _mac(self, message: bytes) -> str:
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest())


def _same(presented: str, expected: str) -> bool:
    """Constant-time comparison that any text may reach (a hostile cookie is not ASCII)."""
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
