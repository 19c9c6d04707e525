"""RFC 6962 Merkle trees for batch signatures: leaf/node hashes, all audit paths, inclusion.

The data format of tree nodes is IETF RFC 6962, section 2.1: a leaf hashes as
``SHA-256(0x00 || data)`` and an inner node as ``SHA-256(0x01 || left || right)``, so a leaf can
never be passed off as a node (second preimages). Inclusion is verified with the algorithm of
RFC 9162, section 2.1.3.2. Pure functions over bytes; no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

__all__ = ["HASH_SIZE", "audit_paths", "hash_children", "hash_leaf", "root_from_path"]

HASH_SIZE: Final = 32
_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"


def hash_leaf(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d) (RFC 6962 §2.1)."""
    return hashlib.sha256(_LEAF + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) (RFC 6962 §2.1)."""
    return hashlib.sha256(_NODE + left + right).digest()


def audit_paths(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root MTH(D[n]) of already-hashed *leaves* and PATH(m, D[n]) for every leaf m.

    Built bottom-up: at each level neighbours pair up and a last node without a partner moves up
    unchanged. That is the tree of RFC 6962 §2.1 (split at the largest power of two below n), and
    each path lists siblings from the leaf upwards, as §2.1.1 orders them.
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
