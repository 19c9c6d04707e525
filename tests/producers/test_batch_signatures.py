"""Batch signatures (contracts): one Ed25519 signature over an RFC 6962 Merkle root, verified per
record; every tampering with the record, its leaf index, audit path, tree size or root fails."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from pcf_exchange.contracts import (
    AvroSerde,
    BatchProof,
    InMemorySchemaRegistry,
    SignedFootprint,
    TrustError,
    check_signature,
    content_hash,
    parse_footprint,
    register_all,
    sign,
    sign_batch,
    verify,
)
from pcf_exchange.contracts._merkle import audit_paths, hash_children, hash_leaf, root_from_path
from pcf_exchange.contracts.canonical import canonical_json, to_canonical_value
from tests.producers.conftest import footprint_json

# -- an independent oracle: RFC 6962 §2.1 written out recursively


def _mth(leaves: Sequence[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hash_children(_mth(leaves[:k]), _mth(leaves[k:]))


def _path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


@pytest.mark.parametrize("size", [*range(1, 40), 64, 65, 100])
def test_paths_and_root_match_rfc_6962(size: int) -> None:
    leaves = [hash_leaf(f"leaf {i}".encode()) for i in range(size)]
    root, paths = audit_paths(leaves)
    assert root == _mth(leaves)
    for m in range(size):
        assert paths[m] == _path(m, leaves)
        assert root_from_path(leaves[m], m, size, paths[m]) == root


@pytest.mark.parametrize(
    ("index", "size", "path_len", "message"),
    [
        (4, 4, 2, "leafIndex must be < treeSize"),
        (0, 4, 1, "too short"),
        (0, 4, 3, "too long"),
        (0, 1, 1, "too long"),
    ],
)
def test_malformed_paths_are_named(index: int, size: int, path_len: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        root_from_path(b"\0" * 32, index, size, [b"\1" * 32] * path_len)


def test_a_hash_of_the_wrong_size_is_named() -> None:
    with pytest.raises(ValueError, match=r"auditPath\[1\] must be a 32-byte SHA-256 hash"):
        root_from_path(b"\0" * 32, 0, 4, [b"\1" * 32, b"\1" * 31])


# -- sign_batch / verify


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def batch(key: Ed25519PrivateKey) -> list[SignedFootprint]:
    records = [parse_footprint(footprint_json(i)) for i in range(11)]
    signed = sign_batch(
        key, records, supplier_id="example-cells", key_id="k1", sequences=list(range(100, 111))
    )
    assert len(signed.records) == 11
    out = [r for r in signed.records if isinstance(r, SignedFootprint)]
    assert len(out) == 11
    return out


def test_every_record_of_a_batch_verifies_alone(
    key: Ed25519PrivateKey, batch: list[SignedFootprint]
) -> None:
    roots = set()
    for i, record in enumerate(batch):
        assert record.signature == b""
        assert record.batch_proof is not None
        assert record.batch_proof.leaf_index == i
        assert record.batch_proof.tree_size == 11
        roots.add(record.batch_proof.root_signature)
        assert verify(key.public_key(), record) == content_hash(record)
    assert len(roots) == 1, "one signature for the whole batch"


def test_content_hash_is_the_same_as_when_signed_alone(
    key: Ed25519PrivateKey, batch: list[SignedFootprint]
) -> None:
    alone = sign(
        key,
        batch[3].footprint,
        supplier_id="example-cells",
        key_id="k1",
        sequence=batch[3].sequence,
    )
    assert content_hash(alone) == content_hash(batch[3]) == verify(key.public_key(), batch[3])


def test_sign_batch_reports_the_hashes_it_signed(key: Ed25519PrivateKey) -> None:
    records = [parse_footprint(footprint_json(i)) for i in range(3)]
    result = sign_batch(key, records, supplier_id="s", key_id="k", sequences=[1, 2, 3])
    assert result.content_hashes == tuple(content_hash(r) for r in result.records)
    with pytest.raises(ValueError, match="one sequence per record"):
        sign_batch(key, records, supplier_id="s", key_id="k", sequences=[1])


def _proof(record: SignedFootprint, **changes: Any) -> SignedFootprint:
    assert record.batch_proof is not None
    proof = record.batch_proof.model_copy(update=changes)
    return record.model_copy(update={"batch_proof": proof})


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("audit_path_element", "bad_signature"),
        ("audit_path_order", "bad_signature"),
        ("leaf_index", "bad_signature"),
        ("tree_size", "bad_signature"),
        ("root_signature", "bad_signature"),
        ("record_value", "bad_signature"),
        ("sequence", "bad_signature"),
        ("supplier", "bad_signature"),
        ("path_too_short", "bad_batch_proof"),
        ("path_too_long", "bad_batch_proof"),
        ("hash_size", "bad_batch_proof"),
        ("root_signature_size", "bad_batch_proof"),
    ],
)
def test_tampering_fails(
    key: Ed25519PrivateKey, batch: list[SignedFootprint], tamper: str, reason: str
) -> None:
    record = batch[5]
    proof = record.batch_proof
    assert proof is not None
    path = list(proof.audit_path)
    changed = {
        "audit_path_element": lambda: _proof(record, audit_path=(_flip(path[0]), *path[1:])),
        "audit_path_order": lambda: _proof(record, audit_path=(path[1], path[0], *path[2:])),
        "leaf_index": lambda: _proof(record, leaf_index=4),
        "tree_size": lambda: _proof(record, tree_size=12),
        "root_signature": lambda: _proof(record, root_signature=_flip(proof.root_signature)),
        "record_value": lambda: record.model_copy(
            update={
                "footprint": record.footprint.model_copy(
                    update={
                        "pcf": record.footprint.pcf.model_copy(
                            update={"pcf_excluding_biogenic_uptake": Decimal("1.00")}
                        )
                    }
                )
            }
        ),
        "sequence": lambda: record.model_copy(update={"sequence": record.sequence + 1}),
        "supplier": lambda: record.model_copy(update={"supplier_id": "someone-else"}),
        "path_too_short": lambda: _proof(record, audit_path=tuple(path[:-1])),
        "path_too_long": lambda: _proof(record, audit_path=(*path, path[0])),
        "hash_size": lambda: _proof(record, audit_path=(path[0][:31], *path[1:])),
        "root_signature_size": lambda: _proof(record, root_signature=proof.root_signature[:63]),
    }[tamper]()
    check = check_signature(key.public_key(), changed)
    assert not check
    assert check.reason == reason, check.message
    with pytest.raises(TrustError):
        verify(key.public_key(), changed)


def test_a_proof_moved_to_another_record_of_the_batch_fails(
    key: Ed25519PrivateKey, batch: list[SignedFootprint]
) -> None:
    moved = batch[2].model_copy(update={"batch_proof": batch[7].batch_proof})
    assert check_signature(key.public_key(), moved).reason == "bad_signature"


def test_another_key_fails(batch: list[SignedFootprint]) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    assert check_signature(other, batch[0]).reason == "bad_signature"


def test_signature_and_proof_both_present_must_both_hold(
    key: Ed25519PrivateKey, batch: list[SignedFootprint]
) -> None:
    alone = sign(
        key,
        batch[1].footprint,
        supplier_id="example-cells",
        key_id="k1",
        sequence=batch[1].sequence,
    )
    both = batch[1].model_copy(update={"signature": alone.signature})
    assert verify(key.public_key(), both)
    wrong = both.model_copy(update={"signature": _flip(alone.signature)})
    assert check_signature(key.public_key(), wrong).reason == "bad_signature"


def test_batch_proofs_survive_avro(key: Ed25519PrivateKey, batch: list[SignedFootprint]) -> None:
    registry = InMemorySchemaRegistry()
    register_all(registry)
    serde = AvroSerde(registry)
    for record in batch:
        back = serde.decode(serde.encode("pcf.declared", record), SignedFootprint)
        assert back == record
        assert isinstance(back.batch_proof, BatchProof)
        assert verify(key.public_key(), back) == content_hash(record)


# -- canonical JSON: the fast path gives the bytes of the careful one

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_json)
@settings(max_examples=300, deadline=None)
def test_canonical_fast_path_is_byte_identical(value: Any) -> None:
    import json

    careful = json.dumps(
        to_canonical_value(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")
    assert canonical_json(value) == careful


def test_canonical_still_refuses_floats_and_renders_decimals() -> None:
    with pytest.raises(TypeError, match=r"'\$.a\[0\]' must be a decimal string"):
        canonical_json({"a": [1.5]})
    assert canonical_json({"a": Decimal("1.50")}) == b'{"a":"1.50"}'
    assert hashlib.sha256(canonical_json({"b": 1, "a": True})).hexdigest()


def test_sign_each_signs_alone_and_reports_hashes(key: Ed25519PrivateKey) -> None:
    from pcf_exchange.contracts import sign_each

    records = [parse_footprint(footprint_json(i)) for i in range(3)]
    result = sign_each(key, records, supplier_id="s", key_id="k", sequences=[5, 6, 7])
    for record, digest in zip(result.records, result.content_hashes, strict=True):
        assert record.batch_proof is None and len(record.signature) == 64
        assert verify(key.public_key(), record) == digest == content_hash(record)
    alone = sign(key, records[1], supplier_id="s", key_id="k", sequence=6)
    assert alone == result.records[1], "the same as sign(): Ed25519 is deterministic"
    with pytest.raises(ValueError, match="one sequence per record"):
        sign_each(key, records, supplier_id="s", key_id="k", sequences=[])
