"""RFC 6962 Merkle trees, the one module: hashes, roots, audit paths, proofs, a compact range.

Used by the producers' batch signatures (``contracts._envelope``: one root signed per batch, an
audit path per record) and by the gateway's audit log (``gateway.audit``: signed checkpoints,
inclusion and consistency proofs). Pure functions over bytes; no I/O.

The data format of tree nodes is IETF RFC 6962, section 2.1: a leaf hashes as
``SHA-256(0x00 || data)`` and an inner node as ``SHA-256(0x01 || left || right)``, so a leaf can
never be passed off as a node (second preimages); MTH(D[n]) splits at the largest power of two
below n. Proofs follow RFC 6962 §2.1.1-2.1.2 and are verified with the algorithms of RFC 9162,
sections 2.1.3.2 (inclusion) and 2.1.4.2 (consistency).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Final

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "audit_paths",
    "consistency_proof",
    "decode_proof",
    "encode_proof",
    "hash_children",
    "hash_leaf",
    "inclusion_proof",
    "root",
    "root_from_path",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() (RFC 6962 §2.1)."""
_PROOF_HEAD: Final = struct.Struct(">QQ")


def hash_leaf(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d) (RFC 6962 §2.1)."""
    return hashlib.sha256(_LEAF + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) (RFC 6962 §2.1)."""
    return hashlib.sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


# ----------------------------------------------------------------------------------------------
# roots and proofs over a list of already-hashed leaves


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over already-hashed leaves (RFC 6962 §2.1); ``EMPTY_ROOT`` for none."""
    compact = CompactRange()
    for leaf in leaves:
        compact.append(leaf)
    return compact.root()


def audit_paths(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root MTH(D[n]) of already-hashed *leaves* and PATH(m, D[n]) for every leaf m.

    Built bottom-up: at each level neighbours pair up and a last node without a partner moves up
    unchanged. That is the tree of RFC 6962 §2.1 (split at the largest power of two below n), and
    each path lists siblings from the leaf upwards, as §2.1.1 orders them. One pass for a whole
    batch, where :func:`inclusion_proof` builds one path.
    """
    n = len(leaves)
    if n == 0:
        raise ValueError("a Merkle tree needs at least one leaf")
    paths: list[list[bytes]] = [[] for _ in range(n)]
    # members[j]: the leaf indexes under node j of the current level
    members: list[list[int]] = [[i] for i in range(n)]
    level = list(leaves)
    while len(level) > 1:
        next_level: list[bytes] = []
        next_members: list[list[int]] = []
        for j in range(0, len(level) - 1, 2):
            left, right = level[j], level[j + 1]
            for m in members[j]:
                paths[m].append(right)
            for m in members[j + 1]:
                paths[m].append(left)
            next_level.append(hash_children(left, right))
            next_members.append(members[j] + members[j + 1])
        if len(level) % 2:
            next_level.append(level[-1])
            next_members.append(members[-1])
        level, members = next_level, next_members
    return level[0], paths


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) (RFC 6962 §2.1.1): the audit path of leaf *index* in the tree of *leaves*."""
    n = len(leaves)
    if not 0 <= index < n:
        raise IndexError(f"leaf index {index} is outside a tree of size {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(leaves[:k], index), root(leaves[k:])]
    return [*inclusion_proof(leaves[k:], index - k), root(leaves[:k])]


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]) (RFC 6962 §2.1.2): tree *old_size* is a prefix of the tree of *leaves*."""
    n = len(leaves)
    if not 0 <= old_size <= n:
        raise IndexError(f"old size {old_size} is outside 0..{n}")
    if old_size in (0, n):
        return []
    return _subproof(leaves, old_size, True)


def _subproof(leaves: Sequence[bytes], m: int, complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(leaves[:k], m, complete), root(leaves[k:])]
    return [*_subproof(leaves[k:], m - k, False), root(leaves[:k])]


# ----------------------------------------------------------------------------------------------
# verification (RFC 9162)


def root_from_path(leaf: bytes, index: int, tree_size: int, path: Sequence[bytes]) -> bytes:
    """The root that leaf hash *leaf* at *index* with audit *path* leads to (RFC 9162 §2.1.3.2).

    Raises ``ValueError`` (with expected vs got) when the path cannot belong to a tree of
    *tree_size* leaves: an index out of range, a path too short or too long, a hash of the wrong
    size. A path that is well formed but wrong gives a different root, which the caller's
    signature check then refuses.
    """
    # (1) the index must be inside the tree
    if not 0 <= index < tree_size:
        raise ValueError(f"leafIndex must be < treeSize ({tree_size}) (got {index})")
    for i, node in enumerate(path):
        if len(node) != HASH_SIZE:
            raise ValueError(
                f"auditPath[{i}] must be a {HASH_SIZE}-byte SHA-256 hash (got {len(node)} bytes)"
            )
    # (2)-(3) fn = index, sn = size - 1, r = leaf hash
    fn, sn, result = index, tree_size - 1, leaf
    # (4) fold the path in, leaf level first
    for i, node in enumerate(path):
        if sn == 0:
            raise ValueError(
                f"auditPath is too long for leaf {index} of a tree of {tree_size} "
                f"(expected {i} hashes, got {len(path)})"
            )
        if fn & 1 or fn == sn:
            result = hash_children(node, result)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            result = hash_children(result, node)
        fn >>= 1
        sn >>= 1
    # (5) the path must reach the top
    if sn != 0:
        raise ValueError(
            f"auditPath is too short for leaf {index} of a tree of {tree_size} "
            f"(got {len(path)} hashes)"
        )
    return result


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does *proof* place *leaf_hash* at *index* of the tree with this root?"""
    if len(leaf_hash) != HASH_SIZE:
        return False
    try:
        return root_from_path(leaf_hash, index, size, proof) == expected_root
    except ValueError:
        return False


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of *old_size* with *old_root* a prefix of the new one?"""
    if not 0 <= old_size <= new_size:
        return False
    if any(len(p) != HASH_SIZE for p in proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # exact power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


# ----------------------------------------------------------------------------------------------
# a growing tree


class CompactRange:
    """The roots of the perfect subtrees of a growing tree: O(log n) state, O(1) amortised append.

    RFC 6962's split makes MTH(D[n]) the right fold of these roots, so a verifier can compute the
    root at every checkpoint size in one pass over the log.
    """

    __slots__ = ("nodes", "size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        if len(nodes) != bin(size).count("1"):
            raise ValueError(f"a compact range of size {size} has {bin(size).count('1')} nodes")
        self.size = size
        self.nodes = list(nodes)

    def append(self, leaf_hash: bytes) -> None:
        node, n = leaf_hash, self.size
        while n & 1:
            node = hash_children(self.nodes.pop(), node)
            n >>= 1
        self.nodes.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        r = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            r = hash_children(node, r)
        return r

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.nodes)


def encode_proof(index: int, tree_size: int, path: Sequence[bytes]) -> bytes:
    """An inclusion proof as it travels with a batch-signed record: the leaf index and the tree
    size (8 bytes each, big-endian), then the audit path's hashes (32 bytes each)."""
    return _PROOF_HEAD.pack(index, tree_size) + b"".join(path)


def decode_proof(data: bytes) -> tuple[int, int, list[bytes]] | None:
    """``(index, tree_size, path)`` of :func:`encode_proof`'s bytes; ``None`` when their length
    is not 16 bytes plus whole hashes (the caller says what was malformed)."""
    hashes = len(data) - _PROOF_HEAD.size
    if hashes < 0 or hashes % HASH_SIZE:
        return None
    index, tree_size = _PROOF_HEAD.unpack_from(data)
    path = [data[i : i + HASH_SIZE] for i in range(_PROOF_HEAD.size, len(data), HASH_SIZE)]
    return index, tree_size, path
