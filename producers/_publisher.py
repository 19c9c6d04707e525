"""The SDK: validate, sign, encode and publish records, and know what the broker acknowledged.

:class:`Publisher` is what ``pcfx publish`` runs and what an ERP integration imports. Per record
it (1) checks what only the producer can (BOM owner, ledger conflicts), (2) derives the sequence
(see :mod:`producers._sequence`), (3) signs, one Ed25519 signature per batch of up to
``batch_size`` records over their RFC 6962 Merkle root (each record carries its audit path and
verifies alone) or one per record, (4) encodes framed Avro with the topic's registered schema id,
(5) hands it to the idempotent acks=all :class:`~producers.delivery.KafkaSink`, keyed by product
id (factor id for factors), and (6) records the broker's answer. A record that fails (1)-(4) is
reported and never sent; the others still are ("nothing half-sent": a bad record never stops
the good ones, and a good record counts as sent only once acknowledged).

A footprint read from a file by the fast lane (:class:`~producers._fastpath.PactFootprint`: the
PACT JSON as read, which the model would accept without warnings and write the same) follows the
same steps without a pydantic model: its signed bytes are the canonical JSON of what was read,
and it is encoded from its Avro datum (:meth:`Publisher._sign`). A PCR or other check between
reading and signing sees ``payload`` (the JSON) or calls :meth:`PactFootprint.model`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel

from pcf_exchange.contracts import (
    AvroSerde,
    BatchProof,
    BillOfMaterials,
    EmissionFactor,
    HttpSchemaRegistry,
    InMemorySchemaRegistry,
    KafkaSchemaRegistry,
    LoadedRecord,
    ProductFootprint,
    SchemaRegistry,
    SignedBatch,
    SignedFootprint,
    SignedRecord,
    SupplierKey,
    ValidationFailed,
    Violation,
    payload_json,
    register_all,
    schema_json,
    sign_batch,
    sign_each,
    subject_for,
)
from pcf_exchange.contracts._avro_encoder import WireEncoder
from pcf_exchange.contracts._collector import collector_paused
from pcf_exchange.contracts._envelope import (
    PAYLOAD_FOOTPRINT,
    _wrap,
    batch_root_bytes,
    signing_bytes,
)
from pcf_exchange.contracts._merkle import audit_paths, hash_leaf
from pcf_exchange.contracts.canonical import canonical_json
from pcf_exchange.contracts.errors import PcfError, SerdeError, UnknownSchemaError
from pcf_exchange.contracts.topics import TopicNames
from pcf_exchange.producers._fastpath import PactFootprint
from pcf_exchange.producers._input import Item, Record
from pcf_exchange.producers._keydir import KeyDirectory, KeyStatus
from pcf_exchange.producers._lifecycle import supersede
from pcf_exchange.producers._pcr import pcr_gate
from pcf_exchange.producers._sequence import Ledger, LedgerEntry, footprint_sequence, next_sequence
from pcf_exchange.producers._summary import PublishSummary, RecordOutcome, Status
from pcf_exchange.producers.delivery import DeliveryReport, KafkaSink, Outgoing
from pcf_exchange.producers.keys import Signer

__all__ = ["DEFAULT_BATCH_SIZE", "Publisher", "Topics", "record_key"]

DEFAULT_BATCH_SIZE: Final = 64
"""Records per batch signature: the audit path costs ~33 bytes per doubling (6 hashes at 64),
the signature 37 µs per batch instead of per record."""


_NAMES: Final = TopicNames()


@dataclass(frozen=True)
class Topics:
    """Topic names (the defaults are :mod:`contracts.topics`'; tests use fresh ones)."""

    declared: str = _NAMES.declared
    bom: str = _NAMES.bom
    factors: str = _NAMES.factors
    keys: str = _NAMES.keys
    schemas: str = _NAMES.schemas
    """The deployment's schema registry topic (the Kafka-topic registry's)."""

    @classmethod
    def prefixed(cls, prefix: str) -> Topics:
        """The table's names under a deployment *prefix* (``PCFX_TOPIC_PREFIX``)."""
        names = TopicNames(prefix)
        return cls(names.declared, names.bom, names.factors, names.keys, names.schemas)

    def for_record(self, record: Record) -> str:
        if isinstance(record, ProductFootprint | PactFootprint):
            return self.declared
        if isinstance(record, BillOfMaterials):
            return self.bom
        if isinstance(record, EmissionFactor):
            return self.factors
        return self.keys


_KINDS: Final[dict[type[BaseModel] | type[PactFootprint], str]] = {
    ProductFootprint: "footprint",
    PactFootprint: "footprint",
    BillOfMaterials: "bom",
    EmissionFactor: "factor",
    SupplierKey: "key",
}


def record_key(record: Record) -> str:
    """The Kafka key: product id (first ``productIds`` URN for a footprint), factor id, or
    ``supplierId/keyId`` for a key registration."""
    if isinstance(record, ProductFootprint | PactFootprint):
        return record.product_ids[0]
    if isinstance(record, BillOfMaterials):
        return record.product_id
    if isinstance(record, EmissionFactor):
        return record.factor_id
    return f"{record.supplier_id}/{record.key_id}"


def _record_id(record: Record) -> str:
    if isinstance(record, ProductFootprint | PactFootprint):
        return str(record.id)
    if isinstance(record, SupplierKey):
        return record.key_id
    return record_key(record)


def _body_hash(record: Record) -> str:
    """sha256 of the canonical payload JSON (no envelope): "same content" for the ledger."""
    if isinstance(record, PactFootprint):
        return hashlib.sha256(record.canonical).hexdigest()
    if isinstance(record, BillOfMaterials):
        record = record.model_copy(update={"revision": 0})
    return hashlib.sha256(canonical_json(payload_json(record))).hexdigest()


Slot = tuple[str, str, str]
"""(signer, kind, key) in the ledger."""


@dataclass(slots=True, eq=False)
class _Prepared:
    """A record that passed the producer's checks, with its sequence and where it goes.

    Not changed once made (the methods return copies); not ``frozen`` only because a frozen
    dataclass is built field by field through ``object.__setattr__`` (~1 µs for these ten
    fields, three copies per record)."""

    item: Item
    record: Record
    kind: str
    topic: str
    key: str
    sequence: int
    slot: Slot
    entries: tuple[tuple[Slot, LedgerEntry], ...] = ()
    """What the ledger remembers once the broker acknowledged the record (assigned sequences;
    footprints get theirs after signing, when the content hash is known)."""
    note: str | None = None
    current: int | None = None
    """The sequence already acknowledged for this record's product key when it is *above*
    this record's: the streams would refuse this one as a replay."""

    # (two copies per record on the publish path: a direct constructor call costs a fifth of
    # ``dataclasses.replace``, which inspects the fields each time)
    def to_topic(self, topic: str) -> _Prepared:
        """This record, going to *topic*."""
        return _Prepared(self.item, self.record, self.kind, topic, self.key, self.sequence,
                         self.slot, self.entries, self.note, self.current)  # fmt: skip

    def remembering(self, entries: tuple[tuple[Slot, LedgerEntry], ...]) -> _Prepared:
        """This record, with what the ledger remembers once it is acknowledged."""
        return _Prepared(self.item, self.record, self.kind, self.topic, self.key, self.sequence,
                         self.slot, entries, self.note, self.current)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Skip:
    """Published before, and a newer record for the key followed: not sent again."""

    note: str


class _InFlight:
    """Counts records handed to the sink and not yet reported."""

    def __init__(self) -> None:
        self._count = 0
        self._done = threading.Condition()

    def add(self) -> None:
        with self._done:
            self._count += 1

    def finish(self) -> None:
        with self._done:
            self._count -= 1
            if self._count == 0:
                self._done.notify_all()

    def wait(self, timeout_s: float) -> bool:
        with self._done:
            return self._done.wait_for(lambda: self._count == 0, timeout=timeout_s)


class Publisher:
    """Validate-sign-encode-publish for one signer; see the module docstring.

    ``Publisher(bootstrap, signer=signer)`` checks that a broker answers (else
    :class:`~contracts.errors.BrokerError`, nothing sent) and reads schema ids from the Kafka-topic
    registry (``topics.schemas``: ``<prefix>pcf._schemas``), registering a missing schema
    through a short-lived writer. ``registry`` may be any :class:`~contracts.SchemaRegistry` or
    a Confluent-compatible URL; ``schemas_topic`` names another registry topic.
    ``dry_run=True`` needs no broker: everything but sending (an in-memory registry).
    ``ledger`` defaults to the user's ledger file (:func:`~producers.default_ledger_path`);
    ``Ledger.in_memory()`` keeps none.
    ``batch_size`` records share one batch signature (1: every record signed alone).

    Use it as a context manager, or call :meth:`close` (it flushes and saves the ledger).
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        signer: Signer,
        registry: SchemaRegistry | str | None = None,
        topics: Topics | None = None,
        ledger: Ledger | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        dry_run: bool = False,
        sink: KafkaSink | None = None,
        delivery_timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        schemas_topic: str | None = None,
        pause_gc: bool = True,
        strict_pcr: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        self.signer = signer
        self.topics = topics or Topics()
        self.ledger = ledger if ledger is not None else Ledger.default()
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.strict_pcr = strict_pcr
        """Refuse a figure outside its category's plausible range (else a warning)."""
        self.bootstrap = bootstrap
        self._schemas_topic = schemas_topic or self.topics.schemas
        self._pause_gc = pause_gc
        self._delivery_timeout_s = delivery_timeout_s
        self._assigned: dict[tuple[str, str, str], LedgerEntry] = {}
        self._schemas_ready: set[tuple[str, type[BaseModel]]] = set()
        self._owns_registry = False
        self._sink: KafkaSink | None = None
        self._owns_sink = False
        if dry_run:  # offline: nothing registered, nothing sent
            memory = InMemorySchemaRegistry()
            register_all(memory)
            self.registry: SchemaRegistry = memory
        else:
            if bootstrap is None and (sink is None or not isinstance(registry, SchemaRegistry)):
                raise ValueError("Publisher needs the Kafka bootstrap servers (or dry_run=True)")
            if sink is None:
                assert bootstrap is not None
                sink = KafkaSink(bootstrap, delivery_timeout_s=delivery_timeout_s)
                self._owns_sink = True
                try:
                    sink.check_reachable(connect_timeout_s)
                except PcfError:
                    sink.close(timeout_s=1)
                    raise
            self._sink = sink
            try:
                if isinstance(registry, str):
                    self.registry = HttpSchemaRegistry(registry)
                    self._owns_registry = True
                elif registry is None:
                    assert bootstrap is not None
                    self.registry = KafkaSchemaRegistry(
                        bootstrap, topic=self._schemas_topic, timeout_s=connect_timeout_s
                    )
                    self._owns_registry = True
                else:
                    self.registry = registry
            except PcfError:
                if self._owns_sink:
                    sink.close(timeout_s=1)
                raise
        self.serde = AvroSerde(self.registry)
        self._wire = WireEncoder(self.serde)

    # -- lifecycle

    def key_status(
        self, *, keys_topic: str | None = None, operator_key: Ed25519PublicKey | None = None
    ) -> KeyStatus:
        """What the key registry topic says about this publisher's signing key, now.

        Pass the operator's public key to count only registrations it signed (as the streams
        do); without it the answer is advisory.
        """
        if self.bootstrap is None:
            raise ValueError("key_status needs a broker (this publisher is a dry run)")
        directory = KeyDirectory.read(
            self.bootstrap,
            self.serde,
            topic=keys_topic or self.topics.keys,
            operator_key=operator_key,
        )
        return directory.status(self.signer.owner, self.signer.key_id)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self, timeout_s: float | None = None) -> int:
        """Wait until every record sent so far is reported; return how many are not."""
        if self._sink is None:
            return 0
        return self._sink.flush(timeout_s if timeout_s is not None else self._wait_s)

    def close(self) -> None:
        """Flush, save the ledger, close the clients this publisher opened."""
        try:
            if self._sink is not None and self._owns_sink:
                self._sink.close(timeout_s=self._wait_s)
            elif self._sink is not None:
                self._sink.flush(self._wait_s)
        finally:
            self._sink = None
            if self._owns_registry:
                close = getattr(self.registry, "close", None)
                if close is not None:
                    close()
                self._owns_registry = False
            self.ledger.save()

    @property
    def _wait_s(self) -> float:
        return self._delivery_timeout_s + 30.0

    # -- schemas

    def _ensure_schema(self, topic: str, model: type[BaseModel]) -> None:
        if (topic, model) in self._schemas_ready:
            return
        try:
            self.serde.schema_id(topic, model)
        except UnknownSchemaError:
            subject, text = subject_for(topic), schema_json(model.__name__)
            if isinstance(self.registry, KafkaSchemaRegistry) and self._owns_registry:
                # The Kafka-topic registry has one writer at a time (a transactional id):
                # open it only for the moment a schema is missing, then let it go.
                assert self.bootstrap is not None
                with KafkaSchemaRegistry(
                    self.bootstrap, topic=self._schemas_topic, writer=True
                ) as writer:
                    writer.register(subject, text)
                # A committed transaction becomes readable (read_committed) once the broker has
                # written its commit marker, a moment after commit returns: wait for it.
                deadline = time.monotonic() + 15.0
                while True:
                    try:
                        self.serde.schema_id(topic, model)
                        break
                    except UnknownSchemaError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
            else:
                self.registry.register(subject, text)
                self.serde.schema_id(topic, model)
        self._schemas_ready.add((topic, model))

    # -- the producer's own checks and the sequence

    def _known(self, slot: Slot) -> LedgerEntry | None:
        """The higher of this run's assignment and the ledger's acknowledged entry."""
        assigned, acknowledged = self._assigned.get(slot), self.ledger.get(*slot)
        if assigned is None or (
            acknowledged is not None and acknowledged.sequence > assigned.sequence
        ):
            return acknowledged
        return assigned

    def _assign(self, slot: Slot, entry: LedgerEntry) -> None:
        known = self._assigned.get(slot)
        if known is None or known.sequence <= entry.sequence:
            self._assigned[slot] = entry

    def _prepare(
        self, item: Item, record: Record, *, floor: int = 0
    ) -> _Prepared | _Skip | list[Violation]:
        """The producer's own checks (what the streams would refuse) and the sequence.

        Returns the record ready to sign, a :class:`_Skip`, or why it is refused.
        """
        if isinstance(record, ProductFootprint | PactFootprint):
            return self._prepare_footprint(item, record)
        if isinstance(record, BillOfMaterials):
            return self._prepare_bom(item, record, floor)
        kind, key, owner = _KINDS[type(record)], record_key(record), self.signer.owner
        slot = (owner, kind, key)
        body = _body_hash(record)
        known = self._known(slot)
        if known is not None and known.hash == body and known.sequence >= floor:
            sequence = known.sequence
        else:
            sequence = next_sequence(known.sequence if known else None, floor=floor)
        entry = LedgerEntry(body, sequence, self.signer.key_id)
        self._assign(slot, entry)
        return _Prepared(item, record, kind, "", key, sequence, slot, ((slot, entry),), item.note)

    def _prepare_footprint(
        self, item: Item, record: ProductFootprint | PactFootprint
    ) -> _Prepared | list[Violation]:
        owner = self.signer.owner
        key = record_key(record)
        # the streams accept a footprint only from a company it names (ingest step 4)
        if owner not in record.company_ids:
            return [
                Violation.of(
                    "companyIds",
                    "key_supplier_mismatch",
                    f"must name the signing supplier '{owner}' (the streams refuse a footprint "
                    "signed by a company it does not list)",
                    list(record.company_ids),
                )
            ]
        try:
            sequence = footprint_sequence(record)
        except ValueError as exc:
            return [Violation.of("created", "sequence_range", str(exc))]
        slot = (owner, "footprint", str(record.id))
        known = self._known(slot)
        if known is not None and known.status == "Deprecated" and record.status == "Active":
            return [
                Violation.of(
                    "status",
                    "superseded",
                    f"footprint {record.id} was deprecated already (sequence {known.sequence}); "
                    "PACT v3 does not make a deprecated footprint Active again: publish a new "
                    "footprint instead",
                    record.status,
                )
            ]
        current = self._known((owner, "product", key))
        above = current.sequence if current is not None and current.sequence > sequence else None
        if above is None:  # later records of this run for the product compare with this one
            self._assign((owner, "product", key), LedgerEntry(str(record.id), sequence))
        return _Prepared(
            item, record, "footprint", "", key, sequence, slot, note=item.note, current=above
        )

    def _prepare_bom(
        self, item: Item, record: BillOfMaterials, floor: int
    ) -> _Prepared | _Skip | list[Violation]:
        owner = self.signer.owner
        note = item.note
        if record.owner is not None and record.owner != owner:
            return [
                Violation.of(
                    "owner",
                    "owner_mismatch",
                    f"must be the manufacturer that signs it ('{owner}')",
                    record.owner,
                )
            ]
        key = record.product_id
        slot = (owner, "bom", key)
        body = _body_hash(record)
        known = self._known(slot)
        if record.revision > 0:
            sequence = record.revision
            revision = self._known((owner, "bom-revision", f"{key}#{sequence}"))
            if revision is not None and revision.hash != body:
                return [
                    Violation.of(
                        "revision",
                        "revision_conflict",
                        f"revision {sequence} of this product's bill of materials was published "
                        "with other content; give the changed BOM a higher revision",
                        sequence,
                    )
                ]
            if known is not None and known.sequence > sequence:
                if revision is not None:
                    return _Skip(
                        f"revision {sequence} was published before; revision {known.sequence} "
                        "followed, so it is not sent again"
                    )
                return [
                    Violation.of(
                        "revision",
                        "stale",
                        f"must be above revision {known.sequence}, which was published for this "
                        "product already (the streams would refuse this one as a replay)",
                        sequence,
                    )
                ]
        elif known is not None and known.hash == body:
            sequence = known.sequence
        else:
            sequence = next_sequence(known.sequence if known else None, floor=floor)
        updates: dict[str, Any] = {}
        if record.owner is None:
            updates["owner"] = owner
        if record.revision != sequence:
            updates["revision"] = sequence
            note = _join(note, f"revision {sequence} assigned")
        if updates:
            record = record.model_copy(update=updates)
        entry = LedgerEntry(body, sequence, self.signer.key_id)
        revision_slot = (owner, "bom-revision", f"{key}#{sequence}")
        self._assign(slot, entry)
        self._assign(revision_slot, entry)
        entries = ((slot, entry), (revision_slot, entry))
        return _Prepared(item, record, "bom", "", key, sequence, slot, entries, note)

    def _after_signing(
        self, prepared: _Prepared, content_hash: str
    ) -> _Prepared | _Skip | list[Violation]:
        """Footprints, once the content hash is known: refuse a changed record under an id and
        sequence already published; skip one that was published before and has been
        followed by a newer one; else say what the ledger remembers on acknowledgement."""
        if prepared.kind != "footprint":
            return prepared
        record = prepared.record
        assert isinstance(record, ProductFootprint | PactFootprint)
        key_id = self.signer.key_id
        known = self._known(prepared.slot)
        same_place = (
            known is not None and known.sequence == prepared.sequence and known.key_id == key_id
        )
        if same_place and known is not None and known.hash != content_hash:
            return [
                Violation.of(
                    "id",
                    "immutable_footprint",
                    "was published before with other content and the same created/status "
                    f"(sequence {prepared.sequence}); PACT v3 footprints are immutable: publish "
                    "the change as a new footprint (new id and created) that supersedes it "
                    "(pcfx publish footprints NEW --supersedes OLD)",
                    str(record.id),
                )
            ]
        if prepared.current is not None:
            if same_place:
                return _Skip(
                    f"published before (sequence {prepared.sequence}); a newer footprint of "
                    f"this product followed (sequence {prepared.current}), so it is not sent again"
                )
            return [
                Violation.of(
                    "created",
                    "stale",
                    f"gives sequence {prepared.sequence}, below the footprint already published "
                    f"for this product (sequence {prepared.current}); the streams would refuse "
                    "it as a replay",
                    record.created.isoformat(),
                )
            ]
        entry = LedgerEntry(content_hash, prepared.sequence, key_id, record.status)
        product = LedgerEntry(str(record.id), prepared.sequence, key_id)
        product_slot = (self.signer.owner, "product", prepared.key)
        self._assign(prepared.slot, entry)
        return prepared.remembering(((prepared.slot, entry), (product_slot, product)))

    # -- signing and encoding

    def _sign(
        self, batch: Sequence[_Prepared]
    ) -> tuple[list[SignedRecord | dict[str, Any]], list[str]]:
        """Sign *batch*: one signature over its Merkle root, or one per record when the
        publisher signs individually (``batch_size=1``) or the batch holds one record.

        A batch holding records of the fast lane (:class:`PactFootprint`) is signed over the
        bytes each record gives (:meth:`PactFootprint.signing_bytes`, the model's
        ``signing_bytes`` for the others), with the same Merkle tree and root statement as
        ``sign_batch``; a fast-lane record comes back as its Avro datum (the v2 envelope)."""
        signer = self.signer
        each = len(batch) == 1 or self.batch_size == 1
        if any(isinstance(p.record, PactFootprint) for p in batch):
            return self._sign_bytes(batch, each=each)
        how = sign_each if each else sign_batch
        result: SignedBatch = how(
            signer.private_key,
            [p.record for p in batch if not isinstance(p.record, PactFootprint)],
            supplier_id=signer.owner,
            key_id=signer.key_id,
            sequences=[p.sequence for p in batch],
        )
        return list(result.records), list(result.content_hashes)

    def _sign_bytes(
        self, batch: Sequence[_Prepared], *, each: bool
    ) -> tuple[list[SignedRecord | dict[str, Any]], list[str]]:
        signer = self.signer
        owner, key_id = signer.owner, signer.key_id
        data = [
            p.record.signing_bytes(supplier_id=owner, key_id=key_id, sequence=p.sequence)
            if isinstance(p.record, PactFootprint)
            else signing_bytes(p.record, supplier_id=owner, key_id=key_id, sequence=p.sequence)
            for p in batch
        ]
        hashes = [hashlib.sha256(d).hexdigest() for d in data]
        signed: list[SignedRecord | dict[str, Any]] = []
        if each:
            for p, body in zip(batch, data, strict=True):
                signature = signer.private_key.sign(body)
                signed.append(self._signed(p, body, signature, None))
            return signed, hashes
        root, paths = audit_paths([hash_leaf(d) for d in data])
        size = len(batch)
        root_signature = signer.private_key.sign(
            batch_root_bytes(root, size, supplier_id=owner, key_id=key_id)
        )
        for index, (p, body, path) in enumerate(zip(batch, data, paths, strict=True)):
            if isinstance(p.record, PactFootprint):  # the datum's proof, without a model
                signed.append(
                    self._datum(
                        p,
                        body,
                        b"",
                        {
                            "rootSignature": root_signature,
                            "leafIndex": index,
                            "treeSize": size,
                            "auditPath": tuple(path),
                        },
                    )
                )
                continue
            proof = BatchProof(
                root_signature=root_signature,
                leaf_index=index,
                tree_size=size,
                audit_path=tuple(path),
            )
            signed.append(self._signed(p, body, b"", proof))
        return signed, hashes

    def _signed(
        self, prepared: _Prepared, body: bytes, signature: bytes, proof: BatchProof | None
    ) -> SignedRecord | dict[str, Any]:
        """The v2 ``SignedFootprint`` Avro datum of a fast-lane record; a model record is
        wrapped as ``sign``/``sign_batch`` wrap it."""
        signer = self.signer
        if isinstance(prepared.record, PactFootprint):
            return self._datum(
                prepared,
                body,
                signature,
                None
                if proof is None
                else {
                    "rootSignature": proof.root_signature,
                    "leafIndex": proof.leaf_index,
                    "treeSize": proof.tree_size,
                    "auditPath": proof.audit_path,
                },
            )
        return _wrap(
            prepared.record, body, signer.owner, signer.key_id, prepared.sequence, signature, proof
        )

    def _datum(
        self,
        prepared: _Prepared,
        body: bytes,
        signature: bytes,
        proof: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The v2 ``SignedFootprint`` Avro datum of a fast-lane record (*proof*: the
        ``batchProof`` datum, as ``to_avro_dict`` of a :class:`BatchProof` gives it)."""
        return {
            "supplierId": self.signer.owner,
            "keyId": self.signer.key_id,
            "sequence": prepared.sequence,
            "payloadType": PAYLOAD_FOOTPRINT,
            "signature": signature,
            "batchProof": proof,
            "footprint": None,
            "signedBody": body,
        }

    # -- outcomes

    def _remember(self, prepared: _Prepared) -> None:
        """The broker acknowledged *prepared*: the ledger keeps its entries."""
        for slot, entry in prepared.entries:
            self.ledger.record(*slot, entry)

    def _skipped(self, item: Item, skip: _Skip) -> RecordOutcome:
        record = item.record
        assert record is not None
        return RecordOutcome(
            item.ref,
            Status.SKIPPED,
            _KINDS[type(record)],
            item.file,
            item.index,
            item.line,
            record_id=_record_id(record),
            key=record_key(record),
            topic=self.topics.for_record(record),
            warnings=item.warnings,
            note=_join(item.note, skip.note),
        )

    @staticmethod
    def _rejected(item: Item, violations: Sequence[Violation], kind: str = "") -> RecordOutcome:
        record = item.record
        return RecordOutcome(
            item.ref,
            Status.REJECTED,
            kind or (_KINDS.get(type(record), "") if record is not None else ""),
            item.file,
            item.index,
            item.line,
            record_id=_record_id(record) if record is not None else None,
            error_code=violations[0].code if violations else "rejected",
            message="; ".join(str(v) for v in violations),
            violations=tuple(violations),
            warnings=item.warnings,
            note=item.note,
        )

    def _base(
        self,
        prepared: _Prepared,
        status: Status,
        digest: str | None,
        partition: int | None = None,
        offset: int | None = None,
        error: str | None = None,
    ) -> RecordOutcome:
        """*prepared*'s outcome; *partition*/*offset*: where the broker put it; *error*: why the
        broker did not acknowledge it."""
        item = prepared.item
        error_code = message = None
        if error is not None:
            error_code = "not_acknowledged"
            message = f"the broker did not acknowledge it: {error}"
        return RecordOutcome(
            item.ref,
            status,
            prepared.kind,
            item.file,
            item.index,
            item.line,
            record_id=_record_id(prepared.record),
            key=prepared.key,
            sequence=prepared.sequence,
            topic=prepared.topic,
            partition=partition,
            offset=offset,
            content_hash=digest,
            error_code=error_code,
            message=message,
            warnings=item.warnings,
            note=prepared.note,
        )

    # -- publishing

    def publish_many(
        self,
        records: Iterable[Record | Item | LoadedRecord[Any]],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> PublishSummary:
        """Publish every record; return one outcome per input, in input order.

        Accepts records, :class:`Item`\\ s or ``contracts`` :class:`LoadedRecord`\\ s (whose
        refused records are reported as rejected). Returns when every sent record was
        acknowledged or given up on (``delivery_timeout_s``). *progress* is called with 1 for
        each record that reached its final outcome (from the delivery thread too).

        Unless the publisher was made with ``pause_gc=False``, Python's cyclic garbage collector
        is paused while this runs: validating and encoding allocate many short-lived, acyclic
        objects (reference counting frees them), and the collector's passes over them cost a
        quarter of the time on large files.
        """
        # (a sink of its own: nobody else waits for its reports between two batches)
        inline = self._sink.inline() if self._owns_sink and self._sink else contextlib.nullcontext()
        with collector_paused(self._pause_gc), inline:
            return self._publish_many(records, progress)

    def _publish_many(
        self,
        records: Iterable[Record | Item | LoadedRecord[Any]],
        progress: Callable[[int], None] | None,
    ) -> PublishSummary:
        outcomes: list[RecordOutcome | None] = []
        unreadable: list[str] = []
        in_flight = _InFlight()
        batch: list[tuple[int, _Prepared]] = []
        tick = progress or (lambda _n: None)

        prepared_by_position: dict[int, _Prepared] = {}
        """Records handed on and not settled yet (settling lets go of them: large files)."""

        def settle(index: int, outcome: RecordOutcome) -> None:
            outcomes[index] = outcome
            prepared_by_position.pop(index, None)
            tick(1)

        for position, raw in enumerate(records):
            item = _as_item(raw, position)
            outcomes.append(None)
            if item.record is None:
                if item.unreadable and item.file is not None:
                    unreadable.append(item.file)
                error = item.error
                violations = (
                    error.violations if error else (Violation("", "rejected", "no record"),)
                )
                settle(position, self._rejected(item, violations))
                continue
            record = item.record
            if item.pcr is None:
                gated = pcr_gate(item, strict=self.strict_pcr)  # product category rules
            else:  # a checking process ran the gate (producers._parallel)
                gated = list(item.pcr) if item.pcr else item
            if isinstance(gated, list):
                settle(position, self._rejected(item, gated))
                continue
            item = gated
            prepared = self._prepare(item, record)
            if isinstance(prepared, list):
                settle(position, self._rejected(item, prepared))
                continue
            if isinstance(prepared, _Skip):
                settle(position, self._skipped(item, prepared))
                continue
            prepared = prepared.to_topic(self.topics.for_record(prepared.record))
            batch.append((position, prepared))
            prepared_by_position[position] = prepared
            if len(batch) >= self.batch_size:
                self._send_batch(batch, settle, in_flight)
                batch = []
                if self._sink is not None:
                    self._sink.serve()  # the reports that arrived meanwhile (see KafkaSink.inline)
        if batch:
            self._send_batch(batch, settle, in_flight)
        if self._sink is not None:
            self._sink.flush(self._wait_s)
            in_flight.wait(self._wait_s)
        final: list[RecordOutcome] = []
        for position, settled in enumerate(outcomes):
            if settled is None:  # no delivery report in time: not acknowledged
                settled = replace(  # noqa: PLW2901
                    self._base(prepared_by_position[position], Status.FAILED, None),
                    error_code="not_acknowledged",
                    message=f"no delivery report within {self._wait_s:.0f} s",
                )
            final.append(settled)
        self.ledger.save()
        return PublishSummary(tuple(final), self.dry_run, tuple(dict.fromkeys(unreadable)))

    def _send_batch(
        self,
        batch: Sequence[tuple[int, _Prepared]],
        settle: Callable[[int, RecordOutcome], None],
        in_flight: _InFlight,
    ) -> None:
        prepared = [item for _, item in batch]
        for one in prepared:  # registry problems concern the run, not a record: they raise
            self._ensure_schema(one.topic, _signed_type(one.record))
        signed, hashes = self._sign(prepared)
        for (position, before), record, digest in zip(batch, signed, hashes, strict=True):
            p = self._after_signing(before, digest)
            if isinstance(p, list):
                settle(position, self._rejected(before.item, p, before.kind))
                continue
            if isinstance(p, _Skip):
                settle(position, replace(self._skipped(before.item, p), sequence=before.sequence))
                continue
            try:
                value = self._encode(p.topic, record)
            except SerdeError as exc:
                settle(position, self._rejected(p.item, [Violation("", exc.code, exc.message)]))
                continue
            if self._sink is None:  # dry run
                settle(position, self._base(p, Status.VALID, digest))
                continue
            in_flight.add()
            delivered = functools.partial(self._delivered, position, p, digest, settle, in_flight)
            error = self._sink.produce(p.topic, p.key.encode("utf-8"), value, delivered)
            if error is not None:
                delivered(error, None)

    def _encode(self, topic: str, signed: SignedRecord | dict[str, Any]) -> bytes:
        """Framed Avro bytes of a signed record (a fast-lane record's datum: see :meth:`_sign`)."""
        if isinstance(signed, dict):
            return self._wire.encode_datum(topic, SignedFootprint, signed)
        return self._wire.encode(topic, signed)

    def _delivered(
        self,
        position: int,
        prepared: _Prepared,
        digest: str,
        settle: Callable[[int, RecordOutcome], None],
        in_flight: _InFlight,
        err: Any,
        msg: Any,
    ) -> None:
        """The broker's answer for *prepared* (librdkafka's ``on_delivery(err, msg)``; *err* a
        ``KafkaError``, or the text of why it was not even queued)."""
        try:
            if err is None:
                self._remember(prepared)
                outcome = self._base(prepared, Status.SENT, digest, msg.partition(), msg.offset())
            else:
                error = err if isinstance(err, str) else err.str()
                outcome = self._base(prepared, Status.FAILED, digest, error=error)
            settle(position, outcome)
        finally:
            in_flight.finish()

    # -- one record at a time

    def submit(self, record: Record) -> Future[DeliveryReport]:
        """Sign (individually), encode and send *record*; the future resolves with the broker's
        answer. Raises :class:`~contracts.ValidationFailed` if the producer refuses it.

        ``await asyncio.wrap_future(publisher.submit(fp))`` from asyncio code.
        """
        item = Item.of(record, f"{_KINDS[type(record)]} {_record_id(record)}")
        first = self._prepare(item, record)
        if isinstance(first, list):
            raise ValidationFailed(first, subject=item.ref)
        future: Future[DeliveryReport] = Future()
        topic = self.topics.for_record(record)
        if isinstance(first, _Skip):
            future.set_result(DeliveryReport(item.ref, topic, None, None, None))
            return future
        first = replace(first, topic=topic)
        self._ensure_schema(topic, _signed_type(first.record))
        (signed,), (digest,) = self._sign([first])
        prepared = self._after_signing(first, digest)
        if isinstance(prepared, list):
            raise ValidationFailed(prepared, subject=item.ref)
        if isinstance(prepared, _Skip):
            future.set_result(DeliveryReport(item.ref, topic, None, None, None))
            return future
        value = self._encode(topic, signed)
        if self._sink is None:
            future.set_result(DeliveryReport(item.ref, topic, None, None, None))
            return future

        def on_report(report: DeliveryReport) -> None:
            if report.ok:
                self._remember(prepared)
            future.set_result(report)

        self._sink.submit(Outgoing(topic, prepared.key.encode("utf-8"), value, item.ref), on_report)
        return future

    def publish(self, record: Record, *, timeout_s: float | None = None) -> DeliveryReport:
        """Publish one record and wait for the broker's answer (``report.ok``: acknowledged)."""
        return self.submit(record).result(timeout=timeout_s or self._wait_s)

    def publish_update(self, old: ProductFootprint, new: ProductFootprint) -> PublishSummary:
        """Publish *new* as the PACT v3 successor of *old*: *old* again as ``Deprecated``, then
        *new* with *old*'s id in ``precedingPfIds`` (see :mod:`producers._lifecycle`)."""
        items = supersede([Item.of(old, f"old {old.id}")], [Item.of(new, f"new {new.id}")])
        return self.publish_many(items)

    def deprecate(self, footprint: ProductFootprint) -> PublishSummary:
        """Publish *footprint* as ``Deprecated`` (no successor)."""
        from pcf_exchange.producers._lifecycle import deprecated

        return self.publish_many([Item.of(deprecated(footprint), f"footprint {footprint.id}")])

    def publish_key(self, key: SupplierKey, *, after_sequence: int = -1) -> PublishSummary:
        """Publish a supplier-key record (operator role) with a sequence above *after_sequence*."""
        item = Item.of(key, f"key {key.supplier_id}/{key.key_id}")
        prepared = self._prepare(item, key, floor=after_sequence + 1)
        if isinstance(prepared, list):
            return PublishSummary((self._rejected(item, prepared),), self.dry_run)
        assert isinstance(prepared, _Prepared)  # key records are never skipped
        return self._publish_prepared(item, prepared)

    def _publish_prepared(self, item: Item, prepared: _Prepared) -> PublishSummary:
        outcomes: list[RecordOutcome | None] = [None]
        in_flight = _InFlight()

        def settle(index: int, outcome: RecordOutcome) -> None:
            outcomes[index] = outcome

        prepared = replace(prepared, topic=self.topics.for_record(prepared.record))
        self._send_batch([(0, prepared)], settle, in_flight)
        if self._sink is not None:
            self._sink.flush(self._wait_s)
            in_flight.wait(self._wait_s)
        self.ledger.save()
        outcome = outcomes[0] or RecordOutcome(
            item.ref, Status.FAILED, error_code="not_acknowledged", message="no delivery report"
        )
        return PublishSummary((outcome,), self.dry_run)


def _signed_type(record: Record) -> type[BaseModel]:
    from pcf_exchange.contracts import TOPICS

    by_payload = {
        ProductFootprint: TOPICS["pcf.declared"],
        PactFootprint: TOPICS["pcf.declared"],
        BillOfMaterials: TOPICS["pcf.bom"],
        EmissionFactor: TOPICS["pcf.factors"],
        SupplierKey: TOPICS["pcf.keys"],
    }
    return by_payload[type(record)]


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def _as_item(raw: Record | Item | LoadedRecord[Any], position: int) -> Item:
    if isinstance(raw, Item):
        return raw
    if isinstance(raw, LoadedRecord):
        return Item.from_loaded(raw)
    return Item.of(raw, f"{_KINDS[type(raw)]} {_record_id(raw)} (#{position})")


def wait_all(futures: Iterable[Future[DeliveryReport]], timeout_s: float) -> list[DeliveryReport]:
    """Results of *futures* in order, each waited for at most until *timeout_s* from now."""
    deadline = time.monotonic() + timeout_s
    return [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]
