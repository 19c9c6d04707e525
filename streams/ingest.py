"""Ingestion checks: may this record from a supplier, manufacturer or the operator enter the state?

Pure: bytes and state in, a typed :class:`Ingested` out; no Kafka here (the faust agents call it).
For each record on ``pcf.declared``, ``pcf.bom`` or ``pcf.factors`` the steps are, in order:

1. decode the Confluent-framed Avro and validate the record's semantic rules;
2. find the signing key: a supplier key registered on ``pcf.keys`` (an unknown key makes the
   record *pending*: keys and data travel on different topics and Kafka does not order them; the
   caller re-checks it when keys change and rejects it after a grace period), or an operator key
   for factors;
3. the key must be usable when the record was produced (valid, not yet revoked);
4. the signer must own the payload: a footprint's ``companyIds`` name the supplier, a BOM's
   ``owner`` is the manufacturer who signed;
5. the Ed25519 signature over the canonical bytes must verify;
6. the sequence must be above the last accepted one for the same subject (supplier + product, or
   factor id). The same sequence with the same content is a harmless redelivery (``DUPLICATE``);
   anything else at or below is a replay and is rejected.

``pcf.keys`` records are checked by :meth:`KeyRegistry.apply`: signed by a configured operator
key, with a sequence above the last one for that (supplier, key id).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts import (
    AvroSerde,
    BillOfMaterials,
    EmissionFactor,
    ProductFootprint,
    Rejection,
    SignedBillOfMaterials,
    SignedEmissionFactor,
    SignedFootprint,
    SignedRecord,
    SignedSupplierKey,
    SupplierKey,
    verify,
)
from contracts.errors import ContractError, PcfError, TrustError

__all__ = [
    "DATA_TOPICS",
    "IngestOutcome",
    "Ingested",
    "KeyRegistry",
    "SequenceLedger",
    "SourceRef",
    "check_record",
    "reject",
    "subject_of",
]

DATA_TOPICS: dict[str, type[SignedRecord]] = {
    "pcf.declared": SignedFootprint,
    "pcf.bom": SignedBillOfMaterials,
    "pcf.factors": SignedEmissionFactor,
}


class IngestOutcome(StrEnum):
    ACCEPTED = "accepted"
    """New and trusted: apply it to the state."""
    DUPLICATE = "duplicate"
    """Already accepted with this sequence and content (a redelivery): nothing to do."""
    PENDING_KEY = "pending_key"
    """Signed with a key not (yet) registered: hold it and re-check when keys change."""
    REJECTED = "rejected"
    """Refused: goes to the DLQ with the reason."""


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a record came from: enough to find it again, and when it was produced."""

    topic: str
    partition: int
    offset: int
    produced_at: datetime
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Ingested:
    outcome: IngestOutcome
    source: SourceRef
    record: SignedRecord | SignedSupplierKey | None = None
    subject: str = ""
    content_hash: str = ""
    error: PcfError | None = None

    def rejection(self, original: bytes, now: datetime, processor: str) -> Rejection:
        """The DLQ record for a REJECTED (or expired PENDING_KEY) outcome."""
        if self.error is None:
            raise ValueError(f"an {self.outcome} record has no error to reject with")
        return Rejection.of(
            self.error,
            source_topic=self.source.topic,
            partition=self.source.partition,
            offset=self.source.offset,
            original=original,
            rejected_at=now,
            key=self.source.key,
            processor=processor,
        )


def reject(source: SourceRef, error: PcfError) -> Ingested:
    return Ingested(IngestOutcome.REJECTED, source, error=error)


# --- state ---------------------------------------------------------------------------------


@dataclass
class KeyRegistry:
    """Supplier keys registered by the operator, and the operator keys they are signed with."""

    operator_keys: dict[str, Ed25519PublicKey]
    """key id → public key of the platform operator (the trust anchor, from configuration)."""
    keys: dict[tuple[str, str], tuple[int, SupplierKey]] = field(default_factory=dict)
    """(supplier id, key id) → (sequence, registration)."""

    def lookup(self, supplier_id: str, key_id: str) -> SupplierKey | None:
        entry = self.keys.get((supplier_id, key_id))
        return entry[1] if entry else None

    def apply(self, data: bytes, source: SourceRef, serde: AvroSerde) -> Ingested:
        """Check a ``pcf.keys`` record and, if trusted and newer, register it."""
        try:
            signed = serde.decode(data, SignedSupplierKey)
        except ContractError as exc:
            return reject(source, exc)
        operator_key = self.operator_keys.get(signed.key_id)
        if operator_key is None:
            return reject(
                source,
                TrustError(
                    f"key registration for supplier {signed.key.supplier_id!r} is signed with "
                    f"key {signed.key_id!r}, which is not a configured operator key "
                    f"(known: {sorted(self.operator_keys) or 'none'})",
                    reason="unknown_key",
                ),
            )
        try:
            digest = verify(operator_key, signed)
        except TrustError as exc:
            return reject(source, exc)
        registration = signed.key
        slot = (registration.supplier_id, registration.key_id)
        subject = f"key:{registration.supplier_id}/{registration.key_id}"
        stored = self.keys.get(slot)
        if stored is not None and signed.sequence <= stored[0]:
            if signed.sequence == stored[0] and stored[1] == registration:
                return Ingested(IngestOutcome.DUPLICATE, source, signed, subject, digest)
            return reject(source, _replay(subject, signed.sequence, stored[0]))
        self.keys[slot] = (signed.sequence, registration)
        return Ingested(IngestOutcome.ACCEPTED, source, signed, subject, digest)


@dataclass
class SequenceLedger:
    """The last accepted (sequence, content hash) per subject."""

    seen: MutableMapping[str, tuple[int, str]] = field(default_factory=dict)

    def judge(self, subject: str, sequence: int, digest: str) -> IngestOutcome | TrustError:
        stored = self.seen.get(subject)
        if stored is None or sequence > stored[0]:
            return IngestOutcome.ACCEPTED
        if sequence == stored[0] and digest == stored[1]:
            return IngestOutcome.DUPLICATE
        return _replay(subject, sequence, stored[0])

    def record(self, subject: str, sequence: int, digest: str) -> None:
        self.seen[subject] = (sequence, digest)


def _replay(subject: str, sequence: int, stored: int) -> TrustError:
    return TrustError(
        f"'sequence' must be above {stored} for {subject} (got {sequence}): a replayed or "
        "out-of-date record",
        reason="replayed",
        hint="Publish changes with a higher sequence; pcfx publish does this for you.",
    )


# --- the checks ----------------------------------------------------------------------------


def subject_of(signed: SignedRecord) -> str:
    """What a sequence is monotonic for: supplier + product, or the factor id."""
    payload = signed.payload
    if isinstance(payload, ProductFootprint):
        return f"footprint:{signed.supplier_id}/{payload.product_ids[0]}"
    if isinstance(payload, BillOfMaterials):
        return f"bom:{payload.product_id}"
    if isinstance(payload, EmissionFactor):
        return f"factor:{payload.factor_id}"
    raise TypeError(f"no subject for {type(payload).__name__}")


def _owner_problem(signed: SignedRecord) -> TrustError | None:
    payload = signed.payload
    if isinstance(payload, ProductFootprint) and signed.supplier_id not in payload.company_ids:
        return TrustError(
            f"'companyIds' must name the signing supplier {signed.supplier_id!r} "
            f"(got {list(payload.company_ids)!r})",
            reason="key_supplier_mismatch",
        )
    if isinstance(payload, BillOfMaterials) and payload.owner not in (None, signed.supplier_id):
        return TrustError(
            f"'owner' must be the signing manufacturer {signed.supplier_id!r} "
            f"(got {payload.owner!r})",
            reason="key_supplier_mismatch",
        )
    return None


def check_record(
    data: bytes,
    source: SourceRef,
    *,
    serde: AvroSerde,
    keys: KeyRegistry,
    ledger: SequenceLedger,
    record_type: type[SignedRecord] | None = None,
) -> Ingested:
    """Run steps 1-6 of the module docstring; record the sequence of an accepted record.

    *record_type* defaults to the type of ``source.topic`` in :data:`DATA_TOPICS`; pass it when
    topic names carry a deployment prefix.
    """
    model = record_type or DATA_TOPICS.get(source.topic)
    if model is None:
        raise ValueError(f"check_record reads {sorted(DATA_TOPICS)}, not {source.topic!r}")
    # (1) decode + validate
    try:
        signed = serde.decode(data, model)
    except ContractError as exc:
        return reject(source, exc)
    subject = subject_of(signed)
    # (2) the key
    public: Ed25519PublicKey | bytes
    if isinstance(signed, SignedEmissionFactor):
        operator_key = keys.operator_keys.get(signed.key_id)
        if operator_key is None:
            return reject(
                source,
                TrustError(
                    f"emission factor {signed.factor.factor_id!r} must be signed by an operator "
                    f"key (got key {signed.key_id!r})",
                    reason="unknown_key",
                ),
            )
        public = operator_key
    else:
        registration = keys.lookup(signed.supplier_id, signed.key_id)
        if registration is None:
            return Ingested(
                IngestOutcome.PENDING_KEY,
                source,
                signed,
                subject,
                error=TrustError(
                    f"key {signed.key_id!r} is not registered for {signed.supplier_id!r}",
                    reason="unknown_key",
                    hint="Ask the operator to run 'pcfx keys register' for this key.",
                ),
            )
        # (3) usable when produced
        if not registration.usable_at(source.produced_at):
            revoked = registration.revoked_at
            reason = (
                "revoked_key"
                if revoked is not None and source.produced_at >= revoked
                else "expired_key"
            )
            return reject(
                source,
                TrustError(
                    f"key {signed.key_id!r} of {signed.supplier_id!r} was not usable at "
                    f"{source.produced_at.isoformat()} (valid from "
                    f"{registration.valid_from.isoformat()}"
                    + (
                        f" until {registration.valid_until.isoformat()}"
                        if registration.valid_until
                        else ""
                    )
                    + (f", revoked at {revoked.isoformat()}" if revoked else "")
                    + ")",
                    reason=reason,
                ),
            )
        public = registration.public_key
    # (4) the signer owns the payload
    problem = _owner_problem(signed)
    if problem is not None:
        return reject(source, problem)
    # (5) signature
    try:
        digest = verify(public, signed)
    except TrustError as exc:
        return reject(source, exc)
    # (6) sequence
    verdict = ledger.judge(subject, signed.sequence, digest)
    if isinstance(verdict, TrustError):
        return reject(source, verdict)
    if verdict is IngestOutcome.ACCEPTED:
        ledger.record(subject, signed.sequence, digest)
    return Ingested(verdict, source, signed, subject, digest)
