"""Published RFC 6962 test vectors (transparency-dev/merkle) against our Merkle tree.

The tree is the eight leaves of transparency-dev/merkle `testonly/constants.go`; its roots
and node hashes are from the same file; the probe files under tests/vectors/rfc6962 are
that repository's `testdata/` (see SOURCE.md there).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from application.transparency.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    NodeId,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
)
from application.transparency.verify import verify_consistency, verify_inclusion
from domain.errors import ProofInvalid

VECTORS = Path(__file__).parents[1] / "vectors" / "rfc6962"

LEAF_INPUTS = [bytes.fromhex(text) for text in ("", "00", "10", "2021", "3031", "40414243",
               "5051525354555657", "606162636465666768696a6b6c6d6e6f")]  # fmt: skip

ROOTS_BY_SIZE = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

NODE_HASHES_BY_LEVEL = [
    ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
     "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
     "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
     "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
     "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
     "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
     "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
     "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"],
    ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
     "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
     "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
     "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"],
    ["d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
     "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]  # fmt: skip


def b64(text: str) -> bytes:
    return base64.b64decode(text) if text else b""


def probes(kind: str) -> list[tuple[str, dict]]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [(str(path.relative_to(VECTORS)), json.loads(path.read_text())) for path in files]


INCLUSION_PROBES = probes("inclusion")
CONSISTENCY_PROBES = probes("consistency")


def test_the_vector_files_are_all_there() -> None:
    # The published set: 98 probes of each kind, 6 of each to accept, the rest to refuse.
    assert len(INCLUSION_PROBES) == len(CONSISTENCY_PROBES) == 98
    assert sum(not probe["wantErr"] for _, probe in INCLUSION_PROBES) == 6
    assert sum(not probe["wantErr"] for _, probe in CONSISTENCY_PROBES) == 6


def full_tree(size: int = 8) -> MemoryTree:
    tree = MemoryTree()
    for leaf in LEAF_INPUTS[:size]:
        tree.append(leaf_hash(leaf))
    return tree


def test_roots_of_every_size_match_the_published_roots() -> None:
    tree = full_tree()
    assert EMPTY_ROOT.hex() == ROOTS_BY_SIZE[0]
    for size, expected in enumerate(ROOTS_BY_SIZE):
        assert root(tree, size).hex() == expected, size


def test_stored_levels_match_the_published_node_hashes() -> None:
    tree = full_tree()
    for level, hashes in enumerate(NODE_HASHES_BY_LEVEL):
        for index, expected in enumerate(hashes):
            assert tree.nodes[NodeId(level, index)].hex() == expected
    # Exactly the perfect subtrees are stored: 8 + 4 + 2 + 1.
    assert len(tree.nodes) == 15


@pytest.mark.parametrize(("name", "probe"), INCLUSION_PROBES, ids=[name for name, _ in INCLUSION_PROBES])
def test_inclusion_probe(name: str, probe: dict) -> None:
    proof = [b64(element) for element in probe["proof"] or []]
    arguments = (b64(probe["leafHash"]), probe["leafIdx"], probe["treeSize"], proof, b64(probe["root"]))
    if probe["wantErr"]:
        with pytest.raises(ProofInvalid):
            verify_inclusion(*arguments)
    else:
        verify_inclusion(*arguments)


@pytest.mark.parametrize(("name", "probe"), CONSISTENCY_PROBES, ids=[name for name, _ in CONSISTENCY_PROBES])
def test_consistency_probe(name: str, probe: dict) -> None:
    proof = [b64(element) for element in probe["proof"] or []]
    arguments = (probe["size1"], probe["size2"], b64(probe["root1"]), b64(probe["root2"]), proof)
    if probe["wantErr"]:
        with pytest.raises(ProofInvalid):
            verify_consistency(*arguments)
    else:
        verify_consistency(*arguments)


def happy_paths(probes: list[tuple[str, dict]]) -> list[dict]:
    """The happy paths in the eight-leaf tree (single-entry and additional ones use other leaves)."""
    in_tree = [b64(probe.get("root") or probe.get("root2", "")) for _, probe in probes]
    roots = {bytes.fromhex(text) for text in ROOTS_BY_SIZE}
    return [
        probe
        for (_, probe), probe_root in zip(probes, in_tree, strict=True)
        if not probe["wantErr"] and probe_root in roots
    ]


def test_generated_inclusion_proofs_equal_the_published_happy_paths() -> None:
    tree = full_tree()
    checked = 0
    for probe in happy_paths(INCLUSION_PROBES):
        expected = [b64(element) for element in probe["proof"] or []]
        assert inclusion_proof(tree, probe["leafIdx"], probe["treeSize"]) == expected
        assert leaf_hash(LEAF_INPUTS[probe["leafIdx"]]) == b64(probe["leafHash"])
        checked += 1
    assert checked == 5


def test_generated_consistency_proofs_equal_the_published_happy_paths() -> None:
    tree = full_tree()
    checked = 0
    for probe in happy_paths(CONSISTENCY_PROBES):
        expected = [b64(element) for element in probe["proof"] or []]
        assert consistency_proof(tree, probe["size1"], probe["size2"]) == expected
        assert root(tree, probe["size1"]) == b64(probe["root1"])
        checked += 1
    assert checked == 5
