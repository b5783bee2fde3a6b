"""C2SP tlog-proof (c2sp.org/tlog-proof@v1): an offline proof that an entry is in a log.

c2sp.org/tlog-proof@v1
[extra <base64 opaque data>]
index <zero-based leaf index>
<inclusion proof, one base64 hash a line, leaf's sibling first>

<the checkpoint, a signed note, verbatim>
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from application.transparency.checkpoints import VerifiedCheckpoint, open_checkpoint
from application.transparency.notes import NoteVerifier
from application.transparency.verify import verify_inclusion
from domain.errors import MalformedTransparencyText

HEADER = "c2sp.org/tlog-proof@v1"
MEDIA_TYPE = "text/x-tlog-proof"


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedTransparencyText(f"{what} is not standard base64") from None


def _decimal(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or (text != "0" and text[0] == "0"):
        raise MalformedTransparencyText(f"{what} {text!r} is not a decimal without leading zeroes")
    return int(text)


@dataclass(frozen=True)
class TlogProof:
    index: int
    inclusion_proof: tuple[bytes, ...]
    checkpoint_note: str
    extra: bytes | None = None

    def text(self) -> str:
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode("ascii"))
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(element).decode("ascii") for element in self.inclusion_proof)
        return "\n".join(lines) + "\n\n" + self.checkpoint_note

    @classmethod
    def parse(cls, text: str | bytes) -> TlogProof:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedTransparencyText("a tlog-proof must be valid UTF-8") from None
        head, separator, checkpoint_note = text.partition("\n\n")
        if not separator:
            raise MalformedTransparencyText("a tlog-proof has a blank line before its checkpoint")
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise MalformedTransparencyText(f"a tlog-proof's first line is {HEADER!r}")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            extra = _b64(rest.pop(0)[len("extra ") :], "the extra data")
        if not rest or not rest[0].startswith("index "):
            raise MalformedTransparencyText("a tlog-proof names its entry with an 'index N' line")
        index = _decimal(rest.pop(0)[len("index ") :], "the index")
        hashes = tuple(_b64(line, f"inclusion proof line {n}") for n, line in enumerate(rest))
        return cls(index, hashes, checkpoint_note, extra)

    def verify(
        self, leaf_hash: bytes, trusted: Iterable[NoteVerifier], origin: str | None = None
    ) -> VerifiedCheckpoint:
        """The checkpoint, once a trusted key signed it and the leaf is in its tree."""
        verified = open_checkpoint(self.checkpoint_note, trusted, origin)
        checkpoint = verified.checkpoint
        verify_inclusion(leaf_hash, self.index, checkpoint.size, self.inclusion_proof, checkpoint.root_hash)
        return verified


def make_tlog_proof(
    index: int, inclusion_proof: Sequence[bytes], checkpoint_note: str, extra: bytes | None = None
) -> str:
    return TlogProof(index, tuple(inclusion_proof), checkpoint_note, extra).text()
