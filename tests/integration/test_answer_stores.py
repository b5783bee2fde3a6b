"""Where first answers are kept for byte-for-byte replays (infrastructure/answer_stores.py):
a process's own memory, and the LMDB store the API processes of one server share. Both
keep answers intact and never hold more than their budget."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from application.ports import StoredAnswer
from infrastructure.answer_stores import MemoryAnswers, SharedAnswers
from infrastructure.settings import ConfigurationError

DATABASE = "postgresql://postgres@127.0.0.1:5432/test?schema=ledger"
HEADERS = [(b"content-type", b"application/json"), (b"idempotent-replayed", b"true")]


def answer(body_size: int, fill: bytes = b"x") -> StoredAnswer:
    return StoredAnswer(b"\x00digest\xff" * 4, 201, HEADERS, fill * body_size, "/runs/{run_id}/decisions")


def key(name: str) -> tuple[str, str, bytes]:
    return ("lane-a", "/runs/fraud-1/decisions", name.encode())


# --- A process's own memory ---------------------------------------------------------------


def test_memory_drops_the_least_recently_used_answers_beyond_its_budget() -> None:
    size = answer(1000).size
    store = MemoryAnswers(max_bytes=3 * size)
    for name in ("a", "b", "c"):
        store.put(key(name), answer(1000))
    assert store.get(key("a")) is not None  # a is now the most recently used

    store.put(key("d"), answer(1000))

    assert store.get(key("b")) is None
    assert all(store.get(key(name)) is not None for name in ("a", "c", "d"))
    assert store.bytes == 3 * size


def test_memory_never_keeps_an_answer_bigger_than_its_budget() -> None:
    store = MemoryAnswers(max_bytes=500)

    store.put(key("big"), answer(1000))

    assert len(store) == 0
    assert store.bytes == 0


# --- Shared by the processes of one server ------------------------------------------------


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[SharedAnswers]:
    store = SharedAnswers(tmp_path / "answers", max_bytes=64 * 1024, database=DATABASE)
    yield store
    store.close()


def test_a_shared_answer_comes_back_exactly_as_it_was_kept(shared: SharedAnswers) -> None:
    kept = StoredAnswer(bytes(range(32)), 200, HEADERS, '{"outcome":"décliné"}'.encode(), None)

    shared.put(key("d-1"), kept)

    assert shared.get(key("d-1")) == kept
    assert shared.get(key("d-2")) is None
    assert shared.get(("lane-b", "/runs/fraud-1/decisions", b"d-1")) is None


def test_keys_longer_than_lmdb_allows_are_kept_apart(shared: SharedAnswers) -> None:
    # A principal, a path and a key can together exceed LMDB's 511-byte keys.
    long_path = "/runs/" + "r" * 128 + "/decisions/" + "i" * 256
    first, second = ("lane-a", long_path, b"k" * 255), ("lane-a", long_path, b"k" * 254 + b"j")

    shared.put(first, answer(10, b"1"))
    shared.put(second, answer(10, b"2"))

    assert shared.get(first) == answer(10, b"1")
    assert shared.get(second) == answer(10, b"2")


def test_the_shared_store_keeps_the_newest_answers_within_its_budget(shared: SharedAnswers) -> None:
    # Three times the budget is written, in answers of about 1 KiB.
    names = [f"k-{number}" for number in range(3 * 64)]
    for name in names:
        shared.put(key(name), answer(1000))

    # The oldest are gone, the newest are all there, and no more than the budget is held.
    kept = [name for name in names if shared.get(key(name)) is not None]
    assert names[0] not in kept
    assert kept == names[-len(kept) :]
    assert 16 <= len(kept) <= 64
    assert sum(len(shared.get(key(name)).body) for name in kept) <= 64 * 1024  # type: ignore[union-attr]


def test_an_answer_bigger_than_half_the_budget_is_not_kept(shared: SharedAnswers) -> None:
    shared.put(key("big"), answer(40 * 1024))

    assert shared.get(key("big")) is None


def test_a_full_map_starts_the_store_afresh_and_keeps_the_new_answer(
    shared: SharedAnswers, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared.put(key("old"), answer(100))
    put = shared._put
    calls = []

    def full_once(*arguments: bytes) -> None:
        calls.append(arguments)
        if len(calls) == 1:
            raise lmdb.MapFullError("mdb_put: MDB_MAP_FULL")
        put(*arguments)

    monkeypatch.setattr(shared, "_put", full_once)

    shared.put(key("new"), answer(100, b"n"))

    assert shared.get(key("new")) == answer(100, b"n")
    assert shared.get(key("old")) is None


def test_an_answer_kept_by_one_process_is_found_by_another(tmp_path: Path) -> None:
    directory = tmp_path / "answers"
    child = textwrap.dedent(
        f"""
        from pathlib import Path
        from application.ports import StoredAnswer
        from infrastructure.answer_stores import SharedAnswers
        store = SharedAnswers(Path({str(directory)!r}), max_bytes=64 * 1024, database={DATABASE!r})
        store.put(("lane-a", "/runs/fraud-1/decisions", b"d-1"),
                  StoredAnswer(b"digest", 201, [(b"idempotent-replayed", b"true")], b"first answer", None))
        store.close()
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True, cwd=Path(__file__).parents[2])

    store = SharedAnswers(directory, max_bytes=64 * 1024, database=DATABASE)
    try:
        found = store.get(("lane-a", "/runs/fraud-1/decisions", b"d-1"))
    finally:
        store.close()

    assert found is not None and found.body == b"first answer"


def test_a_directory_that_cannot_be_used_is_a_configuration_error(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "answers"
    not_a_directory.write_text("a file")

    with pytest.raises(ConfigurationError, match="cannot share answers in"):
        SharedAnswers(not_a_directory, max_bytes=64 * 1024, database=DATABASE)


def test_answers_kept_for_another_database_are_not_found(tmp_path: Path) -> None:
    directory = tmp_path / "answers"
    first = SharedAnswers(directory, max_bytes=64 * 1024, database="sqlite:///one.sqlite3")
    first.put(key("d-1"), answer(10))
    first.close()

    other = SharedAnswers(directory, max_bytes=64 * 1024, database="sqlite:///two.sqlite3")
    try:
        assert other.get(key("d-1")) is None
    finally:
        other.close()


def test_clearing_forgets_every_answer(shared: SharedAnswers) -> None:
    for name in ("a", "b"):
        shared.put(key(name), answer(10))

    shared.clear()

    assert shared.get(key("a")) is None and shared.get(key("b")) is None
    shared.put(key("c"), answer(10))
    assert shared.get(key("c")) == answer(10)


def test_a_store_that_fails_is_a_cache_that_misses(shared: SharedAnswers) -> None:
    shared.put(key("d-1"), answer(10))
    shared.close()  # every LMDB call now fails

    assert shared.get(key("d-1")) is None
    shared.put(key("d-2"), answer(10))  # not kept, and no error for the request


@pytest.mark.slow
def test_a_reader_killed_mid_read_does_not_fill_the_store_for_good(tmp_path: Path) -> None:
    # Another process is killed while it holds a read transaction open.
    directory = tmp_path / "answers"
    store = SharedAnswers(directory, max_bytes=256 * 1024, database=DATABASE)
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
            import sys, time
            import lmdb
            env = lmdb.open({str(directory)!r}, max_dbs=3)
            txn = env.begin()
            print("reading", flush=True)
            time.sleep(60)
            """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stdout.readline().strip() == "reading"
    reader.kill()
    reader.wait()

    # Far more than the map holds is written afterwards: every answer is still kept.
    try:
        for number in range(20_000):
            store.put(key(f"k-{number}"), answer(1000))
        assert store.get(key("k-19999")) == answer(1000)
    finally:
        store.close()
