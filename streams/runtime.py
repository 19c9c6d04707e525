"""The faust-streaming application: thin agents around the pure ingestion checks and roll-up core.

Topology (every topic has the same partition count)::

    pcf.declared ─ingest─▶ FootprintDeclared ─┐   (key: the node's ref, product:… or factor:…)
    pcf.factors  ─ingest─▶ FactorPublished ───┼─▶ pcf.rollup ─▶ roll_up ─▶ pcf.products (Avro,
                                              │                         signed per batch)
    pcf.bom      ─ingest─▶ BomDeclared ───────┘        ▲          │  (table: nodes)
                                                       └──────────┘  ChildValue, Subscribe,
                                                                     Unsubscribe to other nodes
    anything refused ─────────────────────────────────────────▶ pcf.rejected (Avro Rejection)
    pcf.keys ─▶ every worker reads it whole (the key registry) + one agent DLQs bad registrations

The two roles of the pure core's foreign-key join (reference/streaming.md section 2.2) share one
topic and one row per node: a product is a *parent* (its BOM and its inputs' latest values,
:func:`~streams.rollup.product_step_many`) and an *input* of its own parents (its value and who
subscribes to it, :func:`~streams.rollup.component_step`); a factor is only an input. A message
goes to the partition of the node it is for (:func:`_node_key`, :func:`_partition`), so a
product's new result feeds its input role in the same batch. A batch's messages for one
partition travel as one record (:func:`_packs`): a record and a faust event cost about as much
as a roll-up step, and one update fans out into several messages.

**Signed hand-off.** What a roll-up batch writes to ``pcf.products`` (new footprints and the
``Deprecated`` copies of their predecessors) is signed once per batch with the worker's service
key (:attr:`StreamsConfig.signer`, :func:`contracts.handoff.sign_handoffs`): a Merkle root over
the records' exact key and value bytes, signed once, and per record an inclusion proof, in Kafka
headers. The gateway releases nothing from ``pcf.products`` that does not verify.

**Local delivery.** A message for a node of a partition this worker holds is also applied at
once, in the same batch (a round per tier, at most :data:`LOCAL_ROUNDS`), so an update reaches
the top of its graph in one batch instead of one batch per tier (with one worker, every node is
local). It still goes to the topic like every other output: when it comes back it is a
``DUPLICATE`` no-op, which the app that applied it skips without decoding (its pack carries
:func:`_echo_stamp`: that app, in that consumer generation). That copy is what keeps a crash
harmless: the rows of a batch are separate changelog records, and a crash may keep a sender's
new row but lose the receiver's. The redelivered batch is then a ``DUPLICATE`` for the sender,
which sends nothing again, and the receiver (a new app) gets the message from the topic instead.

**Effectively once** (ARCHITECTURE decision 4): faust delivers at least once; every state change
is an upsert with a sequence, so a redelivered message is a ``DUPLICATE`` no-op in the core. The
roll-up agent works in batches (:func:`_ready_batches`: what arrived while it worked on the last
one, up to :data:`BATCH_MAX` messages; more gather under load): a batch's messages are applied
in order per key (a product's are absorbed together and recomputed once,
:func:`~streams.rollup.product_step_many`), every output of the batch is sent, and the agent
waits for the broker to acknowledge all of them *before* it stores the batch's new states, one
row per key (whose changelog record is what a restarted worker recovers); the batch's input
offsets are acknowledged to faust after that. A crash therefore leaves, for every key, either no
new stored state (its redelivered messages are applied again and their outputs, sent again, are
duplicates downstream) or the state *and* all its outputs, so a ``DUPLICATE`` never needs
anything re-sent. (Re-sending the state's outputs on a ``DUPLICATE`` instead makes parents and
inputs echo each other forever: the re-sent ones are duplicates too.) One round of
acknowledgements per batch instead of per message is what lets a worker keep up with more than a
few hundred messages a second. The ingest agents record a sequence in the ledger before they
forward the record, so they do forward a ``DUPLICATE`` again; their inputs come from outside, so
nothing echoes. A rebalance waits until every message an agent has taken is acknowledged
(``stream_wait_empty``; messages in a batch are not acknowledged until the batch's states are
stored), so a worker that loses a partition never writes that partition's changelog afterwards.
Replays, restarts and rebalances therefore converge to the same results, without faust's
(experimental) exactly-once mode.

**No stalls.** A record signed with a key not (yet) on ``pcf.keys`` (keys and data travel on
different topics, which Kafka does not order) is parked (:class:`~streams.ingest.ParkingLot`,
in memory) and the agent goes on with the records behind it. The task ``settle_parked``
re-checks it, in arrival order, as soon as a registration for its key comes into force, and
sends it to the DLQ (``unknown_key``) at its deadline: the time the broker appended it plus
``key_grace_s``. At least once: a parked record's event stays *unacknowledged* until it is
resolved (:func:`_ready_batches` skips it; faust commits a partition's offsets only up to its
first unacknowledged record), so after a crash it and the records after it are read again
(those are then ``DUPLICATE`` no-ops, forwarded again like any redelivery). Nothing is written
to a table for it, so nothing needs recovering; the price is that a rebalance (which waits for
every taken record to be acknowledged) can wait up to ``key_grace_s`` for the parked ones,
which keeps that well below the rebalance timeout.

**The broker's clock.** The data topics are created with ``message.timestamp.type=
LogAppendTime`` (:func:`ensure_topics`, which refuses to start on one that has producer
timestamps); key validity is judged at a record's append time. A record whose timestamp the
producer chose is judged at the time it is read instead, and the topic is logged once.

Agents never block the event loop on the schema registry: the ids the worker encodes with are
resolved at start-up, and a schema id an incoming record names is fetched in a thread before the
record is decoded (:class:`_Schemas`).

Internal topics and table changelogs hold :mod:`streams.codec` JSON (never pickle). The roll-up
agent keeps the rows it last wrote decoded (:class:`_Rows`); a row whose bytes in the table are
not those (a recovery, a rebalance) is decoded from the table again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import typing
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import murmur2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from faust.streams import _current_event
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka

from contracts import (
    AvroSerde,
    BillOfMaterials,
    CompatibilityLevel,
    KafkaSchemaRegistry,
    RegisteredSchema,
    Rejection,
    RolledUpFootprint,
    SchemaRegistry,
    SignedBillOfMaterials,
    SignedEmissionFactor,
    SignedFootprint,
    UnknownSchemaError,
    register_all,
    register_missing,
    topic_schemas,
)
from contracts import topics as table_topics
from contracts.errors import (
    InfrastructureError,
    KeyStoreError,
    PcfError,
    RollupError,
    TrustError,
)
from contracts.handoff import HandoffSigner, sign_handoffs
from contracts.kafka_client import aiokafka_kwargs, faust_credentials, kafka_python_kwargs
from streams import codec
from streams.adapt import (
    core_bom,
    core_factor,
    core_footprint,
    deprecated_record,
    rolled_up_record,
)
from streams.ingest import (
    DATA_TOPICS,
    Ingested,
    IngestOutcome,
    KeyRegistry,
    ParkingLot,
    SequenceLedger,
    SourceRef,
    check_record,
)
from streams.rollup import (
    BomDeclared,
    ComponentMessage,
    ComponentState,
    FactorPublished,
    FootprintDeclared,
    Message,
    Outcome,
    ProductMessage,
    ProductRolledUp,
    ProductState,
    component_step_many,
    node_of,
    offered,
    product_step_many,
)

__all__ = ["TOPICS", "StreamsConfig", "build_app", "ensure_topics", "run_worker"]

log = logging.getLogger("pcfx.streams")
T = TypeVar("T")


@dataclass(frozen=True)
class StreamsConfig:
    """Everything a worker needs; workers with the same ``app_id`` share the work."""

    bootstrap: str
    operator_keys: dict[str, Ed25519PublicKey]
    app_id: str = "pcfx-streams"
    topic_prefix: str = ""
    """Prepended to every topic name (tests use a unique prefix per run)."""
    partitions: int = 6
    key_grace_s: float = 10.0
    """How long after the broker appended it a record signed with a not-yet-registered key
    stays parked (see "No stalls") before it goes to the DLQ as ``unknown_key``."""
    data_dir: Path = Path(".pcfx/streams")
    processor: str = "pcfx-streams"
    registry: SchemaRegistry | None = field(default=None, compare=False)
    signer: HandoffSigner | None = field(default=None, compare=False, repr=False)
    """The worker's service key: every record it writes to ``pcf.products`` is covered by a
    batch signature of it (:mod:`contracts.handoff`; the operator registers it with role
    ``service``), and the gateway releases nothing else. Required to run a worker
    (:func:`build_app`); setting topics up (:func:`ensure_topics`) needs none."""

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def changelog(self, table: str) -> str:
        """The changelog topic faust names for *table* (``<app id>-<table>-changelog``)."""
        return f"{self.app_id}-{table}-changelog"


def _now() -> datetime:
    return datetime.now(UTC)


LOG_APPEND_TIME = 1
"""Kafka's timestamp type of a record whose timestamp the broker set when it appended it."""
SourceTime = tuple[datetime, bool]
"""When a record was appended, and whether that is the broker's time (:func:`_appended_at`)."""
_UNTRUSTED_CLOCKS: set[str] = set()
"""Topics on which a record with a producer-chosen timestamp was met (logged once each)."""


def _appended_at(topic: str, timestamp_s: float | None, timestamp_type: int | None) -> SourceTime:
    """When the broker appended a record: its timestamp if the broker set it (LogAppendTime).

    A timestamp the producer chose (CreateTime: the topic was not created by
    :func:`ensure_topics`, or altered since) is never trusted: the record is judged at the time
    this worker reads it, which can only be later than its append (a record signed after a
    revocation cannot be passed off as older), and the topic is logged once.
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


def _source(event: Any, topic: str) -> SourceRef:
    msg = event.message
    at, broker_time = _appended_at(topic, msg.timestamp, getattr(msg, "timestamp_type", None))
    return SourceRef(topic, msg.partition, msg.offset, at, msg.key, broker_time)


BATCH_MAX = 500
"""Most messages the roll-up agent takes at once (one round of broker acknowledgements)."""
BUSY_BATCH = 16
"""A batch at least this big means the agent is behind: it then lets the next one gather."""
BUSY_S = 0.01
"""So does a batch that took at least this long (seconds): a roll-up batch holds a few packs
of many messages, and with local delivery one update's batch runs through every tier."""
LINGER_MAX_S = 0.05
"""Longest a batch gathers after a busy one: the most a hop adds to latency under load."""
LOCAL_ROUNDS = 64
"""Most rounds of local delivery in one batch (a round per tier): a fuse, since everything a
round delivers is also on the topic; deeper graphs and cycles go on from there."""
PARKED_POLL_S = 0.25
"""Longest the worker goes without looking at its parked records (a registration that comes
into force wakes it at once)."""
QUIET_TURNS = 3
"""Turns of the event loop without a new record after which a batch stops taking what faust is
delivering (it hands over about one record per turn)."""


async def _ready_batches(
    stream: Any, most: int, held: Callable[[Any], bool] | None = None
) -> AsyncIterator[list[Any]]:
    """The events of a faust *stream* in batches of at most *most*, sized by the load.

    A batch is what arrived while the caller worked on the last one, and what faust is still
    delivering. The agents and faust's delivery of new events share one thread, and faust
    hands over about one record per turn of the event loop (its fetcher awaits each delivery),
    so an agent that starts on its next batch at once leaves delivery little of it: batches
    stay at one record with thousands waiting (measured on the ingest agents; about 20 on the
    roll-up), nothing coalesces, and every record costs a full step. So a batch first takes
    what keeps coming, until :data:`QUIET_TURNS` turns of the loop bring nothing new; and after
    a busy batch (:data:`BUSY_BATCH` or more, or :data:`BUSY_S` or longer) the next one gathers
    for as long as the last one took (at most :data:`LINGER_MAX_S`): under load batches grow
    until the work coalesces (one recomputation per product per batch), while an agent that
    keeps up takes a lone message after a few idle turns of the loop. (faust's ``take_events``
    stops reading while its caller works, then waits ``within`` for every batch, busy or not.)

    A batch's events are acknowledged when the caller asks for the next batch, never if it
    raised: their offsets are committed only after their work is done. An event for which
    *held* is true then (a parked record, see "No stalls") is left for its holder to
    acknowledge once it is resolved.
    """
    ready: list[Any] = []
    arrived, full, room = asyncio.Event(), asyncio.Event(), asyncio.Event()
    room.set()

    async def gather(value: Any) -> Any:
        ready.append(stream.current_event)
        arrived.set()
        if len(ready) >= most:  # the caller is behind: stop reading until it takes these
            full.set()
            room.clear()
            await stream.wait(room)
        return value

    acks = stream.enable_acks
    stream.enable_acks = False  # acknowledged below, after the batch's work
    stream.add_processor(gather)
    stream._enable_passive(aiter(stream.channel))
    took, last = 0.0, 0
    try:
        while not stream.should_stop:
            if not ready:
                await stream.wait(arrived)  # (returns early when the stream stops)
                continue
            quiet = 0
            while quiet < QUIET_TURNS and len(ready) < most and not stream.should_stop:
                count = len(ready)
                await asyncio.sleep(0)  # one turn of the loop: faust hands over a record
                quiet = quiet + 1 if len(ready) == count else 0
            if (last >= BUSY_BATCH or took >= BUSY_S) and len(ready) < most:
                await stream.wait(full, timeout=min(LINGER_MAX_S, took))
                if stream.should_stop:
                    break
            batch = ready[:]
            ready.clear()
            arrived.clear()
            full.clear()
            room.set()
            began = time.perf_counter()
            yield batch
            took, last = time.perf_counter() - began, len(batch)
            for event in batch:
                if held is None or not held(event):
                    await stream.ack(event)
    finally:
        stream.enable_acks = acks
        stream._processors.remove(gather)


_STORED = (Outcome.APPLIED, Outcome.UNCHANGED)
"""Outcomes whose step state must be stored (``UNCHANGED`` stored a record nobody sees yet)."""


@dataclass(frozen=True)
class _ProductRecord:
    """One product's row: the core state, the BOM document and the last issued PACT id.

    One table row, so one changelog record: a crash cannot keep the state but lose the BOM or the
    predecessor id that go with it.
    """

    state: ProductState
    bom: str | None = None
    """The BOM's JSON (the metadata a PACT footprint needs), from the ``bom`` header."""
    issued: str | None = None
    """Id of the last PACT footprint issued for the product (the next one's predecessor)."""
    retire: bytes | None = None
    """The ``pcf.products`` record (Avro) that deprecates ``issued``: the record that issued it
    again, its footprint ``Deprecated`` (:func:`~streams.adapt.deprecated_record`), sent just
    before the footprint that supersedes it. Made when ``issued`` is, so that superseding costs
    no decoding; ``None`` in rows of workers before it (their last footprint is not deprecated)."""


@dataclass(frozen=True)
class _NodeRecord:
    """One node of the graph (a product or a factor, keyed by its ref): both its roles' states.

    As an input to its parents (``component``: its value and subscribers) and, for a product
    with a BOM, as a parent (``product``). One row, so one changelog record: a crash cannot keep
    a product's new result but lose the value it feeds to the next tier.
    """

    component: ComponentState | None = None
    product: _ProductRecord | None = None


class _Schemas:
    """The schema registry as the agents see it: answers from memory, never blocks the loop.

    :class:`~contracts.KafkaSchemaRegistry` answers a miss by reading its topic with blocking
    kafka-python calls. The ids a worker encodes with are resolved when it starts
    (:meth:`warm`), and a schema id an incoming record names is fetched in a thread
    (:meth:`resolve`) before the record is decoded on the loop; an id still unknown then is an
    :class:`~contracts.UnknownSchemaError`, as before (the record goes to the DLQ).
    """

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self.schemas: dict[int, str] = {}

    def warm(self, serde: AvroSerde, encodes: Iterable[tuple[str, type[Any]]]) -> None:
        for topic, model in encodes:
            serde.schema_id(topic, model)

    async def resolve(self, data: bytes | None) -> None:
        """Fetch the schema that the Confluent frame of *data* names, unless known or unknown."""
        if data is None or len(data) < 5 or data[0] != 0:
            return  # not framed: decoding says why
        schema_id = int.from_bytes(data[1:5], "big")
        if schema_id in self.schemas:
            return
        with contextlib.suppress(UnknownSchemaError):
            text = await asyncio.to_thread(self.registry.get_schema, schema_id)
            self.schemas[schema_id] = text

    # -- SchemaRegistry (what AvroSerde calls; lookups and registration happen at start-up)

    def get_schema(self, schema_id: int) -> str:
        text = self.schemas.get(schema_id)
        if text is None:
            raise UnknownSchemaError(f"schema id {schema_id} is not in the schema registry")
        return text

    def register(self, subject: str, schema: str) -> int:
        return self.registry.register(subject, schema)

    def lookup(self, subject: str, schema: str) -> int:
        return self.registry.lookup(subject, schema)

    def latest(self, subject: str) -> RegisteredSchema:
        return self.registry.latest(subject)

    def versions(self, subject: str) -> list[int]:
        return self.registry.versions(subject)

    def subjects(self) -> list[str]:
        return self.registry.subjects()

    def compatibility(self, subject: str | None = None) -> CompatibilityLevel:
        return self.registry.compatibility(subject)

    def set_compatibility(self, level: CompatibilityLevel, subject: str | None = None) -> None:
        self.registry.set_compatibility(level, subject)

    def test_compatibility(self, subject: str, schema: str) -> list[str]:
        return self.registry.test_compatibility(subject, schema)


class _Keys:
    """The key registry every worker keeps, fed by a reader of the whole ``pcf.keys`` topic."""

    def __init__(self, config: StreamsConfig, serde: AvroSerde, schemas: _Schemas) -> None:
        self.config = config
        self.serde = serde
        self.schemas = schemas
        self.registry = KeyRegistry(operator_keys=dict(config.operator_keys))
        self.ready = asyncio.Event()
        self.updated = asyncio.Event()
        """Set when a registration comes into force (parked records may be released)."""

    async def follow(self) -> None:
        """Read ``pcf.keys`` from the start, forever; ``ready`` once caught up with the end."""
        topic = self.config.topic("pcf.keys")
        consumer = AIOKafkaConsumer(
            topic,
            **aiokafka_kwargs(),
            bootstrap_servers=self.config.bootstrap,
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
                        at, broker_time = _appended_at(
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


@dataclass(frozen=True, slots=True)
class _Held:
    """A parked record as the worker holds it: the event (unacknowledged) and its stream."""

    name: str
    """The data topic, without the deployment prefix."""
    stream: Any
    event: Any
    source: SourceRef


class _TableLedger(MutableMapping[str, tuple[int, str]]):
    """The ingestion ledger's memory in a faust table (changelog-backed, per partition).

    Writes are held until :meth:`flush`, which the ingest agents call once per batch, before
    they forward it: a subject updated many times in a batch costs one changelog record, and
    what the batch forwards is still sent after its ledger rows (faust flushes both before it
    commits the batch's offsets)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.held: dict[str, tuple[tuple[int, str], Any]] = {}
        """Written since the last flush: the value and the current event (its partition)."""

    def __getitem__(self, subject: str) -> tuple[int, str]:
        held = self.held.get(subject)
        if held is not None:
            return held[0]
        sequence, digest = codec.decode(tuple[int, str], self.table[subject.encode()])
        return sequence, digest

    def __setitem__(self, subject: str, value: tuple[int, str]) -> None:
        # the changelog partition is the current event's (:func:`_in_partition`), as for a
        # direct table write
        self.held[subject] = (value, _current_event.get(None))

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
        """Write the held rows to the table (a changelog record each)."""
        for subject, (value, event) in self.held.items():
            _current_event.set(event)
            self.table[subject.encode()] = codec.encode(value)
        self.held.clear()


class _Rows(Generic[T]):
    """Decoded rows of a roll-up table, kept next to it: a row is decoded again only when its
    bytes are not the ones last seen for its key (written elsewhere: a recovery, a rebalance),
    so a busy product is not re-parsed for every message. At most *limit* rows are kept."""

    def __init__(self, tp: type[T], limit: int = 100_000) -> None:
        self.tp = tp
        self.limit = limit
        self.rows: dict[bytes, tuple[bytes, T]] = {}

    def get(self, key: bytes, stored: bytes | None) -> T | None:
        if not stored:
            return None
        hit = self.rows.get(key)
        if hit is not None and hit[0] == stored:
            return hit[1]
        value = codec.decode(self.tp, stored)
        self.keep(key, stored, value)
        return value

    def keep(self, key: bytes, stored: bytes, value: T) -> None:
        if key not in self.rows and len(self.rows) >= self.limit:
            del self.rows[next(iter(self.rows))]  # the oldest
        self.rows[key] = (stored, value)


class _Recovery(Recovery):
    """faust's recovery with one race closed (faust-streaming/faust#596, open in 0.15.3).

    When a worker has changelogs to replay, the fetcher is already running when
    ``on_recovery_completed`` resumes the stream partitions; it then awaits ``perform_seek()``
    (a committed-offset look-up per partition) while the fetcher hands the records it prefetched
    for those partitions to the agents' queues, and finally ``flow_control.resume()`` *clears*
    those queues. The cleared records are never processed, yet the consumer's position is past
    them, and a partition without a committed offset is not seeked back: after a restart or a
    rebalance, inputs silently went missing until the next rebalance. Holding flow control until
    that resume keeps the fetched records out of the queues until they have been cleared; they
    are delivered right after (a record of a partition that was seeked back may then arrive
    twice, which the idempotent core treats as a ``DUPLICATE``).
    """

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        self.app.flow_control.suspend()
        await super().on_recovery_completed(generation_id)


FETCH_MAX_WAIT_MS = 10
"""How long the broker may hold a fetch that finds no new records (faust hard-codes 1 500 ms).

aiokafka has one fetch in flight per broker, and leaves out of it every partition whose records
it still buffers (not yet taken by faust). When the agents keep the loop busy for longer than
aiokafka's prefetch backoff (100 ms), the next fetch goes out without the roll-up topics and
waits the full ``fetch_max_wait_ms`` on partitions with nothing new (the ingest topics, a drained
backlog), while the agents' own outputs pile up on the roll-up topics unfetched: the worker
idles. A short wait bounds that stall; an idle worker sends a small fetch every 10 ms instead."""


PRODUCER_LINGER_S = 0.005
"""How long the producer waits to fill a batch (faust's default is 0: a produce request as soon
as the previous one is answered). The agents send a few messages per input, and acknowledgements
are awaited per batch, so 5 ms more per hop buys fuller produce requests: about 14 % less worker
CPU per update, measured on the backlog bench (3.5 -> 3.0 ms)."""


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's aiokafka consumer thread, with :data:`FETCH_MAX_WAIT_MS`."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by the fetcher it starts
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, with :class:`_ConsumerThread`."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport, with :class:`_Consumer`."""

    Consumer = _Consumer


class _TableManager(TableManager):
    """faust's table manager, with :class:`_Recovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = _Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


@dataclass
class AgentFailures:
    """What a worker does when one of its agents raises (a bug or a broken cluster, never a bad
    record: those go to the DLQ): it stops (:class:`_App` reports every agent error here).

    faust would restart the agent alone, with the record it failed on still unacknowledged, so
    nothing after it is committed and the partition is stuck while the worker looks healthy.
    Stopping instead (at once, as a crash would: :func:`_exit_failed`) hands the partitions to
    the other workers and the failed records to the worker's successor (at least once), and the
    exit says so.
    """

    stop: Callable[[BaseException], None] | None = None
    """How to stop the worker, given the failure (:func:`run_worker` exits; ``None``: only
    record)."""
    failed: BaseException | None = None
    """The first failure."""

    async def __call__(self, agent: Any, exc: BaseException) -> None:
        log.critical(
            "agent %s failed, stopping the worker (its unacknowledged records are processed"
            " again when it is restarted): %r",
            getattr(agent, "name", agent),
            exc,
            exc_info=exc,
        )
        if self.failed is None:
            self.failed = exc
            if self.stop is not None:
                self.stop(exc)


class _App(faust.App):
    """faust's app, reporting every agent failure to :class:`AgentFailures`.

    faust passes its own ``_on_agent_error`` as every agent's ``on_error`` (it commits what
    was acknowledged); this adds ours after it. Re-check the hook on faust upgrades.
    """

    failures: AgentFailures

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        await super()._on_agent_error(agent, exc)
        await self.failures(agent, exc)


def _internal(event: Any, topic: str, partitions: int) -> list[tuple[bytes, Message]]:
    """The roll-up messages of *event*'s pack (or its one bare message, as workers wrote before
    they packed), each with its node's key, else a :class:`~streams.codec.CodecError` naming the
    message and field: a table row is no message, and every message must be for a node of the
    partition the pack came on (the one whose changelog its node's row is written to)."""
    keyed: list[tuple[bytes, Message]] = []
    arrived = event.message.partition
    for i, message in enumerate(codec.decode_pack(event.value or b"")):
        if not isinstance(message, Message):
            names = ", ".join(k.__name__ for k in typing.get_args(Message))
            raise codec.CodecError(
                f"'$[{i}].@type' must be one of {names} on {topic} (got {type(message).__name__})",
                path=f"$[{i}].@type",
            )
        key = _node_key(message)
        if (home := _partition(key, partitions)) != arrived:
            raise codec.CodecError(
                f"'$[{i}]' is for {key.decode()}, whose partition of {topic} is {home}"
                f" (got it on partition {arrived})",
                path=f"$[{i}]",
            )
        keyed.append((key, message))
    return keyed


TOPICS = (
    "pcf.declared",
    "pcf.factors",
    "pcf.bom",
    "pcf.keys",
    "pcf.products",
    "pcf.rejected",
    "pcf.rollup",
)
TABLES = ("ingest-ledger", "nodes")
"""The app's tables: the ingestion ledger and the roll-up's nodes (both roles of each)."""
_CO_PARTITIONED = (*DATA_TOPICS, "pcf.rollup")
"""The topics whose agents write the tables: faust needs as many partitions as the changelogs."""
"""Topic config of the data topics: the broker stamps each record with the time it appended it,
the time key validity is judged at (a producer cannot backdate a record)."""


def ensure_topics(config: StreamsConfig) -> None:
    """Create the app's topics and its tables' changelogs with ``config.partitions`` partitions
    and the configs of the one table of topics (:func:`contracts.topics.ensure_topics`: the data
    topics on the broker's clock, ``LogAppendTime``, which key validity is judged at; existing
    topics are kept, and refused when their configs differ).

    Topics that Kafka would auto-create get one partition, which breaks co-partitioning. Faust
    does create its changelogs, but while the worker starts: a worker whose client fetched the
    cluster's metadata before then sees a changelog with 0 partitions, and the first table write
    crashes its agent (``PartitionsMismatch``). Created here first, they are in every client's
    metadata from the start.

    Raises :class:`~contracts.errors.InfrastructureError` if a topic the tables are written from
    already exists with another partition count (e.g. auto-created by a first publish on a
    broker whose ``num.partitions`` is 1): every record on it would stop the worker; or if a
    topic's configs differ from the table's (a data topic with producer-chosen timestamps).
    """
    from kafka import KafkaAdminClient

    table_topics.ensure_topics(
        config.bootstrap,
        [(config.topic(name), table_topics.TOPICS[name], config.partitions) for name in TOPICS]
        + [(config.changelog(t), table_topics.CHANGELOG, config.partitions) for t in TABLES],
    )
    admin = KafkaAdminClient(
        **kafka_python_kwargs(), bootstrap_servers=config.bootstrap, client_id="pcfx-streams-setup"
    )
    try:
        names = [config.topic(n) for n in _CO_PARTITIONED] + [config.changelog(t) for t in TABLES]
        for pause in (0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 0):
            counts = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
            if all(counts.values()) or not pause:
                break
            time.sleep(pause)  # a topic just created shows 0 partitions until its metadata is out
    finally:
        admin.close()
    wrong = {name: n for name, n in counts.items() if n != config.partitions}
    if wrong:
        found = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
        raise InfrastructureError(
            f"the streams topics must have {config.partitions} partitions each (the tables are"
            f" co-partitioned with them); {found}",
            hint=(
                "Recreate those topics with that many partitions (or run with --partitions to"
                " match them). A topic the broker auto-created on a first publish gets its"
                " num.partitions: run 'pcfx streams topics' before publishing, or set it."
            ),
        )


def build_app(config: StreamsConfig, failures: AgentFailures | None = None) -> faust.App:
    """The faust app with its topics, tables and agents (see the module docstring); an agent
    that fails is reported to *failures* (by default only logged and recorded).

    Raises :class:`~contracts.errors.KeyStoreError` without a service key
    (:attr:`StreamsConfig.signer`): the streams never publish unsigned results."""
    if config.signer is None:
        raise KeyStoreError(
            "'signer' must be the streams worker's service key (got none): every record on"
            f" {config.topic('pcf.products')} is signed with it",
            hint="Create one (pcfx keys new --supplier pcfx-streams), have the operator register"
            " it (pcfx keys register --role service ...) and pass it: pcfx streams run"
            " --service-key FILE.",
        )
    signer = config.signer
    registry = config.registry
    if registry is None:
        # Register what is missing with a short-lived writer (only the operator may write the
        # schemas topic, and a new writer fences the previous one), then read with a plain
        # client: a worker under its own principal needs only read access once they are there.
        register_missing(config.bootstrap, topic_schemas(config.topic_prefix))
        registry = KafkaSchemaRegistry(config.bootstrap)
    else:
        register_all(registry, config.topic_prefix)
    schemas = _Schemas(registry)
    serde = AvroSerde(schemas)
    schemas.warm(
        serde,
        [
            (config.topic("pcf.products"), RolledUpFootprint),
            (config.topic("pcf.rejected"), Rejection),
        ],
    )
    app = _App(
        config.app_id,
        broker=f"kafka://{config.bootstrap}",
        broker_credentials=faust_credentials(),
        store="memory://",
        datadir=str(config.data_dir),
        topic_partitions=config.partitions,
        topic_replication_factor=1,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        producer_acks=-1,
        producer_linger=PRODUCER_LINGER_S,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        # a killed worker's partitions move to the others after 10 s, not faust's default 60 s
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        # a rebalance waits for parked records (up to key_grace_s, see "No stalls"): the group
        # must wait for this member that long
        broker_rebalance_timeout=max(60.0, 2 * config.key_grace_s + 30.0),
        TableManager=_TableManager,
        # (stream_wait_empty stays on: a rebalance waits for the message each agent is on, so
        # a worker never writes the changelog of a partition it has lost; see the docstring)
    )
    app.transport = _Transport(app.conf.broker_consumer, app)  # (created lazily otherwise)
    app.failures = failures if failures is not None else AgentFailures()
    keys = _Keys(config, serde, schemas)

    def topic(name: str) -> Any:
        return app.topic(
            config.topic(name), key_type=bytes, value_type=bytes, partitions=config.partitions
        )

    declared, factors, boms = topic("pcf.declared"), topic("pcf.factors"), topic("pcf.bom")
    keys_topic, rejected = topic("pcf.keys"), topic("pcf.rejected")
    nodes_in = topic("pcf.rollup")

    def table(name: str) -> Any:
        # Keys and values are bytes (codec JSON): typed as bytes, faust uses its raw codec;
        # otherwise its JSON default fails to read the changelog back on recovery.
        return app.Table(name, partitions=config.partitions, key_type=bytes, value_type=bytes)

    ledger_table, node_table = (table(name) for name in TABLES)
    ledger_rows = _TableLedger(ledger_table)
    ledger = SequenceLedger(ledger_rows)
    node_rows = _Rows(_NodeRecord, limit=200_000)  # products and the inputs they use
    nodes_name, products_name = config.topic("pcf.rollup"), config.topic("pcf.products")

    async def emit(
        name: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]:
        """Hand one record to faust's producer directly (without ``Topic.send``'s per-message
        bookkeeping, which the roll-up does not use); the future completes on the broker's ack.
        Without a *partition*, keyed like ``Topic.send``: Kafka's partitioner on the key."""
        return await app.producer.send(name, key, value, partition, None, headers)

    async def publish(records: list[tuple[bytes, bytes]]) -> list[Awaitable[Any]]:
        """Hand a batch's ``pcf.products`` records (``(key, value)``, in order) to the producer,
        each with the headers of one batch signature over all of them (:func:`sign_handoffs`:
        one Ed25519 signature per roll-up batch, a Merkle proof per record)."""
        signed = sign_handoffs(signer, records)
        return [
            await emit(products_name, key, value, None, headers)
            for (key, value), headers in zip(records, signed, strict=True)
        ]

    async def send(
        keyed: Iterable[tuple[bytes, Message]], headers: list[tuple[str, bytes]] | None = None
    ) -> list[Awaitable[Any]]:
        """Hand messages (with their nodes' keys) to the producer packed, one record per
        partition of their nodes (:func:`_packs`); the futures complete on the broker's ack."""
        return [
            await emit(nodes_name, None, pack, partition, headers)
            for partition, pack in _packs(keyed, config.partitions)
        ]

    async def reject(result: Ingested, original: bytes) -> None:
        rejection: Rejection = result.rejection(original[:65536], _now(), config.processor)
        await rejected.send(
            key=result.source.key, value=serde.encode(config.topic("pcf.rejected"), rejection)
        )

    async def unreadable(event: Any, topic: str, error: codec.CodecError) -> None:
        """An internal-topic record no worker wrote (or a worker of another version): the DLQ."""
        source = _source(event, topic)
        await reject(Ingested(IngestOutcome.REJECTED, source, error=error), event.value or b"")

    async def unwritable(out: ProductRolledUp, exc: Exception, origin: Any) -> None:
        """A product result no contract record can hold (a figure too large to write, see
        :func:`~streams.adapt.rolled_up_record`): the DLQ, with the result, keyed by the product
        and placed at the roll-up batch that computed it (*origin*, its first event), instead of
        failing the agent on it at every restart. The product's state moves on as usual."""
        if isinstance(exc, PcfError):
            error: PcfError = exc
        else:  # (a bug of ours: still one product's result, not a reason to stop them all)
            error = RollupError(f"the result for {out.product_id} cannot be written: {exc}")
        at = origin.message
        key = out.product_id.encode()
        source = SourceRef(nodes_name, at.partition, at.offset, _now(), key)
        log.error("result for %s sent to the DLQ: %s", out.product_id, error)
        result = Ingested(IngestOutcome.REJECTED, source, error=error)
        await reject(result, codec.encode_message(out))

    @app.task  # type: ignore[untyped-decorator]
    async def follow_keys() -> None:
        await keys.follow()

    parking: ParkingLot[_Held] = ParkingLot(timedelta(seconds=config.key_grace_s))
    parked_events: set[int] = set()
    """``id()`` of every parked event: :func:`_ready_batches` leaves those unacknowledged."""

    def park(held: _Held, result: Ingested) -> None:
        assert result.signer is not None
        parking.park(result.signer, held.source.appended_at, held)
        parked_events.add(id(held.event))

    async def unpark(held: _Held) -> None:
        """A parked record is resolved (forwarded or in the DLQ): its offset may be committed."""
        parked_events.discard(id(held.event))
        await held.stream.ack(held.event)

    async def forward(name: str, checked: list[Ingested]) -> None:
        """Send checked records (``ACCEPTED``/``DUPLICATE``) of data topic *name* to the roll-up."""
        if not checked:
            return
        if name == "pcf.declared":
            await send(_keyed(_footprint_declared(result) for result in _latest(checked)))
        elif name == "pcf.factors":
            await send(_keyed(_factor_published(result) for result in _latest(checked)))
        else:
            for result in checked:
                assert isinstance(result.record, SignedBillOfMaterials)
                try:
                    bom = core_bom(result.record.bom)
                except PcfError as exc:
                    await reject(Ingested(IngestOutcome.REJECTED, result.source, error=exc), b"")
                    continue
                # a pack of its own: the BOM's metadata travels with it in a header, so its
                # node keeps it in its row
                document = result.record.bom.model_dump_json(by_alias=True).encode()
                await send(_keyed([BomDeclared(bom)]), [("bom", document)])

    async def ingest(stream: Any, name: str) -> AsyncIterator[list[Ingested]]:
        """Each batch's checked records (``ACCEPTED`` and ``DUPLICATE``: the ledger is written
        before the record is forwarded, so a redelivered one is forwarded again); rejections go
        to the DLQ, records whose key is not known yet are parked (see "No stalls"). What the
        caller hands the producer is delivered before the batch's offsets are committed (faust
        flushes the producer first)."""
        record_type = DATA_TOPICS[name]
        async for events in _ready_batches(
            stream, BATCH_MAX, held=lambda e: id(e) in parked_events
        ):
            await keys.ready.wait()
            checked: list[Ingested] = []
            for event in events:
                _in_partition(event.message.topic, event.message.partition)  # its ledger row
                source = _source(event, config.topic(name))
                await schemas.resolve(event.value)
                result = keys.check(event.value, source, ledger, record_type)
                if result.outcome is IngestOutcome.PENDING_KEY:
                    park(_Held(name, stream, event, source), result)
                elif result.outcome is IngestOutcome.REJECTED:
                    await reject(result, event.value)
                else:
                    checked.append(result)
            ledger_rows.flush()
            yield checked

    @app.task  # type: ignore[untyped-decorator]
    async def settle_parked() -> None:
        """Release parked records whose key came into force, and send those past their
        deadline to the DLQ (``unknown_key``), as keys arrive and deadlines pass."""
        await keys.ready.wait()
        while True:
            deadline = parking.next_deadline()
            wait_s = PARKED_POLL_S
            if deadline is not None:
                wait_s = min(wait_s, max(0.0, (deadline - _now()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(keys.updated.wait(), timeout=wait_s)
            keys.updated.clear()
            if not len(parking):
                continue
            known = [s for s in parking.signers if keys.registry.lookup(*s) is not None]
            released = parking.waiting_for(known) if known else []
            checked: dict[str, list[Ingested]] = {}
            still: set[int] = set()
            for entry in released:
                held = entry.item
                event = held.event
                _in_partition(event.message.topic, event.message.partition)
                result = keys.check(event.value, held.source, ledger, DATA_TOPICS[held.name])
                if result.outcome is IngestOutcome.REJECTED:
                    await reject(result, event.value)
                elif result.outcome is IngestOutcome.PENDING_KEY:  # (registered: not expected)
                    park(held, result)
                    still.add(id(event))
                else:
                    checked.setdefault(held.name, []).append(result)
            ledger_rows.flush()
            for name, results in checked.items():
                await forward(name, results)
            for entry in released:
                if id(entry.item.event) not in still:
                    await unpark(entry.item)
            for entry in parking.expired(_now()):
                held = entry.item
                error = TrustError(
                    f"key {entry.signer[1]!r} is not registered for {entry.signer[0]!r}: the"
                    f" record waited for it until {entry.deadline.isoformat()} (appended at"
                    f" {held.source.appended_at.isoformat()}, plus {config.key_grace_s:g} s)",
                    reason="unknown_key",
                    hint="Ask the operator to register the key (pcfx keys register), then publish"
                    " the record again.",
                )
                original: bytes = held.event.value or b""
                await reject(Ingested(IngestOutcome.REJECTED, held.source, error=error), original)
                await unpark(held)

    @app.agent(declared)
    async def ingest_declared(stream: Any) -> None:
        async for checked in ingest(stream, "pcf.declared"):
            await forward("pcf.declared", checked)

    @app.agent(factors)
    async def ingest_factors(stream: Any) -> None:
        async for checked in ingest(stream, "pcf.factors"):
            await forward("pcf.factors", checked)

    @app.agent(boms)
    async def ingest_boms(stream: Any) -> None:
        async for checked in ingest(stream, "pcf.bom"):
            await forward("pcf.bom", checked)

    @app.agent(keys_topic)
    async def audit_keys(stream: Any) -> None:
        """One worker per partition reports bad key registrations to the DLQ (once)."""
        check = KeyRegistry(operator_keys=dict(config.operator_keys))
        async for event in stream.events():
            await schemas.resolve(event.value)
            result = check.apply(event.value, _source(event, config.topic("pcf.keys")), serde)
            if result.outcome is IngestOutcome.REJECTED:
                await reject(result, event.value)

    incarnation = os.urandom(8)  # this app's, so that it knows its own echoes

    @app.agent(nodes_in)
    async def roll_up(stream: Any) -> None:
        async for events in _ready_batches(stream, BATCH_MAX):
            # (stable until the batch is acknowledged: a rebalance waits for that)
            local = {tp.partition for tp in app.consumer.assignment() if tp.topic == nodes_name}
            stamp = _echo_stamp(incarnation, app.consumer_generation_id)
            work: dict[bytes, list[tuple[Any, Message]]] = {}
            for event in events:
                if _header(event, ECHO_HEADER) == stamp:
                    continue  # applied by this app before it sent it: see "Local delivery"
                try:
                    keyed = _internal(event, nodes_name, config.partitions)
                except codec.CodecError as exc:
                    await unreadable(event, nodes_name, exc)
                    continue
                for key, message in keyed:
                    work.setdefault(key, []).append((event, message))
            outputs = _Outputs(local, config.partitions)
            pending: list[Awaitable[Any]] = []
            published: list[tuple[bytes, bytes]] = []  # pcf.products, signed as one batch
            rows: dict[bytes, _NodeRecord] = {}
            for round_ in range(1, LOCAL_ROUNDS + 1):
                new: list[tuple[bytes, Message]] = []
                for key, items in work.items():
                    row = rows.get(key) or node_rows.get(key, node_table.get(key)) or _NodeRecord()
                    node = await step(row, items, new, published, events[0])
                    if node is not row:
                        rows[key] = node
                # this worker's nodes take the new messages in this batch, one round per tier
                work = outputs.route(new, last_round=round_ == LOCAL_ROUNDS)
                if not work:
                    break
            # every output goes to the topic, the ones applied above too (see "Local delivery"),
            # those first (a node's later messages may be among the others); the batch's outputs
            # acknowledged first, then its states: see "Effectively once"
            pending.extend(await publish(published))
            pending.extend(await send(outputs.applied, [(ECHO_HEADER, stamp)]))
            pending.extend(await send(outputs.others))
            await asyncio.gather(*pending)
            for key, node in rows.items():
                data = codec.encode(node)
                _in_partition(nodes_name, _partition(key, config.partitions))
                node_table[key] = data
                node_rows.keep(key, data, node)

    async def step(
        row: _NodeRecord,
        items: list[tuple[Any, Message]],
        outputs: list[tuple[bytes, Message]],
        published: list[tuple[bytes, bytes]],
        origin: Any,
    ) -> _NodeRecord:
        """One node's messages in a batch (with the event each came in, ``None`` for one
        delivered locally; *origin* is the batch's first): its new row (*row* itself if nothing
        is to be stored). The messages for other nodes go to *outputs*, the PACT footprints to
        *published* (sent, signed, with the batch's other outputs)."""
        as_parent = [(e, m) for e, m in items if isinstance(m, ProductMessage)]
        as_input = [m for _, m in items if not isinstance(m, ProductMessage)]
        product = row.product
        new: list[Message] = []
        if as_parent:
            product, rolled = await parent_role(product, as_parent, new, published, origin)
            # a product's new result goes straight to its own input role (same node)
            as_input.extend(offered(r) for r in rolled)
        component = input_role(row.component, as_input, new)
        outputs.extend(_keyed(new))
        if product is row.product and component is row.component:
            return row
        return _NodeRecord(component, product)

    async def parent_role(
        row: _ProductRecord | None,
        items: list[tuple[Any, ProductMessage]],
        outputs: list[Message],
        published: list[tuple[bytes, bytes]],
        origin: Any,
    ) -> tuple[_ProductRecord | None, list[ProductRolledUp]]:
        """A product's BOM and input values in one batch: absorbed in order, recomputed once.

        Returns its new row (*row* itself if nothing is to be stored) and its new results; the
        messages for other nodes go to *outputs*, the results to *published* (a new PACT
        footprint just after its predecessor again, ``Deprecated``; the batch signs and sends
        them, :func:`publish`), and a result no record can hold goes to the DLQ
        (:func:`unwritable`)."""
        step = product_step_many(row.state if row else None, [m for _, m in items])
        bom_doc = row.bom if row else None
        for (event, message), outcome in zip(items, step.each, strict=True):
            if outcome is not Outcome.APPLIED:
                _no_op(outcome, message)
            elif isinstance(message, BomDeclared):
                header = _header(event, "bom")
                bom_doc = header.decode() if header is not None else bom_doc
        if step.outcome not in _STORED:
            return row, []
        issued, retire = (row.issued, row.retire) if row else (None, None)
        rolled = [out for out in step.outputs if isinstance(out, ProductRolledUp)]
        outputs.extend(out for out in step.outputs if not isinstance(out, ProductRolledUp))
        for out in rolled:
            if bom_doc is None:
                continue
            try:
                record = rolled_up_record(
                    out.result,
                    sequence=out.sequence,
                    bom=_bom(bom_doc),
                    previous_pf_id=issued,
                    now=_now(),
                )
                value = serde.encode(products_name, record)
                deprecated = deprecated_record(record)
                retired = None if deprecated is None else serde.encode(products_name, deprecated)
            except InfrastructureError:
                raise  # (the registry, not this result: the worker stops, and is restarted)
            except (PcfError, ValueError) as exc:
                await unwritable(out, exc, origin)
                continue
            key = out.product_id.encode()
            if record.footprint is not None:
                if retire is not None and str(record.footprint.id) != issued:
                    published.append((key, retire))  # its predecessor
                issued, retire = str(record.footprint.id), retired
            published.append((key, value))
        return _ProductRecord(step.state, bom_doc, issued, retire), rolled

    def input_role(
        state: ComponentState | None, messages: list[ComponentMessage], outputs: list[Message]
    ) -> ComponentState | None:
        """A node's messages as an input to its parents, in order; returns its new state
        (*state* itself if nothing is to be stored). What its parents need goes to *outputs*."""
        if not messages:
            return state
        step = component_step_many(state, messages)
        for message, outcome in zip(messages, step.each, strict=True):
            if outcome not in _STORED:
                _no_op(outcome, message)
        if step.outcome not in _STORED:
            return state
        outputs.extend(step.outputs)
        return step.state

    return app


def _latest(checked: list[Ingested]) -> list[Ingested]:
    """The last of each subject's checked records, in the order of those last ones.

    An earlier one is superseded: the ledger took it only with a lower sequence (or it is a
    redelivered duplicate of the same one), and the roll-up would recompute with it only to
    replace it in the same batch. (Not for BOMs: a BOM the core refuses leaves the previous
    one in force, so each one of a batch is forwarded.)"""
    last = {result.subject: i for i, result in enumerate(checked)}
    return [result for i, result in enumerate(checked) if last[result.subject] == i]


def _footprint_declared(result: Ingested) -> FootprintDeclared:
    """The roll-up message for a checked ``pcf.declared`` record."""
    from contracts import CheckedFootprint  # (here: the runtime split moves these imports)
    from streams.adapt import core_footprint_pact

    signed = result.record
    if isinstance(signed, CheckedFootprint):  # the v2 fast path: its checked PACT JSON
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


def _node_key(message: Message) -> bytes:
    """The Kafka key of the node *message* is for (:func:`~streams.rollup.node_of`)."""
    return str(node_of(message)).encode()


@functools.lru_cache(maxsize=1 << 16)
def _partition(key: bytes, partitions: int) -> int:
    """The partition of the roll-up topic for a node's *key*: Kafka's default partitioner
    (murmur2, as aiokafka's and the Java client's), so the node's rows stay in that partition
    of the table, whichever client sent its messages. (Cached: murmur2 is pure Python, about
    5 µs, and a node's key recurs with every message for it.)"""
    home: int = (murmur2(key) & 0x7FFFFFFF) % partitions
    return home


@dataclass
class _Outputs:
    """A roll-up batch's outputs (messages for other nodes), as its rounds of local delivery
    route them: the ones it applies itself and the others (every one is sent)."""

    local: set[int]
    """The roll-up topic's partitions this worker holds."""
    partitions: int
    applied: list[tuple[bytes, Message]] = field(default_factory=list)
    """Applied in this batch (local delivery), in order."""
    others: list[tuple[bytes, Message]] = field(default_factory=list)
    """For the nodes of other workers, or left for the topic by the last round, in order."""

    def route(
        self, new: list[tuple[bytes, Message]], *, last_round: bool
    ) -> dict[bytes, list[tuple[Any, Message]]]:
        """The next round's work: the messages of a round's *new* outputs for this worker's
        nodes, per node (none after the *last round*: those go to the topic only)."""
        work: dict[bytes, list[tuple[Any, Message]]] = {}
        for key, message in new:
            if not last_round and _partition(key, self.partitions) in self.local:
                work.setdefault(key, []).append((None, message))
                self.applied.append((key, message))
            else:
                self.others.append((key, message))
        return work


ECHO_HEADER = "echo"
"""Header of a roll-up pack whose messages the sending app applied itself (local delivery):
:func:`_echo_stamp` of the app and its consumer generation when it sent them."""


def _echo_stamp(incarnation: bytes, generation: int) -> bytes:
    """What marks a pack as already applied: by this app (*incarnation*, random per start) in
    this consumer *generation*. A pack with it needs no decoding when it comes back, since its
    messages are already in the rows this app keeps; after a restart (new incarnation) or a
    rebalance (new generation) the same pack is applied like any other, as ``DUPLICATE``
    no-ops where the rows have them (see "Local delivery")."""
    return incarnation + generation.to_bytes(8, "big", signed=True)


PACK_MAX_BYTES = 256 * 1024
"""Most bytes of messages in one record on the roll-up topic (the broker's default limit for
a batch of records is 1 MiB); a single larger message travels alone."""


def _keyed(messages: Iterable[Message]) -> list[tuple[bytes, Message]]:
    """*messages*, each with the key of the node it is for."""
    return [(_node_key(message), message) for message in messages]


def _packs(keyed: Iterable[tuple[bytes, Message]], partitions: int) -> list[tuple[int, bytes]]:
    """Messages (:func:`_keyed`) packed per partition of their nodes, in order: (partition,
    pack).

    One record per partition per batch instead of one per message: a roll-up step's inputs
    and outputs cost a record on the broker and a faust event each, a good share of a worker's
    time when one update fans out into several messages."""
    by_partition: dict[int, list[bytes]] = {}
    for key, message in keyed:
        home = _partition(key, partitions)
        by_partition.setdefault(home, []).append(codec.encode_message(message))
    packs: list[tuple[int, bytes]] = []
    for home, encoded in by_partition.items():
        chunk: list[bytes] = []
        size = 1  # the pack's bytes: "[", "]" and a comma before every message but the first
        for data in encoded:
            if chunk and size + len(data) + 1 > PACK_MAX_BYTES:
                packs.append((home, codec.encode_pack(chunk)))
                chunk, size = [], 1
            chunk.append(data)
            size += len(data) + 1
        packs.append((home, codec.encode_pack(chunk)))
    return packs


@dataclass(frozen=True, slots=True, weakref_slot=True)
class _Partition:
    """A stand-in for faust's current event: all its tables read of it is ``event.message``'s
    ``topic`` and ``partition``, the changelog partition a write goes to."""

    topic: str
    partition: int

    @property
    def message(self) -> _Partition:
        return self


@functools.cache
def _partition_event(topic: str, partition: int) -> _Partition:
    return _Partition(topic, partition)  # (kept: faust holds the current event weakly)


def _in_partition(topic: str, partition: int) -> None:
    """Make the next table writes go to *partition* of their changelogs, as if for an event of
    *topic* on it.

    A table write goes to the changelog partition of the "current event" (a context variable
    faust sets per event while iterating a stream; :func:`_ready_batches` does not set it for
    the agent). The tables are keyed like their input topics: a ledger row is written to its
    record's partition, a node's row to its home partition (:func:`_partition`), whether its
    messages came in on it or were delivered locally.
    """
    _current_event.set(weakref.ref(typing.cast(Any, _partition_event(topic, partition))))


@functools.lru_cache(maxsize=4096)
def _bom(document: str) -> BillOfMaterials:
    """A product row's BOM document, parsed once (it only changes with a new revision)."""
    return BillOfMaterials.model_validate_json(document)


def _no_op(outcome: Outcome, message: Message) -> None:
    """A message the core ignored: nothing to send or store (``CONFLICT`` is worth a warning)."""
    if outcome is Outcome.CONFLICT:
        log.warning("ignored %s: same sequence as stored, other content", type(message).__name__)


def _header(event: Any, name: str) -> bytes | None:
    headers = event.headers or {}
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:
        if key == name:
            return bytes(value)
    return None


def run_worker(config: StreamsConfig, loglevel: str = "warn") -> None:
    """Run one worker in this process until it is stopped (SIGINT/SIGTERM).

    When an agent fails (:class:`AgentFailures`) the process exits at once with code 3, saying
    why (:func:`_exit_failed`).
    """
    ensure_topics(config)
    app = build_app(config, AgentFailures(stop=_exit_failed))
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    # faust's progress spinner sets the root logger to DEBUG (so that it spins on every record):
    # aiokafka then builds a debug record for every message sent, a few % of the worker's CPU
    worker.spinner = None
    worker.execute_from_commandline()


def _exit_failed(failed: BaseException) -> None:
    """End this worker process as a crash would, exit code 3, saying why.

    Not a graceful stop: faust's rebalance waits until every message an agent took is
    acknowledged, and the failed batch's never will be (acknowledging it would commit the
    offsets of records nobody processed). Like a ``kill -9``, this leaves every record whose
    state was not stored to the worker's successor (see "Effectively once").
    """
    from pcfx.console import print_error

    error = InfrastructureError(
        f"the streams worker stopped because an agent failed: {failed!r}",
        hint=(
            "The log above has the traceback. Restart the worker (as a supervisor would):"
            " the records it had not finished are processed again."
        ),
    )
    code = print_error(error)
    logging.shutdown()
    os._exit(int(code))
