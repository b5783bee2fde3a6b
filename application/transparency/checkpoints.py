"""C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint): a signed note whose text is

<origin>
<tree size, decimal, no leading zeroes>
<root hash, base64>
[extension lines, each non-empty]
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from application.transparency.merkle import HASH_SIZE
from application.transparency.notes import NoteSigner, NoteVerifier, check_note_text, open_note, sign_note
from domain.errors import MalformedTransparencyText, NoteNotVerified


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise MalformedTransparencyText("a checkpoint's origin is one non-empty line")
        if self.size < 0:
            raise MalformedTransparencyText("a checkpoint's tree size cannot be negative")
        if len(self.root_hash) != HASH_SIZE:
            raise MalformedTransparencyText(f"a checkpoint's root hash is {HASH_SIZE} bytes")
        if any(not line or "\n" in line for line in self.extensions):
            raise MalformedTransparencyText("a checkpoint's extension lines are non-empty lines")

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode("ascii")]
        text = "\n".join([*lines, *self.extensions]) + "\n"
        check_note_text(text)
        return text

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        check_note_text(text)
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedTransparencyText("a checkpoint has an origin, a tree size and a root hash")
        origin, size_text, root_text, *extensions = lines
        if not size_text.isascii() or not size_text.isdigit() or (size_text != "0" and size_text[0] == "0"):
            raise MalformedTransparencyText(
                f"tree size {size_text!r} is not a decimal without leading zeroes"
            )
        try:
            root_hash = base64.b64decode(root_text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise MalformedTransparencyText("a checkpoint's root hash is not standard base64") from None
        return cls(origin, int(size_text), root_hash, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[NoteSigner]) -> str:
    return sign_note(checkpoint.text(), signers)


@dataclass(frozen=True)
class VerifiedCheckpoint:
    checkpoint: Checkpoint
    verified_by: tuple[NoteVerifier, ...]
    note: str


def open_checkpoint(
    note: str | bytes, trusted: Iterable[NoteVerifier], origin: str | None = None
) -> VerifiedCheckpoint:
    """The checkpoint a trusted key signed; with `origin`, only a checkpoint of that log."""
    opened = open_note(note, trusted)
    checkpoint = Checkpoint.parse(opened.text)
    if origin is not None and checkpoint.origin != origin:
        raise NoteNotVerified(f"the checkpoint is of log {checkpoint.origin!r}, not {origin!r}")
    text = note.decode("utf-8") if isinstance(note, bytes) else note
    return VerifiedCheckpoint(checkpoint, opened.verified_by, text)
