"""The one RFC 6962 Merkle module (``contracts._merkle``): hashing and proofs against the
published Certificate Transparency vectors; the batch paths and the single proofs agree."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcf_exchange.contracts._merkle import (
    EMPTY_ROOT,
    CompactRange,
    audit_paths,
    consistency_proof,
    hash_children,
    hash_leaf,
    inclusion_proof,
    root,
    root_from_path,
    verify_consistency,
    verify_inclusion,
)

# RFC 6962 test data (certificate-transparency / transparency-dev reference vectors).
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CONSISTENCY = {
    (2, 8): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
HASHED = [hash_leaf(x) for x in LEAVES]


def test_prefixes() -> None:
    assert hash_leaf(b"") == hashlib.sha256(b"\x00").digest()
    assert (
        hash_children(b"l" * 32, b"r" * 32)
        == hashlib.sha256(b"\x01" + b"l" * 32 + b"r" * 32).digest()
    )
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("size", range(1, 9))
def test_reference_roots(size: int) -> None:
    assert root(HASHED[:size]).hex() == ROOTS[size - 1]
    compact = CompactRange()
    for leaf in HASHED[:size]:
        compact.append(leaf)
    assert compact.root().hex() == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size"), list(INCLUSION))
def test_reference_inclusion(index: int, size: int) -> None:
    proof = inclusion_proof(HASHED[:size], index)
    assert [p.hex() for p in proof] == INCLUSION[(index, size)]
    assert verify_inclusion(HASHED[index], index, size, proof, bytes.fromhex(ROOTS[size - 1]))


@pytest.mark.parametrize(("old", "new"), list(CONSISTENCY))
def test_reference_consistency(old: int, new: int) -> None:
    proof = consistency_proof(HASHED[:new], old)
    assert [p.hex() for p in proof] == CONSISTENCY[(old, new)]
    assert verify_consistency(
        old, new, bytes.fromhex(ROOTS[old - 1]), bytes.fromhex(ROOTS[new - 1]), proof
    )


def _leaves(n: int) -> list[bytes]:
    return [hash_leaf(i.to_bytes(4, "big")) for i in range(n)]


def test_every_proof_in_every_small_tree() -> None:
    many = _leaves(40)
    roots = [root(many[:n]) for n in range(41)]
    for n in range(41):
        for m in range(n):
            assert verify_inclusion(many[m], m, n, inclusion_proof(many[:n], m), roots[n])
        for m in range(n + 1):
            assert verify_consistency(m, n, roots[m], roots[n], consistency_proof(many[:n], m))


@given(st.integers(2, 70), st.data())
def test_mangled_proofs_are_rejected(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    full = root(leaves)
    m = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(leaves, m)
    assert not verify_inclusion(leaves[m], m, n, proof[:-1], full)
    assert not verify_inclusion(leaves[m], m, n, [*proof, b"\xab" * 32], full)
    assert not verify_inclusion(leaves[(m + 1) % n], m, n, proof, full)
    assert not verify_inclusion(leaves[m], (m + 1) % n, n, proof, full) or n == 1
    flipped = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
    assert not verify_inclusion(leaves[m], m, n, flipped, full)
    old = data.draw(st.integers(1, n - 1))
    cproof = consistency_proof(leaves, old)
    old_root = root(leaves[:old])
    assert not verify_consistency(old, n, old_root, full, cproof[:-1])
    assert not verify_consistency(old, n, old_root, full, [*cproof, b"\xcd" * 32])
    assert not verify_consistency(old, n, hash_leaf(b"x"), full, cproof)
    assert not verify_consistency(n, old, full, old_root, cproof)


def test_degenerate_cases() -> None:
    leaves = _leaves(8)
    r4, r8 = root(leaves[:4]), root(leaves)
    assert verify_consistency(4, 4, r4, r4, [])
    assert not verify_consistency(4, 4, r4, r8, [])
    assert not verify_consistency(4, 4, r4, r4, [b"\0" * 32])
    assert verify_consistency(0, 8, EMPTY_ROOT, r8, [])
    assert not verify_consistency(0, 8, r4, r8, [])
    assert not verify_inclusion(leaves[0], 8, 8, [], r8)
    assert not verify_inclusion(b"short", 0, 8, inclusion_proof(leaves, 0), r8)
    with pytest.raises(IndexError):
        inclusion_proof(leaves, 8)
    with pytest.raises(IndexError):
        consistency_proof(leaves, 9)
    with pytest.raises(ValueError):
        CompactRange(3, [b"\0" * 32])


def test_batch_paths_and_single_proofs_are_the_same_tree() -> None:
    """``audit_paths`` (batch signatures) and ``inclusion_proof``/``root`` (audit log) agree."""
    many = _leaves(40)
    for n in range(1, 41):
        top, paths = audit_paths(many[:n])
        assert top == root(many[:n])
        for m in range(n):
            assert paths[m] == inclusion_proof(many[:n], m)
            assert root_from_path(many[m], m, n, paths[m]) == top
    with pytest.raises(ValueError):
        audit_paths([])
