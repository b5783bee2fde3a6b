"""A damaged shared-answers store is a cache that misses, never a failed request.

Whatever happened to the LMDB file (a byte flipped on disk, a truncated write, another
program writing into it), a lookup that cannot read an answer back exactly as it was kept
finds nothing, and the request goes the usual way: the ledger answers it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from infrastructure.answer_stores import SharedAnswers, StoredAnswer
from infrastructure.settings import Settings
from interfaces.api.app import create_app
from tests.support.api import RUN_ID, decision_body, keyed, open_run

DATABASE = "sqlite:///answers-damage.sqlite3"
HEADERS = [(b"content-type", b"application/json"), (b"idempotent-replayed", b"true")]
KEY = ("lane-a", "/runs/fraud-1/decisions", b"decide-1")
KEPT = StoredAnswer(b"\x01" * 32, 201, HEADERS, b'{"decision_id":"d-1"}', "/runs/{run_id}/decisions")


def flip_last_byte(value: bytes) -> bytes:
    return value[:-1] + bytes([value[-1] ^ 0xFF])


#: Ways a kept value can be damaged.
DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "a body byte flipped": flip_last_byte,
    "truncated": lambda value: value[: len(value) // 2],
    "empty": lambda value: b"",
    "garbage": lambda value: b"\xff\xfe not an answer",
    "a head that is not JSON": lambda value: value[:16] + b"{status: 201\n{}",
}


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[SharedAnswers]:
    store = SharedAnswers(tmp_path / "answers", max_bytes=64 * 1024, database=DATABASE)
    yield store
    store.close()


def damage_every_answer(store: SharedAnswers, damage: Callable[[bytes], bytes]) -> int:
    """Rewrite every kept value in place; how many there were."""
    damaged = 0
    with store._env.begin(write=True) as txn:
        for generation in store._generations:
            for key, value in list(txn.cursor(db=generation)):
                txn.put(key, damage(bytes(value)), db=generation)
                damaged += 1
    return damaged


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_answer_is_a_miss(shared: SharedAnswers, damage: str) -> None:
    shared.put(KEY, KEPT)
    assert shared.get(KEY) == KEPT

    assert damage_every_answer(shared, DAMAGE[damage]) == 1

    assert shared.get(KEY) is None
    # The next answer for that key is kept and found again.
    shared.put(KEY, KEPT)
    assert shared.get(KEY) == KEPT


@pytest.mark.parametrize(
    "head",
    [
        b'{"status": "201", "headers": [], "route_path": null, "body_digest": "00"}',
        b'{"status": 99, "headers": [], "route_path": null, "body_digest": "00"}',
        b'{"status": 201, "headers": [["a"]], "route_path": null, "body_digest": "00"}',
        b'{"status": 201, "headers": [], "route_path": 7, "body_digest": "00"}',
        b'{"status": 201, "headers": [], "route_path": null, "body_digest": "xyz"}',
        b'{"status": 201, "headers": [], "route_path": null}',
        b"[]",
    ],
)
def test_an_answer_with_a_malformed_head_is_a_miss_even_with_a_valid_check(
    shared: SharedAnswers, head: bytes
) -> None:
    # Written by something that knew the format's check digest, but not its head.
    payload = head + b"\n{}"
    shared.put(KEY, KEPT)
    damage_every_answer(shared, lambda _: hashlib.blake2b(payload, digest_size=16).digest() + payload)

    assert shared.get(KEY) is None


@pytest.mark.parametrize("meta", [b"", b"\x01", b"\x07" * 8, b"not a counter at all"])
def test_damaged_bookkeeping_is_a_miss_and_is_written_afresh(shared: SharedAnswers, meta: bytes) -> None:
    shared.put(KEY, KEPT)
    with shared._env.begin(write=True) as txn:
        txn.put(b"current", meta, db=shared._meta)
        txn.put(b"filled", meta, db=shared._meta)

    shared.get(KEY)  # found or not, it answers
    shared.put(KEY, KEPT)
    assert shared.get(KEY) == KEPT


# --- Over HTTP, on each back end -----------------------------------------------------------


def damage_from_another_process(directory: Path) -> None:
    """Another process overwrites every kept answer with bytes that are not one."""
    script = textwrap.dedent(
        f"""
        import lmdb
        env = lmdb.open({str(directory)!r}, max_dbs=3)
        with env.begin(write=True) as txn:
            for name in (b"answers-a", b"answers-b"):
                db = env.open_db(name, txn=txn)
                for key, value in list(txn.cursor(db=db)):
                    txn.put(key, bytes(value)[:20] + b"garbage", db=db)
        env.close()
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_a_redelivery_whose_kept_answer_is_damaged_is_answered_by_the_ledger(
    database_url: str, signing_key_hex: str, tmp_path: Path
) -> None:
    answers = tmp_path / "answers"
    settings = Settings(
        database_url=database_url,
        signing_key=signing_key_hex,
        api_keys=[],
        api_keys_file=None,
        shared_answers_dir=answers,
    )
    with TestClient(create_app(settings)) as api:
        open_run(api)
        first = api.post(f"/runs/{RUN_ID}/decisions", json=decision_body(), headers=keyed("decide-txn-1"))
        assert first.status_code == 201, first.text

        damage_from_another_process(answers)

        # The redelivery is answered all the same: replayed from the ledger's receipt.
        again = api.post(f"/runs/{RUN_ID}/decisions", json=decision_body(), headers=keyed("decide-txn-1"))
        assert again.status_code == 201, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
