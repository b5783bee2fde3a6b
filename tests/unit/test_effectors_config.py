"""The effectors file: a good one loads; every kind of bad one is one line, and nothing loads."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from infrastructure.effectors import DEFAULT_RETRY_SCHEDULE_S, load_effectors
from infrastructure.settings import ConfigurationError

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()

GOOD = f"""
[[effectors]]
name = "card-service"
url = "http://127.0.0.1:9100/hooks"
kinds = ["block-card", "unblock-card"]
secret = "{SECRET}"
timeout_s = 2.5
retry_schedule_s = [0, 0.5, 5]

[[effectors]]
name = "refunds"
url = "https://refunds.example/hooks"
kinds = ["refund"]
secret_env = "REFUNDS_SECRET"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "effectors.toml"
    path.write_text(text)
    return path


def test_a_good_file_finds_each_kinds_effector(tmp_path: Path) -> None:
    effectors = load_effectors(write(tmp_path, GOOD), environ={"REFUNDS_SECRET": SECRET})

    card = effectors.for_kind("block-card")
    assert card is not None and card is effectors.for_kind("unblock-card")
    assert (card.name, card.url, card.timeout_s, card.retry_schedule_s) == (
        "card-service",
        "http://127.0.0.1:9100/hooks",
        2.5,
        (0.0, 0.5, 5.0),
    )
    refunds = effectors.for_kind("refund")
    assert refunds is not None and refunds.secret == SECRET
    # Defaults: ten seconds, the spec's schedule.
    assert refunds.timeout_s == 10.0 and refunds.retry_schedule_s == DEFAULT_RETRY_SCHEDULE_S
    assert effectors.for_kind("open-account") is None
    assert effectors.kinds == {"block-card", "unblock-card", "refund"}
    # The secret never shows in a repr (logs, tracebacks).
    assert SECRET not in repr(effectors)


def test_no_file_means_no_effectors() -> None:
    effectors = load_effectors(None)
    assert not effectors and effectors.for_kind("block-card") is None


def entry(**fields: object) -> str:
    values = {
        "name": '"card-service"',
        "url": '"http://127.0.0.1:9100/hooks"',
        "kinds": '["block-card"]',
        "secret": f'"{SECRET}"',
    }
    values.update({key: str(value) for key, value in fields.items() if value is not None})
    for key, value in fields.items():
        if value is None:
            values.pop(key)
    return "[[effectors]]\n" + "\n".join(f"{key} = {value}" for key, value in values.items()) + "\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[effectors]\nname = 1", "is not valid TOML"),
        (entry(url='"ftp://127.0.0.1/hooks"'), "effectors.0.url: url must be an http:// or https:// URL"),
        (entry(url='"127.0.0.1:9100/hooks"'), "url must be an http:// or https:// URL"),
        (entry(url='"http:///hooks"'), "url must be an http:// or https:// URL"),
        (entry(secret=None), "give exactly one of secret and secret_env"),
        (entry(secret_env='"CARD_SECRET"'), "give exactly one of secret and secret_env"),
        (entry(secret=None, secret_env='"UNSET_SECRET_VARIABLE"'), "UNSET_SECRET_VARIABLE, which is not set"),
        (entry(secret='"hunter2"'), "secret is not a Standard Webhooks secret"),
        (entry(secret='"whsec_c2hvcnQ="'), "secret is not a Standard Webhooks secret"),
        (entry() + entry(name='"other"'), "the kind 'block-card' is already sent to effector 'card-service'"),
        (entry() + entry(kinds='["refund"]'), "the name 'card-service' is used twice"),
        (entry(kinds="[]"), "effectors.0.kinds"),
        (entry(kinds='["bad kind"]'), "effectors.0.kinds.0"),
        (entry(timeout_s=0), "effectors.0.timeout_s"),
        (entry(retry_schedule_s="[]"), "effectors.0.retry_schedule_s"),
        (entry(retry_schedule_s="[0, -1]"), "every retry delay must be between 0 and"),
        (entry(retry_schedule_s="[0, nan]"), "every retry delay must be between 0 and"),
        (entry(retries=3), "effectors.0.retries: Extra inputs are not permitted"),
        ("[effectors]\nname = 'x'", "effectors: Input should be a valid list"),
    ],
)
def test_a_bad_file_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_effectors(write(tmp_path, text), environ={})
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message
    # A secret never leaks into the message.
    assert SECRET not in message


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot read the effectors file .*absent\.toml"):
        load_effectors(tmp_path / "absent.toml")


def test_secret_env_reads_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, entry(secret=None, secret_env='"CARD_SECRET"'))
    effector = load_effectors(path, environ={"CARD_SECRET": SECRET}).for_kind("block-card")
    assert effector is not None and effector.secret == SECRET
