"""The signing envelope: what a signature covers, Ed25519 sign/verify, content hashes.

A signature covers ``pae(payloadType, canonical_json({"keyId", "payload", "sequence",
"supplierId"}))`` where ``payload`` is the record's JSON form without any signature field (PACT
v3 JSON for a footprint). It never covers Kafka or Avro bytes, so re-encoding, schema evolution
(new nullable fields) and replays through other topics cannot change or reuse it.

A record is signed either on its own (``signature``: Ed25519 over those bytes) or as one leaf of
a batch (``batchProof``): the signer hashes each record's signed bytes as an RFC 6962 leaf, signs
the Merkle root once (:func:`batch_root_bytes`), and every record carries its leaf index and
audit path. Verification stays per record: rebuild the bytes, walk the path to the root, check the
root signature (cached, so a verifier pays one Ed25519 check per batch, not per record).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field, StrictInt, ValidationInfo, field_validator

from contracts._footprint import ProductFootprint
from contracts._merkle import audit_paths, hash_leaf, root_from_path
from contracts._pact import to_pact_json
from contracts._records import BillOfMaterials, EmissionFactor, SupplierKey
from contracts._types import Base64Bytes, IdText, Record
from contracts._validate import Titled, field_rules
from contracts.canonical import canonical_json, pae
from contracts.errors import TrustError, Violation

__all__ = [
    "MAX_SEQUENCE",
    "PAYLOAD_BATCH_ROOT",
    "PAYLOAD_BOM",
    "PAYLOAD_FACTOR",
    "PAYLOAD_FOOTPRINT",
    "PAYLOAD_SUPPLIER_KEY",
    "BatchProof",
    "Payload",
    "SignatureCheck",
    "SignedBatch",
    "SignedBillOfMaterials",
    "SignedEmissionFactor",
    "SignedFootprint",
    "SignedRecord",
    "SignedSupplierKey",
    "batch_root_bytes",
    "check_signature",
    "content_hash",
    "payload_json",
    "sign",
    "sign_batch",
    "sign_bytes",
    "sign_each",
    "signing_bytes",
    "verify",
    "verify_bytes",
]

PAYLOAD_FOOTPRINT: Final = "application/vnd.pcfx.footprint+json"
PAYLOAD_BOM: Final = "application/vnd.pcfx.bom+json"
PAYLOAD_FACTOR: Final = "application/vnd.pcfx.factor+json"
PAYLOAD_SUPPLIER_KEY: Final = "application/vnd.pcfx.supplier-key+json"
PAYLOAD_BATCH_ROOT: Final = "application/vnd.pcfx.batch-root+json"
"""What a batch signature covers: a Merkle root, never a record (so neither can pose as the
other)."""

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

    The leaf is ``SHA-256(0x00 || signing_bytes(record))`` (RFC 6962), ``auditPath`` lists the
    sibling hashes from the leaf upwards, and ``rootSignature`` is Ed25519 over
    :func:`batch_root_bytes`. The envelope's ``signature`` is then empty.
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


def batch_root_bytes(root: bytes, tree_size: int, *, supplier_id: str, key_id: str) -> bytes:
    """The exact bytes a batch signature covers: the Merkle root, the tree size and the signer.

    ``pae("application/vnd.pcfx.batch-root+json", canonical_json({"keyId", "root" (hex),
    "supplierId", "treeSize"}))``; the tree size is signed so that a proof cannot claim another
    tree shape (as an RFC 6962 signed tree head signs it).
    """
    body = {"keyId": key_id, "root": root.hex(), "supplierId": supplier_id, "treeSize": tree_size}
    return pae(PAYLOAD_BATCH_ROOT, canonical_json(body))


@dataclass(frozen=True, slots=True)
class SignedBatch:
    """What :func:`sign_batch` (and :func:`sign_each`) return: the records (in input order) and
    what they cite."""

    records: tuple[SignedRecord, ...]
    content_hashes: tuple[str, ...]
    """sha256 (hex) of each record's signed bytes: the same :func:`content_hash` as if the record
    had been signed on its own."""
    root: bytes


def sign_batch(
    private_key: Ed25519PrivateKey,
    records: Sequence[Payload],
    *,
    supplier_id: str,
    key_id: str,
    sequences: Sequence[int],
) -> SignedBatch:
    """Sign *records* with one Ed25519 signature over the RFC 6962 Merkle root of their signed
    bytes; each record gets a :class:`BatchProof` (leaf index, audit path) and verifies alone.

    Steps: (1) each record's :func:`signing_bytes` with its own sequence; (2) leaf hashes, the
    root and every audit path; (3) one signature over :func:`batch_root_bytes`; (4) wrap.
    """
    if len(records) != len(sequences):
        raise ValueError(
            f"sign_batch needs one sequence per record ({len(records)} records, "
            f"{len(sequences)} sequences)"
        )
    if not records:
        return SignedBatch((), (), b"")
    # (1)
    data = [
        signing_bytes(r, supplier_id=supplier_id, key_id=key_id, sequence=q)
        for r, q in zip(records, sequences, strict=True)
    ]
    # (2)
    root, paths = audit_paths([hash_leaf(d) for d in data])
    # (3)
    size = len(records)
    root_signature = private_key.sign(
        batch_root_bytes(root, size, supplier_id=supplier_id, key_id=key_id)
    )
    # (4)
    signed: list[SignedRecord] = []
    for index, (record, sequence, path) in enumerate(zip(records, sequences, paths, strict=True)):
        wrapper, field = _WRAPPERS[type(record)]
        proof = BatchProof(
            root_signature=root_signature,
            leaf_index=index,
            tree_size=size,
            audit_path=tuple(path),
        )
        signed.append(
            wrapper.model_validate(  # type: ignore[arg-type]
                {
                    "supplier_id": supplier_id,
                    "key_id": key_id,
                    "sequence": sequence,
                    "signature": b"",
                    "batch_proof": proof,
                    field: record,
                }
            )
        )
    hashes = tuple(hashlib.sha256(d).hexdigest() for d in data)
    return SignedBatch(tuple(signed), hashes, root)


def sign_each(
    private_key: Ed25519PrivateKey,
    records: Sequence[Payload],
    *,
    supplier_id: str,
    key_id: str,
    sequences: Sequence[int],
) -> SignedBatch:
    """Sign every record on its own (as :func:`sign` does), returning their content hashes too,
    so that a caller that needs both builds each record's signed bytes once."""
    if len(records) != len(sequences):
        raise ValueError(
            f"sign_each needs one sequence per record ({len(records)} records, "
            f"{len(sequences)} sequences)"
        )
    signed: list[SignedRecord] = []
    hashes: list[str] = []
    for record, sequence in zip(records, sequences, strict=True):
        data = signing_bytes(record, supplier_id=supplier_id, key_id=key_id, sequence=sequence)
        wrapper, field = _WRAPPERS[type(record)]
        signed.append(
            wrapper.model_validate(  # type: ignore[arg-type]
                {
                    "supplier_id": supplier_id,
                    "key_id": key_id,
                    "sequence": sequence,
                    "signature": private_key.sign(data),
                    field: record,
                }
            )
        )
        hashes.append(hashlib.sha256(data).hexdigest())
    return SignedBatch(tuple(signed), tuple(hashes), b"")


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """Outcome of checking one envelope's signature; falsy when it fails."""

    ok: bool
    reason: str | None = None
    """``bad_signature``, ``bad_batch_proof`` or ``bad_key`` when not ok."""
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


@functools.lru_cache(maxsize=4096)
def _root_signed(public_raw: bytes, signature: bytes, statement: bytes) -> bool:
    """Ed25519 check of a batch root, cached: the records of one batch share it."""
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, statement)
    except InvalidSignature:
        return False
    return True


def _verify_batch_proof(
    public_key: Ed25519PublicKey, signed: SignedRecord, data: bytes, what: str
) -> None:
    proof = signed.batch_proof
    assert proof is not None
    # (4a) leaf hash -> root along the audit path (RFC 9162 §2.1.3.2)
    try:
        root = root_from_path(hash_leaf(data), proof.leaf_index, proof.tree_size, proof.audit_path)
    except ValueError as exc:
        raise TrustError(
            f"{what}: batchProof is malformed: {exc}", reason="bad_batch_proof"
        ) from None
    if len(proof.root_signature) != 64:
        raise TrustError(
            f"{what}: 'batchProof.rootSignature' must be 64 bytes (Ed25519) "
            f"(got {len(proof.root_signature)} bytes)",
            reason="bad_batch_proof",
        )
    # (4b) the root signature
    statement = batch_root_bytes(
        root, proof.tree_size, supplier_id=signed.supplier_id, key_id=signed.key_id
    )
    if not _root_signed(public_key.public_bytes_raw(), proof.root_signature, statement):
        raise TrustError(
            f"{what}: the batch signature does not match the Merkle root this record's "
            f"leafIndex ({proof.leaf_index}) and auditPath lead to (the record, its proof or the "
            "root was altered, or another key signed it)",
            reason="bad_signature",
        )


def verify(public_key: Ed25519PublicKey | bytes, signed: SignedRecord) -> str:
    """Verify *signed* under *public_key*; return its content hash or raise :class:`TrustError`.

    Steps: (1) the key must be a usable Ed25519 key; (2) rebuild the signed bytes from the
    record; (3) an individual ``signature``, if present, must verify; (4) a ``batchProof``, if
    present, must lead from the record's leaf hash to a root whose signature verifies. The model
    guarantees at least one of the two; when both are present both must hold.
    """
    # (1)
    key = _public(public_key)
    # (2)
    data = signing_bytes(signed)
    what = f"{signed.json_title} from {signed.supplier_id}"
    # (3)
    if signed.signature:
        verify_bytes(key, signed.signature, data, what=what)
    # (4)
    if signed.batch_proof is not None:
        _verify_batch_proof(key, signed, data, what)
    return hashlib.sha256(data).hexdigest()
