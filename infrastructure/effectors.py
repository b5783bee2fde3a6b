"""The effectors file: which actions the ledger carries out itself, and where they go.

A TOML file (DECISION_LEDGER_EFFECTORS_FILE, `--effectors-file`) lists `[[effectors]]`,
each a Standard Webhooks endpoint and the action kinds it receives. Anything wrong with
it is one ConfigurationError line at start, so nothing starts half-configured.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from domain.fields import LABEL_PATTERN
from infrastructure.settings import ConfigurationError

#: The schedule when a file gives none: 0 s, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
DEFAULT_RETRY_SCHEDULE_S = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)
#: The longest wait one schedule step may ask for (a week), and the most steps.
MAX_RETRY_DELAY_S = 7 * 24 * 3600.0
MAX_RETRY_STEPS = 100


class EffectorEntry(BaseModel):
    """One `[[effectors]]` table, as written in the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=LABEL_PATTERN)
    url: str = Field(min_length=1, max_length=2048)
    kinds: list[Annotated[str, Field(pattern=LABEL_PATTERN)]] = Field(min_length=1)
    secret: SecretStr | None = None
    secret_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    retry_schedule_s: list[float] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE_S), min_length=1, max_length=MAX_RETRY_STEPS
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        scheme, separator, rest = url.partition("://")
        if not separator or scheme.lower() not in {"http", "https"} or not rest or rest[0] in "/?#":
            raise ValueError(f"url must be an http:// or https:// URL with a host, not {url!r}")
        if any(character.isspace() for character in url):
            raise ValueError("url must not contain whitespace")
        return url

    @field_validator("retry_schedule_s")
    @classmethod
    def _delays(cls, delays: list[float]) -> list[float]:
        for delay in delays:
            if not math.isfinite(delay) or delay < 0 or delay > MAX_RETRY_DELAY_S:
                raise ValueError(f"every retry delay must be between 0 and {MAX_RETRY_DELAY_S:.0f} seconds")
        return delays

    @model_validator(mode="after")
    def _one_secret(self) -> EffectorEntry:
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give exactly one of secret and secret_env")
        return self


class EffectorsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    effectors: list[EffectorEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class Effector:
    """One configured endpoint, its secret resolved."""

    name: str
    url: str
    kinds: frozenset[str]
    secret: str
    timeout_s: float
    retry_schedule_s: tuple[float, ...]

    def __repr__(self) -> str:  # never print the secret
        return f"Effector(name={self.name!r}, url={self.url!r}, kinds={sorted(self.kinds)!r})"


@dataclass(frozen=True)
class Effectors:
    """All configured effectors, found by the action kind they receive."""

    by_kind: Mapping[str, Effector]

    @property
    def all(self) -> list[Effector]:
        unique = {effector.name: effector for effector in self.by_kind.values()}
        return [unique[name] for name in sorted(unique)]

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self.by_kind)

    def for_kind(self, kind: str) -> Effector | None:
        return self.by_kind.get(kind)

    def __bool__(self) -> bool:
        return bool(self.by_kind)


NO_EFFECTORS = Effectors(by_kind={})


def load_effectors(path: Path | None, environ: Mapping[str, str] | None = None) -> Effectors:
    """Read and check the effectors file; no file means no effectors."""
    if path is None:
        return NO_EFFECTORS
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigurationError(f"cannot read the effectors file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"the effectors file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"the effectors file {path} is not valid TOML: {error}") from None
    try:
        parsed = EffectorsFile.model_validate(document)
    except ValidationError as error:
        raise ConfigurationError(f"the effectors file {path} is invalid: {_first_problem(error)}") from None
    return _resolve(parsed, path, os.environ if environ is None else environ)


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"])
    message = str(problem["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _resolve(parsed: EffectorsFile, path: Path, environ: Mapping[str, str]) -> Effectors:
    by_kind: dict[str, Effector] = {}
    names: set[str] = set()
    for number, entry in enumerate(parsed.effectors):
        where = f"the effectors file {path}: effectors.{number} ({entry.name})"
        if entry.name in names:
            raise ConfigurationError(f"{where}: the name {entry.name!r} is used twice")
        names.add(entry.name)
        secret = _secret_of(entry, where, environ)
        effector = Effector(
            name=entry.name,
            url=entry.url,
            kinds=frozenset(entry.kinds),
            secret=secret,
            timeout_s=entry.timeout_s,
            retry_schedule_s=tuple(entry.retry_schedule_s),
        )
        for kind in entry.kinds:
            if kind in by_kind:
                raise ConfigurationError(
                    f"{where}: the kind {kind!r} is already sent to effector {by_kind[kind].name!r}"
                )
            by_kind[kind] = effector
    return Effectors(by_kind=by_kind)


def _secret_of(entry: EffectorEntry, where: str, environ: Mapping[str, str]) -> str:
    if entry.secret is not None:
        secret, origin = entry.secret.get_secret_value(), "secret"
    else:
        assert entry.secret_env is not None
        secret, origin = environ.get(entry.secret_env, ""), f"the variable {entry.secret_env}"
        if not secret:
            raise ConfigurationError(f"{where}: secret_env names {entry.secret_env}, which is not set")
    if not _is_webhook_secret(secret):
        raise ConfigurationError(
            f"{where}: {origin} is not a Standard Webhooks secret (whsec_ and the base64 of 24 to 64 bytes)"
        )
    return secret


def _is_webhook_secret(secret: str) -> bool:
    """The spec's form: `whsec_` (optional) and the base64 of 24 to 64 random bytes."""
    encoded = secret.removeprefix("whsec_")
    if not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", encoded):
        return False
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        return False
    return 24 <= len(key) <= 64
