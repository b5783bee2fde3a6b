"""The console's session cookie: only what this server signed, recently, is a session."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest

from interfaces.console.sessions import Session, SessionCodec


@pytest.fixture
def codec() -> SessionCodec:
    return SessionCodec(b"k" * 32, lifetime=3600)


def test_a_session_survives_its_cookie(codec: SessionCodec) -> None:
    session = Session.for_key("ab" * 32)
    assert codec.decode(codec.encode(session)) == session
    assert codec.decode(codec.encode(Session.anonymous())).key_sha256 is None


@pytest.mark.parametrize(
    "cookie",
    ["", "no-dot", "a.b.c", "x" * 2000, "e30.AAAA", "!!!.???", "\u00e9.\u00e9"],
)
def test_malformed_cookies_are_no_session(codec: SessionCodec, cookie: str) -> None:
    assert codec.decode(cookie) is None


def test_a_cookie_signed_by_another_server_or_edited_is_no_session(codec: SessionCodec) -> None:
    cookie = SessionCodec(b"x" * 32).encode(Session.for_key("ab" * 32))
    assert codec.decode(cookie) is None
    body, mac = codec.encode(Session.anonymous()).split(".")
    edited = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    edited["k"] = "cd" * 32  # claim a key without knowing the secret
    forged = base64.urlsafe_b64encode(json.dumps(edited).encode()).rstrip(b"=").decode()
    assert codec.decode(f"{forged}.{mac}") is None


def test_old_and_future_sessions_are_no_session(codec: SessionCodec) -> None:
    session = Session.for_key("ab" * 32)
    assert codec.decode(codec.encode(replace(session, issued_at=session.issued_at - 3601))) is None
    assert codec.decode(codec.encode(replace(session, issued_at=session.issued_at + 600))) is None


def test_csrf_tokens_belong_to_one_session(codec: SessionCodec) -> None:
    first, second = Session.anonymous(), Session.anonymous()
    token = codec.csrf_token(first)
    assert codec.csrf_valid(first, token)
    assert not codec.csrf_valid(second, token)
    assert not codec.csrf_valid(first, None) and not codec.csrf_valid(first, "")
    assert not codec.csrf_valid(first, "\u00e9" + token)
    # A login starts a new nonce: the token of the anonymous session is worthless after it.
    assert not codec.csrf_valid(Session.for_key("ab" * 32), token)
