"""Ingestion checks: may this record from a supplier, manufacturer or the operator enter the state?

Pure: bytes and state in, a typed :class:`Ingested` out; no Kafka here (the faust agents call it).
For each record on ``pcf.declared``, ``pcf.bom`` or ``pcf.factors`` the steps are, in order:

1. decode the Confluent-framed Avro and validate the record's semantic rules. A footprint in the
   v2 envelope (its signed bytes in ``signedBody``) is read once: the envelope's Avro datum, the
   body's JSON with orjson, the PACT rules as plain checks (:func:`contracts._fast.read_footprint`,
   giving a :class:`CheckedFootprint`, no model). Whatever the fast path cannot vouch for (v1
   records, BOMs, factors, any broken rule) is validated through the models, so a refused record
   carries the models' reasons and field paths either way;
2. find the signing key: a key registered on ``pcf.keys`` (:class:`~contracts.Keyring`; an
   unknown key makes the record *pending*: keys and data travel on different topics and Kafka
   does not order them; the caller parks it in a :class:`ParkingLot`, re-checks it when keys
   change and rejects it at its deadline), or an operator key for factors;
3. the key must be usable when the *broker appended* the record (``SourceRef.appended_at``:
   valid from, not expired, not revoked; never a time the producer chose) and be a ``company``
   key (officer and service keys do not declare products);
4. the Ed25519 signature (or the batch proof up to a signed Merkle root) must verify: over the
   bytes received for a v2 footprint (:func:`contracts._envelope.verify_signed_bytes`), over
   the canonical bytes rebuilt from the record otherwise; the content hash is their sha256;
5. the signer must own the payload: a footprint's ``companyIds`` name the supplier and every one
   of its ``productIds`` is in the signer's namespaces; a BOM has an ``owner``, the manufacturer
   who signed, and its ``productId`` is in the signer's namespaces (else ``not_owner``, naming
   the product id, the signer and its namespaces);
6. the sequence, against the last accepted one for the same subject (supplier + product, or
   product for a BOM, or factor id) and its content hash, kept by the :class:`SequenceLedger`:

   - above it: ``ACCEPTED`` (applied, and the ledger moves on);
   - the same sequence with the same content: ``DUPLICATE``, a redelivery (forwarded again,
     since the ledger is written before the record is forwarded: see
     :mod:`streams._ingest_step`);
   - below it: ``SUPERSEDED``, whatever its content. After a worker is killed, Kafka
     redelivers every record after the last committed offset, and the ledger (written per
     batch) is often ahead of that offset: those are the supplier's own, correctly signed
     records, already passed once. They are **not** rejected: an older sequence can never
     overwrite a newer one (decision 4), so such a record can do no harm, and reporting it as
     an attack would send legitimate records to the DLQ (it did: 775 and 2 667 in two runs,
     issue #22). It is not forwarded either: the newer record in force already supersedes it.
     It is counted (:attr:`SequenceLedger.counts`) and logged per batch. The ledger keeps one
     hash per subject, so it cannot tell a redelivered older record from another older one
     with other content; both are equally harmless, and both are ``SUPERSEDED``;
   - the same sequence with *other* content: refused (``sequence_reused``, to the DLQ). Not an
     attack either (the signature holds), but the signer said two different things under one
     sequence: only the first counts, and the second must not be lost silently.

   Only a signature or key problem (steps 2-5) is treated as an attack.

``pcf.keys`` records are folded by :class:`KeyRegistry` (decoding, then the one fold of the key
registry, :class:`contracts.Keyring`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pcf_exchange.contracts import (
    AvroSerde,
    BillOfMaterials,
    CheckedFootprint,
    EmissionFactor,
    KeyRegistration,
    Keyring,
    KeyringOutcome,
    ProductFootprint,
    Rejection,
    SignedBillOfMaterials,
    SignedEmissionFactor,
    SignedFootprint,
    SignedRecord,
    SignedSupplierKey,
    SignerRole,
    read_footprint,
    verify,
    verify_signed_bytes,
)
from pcf_exchange.contracts._envelope import as_public_key
from pcf_exchange.contracts._serde import from_avro_dict
from pcf_exchange.contracts.errors import (
    ContractError,
    PcfError,
    SerdeError,
    TrustError,
    ValidationFailed,
)

__all__ = [
    "DATA_TOPICS",
    "CheckedFootprint",
    "IngestOutcome",
    "Ingested",
    "KeyRegistry",
    "Parked",
    "ParkingLot",
    "SequenceLedger",
    "SourceRef",
    "check_record",
    "not_owner",
    "reject",
    "subject_of",
]

T = TypeVar("T")

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
    SUPERSEDED = "superseded"
    """Trusted, but older than the subject's record in force (a redelivery after a restart, or
    a late one): counted, neither applied nor rejected."""
    PENDING_KEY = "pending_key"
    """Signed with a key not (yet) registered: park it and re-check when keys change."""
    REJECTED = "rejected"
    """Refused: goes to the DLQ with the reason."""


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a record came from: enough to find it again, and when the broker appended it."""

    topic: str
    partition: int
    offset: int
    appended_at: datetime
    """When the broker appended the record (LogAppendTime): the time key validity is judged at.
    For a record whose timestamp the producer chose (CreateTime), the caller passes the time it
    read the record instead (:attr:`broker_time` false), which can only be later."""
    key: bytes | None = None
    broker_time: bool = True
    """Whether :attr:`appended_at` is the broker's append time (else the time it was read)."""


@dataclass(frozen=True, slots=True)
class Ingested:
    outcome: IngestOutcome
    source: SourceRef
    record: SignedRecord | SignedSupplierKey | CheckedFootprint | None = None
    """The checked record: a v2 footprint read on the fast path is a :class:`CheckedFootprint`
    (its PACT JSON, no model), anything else the envelope model."""
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

    @property
    def signer(self) -> tuple[str, str] | None:
        """(supplier id, key id) of a decoded record's signature."""
        record = self.record
        return None if record is None else (record.supplier_id, record.key_id)


def reject(source: SourceRef, error: PcfError) -> Ingested:
    return Ingested(IngestOutcome.REJECTED, source, error=error)


# --- state ---------------------------------------------------------------------------------


@dataclass
class KeyRegistry:
    """The streams' view of ``pcf.keys``: decodes each record and folds it into the one
    :class:`~contracts.Keyring`; the operator keys (the trust anchor) come from configuration."""

    operator_keys: Mapping[str, Ed25519PublicKey]
    """key id -> public key of the platform operator."""
    keyring: Keyring = field(init=False)

    def __post_init__(self) -> None:
        self.keyring = Keyring(dict(self.operator_keys))

    def lookup(self, supplier_id: str, key_id: str) -> KeyRegistration | None:
        return self.keyring.lookup(supplier_id, key_id)

    def apply(self, data: bytes, source: SourceRef, serde: AvroSerde) -> Ingested:
        """Check a ``pcf.keys`` record and, if trusted and newer, put it in force."""
        try:
            signed = serde.decode(data, SignedSupplierKey)
        except ContractError as exc:
            return reject(source, exc)
        update = self.keyring.apply(signed)
        if update.outcome is KeyringOutcome.REJECTED:
            assert update.error is not None
            return reject(source, update.error)
        outcome = (
            IngestOutcome.ACCEPTED
            if update.outcome is KeyringOutcome.ACCEPTED
            else IngestOutcome.DUPLICATE
        )
        digest = update.registration.digest if update.registration else ""
        return Ingested(outcome, source, signed, update.subject, digest)


@dataclass
class SequenceLedger:
    """The last accepted (sequence, content hash) per subject: one small row per subject.

    :meth:`judge` applies step 6 of the module docstring; :attr:`counts` counts the trusted
    records that were not applied (``DUPLICATE`` and ``SUPERSEDED``), for logs and metrics."""

    seen: MutableMapping[str, tuple[int, str]] = field(default_factory=dict)
    counts: dict[IngestOutcome, int] = field(
        default_factory=lambda: {IngestOutcome.DUPLICATE: 0, IngestOutcome.SUPERSEDED: 0}
    )

    def judge(self, subject: str, sequence: int, digest: str) -> IngestOutcome | TrustError:
        stored = self.seen.get(subject)
        if stored is None or sequence > stored[0]:
            return IngestOutcome.ACCEPTED
        if sequence < stored[0]:
            self.counts[IngestOutcome.SUPERSEDED] += 1
            return IngestOutcome.SUPERSEDED
        if digest == stored[1]:
            self.counts[IngestOutcome.DUPLICATE] += 1
            return IngestOutcome.DUPLICATE
        return _reused(subject, sequence, stored[1], digest)

    def record(self, subject: str, sequence: int, digest: str) -> None:
        self.seen[subject] = (sequence, digest)


def _reused(subject: str, sequence: int, stored: str, digest: str) -> TrustError:
    return TrustError(
        f"'sequence' {sequence} of {subject} must name one content (already accepted with"
        f" content {stored[:16]}…, got {digest[:16]}…): a sequence reused for other content",
        reason="sequence_reused",
        hint="Publish a change with a higher sequence; pcfx publish does this for you (a PACT"
        " footprint's change is a new footprint with a later 'created').",
    )


@dataclass(frozen=True, slots=True)
class Parked(Generic[T]):
    """A record waiting for its signing key: what the caller needs to finish it (*item*, e.g.
    the record and its event), the key it waits for, and when it goes to the DLQ."""

    signer: tuple[str, str]
    """(supplier id, key id) of the signature."""
    deadline: datetime
    item: T


@dataclass
class ParkingLot(Generic[T]):
    """Records whose signing key is not (yet) registered, in arrival order.

    A parked record does not hold up the records behind it: the caller goes on with them and
    comes back to it when a key is registered (:meth:`waiting_for`, in arrival order: a
    subject's records are re-checked in their original order) or at its deadline, the time the
    broker appended it plus the grace period (:meth:`expired`: to the DLQ as ``unknown_key``).
    """

    grace: timedelta
    parked: dict[int, Parked[T]] = field(default_factory=dict)
    """Arrival number -> parked record (dicts keep insertion order)."""
    _arrivals: int = 0

    def park(self, signer: tuple[str, str], appended_at: datetime, item: T) -> Parked[T]:
        entry = Parked(signer, appended_at + self.grace, item)
        self._arrivals += 1
        self.parked[self._arrivals] = entry
        return entry

    def waiting_for(self, known: Iterable[tuple[str, str]]) -> list[Parked[T]]:
        """Take out (in arrival order) the records whose key is among *known* signers."""
        wanted = set(known)
        taken = [(n, p) for n, p in self.parked.items() if p.signer in wanted]
        for n, _ in taken:
            del self.parked[n]
        return [p for _, p in taken]

    def expired(self, now: datetime) -> list[Parked[T]]:
        """Take out (in arrival order) the records whose deadline is at or before *now*."""
        taken = [(n, p) for n, p in self.parked.items() if p.deadline <= now]
        for n, _ in taken:
            del self.parked[n]
        return [p for _, p in taken]

    def drop(self, keep: Callable[[T], bool]) -> list[Parked[T]]:
        """Take out every record for which ``keep(item)`` is false (e.g. of a revoked partition)."""
        taken = [(n, p) for n, p in self.parked.items() if not keep(p.item)]
        for n, _ in taken:
            del self.parked[n]
        return [p for _, p in taken]

    @property
    def signers(self) -> set[tuple[str, str]]:
        return {p.signer for p in self.parked.values()}

    def next_deadline(self) -> datetime | None:
        return min((p.deadline for p in self.parked.values()), default=None)

    def __len__(self) -> int:
        return len(self.parked)


# --- the checks ----------------------------------------------------------------------------


def subject_of(signed: SignedRecord | CheckedFootprint) -> str:
    """What a sequence is monotonic for: supplier + product, the BOM's product, or the factor."""
    if isinstance(signed, CheckedFootprint):
        return f"footprint:{signed.supplier_id}/{signed.product_ids[0]}"
    payload = signed.payload
    if isinstance(payload, ProductFootprint):
        return f"footprint:{signed.supplier_id}/{payload.product_ids[0]}"
    if isinstance(payload, BillOfMaterials):
        return f"bom:{payload.product_id}"
    if isinstance(payload, EmissionFactor):
        return f"factor:{payload.factor_id}"
    raise TypeError(f"no subject for {type(payload).__name__}")


def not_owner(product_id: str, path: str, registration: KeyRegistration) -> TrustError:
    """The ``not_owner`` refusal: *product_id* (at *path*) is outside the signer's namespaces."""
    namespaces = list(registration.namespaces)
    return TrustError(
        f"{path!r} must be in the namespaces of the signer {registration.owner!r} (key "
        f"{registration.key_id!r}: {namespaces or 'none registered'}) (got {product_id!r})",
        reason="not_owner",
        hint=(
            "Declare only products in your own namespaces; if this product is yours, ask the"
            " operator to register the namespace with your key"
            " (pcfx keys register --namespace URN)."
        ),
    )


def _footprint_owner(
    supplier_id: str,
    company_ids: tuple[str, ...],
    product_ids: tuple[str, ...],
    registration: KeyRegistration,
) -> TrustError | None:
    if supplier_id not in company_ids:
        return TrustError(
            f"'companyIds' must name the signing supplier {supplier_id!r} "
            f"(got {list(company_ids)!r})",
            reason="key_supplier_mismatch",
        )
    for i, product_id in enumerate(product_ids):
        if not registration.owns(product_id):
            return not_owner(product_id, f"productIds[{i}]", registration)
    return None


def _owner_problem(
    signed: SignedRecord | CheckedFootprint, registration: KeyRegistration
) -> TrustError | None:
    if isinstance(signed, CheckedFootprint):
        return _footprint_owner(
            signed.supplier_id, signed.company_ids, signed.product_ids, registration
        )
    payload = signed.payload
    if isinstance(payload, ProductFootprint):
        return _footprint_owner(
            signed.supplier_id, payload.company_ids, payload.product_ids, registration
        )
    if isinstance(payload, BillOfMaterials):
        if payload.owner is None:
            return TrustError(
                f"'owner' must name the manufacturer whose product {payload.product_id!r} is "
                f"(the signer {signed.supplier_id!r}, key {signed.key_id!r}) (got none)",
                reason="not_owner",
                hint="Set the BOM's owner to your company id and publish it again.",
            )
        if payload.owner != signed.supplier_id:
            return TrustError(
                f"'owner' must be the signing manufacturer {signed.supplier_id!r} "
                f"(got {payload.owner!r})",
                reason="key_supplier_mismatch",
            )
        if not registration.owns(payload.product_id):
            return not_owner(payload.product_id, "productId", registration)
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
    # (1) decode once; a v2 footprint's rules as plain checks, anything else through the model
    signed: SignedRecord | CheckedFootprint
    try:
        found, datum = serde.decode_datum(data)
        if found is not model:
            raise SerdeError(
                f"expected a {model.__name__} but the message holds a {found.__name__}"
            )
        fast = read_footprint(datum) if model is SignedFootprint else None
        if fast is not None:
            signed = fast
        else:
            result = from_avro_dict(model, datum)
            if result.value is None:
                raise ValidationFailed(result.violations, subject=f"{model.__name__} (Avro)")
            signed = result.value
    except ContractError as exc:
        return reject(source, exc)
    subject = subject_of(signed)
    # (2) the key
    public: Ed25519PublicKey | bytes
    registration: KeyRegistration | None = None
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
        # (3) a company's key, usable when the broker appended the record
        authorized = keys.keyring.authorize(
            signed.supplier_id, signed.key_id, role=SignerRole.COMPANY, at=source.appended_at
        )
        if isinstance(authorized, TrustError):
            if authorized.reason == "unknown_key":  # its registration may still be on its way
                return Ingested(
                    IngestOutcome.PENDING_KEY, source, signed, subject, error=authorized
                )
            return reject(source, authorized)
        registration = authorized
        public = registration.public_key
    # (4) signature: over the bytes received (v2), else rebuilt from the record (v1)
    try:
        if isinstance(signed, CheckedFootprint):
            verify_signed_bytes(
                as_public_key(public),
                signed.signed_body,
                signature=signed.signature,
                proof=signed.batch_proof,
                supplier_id=signed.supplier_id,
                key_id=signed.key_id,
                what=f"{signed.json_title} from {signed.supplier_id}",
            )
            digest = signed.content_hash
        else:
            digest = verify(public, signed)
    except TrustError as exc:
        return reject(source, exc)
    # (5) the signer owns the payload
    if registration is not None:
        problem = _owner_problem(signed, registration)
        if problem is not None:
            return reject(source, problem)
    # (6) sequence
    verdict = ledger.judge(subject, signed.sequence, digest)
    if isinstance(verdict, TrustError):
        return reject(source, verdict)
    if verdict is IngestOutcome.ACCEPTED:
        ledger.record(subject, signed.sequence, digest)
    return Ingested(verdict, source, signed, subject, digest)
