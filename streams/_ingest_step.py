"""The ingest step: a batch of data-topic records checked, and what the roll-up gets of them.

For each batch of ``pcf.declared``, ``pcf.factors`` or ``pcf.bom`` records an ingest agent
(:mod:`streams.runtime`) calls :func:`check_batch`: every record is checked
(:func:`~streams.ingest.check_record`: decode, signature, key, owner, sequence) against the key
registry as it is now and the sequence ledger, and comes out ``checked`` (``ACCEPTED`` or
``DUPLICATE``: the ledger is written before the record is forwarded, so a redelivered one is
forwarded again), ``superseded`` (older than the subject's record in force: counted and logged,
neither forwarded nor rejected), ``rejected`` (the DLQ) or ``parked`` (signed with a key not
registered yet; see "No stalls" in :mod:`streams.runtime`). :func:`forward` turns the checked
ones into the roll-up's messages (only each subject's last, :func:`latest`). :func:`settle` is
the same for parked records whose key came into force, or whose deadline passed.

**Product category rules** (:mod:`contracts.pcr`). A record that passed the trust checks is
then screened against the rule pack of the category it names (:func:`pcr_screen`): a broken rule
(unit dimension, mandatory stage, required figure, data quality, boundary) sends it to the DLQ
like any contract violation (``pcr``); a figure far outside the category's plausible range holds
it for review (:class:`Hold`, written to ``pcf.review`` by the worker: neither accepted nor
dropped). A compliance officer's signed release (:mod:`contracts.pcr._review`) brings the record
back through :func:`screen` with the range waived; a signed rejection sends it to the DLQ
(``pcr_review_rejected``, naming the officer). The screen runs on ``DUPLICATE`` records too, so a
redelivered held record is held again, not forwarded.

The ledger's rows live in a faust table (:class:`TableLedger`), written once per subject per
batch, before the batch's messages are forwarded.

**Redelivery is not replay.** A worker killed mid-stream has written its ledger rows for
batches whose offsets it never committed; its successor reads those records again, and each is
now at or below its subject's stored sequence. The redelivered batch is checked like any other:
the record at the stored sequence is a ``DUPLICATE`` (forwarded again, so whatever the dead
worker did not send is sent), the older ones are ``SUPERSEDED`` (the newer record in force
already says what they said later; see step 6 of :mod:`streams.ingest`). None of them reaches
the DLQ: only a signature or key problem, or a sequence reused for other content, does.

**The broker's clock.** Key validity is judged at the time the broker appended a record
(:func:`appended_at`); a record whose timestamp the producer chose is judged at the time it is
read instead, and the topic is logged once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pcf_exchange.contracts import (
    AvroSerde,
    CheckedFootprint,
    SignedBillOfMaterials,
    SignedEmissionFactor,
    SignedFootprint,
)
from pcf_exchange.contracts.errors import PcfError, PcrReviewRejected, TrustError, Violation
from pcf_exchange.contracts.kafka_client import aiokafka_kwargs
from pcf_exchange.contracts.pcr import (
    DecisionState,
    PcrCheck,
    PcrOutcome,
    ReviewEvent,
    check_bom,
    check_decision,
    check_footprint,
    check_footprint_model,
    held_id,
)
from pcf_exchange.streams import codec
from pcf_exchange.streams._faust import in_partition
from pcf_exchange.streams._packs import Keyed, keyed
from pcf_exchange.streams._schemas import Schemas
from pcf_exchange.streams.adapt import core_bom, core_factor, core_footprint, core_footprint_pact
from pcf_exchange.streams.ingest import (
    Ingested,
    IngestOutcome,
    KeyRegistry,
    ParkingLot,
    SequenceLedger,
    SourceRef,
    check_record,
)
from pcf_exchange.streams.rollup import BomDeclared, FactorPublished, FootprintDeclared

__all__ = [
    "LOG_APPEND_TIME",
    "Forwarded",
    "Held",
    "Hold",
    "IngestBatch",
    "Keys",
    "Settled",
    "TableLedger",
    "act_on_decision",
    "appended_at",
    "check_batch",
    "forward",
    "held_event",
    "latest",
    "pcr_screen",
    "screen",
    "settle",
    "source_of",
]

log = logging.getLogger("pcfx.streams")
E = TypeVar("E")

LOG_APPEND_TIME = 1
"""Kafka's timestamp type of a record whose timestamp the broker set when it appended it."""
_UNTRUSTED_CLOCKS: set[str] = set()
"""Topics on which a record with a producer-chosen timestamp was met (logged once each)."""


def _now() -> datetime:
    return datetime.now(UTC)


def appended_at(
    topic: str, timestamp_s: float | None, timestamp_type: int | None
) -> tuple[datetime, bool]:
    """When the broker appended a record, and whether that is the broker's time: its timestamp
    if the broker set it (LogAppendTime).

    A timestamp the producer chose (CreateTime: the topic was not created by
    :func:`streams.runtime.ensure_topics`, or altered since) is never trusted: the record is
    judged at the time this worker reads it, which can only be later than its append (a record
    signed after a revocation cannot be passed off as older), and the topic is logged once.
    """
    if timestamp_type == LOG_APPEND_TIME and timestamp_s:
        return datetime.fromtimestamp(timestamp_s, UTC), True
    if topic not in _UNTRUSTED_CLOCKS:
        _UNTRUSTED_CLOCKS.add(topic)
        log.warning(
            "%s carries producer-chosen timestamps (not LogAppendTime): key validity is judged"
            " at the time records are read instead; alter the topic with"
            " message.timestamp.type=LogAppendTime",
            topic,
        )
    return _now(), False


def source_of(event: Any, topic: str) -> SourceRef:
    """Where a faust *event* of *topic* came from, and when the broker appended it."""
    msg = event.message
    at, broker_time = appended_at(topic, msg.timestamp, getattr(msg, "timestamp_type", None))
    return SourceRef(topic, msg.partition, msg.offset, at, msg.key, broker_time)


class Keys:
    """The key registry every worker keeps, fed by a reader of the whole ``pcf.keys`` topic."""

    def __init__(
        self,
        topic: str,
        bootstrap: str,
        operator_keys: dict[str, Ed25519PublicKey],
        serde: AvroSerde,
        schemas: Schemas,
    ) -> None:
        self.topic = topic
        self.bootstrap = bootstrap
        self.serde = serde
        self.schemas = schemas
        self.registry = KeyRegistry(operator_keys=dict(operator_keys))
        self.ready = asyncio.Event()
        self.updated = asyncio.Event()
        """Set when a registration comes into force (parked records may be released)."""

    async def follow(self) -> None:
        """Read ``pcf.keys`` from the start, forever; ``ready`` once caught up with the end."""
        consumer = AIOKafkaConsumer(
            self.topic,
            **aiokafka_kwargs(),
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            partitions = consumer.assignment()
            while not partitions:
                await asyncio.sleep(0.1)
                partitions = consumer.assignment()
            end = await consumer.end_offsets(list(partitions))
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    for rec in records:
                        at, broker_time = appended_at(
                            tp.topic, rec.timestamp / 1000, rec.timestamp_type
                        )
                        source = SourceRef(
                            tp.topic, tp.partition, rec.offset, at, rec.key, broker_time
                        )
                        await self.schemas.resolve(rec.value)
                        result = self.registry.apply(rec.value, source, self.serde)
                        if result.outcome is IngestOutcome.ACCEPTED:
                            self.updated.set()
                if not self.ready.is_set():
                    positions = {tp: await consumer.position(tp) for tp in partitions}
                    if all(positions[tp] >= end[tp] for tp in partitions):
                        self.ready.set()
        finally:
            await consumer.stop()

    def check(
        self, data: bytes, source: SourceRef, ledger: SequenceLedger, record_type: type[Any]
    ) -> Ingested:
        """:func:`~streams.ingest.check_record` against the registry as it is now (the caller
        awaits :attr:`ready` and the record's schema first); never waits for a key: a
        ``PENDING_KEY`` record is the caller's to park."""
        return check_record(
            data,
            source,
            serde=self.serde,
            keys=self.registry,
            ledger=ledger,
            record_type=record_type,
        )


class TableLedger(MutableMapping[str, tuple[int, str]]):
    """The ingestion ledger's memory in a faust table (changelog-backed, per partition).

    Writes are held until :meth:`flush`, which the ingest agents call once per batch, before
    they forward it: a subject updated many times in a batch costs one changelog record, and
    what the batch forwards is still sent after its ledger rows (faust flushes both before it
    commits the batch's offsets). A row goes to the changelog partition of the record that
    wrote it last (:meth:`at`, called before each record is checked)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.held: dict[str, tuple[tuple[int, str], tuple[str, int]]] = {}
        """Written since the last flush: the value and the (topic, partition) it goes to."""
        self.partition: tuple[str, int] = ("", 0)

    def at(self, topic: str, partition: int) -> None:
        """The next writes are for a record of *partition* of *topic*."""
        self.partition = (topic, partition)

    def __getitem__(self, subject: str) -> tuple[int, str]:
        held = self.held.get(subject)
        if held is not None:
            return held[0]
        sequence, digest = codec.decode(tuple[int, str], self.table[subject.encode()])
        return sequence, digest

    def __setitem__(self, subject: str, value: tuple[int, str]) -> None:
        self.held[subject] = (value, self.partition)

    def __delitem__(self, subject: str) -> None:
        held = self.held.pop(subject, None)
        if held is None or subject.encode() in self.table:
            del self.table[subject.encode()]

    def __iter__(self) -> Iterator[str]:
        stored = (k.decode() for k in self.table if k.decode() not in self.held)
        return iter([*self.held, *stored])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> None:
        """Write the held rows to the table (a changelog record each, on its partition)."""
        for subject, (value, (topic, partition)) in self.held.items():
            in_partition(topic, partition)
            self.table[subject.encode()] = codec.encode(value)
        self.held.clear()


@dataclass(frozen=True, slots=True)
class Hold:
    """A trusted record held for review: its figure is far outside its category's plausible
    range (``check.outcome`` is ``OUT_OF_RANGE``); the worker writes it to ``pcf.review``."""

    result: Ingested
    original: bytes
    check: PcrCheck


def pcr_screen(result: Ingested, *, waive_range: bool = False) -> PcrCheck:
    """The product-category-rule check of a trusted record (:mod:`contracts.pcr`): a footprint
    by its PACT JSON (the fast path's checked JSON, or the model's), a BOM by its declared unit;
    factors name no category. *waive_range*: a compliance officer released the record."""
    record = result.record
    if isinstance(record, CheckedFootprint):
        return check_footprint(record.payload, waive_range=waive_range)
    if isinstance(record, SignedFootprint):
        return check_footprint_model(record.footprint, waive_range=waive_range)
    if isinstance(record, SignedBillOfMaterials):
        return check_bom(record.bom.model_dump(by_alias=True, mode="json", exclude_none=True))
    return PcrCheck(PcrOutcome.NOT_APPLICABLE, note="the record names no product category")


@dataclass(frozen=True)
class Screened:
    """Where :func:`screen` (or :func:`act_on_decision`) sends one record: exactly one of
    the four."""

    checked: Ingested | None = None
    rejected: Ingested | None = None
    hold: Hold | None = None
    superseded: Ingested | None = None
    """A released record whose subject moved on meanwhile: nothing to forward (no rule ran)."""


def screen(
    result: Ingested,
    original: bytes,
    check: Callable[[Ingested], PcrCheck] = pcr_screen,
) -> Screened:
    """Screen a trusted (``ACCEPTED``/``DUPLICATE``) record against its rule pack: passed, to
    the DLQ (a broken rule: :class:`~contracts.errors.PcrViolation`), or held for review."""
    verdict = check(result)
    subject = result.subject or "record"
    if verdict.outcome is PcrOutcome.VIOLATED:
        error = verdict.error(subject)
        rejected = Ingested(
            IngestOutcome.REJECTED,
            result.source,
            record=result.record,
            subject=result.subject,
            content_hash=result.content_hash,
            error=error,
        )
        return Screened(rejected=rejected)
    if verdict.outcome is PcrOutcome.OUT_OF_RANGE:
        held = Ingested(
            result.outcome,
            result.source,
            record=result.record,
            subject=result.subject,
            content_hash=result.content_hash,
            error=verdict.error(subject),
        )
        return Screened(hold=Hold(held, original, verdict))
    return Screened(checked=result)


def held_event(hold: Hold, now: datetime) -> ReviewEvent:
    """The ``held`` event a :class:`Hold` is written to ``pcf.review`` as."""
    source, finding = hold.result.source, hold.check.findings[0]
    return ReviewEvent(
        event="held",
        held_id=held_id(source.topic, source.partition, source.offset),
        at=now,
        subject=hold.result.subject,
        source_topic=source.topic,
        source_partition=source.partition,
        source_offset=source.offset,
        source_appended_at=source.appended_at,
        content_hash=hold.result.content_hash,
        pack=finding.pack,
        rule=finding.rule,
        field_path=finding.path,
        reason=f"must be {finding.expected} (got {finding.got})",
        original=hold.original,
    )


def act_on_decision(
    event: ReviewEvent,
    decision_source: SourceRef,
    registry: KeyRegistry,
    check: Callable[[bytes, SourceRef], Ingested],
) -> Screened:
    """What a compliance officer's ``decided`` event (on ``pcf.review.decisions``, appended as
    *decision_source* says) does, in order:

    1. the decision must be an officer's, signed and usable when appended
       (:func:`~contracts.pcr.check_decision`), else the decision itself goes to the DLQ;
    2. the held record re-enters ingestion: *check* (the data topic's trust checks, on the
       record's own coordinates and append time) must pass it again, and to the content hash
       the officer signed (``decision_mismatch`` otherwise); a record whose subject has a newer
       record in force by now is ``SUPERSEDED``: the decision has nothing left to act on;
    3. rejected: the record goes to the DLQ (:class:`~contracts.errors.PcrReviewRejected`,
       naming the officer, the key, the time and the reason);
    4. released: screened again with the range waived (every other rule still holds), and
       forwarded like any trusted record.
    """
    problem = check_decision(event, registry.keyring, decision_source.appended_at)  # (1)
    if problem is not None:
        return Screened(rejected=Ingested(IngestOutcome.REJECTED, decision_source, error=problem))
    assert event.decision is not None
    source = SourceRef(
        event.source_topic,
        event.source_partition,
        event.source_offset,
        event.source_appended_at,
        event.subject.encode(),
        True,
    )
    result = check(event.original, source)  # (2)
    if result.outcome is IngestOutcome.REJECTED:
        return Screened(rejected=result)
    if result.outcome is IngestOutcome.SUPERSEDED:  # a newer record of its subject came since
        return Screened(superseded=result)
    if result.outcome is IngestOutcome.PENDING_KEY or result.content_hash != event.content_hash:
        error = TrustError(
            f"the decision on {event.held_id} names content {event.content_hash}, but the record"
            f" it carries re-checks to {result.content_hash or 'no trusted content'}",
            reason="decision_mismatch",
        )
        return Screened(rejected=Ingested(IngestOutcome.REJECTED, source, error=error))
    d = event.decision
    if d.state is DecisionState.REJECTED:  # (3)
        rejected = PcrReviewRejected(
            [
                Violation.of(
                    event.field_path,
                    "pcr.review_rejected",
                    f"rejected by compliance officer {d.signer_id} (key {d.key_id}) at"
                    f" {event.at.isoformat()}: {event.reason}; held for rule {event.rule} of"
                    f" pack {event.pack}",
                )
            ],
            subject=event.subject,
        )
        return Screened(rejected=Ingested(IngestOutcome.REJECTED, source, error=rejected))
    return screen(result, event.original, lambda r: pcr_screen(r, waive_range=True))  # (4)


@dataclass(frozen=True)
class IngestBatch(Generic[E]):
    """A batch of records checked (:func:`check_batch`), each with the item it came as."""

    checked: list[Ingested] = field(default_factory=list)
    """``ACCEPTED`` and ``DUPLICATE``, in order: for the roll-up (:func:`forward`)."""
    rejected: list[tuple[Ingested, bytes]] = field(default_factory=list)
    """For the DLQ, with the record's bytes."""
    parked: list[tuple[E, Ingested]] = field(default_factory=list)
    """``PENDING_KEY``: signed with a key not registered yet, for the caller to park."""
    held: list[Hold] = field(default_factory=list)
    """Trusted, but a figure far outside its category's range: for ``pcf.review``."""
    superseded: list[Ingested] = field(default_factory=list)
    """Trusted, but older than their subject's record in force (redelivered after a restart,
    or late): neither forwarded nor rejected; counted and logged (:func:`check_batch`)."""


def _sort(batch: IngestBatch[E] | Settled, result: Ingested, data: bytes, name: str = "") -> None:
    """Put a trusted record where :func:`screen` sends it."""
    screened = screen(result, data)
    if screened.rejected is not None:
        batch.rejected.append((screened.rejected, data))
    elif screened.hold is not None:
        batch.held.append(screened.hold)
    elif isinstance(batch, Settled):
        batch.checked.setdefault(name, []).append(result)
    else:
        batch.checked.append(result)


def check_batch(
    records: Sequence[tuple[E, SourceRef, bytes]],
    check: Callable[[bytes, SourceRef], Ingested],
    rows: TableLedger,
) -> IngestBatch[E]:
    """Check *records* ((item, source, bytes), in order) with *check* (:meth:`Keys.check`
    bound to the ledger over *rows*), then screen the trusted ones against their rule packs
    (:func:`screen`); each ledger row goes to its record's partition."""
    batch: IngestBatch[E] = IngestBatch()
    duplicates = 0
    for item, source, data in records:
        rows.at(source.topic, source.partition)
        result = check(data, source)
        outcome = result.outcome
        if outcome is IngestOutcome.PENDING_KEY:
            batch.parked.append((item, result))
        elif outcome is IngestOutcome.REJECTED:
            batch.rejected.append((result, data))
        elif outcome is IngestOutcome.SUPERSEDED:
            batch.superseded.append(result)
        else:
            duplicates += outcome is IngestOutcome.DUPLICATE
            _sort(batch, result, data)
    if batch.superseded or duplicates:
        first = records[0][1]
        log.info(
            "%s[%d]: %d redelivered duplicate(s) forwarded again, %d superseded record(s) (older"
            " than their subject's record in force) skipped, from offset %d: a redelivery,"
            " not a replay",
            first.topic,
            first.partition,
            duplicates,
            len(batch.superseded),
            first.offset,
        )
    return batch


def latest(checked: list[Ingested]) -> list[Ingested]:
    """The last of each subject's checked records, in the order of those last ones.

    An earlier one is superseded: the ledger took it only with a lower sequence (or it is a
    redelivered duplicate of the same one), and the roll-up would recompute with it only to
    replace it in the same batch. (Not for BOMs: a BOM the core refuses leaves the previous
    one in force, so each one of a batch is forwarded.)"""
    last = {result.subject: i for i, result in enumerate(checked)}
    return [result for i, result in enumerate(checked) if last[result.subject] == i]


def _footprint_declared(result: Ingested) -> FootprintDeclared:
    """The roll-up message for a checked ``pcf.declared`` record."""
    signed = result.record
    if isinstance(signed, CheckedFootprint):  # the fast path (v2): its checked PACT JSON
        return FootprintDeclared(
            core_footprint_pact(
                signed.payload,
                sequence=signed.sequence,
                content_hash=result.content_hash,
                supplier=signed.supplier_id,
            )
        )
    assert isinstance(signed, SignedFootprint)
    footprint = signed.footprint
    fp = core_footprint(
        footprint,
        sequence=signed.sequence,
        content_hash=result.content_hash,
        supplier=signed.supplier_id,
    )
    return FootprintDeclared(fp)


def _factor_published(result: Ingested) -> FactorPublished:
    """The roll-up message for a checked ``pcf.factors`` record."""
    signed = result.record
    assert isinstance(signed, SignedEmissionFactor)
    factor = core_factor(
        signed.factor,
        sequence=signed.sequence,
        content_hash=result.content_hash,
        publisher=signed.supplier_id,
    )
    return FactorPublished(factor)


@dataclass(frozen=True)
class Forwarded:
    """What checked records become (:func:`forward`): messages for the roll-up, each group sent
    as its own packs with its headers, and records the core cannot take (the DLQ)."""

    sends: list[tuple[Keyed, list[tuple[str, bytes]] | None]] = field(default_factory=list)
    rejected: list[Ingested] = field(default_factory=list)


def forward(name: str, checked: list[Ingested]) -> Forwarded:
    """The roll-up messages for checked records (``ACCEPTED``/``DUPLICATE``) of data topic
    *name*."""
    out = Forwarded()
    if not checked:
        return out
    if name == "pcf.declared":
        out.sends.append((keyed(_footprint_declared(result) for result in latest(checked)), None))
    elif name == "pcf.factors":
        out.sends.append((keyed(_factor_published(result) for result in latest(checked)), None))
    else:
        for result in checked:
            assert isinstance(result.record, SignedBillOfMaterials)
            try:
                bom = core_bom(result.record.bom)
            except PcfError as exc:
                out.rejected.append(Ingested(IngestOutcome.REJECTED, result.source, error=exc))
                continue
            # a pack of its own: the BOM's metadata travels with it in a header, so its node
            # keeps it in its row
            document = result.record.bom.model_dump_json(by_alias=True).encode()
            out.sends.append((keyed([BomDeclared(bom)]), [("bom", document)]))
    return out


@dataclass(frozen=True, slots=True)
class Held:
    """A parked record as the worker holds it: the event (unacknowledged) and its stream."""

    name: str
    """The data topic, without the deployment prefix."""
    stream: Any
    event: Any
    source: SourceRef


@dataclass(frozen=True)
class Settled:
    """What :func:`settle` resolved: checked records per data topic (to forward), rejections,
    and the held records that are done (to acknowledge once the rest is sent)."""

    checked: dict[str, list[Ingested]] = field(default_factory=dict)
    rejected: list[tuple[Ingested, bytes]] = field(default_factory=list)
    resolved: list[Held] = field(default_factory=list)
    held: list[Hold] = field(default_factory=list)
    """Trusted once their key came, but held for review (:func:`screen`)."""


def settle(
    parking: ParkingLot[Held],
    registry: KeyRegistry,
    check: Callable[[Held], Ingested],
    rows: TableLedger,
    now: datetime,
    grace_s: float,
) -> Settled:
    """Release the parked records whose key came into force (checked again with *check*, in
    arrival order; a ``SUPERSEDED`` one is only resolved), and send those past their deadline
    to the DLQ (``unknown_key``)."""
    out = Settled()
    known = [s for s in parking.signers if registry.lookup(*s) is not None]
    for entry in parking.waiting_for(known) if known else []:
        held = entry.item
        rows.at(held.source.topic, held.source.partition)
        result = check(held)
        if result.outcome is IngestOutcome.REJECTED:
            out.rejected.append((result, held.event.value or b""))
        elif result.outcome is IngestOutcome.SUPERSEDED:  # counted by the ledger; done
            pass
        elif result.outcome is IngestOutcome.PENDING_KEY:  # (registered: not expected)
            assert result.signer is not None
            parking.park(result.signer, held.source.appended_at, held)
            continue
        else:
            _sort(out, result, held.event.value or b"", held.name)
        out.resolved.append(held)
    for entry in parking.expired(now):
        held = entry.item
        error = TrustError(
            f"key {entry.signer[1]!r} is not registered for {entry.signer[0]!r}: the"
            f" record waited for it until {entry.deadline.isoformat()} (appended at"
            f" {held.source.appended_at.isoformat()}, plus {grace_s:g} s)",
            reason="unknown_key",
            hint="Ask the operator to register the key (pcfx keys register), then publish"
            " the record again.",
        )
        rejection = Ingested(IngestOutcome.REJECTED, held.source, error=error)
        out.rejected.append((rejection, held.event.value or b""))
        out.resolved.append(held)
    return out
