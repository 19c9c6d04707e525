"""The signing envelope: what is signed, Ed25519 sign/verify, tampering, content hashes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from pcf_exchange.contracts import (
    PAYLOAD_BOM,
    PAYLOAD_FOOTPRINT,
    AvroSerde,
    BillOfMaterials,
    ProductFootprint,
    SignedBillOfMaterials,
    SignedFootprint,
    TrustError,
    check_signature,
    content_hash,
    parse_footprint,
    payload_json,
    sign,
    signing_bytes,
    to_pact_json,
    verify,
    verify_bytes,
)
from pcf_exchange.contracts.canonical import canonical_json, pae

_reference = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def test_signed_bytes_are_pae_over_canonical_json(footprint: ProductFootprint) -> None:
    data = signing_bytes(footprint, supplier_id="s", key_id="k", sequence=1)
    body = canonical_json(
        {"keyId": "k", "payload": to_pact_json(footprint), "sequence": 1, "supplierId": "s"}
    )
    assert data == pae(PAYLOAD_FOOTPRINT, body)
    assert data.startswith(b"PCFXv1 35 application/vnd.pcfx.footprint+json ")


def test_sign_and_verify(private_key: Ed25519PrivateKey, footprint: ProductFootprint) -> None:
    signed = sign(private_key, footprint, supplier_id="example-cells", key_id="k1", sequence=9)
    assert isinstance(signed, SignedFootprint) and len(signed.signature) == 64
    digest = verify(private_key.public_key(), signed)
    assert digest == content_hash(signed) == content_hash(signing_bytes(signed))
    assert len(digest) == 64
    assert check_signature(private_key.public_key(), signed).ok


TAMPERING: list[tuple[str, dict[str, Any]]] = [
    ("other_supplier", {"supplier_id": "someone-else"}),
    ("other_key_id", {"key_id": "k2"}),
    ("replayed_with_new_sequence", {"sequence": 10}),
]


@pytest.mark.parametrize("change", [c[1] for c in TAMPERING], ids=[c[0] for c in TAMPERING])
def test_envelope_fields_are_covered(
    private_key: Ed25519PrivateKey, footprint: ProductFootprint, change: dict[str, Any]
) -> None:
    signed = sign(private_key, footprint, supplier_id="example-cells", key_id="k1", sequence=9)
    forged = signed.model_copy(update=change)
    with pytest.raises(TrustError) as info:
        verify(private_key.public_key(), forged)
    assert info.value.reason == "bad_signature"
    result = check_signature(private_key.public_key(), forged)
    assert not result and result.reason == "bad_signature"


def test_altered_value_is_detected(
    private_key: Ed25519PrivateKey, footprint_json: dict[str, Any]
) -> None:
    signed = sign(
        private_key, parse_footprint(footprint_json), supplier_id="s", key_id="k", sequence=1
    )
    footprint_json["pcf"]["fossilGhgEmissions"] = "61.1"  # same value, one digit fewer
    altered = signed.model_copy(update={"footprint": parse_footprint(footprint_json)})
    with pytest.raises(TrustError, match="does not match the signed bytes"):
        verify(private_key.public_key(), altered)


def test_wrong_key(private_key: Ed25519PrivateKey, footprint: ProductFootprint) -> None:
    signed = sign(private_key, footprint, supplier_id="s", key_id="k", sequence=1)
    assert (
        check_signature(Ed25519PrivateKey.generate().public_key(), signed).reason == "bad_signature"
    )
    assert check_signature(b"\x01" * 31, signed).reason == "bad_key"


def test_signature_cannot_be_moved_to_another_payload_type(
    private_key: Ed25519PrivateKey, bom: BillOfMaterials
) -> None:
    signed = sign(private_key, bom, supplier_id="s", key_id="k", sequence=1)
    assert isinstance(signed, SignedBillOfMaterials) and signed.payload_type == PAYLOAD_BOM
    body = canonical_json(
        {"keyId": "k", "payload": payload_json(bom), "sequence": 1, "supplierId": "s"}
    )
    verify_bytes(private_key.public_key(), signed.signature, pae(PAYLOAD_BOM, body))
    with pytest.raises(TrustError):
        verify_bytes(private_key.public_key(), signed.signature, pae(PAYLOAD_FOOTPRINT, body))


def test_signature_survives_avro_and_offsets(
    private_key: Ed25519PrivateKey, serde: AvroSerde, footprint_json: dict[str, Any]
) -> None:
    signed = sign(
        private_key, parse_footprint(footprint_json), supplier_id="s", key_id="k", sequence=1
    )
    back = serde.decode(serde.encode("pcf.declared", signed), SignedFootprint)
    assert verify(private_key.public_key(), back) == content_hash(signed)
    # the same instant written with another offset is the same record
    footprint_json["created"] = "2025-03-01T16:00:00+08:00"
    same = signed.model_copy(update={"footprint": parse_footprint(footprint_json)})
    assert verify(private_key.public_key(), same) == content_hash(signed)


def test_signing_all_payload_kinds(
    private_key: Ed25519PrivateKey, wire_samples: dict[str, Any]
) -> None:
    for name in (
        "SignedFootprint",
        "SignedBillOfMaterials",
        "SignedEmissionFactor",
        "SignedSupplierKey",
    ):
        signed = wire_samples[name]
        assert verify(private_key.public_key(), signed) == content_hash(signed)


def test_unsigned_and_batch_only(
    private_key: Ed25519PrivateKey, footprint: ProductFootprint
) -> None:
    from pcf_exchange.contracts import ValidationFailed, parse

    signed = sign(private_key, footprint, supplier_id="s", key_id="k", sequence=1)
    data = signed.model_dump(mode="json")
    data["signature"] = ""
    with pytest.raises(ValidationFailed) as info:
        parse(SignedFootprint, data)
    assert [(v.path, v.code) for v in info.value.violations] == [("signature", "unsigned")]
    data["batchProof"] = {"rootSignature": "AA==", "leafIndex": 3, "treeSize": 2, "auditPath": []}
    with pytest.raises(ValidationFailed) as info:
        parse(SignedFootprint, data)
    assert [(v.path, v.code) for v in info.value.violations] == [("batchProof.leafIndex", "range")]
    data["batchProof"]["treeSize"] = 4
    batch_only = parse(SignedFootprint, data)
    # a proof whose path cannot belong to a tree of 4 leaves is refused as malformed
    assert check_signature(private_key.public_key(), batch_only).reason == "bad_batch_proof"


def test_sequence_bounds(private_key: Ed25519PrivateKey, footprint: ProductFootprint) -> None:
    with pytest.raises(ValueError, match="2\\^53-1"):
        sign(private_key, footprint, supplier_id="s", key_id="k", sequence=2**53)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500)
@given(_JSON_VALUES)
def test_canonical_bytes_are_the_reference_encoders(value: Any) -> None:
    """orjson writes canonical JSON only where its bytes are the standard library's: every
    character escaped the same way, keys in code-point order; what orjson refuses (an integer
    beyond 64 bits, a lone surrogate) takes the reference path and fails the same way."""
    try:
        expected: bytes | type[Exception] = _reference(value).encode("utf-8")
    except UnicodeEncodeError:
        expected = UnicodeEncodeError
    try:
        got: bytes | type[Exception] = canonical_json(value)
    except UnicodeEncodeError:
        got = UnicodeEncodeError
    assert got == expected
