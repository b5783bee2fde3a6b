"""API keys: principals, roles, and the fail-closed open local mode."""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from dataclasses import dataclass

from fastapi import Request

from infrastructure.settings import ApiKeyEntry, ConfigurationError, Role
from interfaces.api.problems import HttpProblem

LOCAL_PRINCIPAL = "local"

#: What each role may do, beyond reading (every role may read).
WRITE_PERMISSIONS: dict[str, frozenset[Role]] = {
    "write": frozenset({Role.WRITER, Role.OPERATOR}),
    "operate": frozenset({Role.OPERATOR}),
}


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[Role]


#: Who every request is in open local mode: one principal with every role.
_LOCAL = Principal(LOCAL_PRINCIPAL, frozenset(Role))


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    return "dlk_" + secrets.token_urlsafe(32)


class Authenticator:
    """Knows the hashes of the API keys, never the keys."""

    def __init__(self, entries: list[ApiKeyEntry]) -> None:
        self._by_hash = {entry.key_sha256: entry for entry in entries}
        self.open_local_mode = not entries

    def authenticate(self, request: Request) -> Principal:
        if self.open_local_mode:
            refuse_open_mode_off_loopback_request(request)
            return _LOCAL
        presented = _presented_key(request)
        if presented is None:
            raise HttpProblem(
                401,
                "unauthorized",
                "send an API key as 'Authorization: Bearer <key>'",
                {"WWW-Authenticate": 'Bearer realm="decision-ledger"'},
            )
        principal = self.principal_for_hash(hash_api_key(presented))
        if principal is not None:
            return principal
        raise HttpProblem(
            401,
            "unauthorized",
            "this API key is not known",
            {"WWW-Authenticate": 'Bearer realm="decision-ledger"'},
        )

    def principal_for_hash(self, key_sha256: str) -> Principal | None:
        """Who holds the key with this SHA-256 (the console's session keeps the hash)."""
        if self.open_local_mode:
            return _LOCAL
        for known_hash, entry in self._by_hash.items():
            if secrets.compare_digest(known_hash, key_sha256):
                return Principal(entry.principal, frozenset(entry.roles))
        return None


def _presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("x-api-key") or None


def authorize(principal: Principal, permission: str) -> None:
    allowed = WRITE_PERMISSIONS[permission]
    if not principal.roles & allowed:
        needed = " or ".join(sorted(role.value for role in allowed))
        raise HttpProblem(403, "forbidden", f"principal {principal.name!r} needs the role {needed}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_open_mode_off_loopback_request(request: Request) -> None:
    """Open local mode answers only what reached the server on a loopback address, however
    the app is served (`serve`, or uvicorn with --host 0.0.0.0): the address is the
    socket's own, which no client can choose. Names (a test client, a Unix socket) are local."""
    server = request.scope.get("server")
    address = server[0] if server else None
    try:
        off_loopback = address is not None and not ipaddress.ip_address(address).is_loopback
    except ValueError:
        off_loopback = False
    if off_loopback:
        raise HttpProblem(
            403,
            "open-mode-off-loopback",
            "this server has no API keys, so it answers on a loopback address only;"
            " its operator must configure DECISION_LEDGER_API_KEYS",
        )


def refuse_open_mode_off_loopback(host: str, open_local_mode: bool) -> None:
    """Fail closed: an API without keys is served on a loopback address only."""
    if open_local_mode and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to serve without API keys on {host}: open local mode binds to a loopback"
            " address only; configure DECISION_LEDGER_API_KEYS or use --host 127.0.0.1"
        )
