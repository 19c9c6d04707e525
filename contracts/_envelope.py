"""The signing envelope: what a signature covers, Ed25519 sign/verify, content hashes.

A signature covers ``pae(payloadType, canonical_json({"keyId", "payload", "sequence",
"supplierId"}))`` where ``payload`` is the record's JSON form without any signature field (PACT
v3 JSON for a footprint). It never covers Kafka or Avro bytes, so re-encoding, schema evolution
(new nullable fields) and replays through other topics cannot change or reuse it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field, StrictInt, ValidationInfo, field_validator

from contracts._footprint import ProductFootprint
from contracts._pact import to_pact_json
from contracts._records import BillOfMaterials, EmissionFactor, SupplierKey
from contracts._types import Base64Bytes, IdText, Record
from contracts._validate import Titled, field_rules
from contracts.canonical import canonical_json, pae
from contracts.errors import TrustError, Violation

__all__ = [
    "MAX_SEQUENCE",
    "PAYLOAD_BOM",
    "PAYLOAD_FACTOR",
    "PAYLOAD_FOOTPRINT",
    "PAYLOAD_SUPPLIER_KEY",
    "BatchProof",
    "Payload",
    "SignatureCheck",
    "SignedBillOfMaterials",
    "SignedEmissionFactor",
    "SignedFootprint",
    "SignedRecord",
    "SignedSupplierKey",
    "check_signature",
    "content_hash",
    "payload_json",
    "sign",
    "sign_bytes",
    "signing_bytes",
    "verify",
    "verify_bytes",
]

PAYLOAD_FOOTPRINT: Final = "application/vnd.pcfx.footprint+json"
PAYLOAD_BOM: Final = "application/vnd.pcfx.bom+json"
PAYLOAD_FACTOR: Final = "application/vnd.pcfx.factor+json"
PAYLOAD_SUPPLIER_KEY: Final = "application/vnd.pcfx.supplier-key+json"

MAX_SEQUENCE: Final = 2**53 - 1
"""Largest sequence number: canonical JSON (RFC 8785) holds integers exactly only up to 2^53-1."""

Payload = ProductFootprint | BillOfMaterials | EmissionFactor | SupplierKey

_PAYLOAD_TYPES: Final[dict[type[Record], str]] = {
    ProductFootprint: PAYLOAD_FOOTPRINT,
    BillOfMaterials: PAYLOAD_BOM,
    EmissionFactor: PAYLOAD_FACTOR,
    SupplierKey: PAYLOAD_SUPPLIER_KEY,
}


class BatchProof(Record, Titled):
    """Proof that the record is leaf ``leafIndex`` of a Merkle tree whose root was signed once.

    Reserved for batch signing (RFC 6962 hashing); ``signature`` is then empty.
    """

    json_title: ClassVar[str] = "BatchProof"
    root_signature: Base64Bytes
    leaf_index: Annotated[StrictInt, Field(ge=0, le=MAX_SEQUENCE)]
    tree_size: Annotated[StrictInt, Field(ge=1, le=MAX_SEQUENCE)]
    audit_path: Annotated[tuple[Base64Bytes, ...], Field(max_length=64)]

    @field_validator("tree_size")
    @classmethod
    def _index_in_tree(cls, size: int, info: ValidationInfo) -> int:
        index = info.data.get("leaf_index")
        if index is not None and index >= size:
            raise field_rules(
                [Violation.of("leafIndex", "range", f"must be < treeSize ({size})", index)]
            )
        return size


class _Envelope(Record, Titled):
    supplier_id: IdText
    """Who signed: the supplier, or the operator for factors and keys."""
    key_id: IdText
    sequence: Annotated[StrictInt, Field(ge=0, le=MAX_SEQUENCE)]
    """Monotonic per (supplierId, product); a sequence at or below the stored one is a replay."""
    payload_type: str
    signature: Base64Bytes
    """Ed25519 signature (64 bytes) over :func:`signing_bytes`; empty only with a batchProof."""
    batch_proof: BatchProof | None = None

    @field_validator("signature")
    @classmethod
    def _length(cls, value: bytes) -> bytes:
        if len(value) not in (0, 64):
            raise field_rules(
                [
                    Violation(
                        "signature",
                        "signature_length",
                        "must be 64 bytes (Ed25519)",
                        f"{len(value)} bytes",
                    )
                ]
            )
        return value

    @field_validator("batch_proof")
    @classmethod
    def _some_signature(cls, proof: BatchProof | None, info: ValidationInfo) -> BatchProof | None:
        if proof is None and info.data.get("signature") == b"":
            raise field_rules(
                [Violation("signature", "unsigned", "is empty and no batchProof is given")]
            )
        return proof

    @property
    def payload(self) -> Payload:
        raise NotImplementedError


class SignedFootprint(_Envelope):
    """Value of topic ``pcf.declared``: a supplier-signed PACT footprint."""

    json_title: ClassVar[str] = "SignedFootprint"
    payload_type: Literal["application/vnd.pcfx.footprint+json"] = PAYLOAD_FOOTPRINT
    footprint: ProductFootprint

    @property
    def payload(self) -> ProductFootprint:
        return self.footprint


class SignedBillOfMaterials(_Envelope):
    """Value of topic ``pcf.bom``: a manufacturer-signed bill of materials."""

    json_title: ClassVar[str] = "SignedBillOfMaterials"
    payload_type: Literal["application/vnd.pcfx.bom+json"] = PAYLOAD_BOM
    bom: BillOfMaterials

    @property
    def payload(self) -> BillOfMaterials:
        return self.bom


class SignedEmissionFactor(_Envelope):
    """Value of topic ``pcf.factors``: an operator-signed background factor."""

    json_title: ClassVar[str] = "SignedEmissionFactor"
    payload_type: Literal["application/vnd.pcfx.factor+json"] = PAYLOAD_FACTOR
    factor: EmissionFactor

    @property
    def payload(self) -> EmissionFactor:
        return self.factor


class SignedSupplierKey(_Envelope):
    """Value of topic ``pcf.keys``: an operator-signed supplier key registration."""

    json_title: ClassVar[str] = "SignedSupplierKey"
    payload_type: Literal["application/vnd.pcfx.supplier-key+json"] = PAYLOAD_SUPPLIER_KEY
    key: SupplierKey

    @property
    def payload(self) -> SupplierKey:
        return self.key


SignedRecord = SignedFootprint | SignedBillOfMaterials | SignedEmissionFactor | SignedSupplierKey

_WRAPPERS: Final[dict[type[Record], tuple[type[_Envelope], str]]] = {
    ProductFootprint: (SignedFootprint, "footprint"),
    BillOfMaterials: (SignedBillOfMaterials, "bom"),
    EmissionFactor: (SignedEmissionFactor, "factor"),
    SupplierKey: (SignedSupplierKey, "key"),
}


# --------------------------------------------------------------------------------------------
# What is signed


def payload_json(record: Payload) -> dict[str, Any]:
    """The JSON form of *record* that a signature covers (PACT v3 JSON for a footprint)."""
    if isinstance(record, ProductFootprint):
        return to_pact_json(record)
    return record.model_dump(mode="json", by_alias=True, exclude_none=True)


def payload_type_of(record: Payload) -> str:
    return _PAYLOAD_TYPES[type(record)]


def signing_bytes(
    record: Payload | SignedRecord, *, supplier_id: str = "", key_id: str = "", sequence: int = -1
) -> bytes:
    """The exact bytes a signature covers.

    For a signed record the envelope fields are taken from it; for a bare payload pass them.
    """
    payload_type: str
    if isinstance(record, _Envelope):
        supplier_id, key_id, sequence = record.supplier_id, record.key_id, record.sequence
        payload_type, payload = record.payload_type, record.payload
    else:
        payload_type, payload = payload_type_of(record), record
    if not supplier_id or not key_id or not 0 <= sequence <= MAX_SEQUENCE:
        raise ValueError("signing_bytes needs supplier_id, key_id and a sequence in 0..2^53-1")
    body = {
        "keyId": key_id,
        "payload": payload_json(payload),
        "sequence": sequence,
        "supplierId": supplier_id,
    }
    return pae(payload_type, canonical_json(body))


def content_hash(record: Payload | SignedRecord | bytes, **envelope: Any) -> str:
    """sha256 (hex) of :func:`signing_bytes`: what lineage and audit records cite."""
    data = record if isinstance(record, bytes) else signing_bytes(record, **envelope)
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Ed25519


def _public(key: Ed25519PublicKey | bytes) -> Ed25519PublicKey:
    if isinstance(key, Ed25519PublicKey):
        return key
    try:
        return Ed25519PublicKey.from_public_bytes(key)
    except ValueError as exc:
        raise TrustError(
            f"public key is not a 32-byte Ed25519 key: {exc}", reason="bad_key"
        ) from exc


def sign_bytes(private_key: Ed25519PrivateKey, data: bytes) -> bytes:
    return private_key.sign(data)


def verify_bytes(
    public_key: Ed25519PublicKey | bytes, signature: bytes, data: bytes, *, what: str = "record"
) -> None:
    """Raise :class:`TrustError` (reason ``bad_signature``) unless *signature* is valid."""
    try:
        _public(public_key).verify(signature, data)
    except InvalidSignature:
        raise TrustError(
            f"{what}: the Ed25519 signature does not match the signed bytes "
            "(forged, altered after signing, or signed with another key)",
            reason="bad_signature",
        ) from None


def sign(
    private_key: Ed25519PrivateKey, record: Payload, *, supplier_id: str, key_id: str, sequence: int
) -> SignedRecord:
    """Sign *record* and wrap it in its topic's envelope (e.g. a :class:`SignedFootprint`)."""
    wrapper, field = _WRAPPERS[type(record)]
    data = signing_bytes(record, supplier_id=supplier_id, key_id=key_id, sequence=sequence)
    signed = wrapper.model_validate(
        {
            "supplier_id": supplier_id,
            "key_id": key_id,
            "sequence": sequence,
            "signature": private_key.sign(data),
            field: record,
        }
    )
    return signed  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """Outcome of checking one envelope's signature; falsy when it fails."""

    ok: bool
    reason: str | None = None
    """``bad_signature``, ``unsigned``, ``batch_unsupported`` or ``bad_key`` when not ok."""
    message: str = ""
    content_hash: str = ""

    def __bool__(self) -> bool:
        return self.ok


def check_signature(public_key: Ed25519PublicKey | bytes, signed: SignedRecord) -> SignatureCheck:
    """Check *signed*'s signature under *public_key*; never raises for a bad signature."""
    try:
        digest = verify(public_key, signed)
    except TrustError as exc:
        return SignatureCheck(False, exc.reason, exc.message)
    return SignatureCheck(True, None, "signature valid", digest)


def verify(public_key: Ed25519PublicKey | bytes, signed: SignedRecord) -> str:
    """Verify *signed* under *public_key*; return its content hash or raise :class:`TrustError`.

    Steps: (1) an individual signature must be present (batch proofs are not accepted yet);
    (2) rebuild the signed bytes from the record; (3) Ed25519-verify them.
    """
    # (1)
    if not signed.signature:
        raise TrustError(
            f"{signed.json_title} carries only a batch proof, which this version cannot verify",
            reason="batch_unsupported",
        )
    # (2)
    data = signing_bytes(signed)
    # (3)
    verify_bytes(
        public_key, signed.signature, data, what=f"{signed.json_title} from {signed.supplier_id}"
    )
    return hashlib.sha256(data).hexdigest()
