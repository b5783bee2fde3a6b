"""Where the API keeps the first answers it replays byte for byte.

`MemoryAnswers` is one process's own. `SharedAnswers` is shared by the API processes of
one server through an LMDB file: a redelivery is answered from memory whichever process
it reaches, not only by the one that answered it first. Both are bounded by a byte budget
and hold only what the ledger already committed, so losing them loses nothing but speed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections import OrderedDict
from pathlib import Path

import lmdb

from application.ports import AnswerKey, StoredAnswer
from infrastructure.settings import ConfigurationError

log = logging.getLogger(__name__)


class MemoryAnswers:
    """This process's first answers, least recently used dropped beyond the byte budget.
    Used from the event loop only, so it needs no lock."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._answers: OrderedDict[AnswerKey, StoredAnswer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: AnswerKey) -> StoredAnswer | None:
        answer = self._answers.get(key)
        if answer is not None:
            self._answers.move_to_end(key)
        return answer

    def put(self, key: AnswerKey, answer: StoredAnswer) -> None:
        if answer.size > self.max_bytes:
            return
        previous = self._answers.pop(key, None)
        if previous is not None:
            self.bytes -= previous.size
        self._answers[key] = answer
        self.bytes += answer.size
        while self.bytes > self.max_bytes:
            _, dropped = self._answers.popitem(last=False)
            self.bytes -= dropped.size

    def close(self) -> None:
        self._answers.clear()
        self.bytes = 0


_GENERATIONS = (b"answers-a", b"answers-b")
_CURRENT = b"current"
_FILLED = b"filled"
_COUNTER = struct.Struct("<Q")


class SharedAnswers:
    """First answers shared by every process that opens the same directory.

    Answers go into the current of two generations; when it holds half the budget, the
    older generation is emptied and becomes the current one. So the store never holds
    more than the budget, and an answer lives at least until half the budget was written
    after it. Keys carry the database's name, so servers on other databases never share
    an answer. Each process opens the directory once (LMDB's rule). A store that fails
    is only a cache that misses: the ledger still answers."""

    def __init__(self, directory: Path, max_bytes: int, database: str) -> None:
        self.max_bytes = max_bytes
        self._database = database
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Room for the budget plus LMDB's own pages. Writes skip fsync: the store is a
            # cache of committed answers, made afresh for each server.
            self._env = lmdb.open(
                str(directory), map_size=2 * max_bytes + (16 << 20), max_dbs=3, sync=False, metasync=False
            )
            self._generations = [self._env.open_db(name) for name in _GENERATIONS]
            self._meta = self._env.open_db(b"meta")
            # A process killed while reading leaves its reader slot behind, and LMDB then
            # cannot reuse the pages that reader could see.
            self._env.reader_check()
        except (OSError, lmdb.Error) as error:
            raise ConfigurationError(f"cannot share answers in {directory}: {error}") from None

    def close(self) -> None:
        self._env.close()

    def get(self, key: AnswerKey) -> StoredAnswer | None:
        """The answer kept under this key; None if there is none, or it cannot be read back
        intact (a damaged store is a cache that misses, never a failed request)."""
        try:
            with self._env.begin() as txn:
                current = self._current(txn)
                for generation in (current, 1 - current):
                    value = txn.get(self._encode_key(key), db=self._generations[generation])
                    if value is not None:
                        return _decode_answer(value)
        except lmdb.Error as error:
            log.warning("shared answers: a lookup failed, answering without them: %s", error)
        except CorruptAnswer as error:
            log.warning("shared answers: a kept answer is damaged, answering without it: %s", error)
        return None

    def put(self, key: AnswerKey, answer: StoredAnswer) -> None:
        value = _encode_answer(answer)
        if len(value) > self.max_bytes // 2:
            return
        try:
            try:
                self._put(self._encode_key(key), value)
            except lmdb.MapFullError:
                # Stale readers may pin old pages; else LMDB's pages outgrew the room.
                self._env.reader_check()
                self.clear()
                self._put(self._encode_key(key), value)
        except (lmdb.Error, CorruptAnswer) as error:
            log.warning("shared answers: an answer was not kept: %s", error)

    def clear(self) -> None:
        """Forget every answer (a server starting on a directory it may have used before)."""
        with self._env.begin(write=True) as txn:
            for generation in self._generations:
                txn.drop(generation, delete=False)
            txn.put(_FILLED, _COUNTER.pack(0), db=self._meta)

    def _put(self, key: bytes, value: bytes) -> None:
        with self._env.begin(write=True) as txn:
            filled_before = txn.get(_FILLED, db=self._meta)
            try:
                filled = (_counter(filled_before) if filled_before else 0) + len(key) + len(value)
                current = self._current(txn)
            except CorruptAnswer:  # damaged meta: rotate, which writes it afresh
                filled, current = self.max_bytes, 1
            if filled > self.max_bytes // 2:
                current = 1 - current
                txn.drop(self._generations[current], delete=False)
                txn.put(_CURRENT, _COUNTER.pack(current), db=self._meta)
                filled = len(key) + len(value)
            txn.put(key, value, db=self._generations[current])
            txn.put(_FILLED, _COUNTER.pack(filled), db=self._meta)

    def _encode_key(self, key: AnswerKey) -> bytes:
        """A fixed 32 bytes: LMDB keys are limited to 511, a path and a key can be longer."""
        principal, path, idempotency_key = key
        named = [self._database, principal, path, idempotency_key.decode("latin-1")]
        return hashlib.sha256(json.dumps(named).encode()).digest()

    def _current(self, txn: lmdb.Transaction) -> int:
        value = txn.get(_CURRENT, db=self._meta)
        current = _counter(value) if value else 0
        if current not in (0, 1):
            raise CorruptAnswer(f"the current generation reads {current}")
        return current


class CorruptAnswer(ValueError):
    """What the store holds cannot be read back as it was kept."""


def _counter(value: bytes | memoryview) -> int:
    try:
        return int(_COUNTER.unpack(bytes(value))[0])
    except struct.error as error:
        raise CorruptAnswer(f"a counter of {len(value)} bytes: {error}") from None


#: Each kept value starts with this digest of the rest, so damage reads as a miss.
_CHECK_BYTES = 16


def _check(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECK_BYTES).digest()


def _encode_answer(answer: StoredAnswer) -> bytes:
    """A check digest, a JSON head line (status, headers, route, digest), then the body."""
    head = {
        "status": answer.status,
        "headers": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in answer.headers],
        "route_path": answer.route_path,
        "body_digest": answer.body_digest.hex(),
    }
    payload = json.dumps(head).encode() + b"\n" + answer.body
    return _check(payload) + payload


def _decode_answer(value: bytes) -> StoredAnswer:
    """The kept answer, or CorruptAnswer if any byte of it changed or its head is malformed."""
    value = bytes(value)
    check, payload = value[:_CHECK_BYTES], value[_CHECK_BYTES:]
    if len(check) != _CHECK_BYTES or _check(payload) != check:
        raise CorruptAnswer("its check digest does not match")
    head_line, _, body = payload.partition(b"\n")
    try:
        head = json.loads(head_line)
        status, headers, route_path = head["status"], head["headers"], head["route_path"]
        if not (isinstance(status, int) and 100 <= status <= 599):
            raise CorruptAnswer(f"status {status!r}")
        if not (route_path is None or isinstance(route_path, str)):
            raise CorruptAnswer(f"route {route_path!r}")
        return StoredAnswer(
            body_digest=bytes.fromhex(head["body_digest"]),
            status=status,
            headers=[(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers],
            body=body,
            route_path=route_path,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CorruptAnswer(f"its head does not read: {error!r}") from None
