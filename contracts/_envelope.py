"""The signing envelope: what a signature covers, Ed25519 sign/verify, content hashes.

A signature covers ``pae(payloadType, canonical_json({"keyId", "payload", "sequence",
"supplierId"}))`` where ``payload`` is the record's JSON form without any signature field (PACT
v3 JSON for a footprint). It never covers Kafka or Avro bytes, so re-encoding, schema evolution
(new nullable fields) and replays through other topics cannot change or reuse it; and it binds
the signer (supplier id, key id), the sequence and the payload type.

Two forms of a signed footprint carry those bytes (``SignedFootprint`` schema v2):

- **v2 (what :func:`sign`, :func:`sign_batch` and :func:`sign_each` write)**: ``signedBody``
  holds the exact signed bytes and ``footprint`` is null on the wire. A verifier checks the
  signature (or the batch proof) over the bytes it received and the content hash is their
  sha256: nothing is rebuilt, so no canonical JSON is written on the way in (the streams'
  ingestion reads the body with orjson and checks the rules on it, :mod:`contracts._fast`).
  The envelope's ``supplierId``/``keyId``/``sequence``/``payloadType`` are copies for routing;
  they must equal what the body binds (else ``body_mismatch``). Decoding through the model
  fills ``footprint`` from the body (its violations keep their ``footprint.`` paths).
- **v1 (records written before)**: ``footprint`` is the typed Avro record and the verifier
  rebuilds the signed bytes from it (:func:`signing_bytes`); these keep verifying unchanged.

Both forms of the same record have the same signed bytes, so the same content hash. An object
changed in Python after decoding (``model_copy``) is caught by :func:`verify`, which compares a
v2 record's footprint with its body (the edge path; the streams never hold such objects).

A record is signed either on its own (``signature``: Ed25519 over those bytes) or as one leaf of
a batch (``batchProof``): the signer hashes each record's signed bytes as an RFC 6962 leaf, signs
the Merkle root once (:func:`batch_root_bytes`), and every record carries its leaf index and
audit path. Verification stays per record: take the bytes, walk the path to the root, check the
root signature (cached, so a verifier pays one Ed25519 check per batch, not per record).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final, Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import (
    Field,
    FieldSerializationInfo,
    SerializerFunctionWrapHandler,
    StrictInt,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from pcf_exchange.contracts._footprint import ProductFootprint
from pcf_exchange.contracts._jsonio import loads
from pcf_exchange.contracts._merkle import audit_paths, hash_leaf, root_from_path
from pcf_exchange.contracts._pact import check_footprint, to_pact_json
from pcf_exchange.contracts._records import BillOfMaterials, EmissionFactor, SupplierKey
from pcf_exchange.contracts._types import Base64Bytes, IdText, Record
from pcf_exchange.contracts._validate import Titled, field_rules, join_path, model_rules
from pcf_exchange.contracts.canonical import canonical_json, pae
from pcf_exchange.contracts.errors import TrustError, ValidationFailed, Violation

__all__ = [
    "MAX_SEQUENCE",
    "PAYLOAD_BATCH_ROOT",
    "PAYLOAD_BOM",
    "PAYLOAD_FACTOR",
    "PAYLOAD_FOOTPRINT",
    "PAYLOAD_SUPPLIER_KEY",
    "BatchProof",
    "Payload",
    "ProofFields",
    "SignatureCheck",
    "SignedBatch",
    "SignedBillOfMaterials",
    "SignedEmissionFactor",
    "SignedFootprint",
    "SignedRecord",
    "SignedSupplierKey",
    "as_public_key",
    "batch_root_bytes",
    "check_signature",
    "content_hash",
    "open_signed_body",
    "payload_json",
    "sign",
    "sign_batch",
    "sign_bytes",
    "sign_each",
    "signing_bytes",
    "split_pae",
    "verify",
    "verify_bytes",
    "verify_signed_bytes",
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

_TRUSTED_BODY: Final = "pcfx_trusted_body"
"""Validation context flag of :func:`sign`/:func:`sign_batch`/:func:`sign_each`: the footprint
and the signed body given together were built from each other, so they are not compared."""
_PAE_PREFIX: Final = b"PCFXv1 "
_BODY_FIELDS: Final = frozenset({"keyId", "payload", "sequence", "supplierId"})


def _body_problem(message: str, got: Any = ...) -> Violation:
    return Violation.of("signedBody", "signed_body", message, got)


def split_pae(data: bytes) -> tuple[str, bytes] | Violation:
    """(payload type, body) of ``PCFXv1 <len type> <type> <len body> <body>`` (see
    :func:`contracts.canonical.pae`), lengths exact; a :class:`Violation` if it is not that."""
    if not data.startswith(_PAE_PREFIX):
        return _body_problem("must start with the signing envelope's 'PCFXv1 ' prefix")
    rest = data[len(_PAE_PREFIX) :]
    head, _, rest = rest.partition(b" ")
    if not head.isdigit() or len(head) > 4:
        return _body_problem("has no valid payload-type length")
    size = int(head)
    kind, rest = rest[:size], rest[size:]
    if not rest.startswith(b" "):
        return _body_problem("has a payload type whose length is not the one stated")
    head, _, body = rest[1:].partition(b" ")
    if not head.isdigit() or int(head) != len(body) or head != str(len(body)).encode():
        return _body_problem("has a body whose length is not the one stated")
    try:
        return kind.decode("utf-8"), body
    except UnicodeDecodeError:
        return _body_problem("has a payload type that is not UTF-8")


def open_signed_body(data: bytes) -> tuple[str, dict[str, Any], Any] | Violation:
    """Read a v2 ``signedBody``: (payload type, envelope fields ``keyId``/``sequence``/
    ``supplierId``, payload JSON), parsed strictly (:func:`contracts._jsonio.loads`: no
    duplicate keys, exact numbers); a :class:`Violation` at ``signedBody`` if it is not one."""
    split = split_pae(data)
    if isinstance(split, Violation):
        return split
    payload_type, body = split
    try:
        parsed = loads(body, subject="signedBody")
    except ValidationFailed as exc:
        first = exc.violations[0] if exc.violations else None
        return _body_problem(f"is not valid JSON: {first.message if first else exc}")
    if not isinstance(parsed, dict) or set(parsed) != _BODY_FIELDS:
        keys = sorted(parsed) if isinstance(parsed, dict) else type(parsed).__name__
        return _body_problem(f"must be a JSON object with exactly {sorted(_BODY_FIELDS)}", keys)
    fields = {k: parsed[k] for k in ("keyId", "sequence", "supplierId")}
    return payload_type, fields, parsed["payload"]


def _envelope_mismatches(
    data: dict[str, Any], payload_type: str, fields: dict[str, Any]
) -> list[Violation]:
    """The envelope fields of a v2 record must be the ones its signed body binds."""
    problems = []
    for alias, name in (
        ("supplierId", "supplier_id"),
        ("keyId", "key_id"),
        ("sequence", "sequence"),
    ):
        value = data.get(alias, data.get(name))
        signed = fields[alias]
        if type(value) is not type(signed) or value != signed:
            problems.append(
                Violation.of(
                    alias,
                    "body_mismatch",
                    f"must equal the signed body's {alias} ({signed!r})",
                    value,
                )
            )
    declared = data.get("payloadType", data.get("payload_type", PAYLOAD_FOOTPRINT))
    if payload_type != PAYLOAD_FOOTPRINT or declared != payload_type:
        problems.append(
            Violation.of(
                "payloadType",
                "body_mismatch",
                f"must be {PAYLOAD_FOOTPRINT!r}, as the signed body's type",
                payload_type,
            )
        )
    return problems


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
    """Value of topic ``pcf.declared``: a supplier-signed PACT footprint.

    Two forms (module docstring): v1 carries the typed ``footprint`` and the verifier rebuilds
    the signed bytes from it; v2 carries ``signedBody``, the exact bytes that were signed, and
    ``footprint`` is null on the wire (in Python it is always set: read from the body).
    """

    json_title: ClassVar[str] = "SignedFootprint"
    payload_type: Literal["application/vnd.pcfx.footprint+json"] = PAYLOAD_FOOTPRINT
    footprint: ProductFootprint = Field(json_schema_extra={"avro_nullable": True})
    signed_body: Base64Bytes | None = None
    """v2: the exact signed bytes, ``pae(payloadType, canonical_json({keyId, payload, sequence,
    supplierId}))``; the signature, the batch proof and the content hash are over these bytes."""

    @model_validator(mode="before")
    @classmethod
    def _read_signed_body(cls, data: Any, info: ValidationInfo) -> Any:
        """v2: take ``footprint`` from ``signedBody`` (whose envelope fields must match)."""
        if not isinstance(data, dict):
            return data
        body = data.get("signedBody", data.get("signed_body"))
        if body is None:
            return data
        if isinstance(body, str):  # JSON: base64 text
            try:
                body = base64.b64decode(body.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                raise model_rules(
                    [Violation("signedBody", "base64", "must be standard base64 text")]
                ) from None
        if not isinstance(body, bytes | bytearray | memoryview):
            raise model_rules([Violation("signedBody", "type", "must be bytes")])
        body = bytes(body)
        given = data.get("footprint")
        if given is not None and info.context and info.context.get(_TRUSTED_BODY):
            return data  # built by sign*/sign_batch from this very footprint
        opened = open_signed_body(body)
        if isinstance(opened, Violation):
            raise model_rules([opened])
        payload_type, fields, payload = opened
        problems = _envelope_mismatches(data, payload_type, fields)
        if problems:
            raise model_rules(problems)
        if given is not None:  # built in Python with both: they must be the same record
            footprint = (
                given
                if isinstance(given, ProductFootprint)
                else ProductFootprint.model_validate(given, context=info.context)
            )
            if payload_json(footprint) != payload:
                raise model_rules(
                    [
                        Violation(
                            "footprint",
                            "body_mismatch",
                            "must be the footprint signedBody holds (give one or the other)",
                        )
                    ]
                )
            return data
        checked = check_footprint(payload)
        if checked.value is None:
            raise model_rules(
                [
                    Violation(join_path("footprint", v.path), v.code, v.message, v.got)
                    for v in checked.violations
                ]
            )
        return {**data, "footprint": checked.value, "signedBody": body}

    @field_serializer("footprint", mode="wrap")
    def _footprint_on_the_wire(
        self,
        value: ProductFootprint,
        handler: SerializerFunctionWrapHandler,
        info: FieldSerializationInfo,
    ) -> Any:
        # v2 on the wire: the footprint travels only inside signedBody
        if self.signed_body is not None and info.context and info.context.get("avro"):
            return None
        return handler(value)

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
    # checked: the payload is a validated record's JSON dump (string keys, no binary float),
    # so the walk that looks for those is skipped; the bytes are the same
    return pae(payload_type, canonical_json(body, checked=True))


def content_hash(record: Payload | SignedRecord | bytes, **envelope: Any) -> str:
    """sha256 (hex) of :func:`signing_bytes`: what lineage and audit records cite."""
    data = record if isinstance(record, bytes) else signing_bytes(record, **envelope)
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Ed25519


def as_public_key(key: Ed25519PublicKey | bytes) -> Ed25519PublicKey:
    """*key* as an Ed25519 key object (raw 32-byte keys parsed once and cached); raise
    :class:`TrustError` (``bad_key``) if it is not one."""
    if isinstance(key, Ed25519PublicKey):
        return key
    return _parsed_key(bytes(key))


@functools.lru_cache(maxsize=4096)
def _parsed_key(key: bytes) -> Ed25519PublicKey:
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
        as_public_key(public_key).verify(signature, data)
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
    data = signing_bytes(record, supplier_id=supplier_id, key_id=key_id, sequence=sequence)
    return _wrap(record, data, supplier_id, key_id, sequence, private_key.sign(data), None)


def _wrap(
    record: Payload,
    data: bytes,
    supplier_id: str,
    key_id: str,
    sequence: int,
    signature: bytes,
    proof: BatchProof | None,
) -> SignedRecord:
    """The envelope of *record* signed over *data*; a footprint in the v2 form (it carries
    *data* as ``signedBody``)."""
    wrapper, field = _WRAPPERS[type(record)]
    fields: dict[str, Any] = {
        "supplier_id": supplier_id,
        "key_id": key_id,
        "sequence": sequence,
        "signature": signature,
        "batch_proof": proof,
        field: record,
    }
    if wrapper is SignedFootprint:
        fields["signed_body"] = data
    signed = wrapper.model_validate(fields, context={_TRUSTED_BODY: True})
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
    for index, (record, sequence, path, body) in enumerate(
        zip(records, sequences, paths, data, strict=True)
    ):
        proof = BatchProof(
            root_signature=root_signature,
            leaf_index=index,
            tree_size=size,
            audit_path=tuple(path),
        )
        signed.append(_wrap(record, body, supplier_id, key_id, sequence, b"", proof))
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
        signed.append(
            _wrap(record, data, supplier_id, key_id, sequence, private_key.sign(data), None)
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
    """Ed25519 check of a batch root, cached: the records of one batch share it (also the
    streams' hand-offs, :mod:`contracts.handoff`)."""
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, statement)
    except InvalidSignature:
        return False
    return True


@functools.lru_cache(maxsize=4096)
def _batch_root_signed(
    public_raw: bytes, signature: bytes, root: bytes, tree_size: int, supplier_id: str, key_id: str
) -> bool:
    """:func:`_root_signed` over :func:`batch_root_bytes`, cached by what those bytes are built
    from, so the records of one batch build the statement once, not each."""
    statement = batch_root_bytes(root, tree_size, supplier_id=supplier_id, key_id=key_id)
    return _root_signed(public_raw, signature, statement)


def _verify_batch_proof(
    public_key: Ed25519PublicKey,
    proof: ProofFields,
    data: bytes,
    what: str,
    *,
    supplier_id: str,
    key_id: str,
) -> None:
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
    if not _batch_root_signed(
        public_key.public_bytes_raw(),
        proof.root_signature,
        root,
        proof.tree_size,
        supplier_id,
        key_id,
    ):
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
    key = as_public_key(public_key)
    # (2) v2: the bytes as they were signed and received; v1: rebuilt from the record
    body = signed.signed_body if isinstance(signed, SignedFootprint) else None
    data = body if body is not None else signing_bytes(signed)
    what = f"{signed.json_title} from {signed.supplier_id}"
    if body is not None:  # the envelope must claim what the signed bytes bind
        opened = open_signed_body(body)
        problems = (
            [opened]
            if isinstance(opened, Violation)
            else _envelope_mismatches(
                {
                    "supplierId": signed.supplier_id,
                    "keyId": signed.key_id,
                    "sequence": signed.sequence,
                    "payloadType": signed.payload_type,
                },
                opened[0],
                opened[1],
            )
        )
        if problems:
            raise TrustError(
                f"{what}: {problems[0].path!r} {problems[0].message} (the envelope was altered "
                "after signing)",
                reason="bad_signature",
            )
        # (an object changed in Python after decoding: its footprint must be the signed one)
        if not isinstance(opened, Violation) and payload_json(signed.payload) != opened[2]:
            raise TrustError(
                f"{what}: the footprint does not match the signed bytes (altered after signing)",
                reason="bad_signature",
            )
    verify_signed_bytes(
        key,
        data,
        signature=signed.signature,
        proof=signed.batch_proof,
        supplier_id=signed.supplier_id,
        key_id=signed.key_id,
        what=what,
    )
    return hashlib.sha256(data).hexdigest()


class ProofFields(Protocol):
    """What a batch-proof check reads (a :class:`BatchProof`, or the fast path's view of one)."""

    @property
    def root_signature(self) -> bytes: ...
    @property
    def leaf_index(self) -> int: ...
    @property
    def tree_size(self) -> int: ...
    @property
    def audit_path(self) -> Sequence[bytes]: ...


def verify_signed_bytes(
    key: Ed25519PublicKey,
    data: bytes,
    *,
    signature: bytes,
    proof: ProofFields | None,
    supplier_id: str,
    key_id: str,
    what: str,
) -> None:
    """Steps (3) and (4) of :func:`verify` over the signed bytes *data*; raise
    :class:`TrustError`. The one check both the pydantic path and the ingestion's fast path run."""
    # (3)
    if signature:
        verify_bytes(key, signature, data, what=what)
    # (4)
    if proof is not None:
        _verify_batch_proof(key, proof, data, what, supplier_id=supplier_id, key_id=key_id)
