"""The faust-streaming application: thin agents around the pure ingestion checks and roll-up core.

Topology (every topic has the same partition count; keys are product or factor ids)::

    pcf.declared ─ingest─▶ FootprintDeclared ─┐
    pcf.factors  ─ingest─▶ FactorPublished ───┼─▶ <component topic>  (key: product:/factor: ref)
                    ┌─ Subscribe/Unsubscribe ─┤        │ component side (table: components)
                    │   ProductRolledUp ──────┘        ▼ ChildValue
    pcf.bom ─ingest─▶ BomDeclared ──────────────▶ <product topic>    (key: parent product id)
                                                       │ product side (tables: products, boms)
                                                       ├─▶ back to the component topic
                                                       └─▶ pcf.products (Avro RolledUpFootprint)
    anything refused ────────────────────────────────────▶ pcf.rejected (Avro Rejection)
    pcf.keys ─▶ every worker reads it whole (the key registry) + one agent DLQs bad registrations

**Effectively once** (ARCHITECTURE decision 4): faust delivers at least once; every state change
is an upsert with a sequence, so a redelivered message is a ``DUPLICATE`` no-op in the core. The
roll-up agents send a message's outputs and wait for the broker to acknowledge them *before* they
store the new state (whose changelog record is what a restarted worker recovers). A crash
therefore leaves either no stored state (the redelivered message is applied again and its
outputs, sent again, are duplicates downstream) or the state *and* its outputs, so a
``DUPLICATE`` never needs anything re-sent. (Re-sending the state's outputs on a ``DUPLICATE``
instead makes the two sides echo each other forever: the re-sent messages are duplicates too.)
The ingest agents record a sequence in the ledger before they forward the record, so they do
forward a ``DUPLICATE`` again; their inputs come from outside, so nothing echoes. A rebalance
waits for the message each agent is processing (``stream_wait_empty``), so a worker that loses a
partition never writes that partition's changelog afterwards. Replays, restarts and rebalances
therefore converge to the same results, without faust's (experimental) exactly-once mode.

Agents never block the event loop on the schema registry: the ids the worker encodes with are
resolved at start-up, and a schema id an incoming record names is fetched in a thread before the
record is decoded (:class:`_Schemas`).

Internal topics and table changelogs hold :mod:`streams.codec` JSON (never pickle).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from faust.tables import TableManager
from faust.tables.recovery import Recovery

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
)
from contracts.errors import PcfError, TrustError
from streams import codec
from streams.adapt import core_bom, core_factor, core_footprint, rolled_up_record
from streams.ingest import (
    DATA_TOPICS,
    Ingested,
    IngestOutcome,
    KeyRegistry,
    SequenceLedger,
    SourceRef,
    check_record,
)
from streams.rollup import (
    BomDeclared,
    ChildValue,
    ComponentState,
    FactorPublished,
    FootprintDeclared,
    Message,
    Outcome,
    ProductRolledUp,
    ProductState,
    Ref,
    component_step,
    product_step,
)

__all__ = ["TOPICS", "StreamsConfig", "build_app", "ensure_topics", "run_worker"]

log = logging.getLogger("pcfx.streams")


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
    """How long a record signed with a not-yet-registered key waits before the DLQ."""
    data_dir: Path = Path(".pcfx/streams")
    processor: str = "pcfx-streams"
    registry: SchemaRegistry | None = field(default=None, compare=False)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


def _now() -> datetime:
    return datetime.now(UTC)


def _produced_at(event: Any) -> datetime:
    ts = getattr(event.message, "timestamp", None)
    return datetime.fromtimestamp(ts, UTC) if ts else _now()


def _source(event: Any, topic: str) -> SourceRef:
    msg = event.message
    return SourceRef(topic, msg.partition, msg.offset, _produced_at(event), msg.key)


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
        self.changed = asyncio.Condition()

    async def follow(self) -> None:
        """Read ``pcf.keys`` from the start, forever; ``ready`` once caught up with the end."""
        topic = self.config.topic("pcf.keys")
        consumer = AIOKafkaConsumer(
            topic,
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
                        source = SourceRef(
                            tp.topic, tp.partition, rec.offset,
                            datetime.fromtimestamp(rec.timestamp / 1000, UTC), rec.key,
                        )  # fmt: skip
                        await self.schemas.resolve(rec.value)
                        self.registry.apply(rec.value, source, self.serde)
                if batches:
                    async with self.changed:
                        self.changed.notify_all()
                if not self.ready.is_set():
                    positions = {tp: await consumer.position(tp) for tp in partitions}
                    if all(positions[tp] >= end[tp] for tp in partitions):
                        self.ready.set()
        finally:
            await consumer.stop()

    async def check(
        self, data: bytes, source: SourceRef, ledger: SequenceLedger, record_type: type[Any]
    ) -> Ingested:
        """check_record, waiting up to the grace period for a key that is not registered yet."""
        await self.ready.wait()
        await self.schemas.resolve(data)
        deadline = asyncio.get_running_loop().time() + self.config.key_grace_s
        while True:
            result = check_record(
                data,
                source,
                serde=self.serde,
                keys=self.registry,
                ledger=ledger,
                record_type=record_type,
            )
            remaining = deadline - asyncio.get_running_loop().time()
            if result.outcome is not IngestOutcome.PENDING_KEY or remaining <= 0:
                break
            async with self.changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), timeout=remaining)
        if result.outcome is IngestOutcome.PENDING_KEY:  # grace period over
            error = result.error or TrustError("signing key unknown", reason="unknown_key")
            return Ingested(IngestOutcome.REJECTED, source, error=error)
        return result


class _TableLedger(MutableMapping[str, tuple[int, str]]):
    """The ingestion ledger's memory in a faust table (changelog-backed, per partition)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, subject: str) -> tuple[int, str]:
        sequence, digest = codec.decode(tuple[int, str], self.table[subject.encode()])
        return sequence, digest

    def __setitem__(self, subject: str, value: tuple[int, str]) -> None:
        self.table[subject.encode()] = codec.encode(value)

    def __delitem__(self, subject: str) -> None:
        del self.table[subject.encode()]

    def __iter__(self) -> Iterator[str]:
        return (k.decode() for k in self.table)

    def __len__(self) -> int:
        return len(self.table)


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


class _TableManager(TableManager):
    """faust's table manager, with :class:`_Recovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = _Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


TOPICS = (
    "pcf.declared",
    "pcf.factors",
    "pcf.bom",
    "pcf.keys",
    "pcf.products",
    "pcf.rejected",
    "pcf.rollup.component",
    "pcf.rollup.product",
)


def ensure_topics(config: StreamsConfig) -> None:
    """Create the app's topics with ``config.partitions`` partitions (existing ones are kept).

    Faust only creates its own changelogs; topics that Kafka would auto-create get one
    partition, which breaks co-partitioning, so they are created here first.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=config.bootstrap, client_id="pcfx-streams-setup")
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(config.topic(name), config.partitions, 1)
            for name in TOPICS
            if config.topic(name) not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was quicker
                admin.create_topics(missing)
    finally:
        admin.close()


def build_app(config: StreamsConfig) -> faust.App:
    """The faust app with its topics, tables and agents (see the module docstring)."""
    registry = config.registry
    if registry is None:
        # Register once with a short-lived writer (a new writer fences the previous one, so
        # a long-lived one would fight the publishers), then read with a plain client.
        writer = KafkaSchemaRegistry(config.bootstrap, writer=True)
        try:
            register_all(writer, config.topic_prefix)
        finally:
            writer.close()
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
    app = faust.App(
        config.app_id,
        broker=f"kafka://{config.bootstrap}",
        store="memory://",
        datadir=str(config.data_dir),
        topic_partitions=config.partitions,
        topic_replication_factor=1,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        # a killed worker's partitions move to the others after 10 s, not faust's default 60 s
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        TableManager=_TableManager,
        # (stream_wait_empty stays on: a rebalance waits for the message each agent is on, so
        # a worker never writes the changelog of a partition it has lost; see the docstring)
    )
    keys = _Keys(config, serde, schemas)

    def topic(name: str) -> Any:
        return app.topic(
            config.topic(name), key_type=bytes, value_type=bytes, partitions=config.partitions
        )

    declared, factors, boms = topic("pcf.declared"), topic("pcf.factors"), topic("pcf.bom")
    keys_topic, products_out, rejected = (
        topic("pcf.keys"),
        topic("pcf.products"),
        topic("pcf.rejected"),
    )
    component_in, product_in = topic("pcf.rollup.component"), topic("pcf.rollup.product")

    def table(name: str) -> Any:
        # Keys and values are bytes (codec JSON): typed as bytes, faust uses its raw codec;
        # otherwise its JSON default fails to read the changelog back on recovery.
        return app.Table(name, partitions=config.partitions, key_type=bytes, value_type=bytes)

    ledger_table = table("ingest-ledger")
    component_table = table("components")
    product_table = table("products")
    ledger = SequenceLedger(_TableLedger(ledger_table))

    async def send(messages: Iterable[Message]) -> list[Awaitable[Any]]:
        """Hand *messages* to the producer; the returned futures complete on the broker's ack."""
        sent: list[Awaitable[Any]] = []
        for message in messages:
            if isinstance(message, BomDeclared | ChildValue):
                key, out = message.key.encode(), product_in
            else:
                ref: Ref = message.ref
                key, out = str(ref).encode(), component_in
            sent.append(await out.send(key=key, value=codec.encode_message(message)))
        return sent

    async def reject(result: Ingested, original: bytes) -> None:
        rejection: Rejection = result.rejection(original[:65536], _now(), config.processor)
        await rejected.send(
            key=result.source.key, value=serde.encode(config.topic("pcf.rejected"), rejection)
        )

    @app.task  # type: ignore[untyped-decorator]
    async def follow_keys() -> None:
        await keys.follow()

    async def ingest(stream: AsyncIterator[Any], name: str) -> AsyncIterator[Ingested]:
        """Checked records (``ACCEPTED`` and ``DUPLICATE``: the ledger is written before the
        record is forwarded, so a redelivered one is forwarded again); rejections go to the DLQ."""
        record_type = DATA_TOPICS[name]
        async for event in stream.events():  # type: ignore[attr-defined]
            data = event.value
            source = _source(event, config.topic(name))
            result = await keys.check(data, source, ledger, record_type)
            if result.outcome is IngestOutcome.REJECTED:
                await reject(result, data)
                continue
            yield result

    @app.agent(declared)
    async def ingest_declared(stream: Any) -> None:
        async for result in ingest(stream, "pcf.declared"):
            assert isinstance(result.record, SignedFootprint)
            signed = result.record
            fp = core_footprint(
                signed.footprint, sequence=signed.sequence, content_hash=result.content_hash
            )
            await send([FootprintDeclared(fp)])

    @app.agent(factors)
    async def ingest_factors(stream: Any) -> None:
        async for result in ingest(stream, "pcf.factors"):
            assert isinstance(result.record, SignedEmissionFactor)
            signed_factor = result.record
            factor = core_factor(
                signed_factor.factor,
                sequence=signed_factor.sequence,
                content_hash=result.content_hash,
            )
            await send([FactorPublished(factor)])

    @app.agent(boms)
    async def ingest_boms(stream: Any) -> None:
        async for result in ingest(stream, "pcf.bom"):
            assert isinstance(result.record, SignedBillOfMaterials)
            try:
                bom = core_bom(result.record.bom)
            except PcfError as exc:
                await reject(Ingested(IngestOutcome.REJECTED, result.source, error=exc), b"")
                continue
            # the BOM's metadata travels with it, so the product side keeps it in its row
            await product_in.send(
                key=bom.product_id.encode(),
                value=codec.encode_message(BomDeclared(bom)),
                headers={"bom": result.record.bom.model_dump_json(by_alias=True).encode()},
            )

    @app.agent(keys_topic)
    async def audit_keys(stream: Any) -> None:
        """One worker per partition reports bad key registrations to the DLQ (once)."""
        check = KeyRegistry(operator_keys=dict(config.operator_keys))
        async for event in stream.events():
            await schemas.resolve(event.value)
            result = check.apply(event.value, _source(event, config.topic("pcf.keys")), serde)
            if result.outcome is IngestOutcome.REJECTED:
                await reject(result, event.value)

    @app.agent(component_in)
    async def component_side(stream: Any) -> None:
        async for event in stream.events():
            message = codec.decode_message(event.value)
            key = str(message.ref).encode()
            stored = component_table.get(key)
            state = codec.decode(ComponentState, stored) if stored else None
            step = component_step(state, message)
            if step.outcome not in _STORED:
                _no_op(step.outcome, message)
                continue
            # outputs acknowledged first, then the state: see "Effectively once" above
            await asyncio.gather(*await send(step.outputs))
            component_table[key] = codec.encode(step.state)

    @app.agent(product_in)
    async def product_side(stream: Any) -> None:
        async for event in stream.events():
            message = codec.decode_message(event.value)
            pid = message.key
            key = pid.encode()
            stored = product_table.get(key)
            row = codec.decode(_ProductRecord, stored) if stored else None
            step = product_step(row.state if row else None, message)
            if step.outcome not in _STORED:
                _no_op(step.outcome, message)
                continue
            bom_json = _header(event, "bom") if isinstance(message, BomDeclared) else None
            bom_doc = bom_json.decode() if bom_json is not None else row.bom if row else None
            issued = row.issued if row else None
            pending = await send(step.outputs)
            for out in step.outputs:
                if isinstance(out, ProductRolledUp) and bom_doc is not None:
                    record = rolled_up_record(
                        out.result,
                        sequence=out.sequence,
                        bom=BillOfMaterials.model_validate_json(bom_doc),
                        previous_pf_id=issued,
                        now=_now(),
                    )
                    if record.footprint is not None:
                        issued = str(record.footprint.id)
                    value = serde.encode(config.topic("pcf.products"), record)
                    pending.append(await products_out.send(key=key, value=value))
            # outputs acknowledged first, then the state: see "Effectively once" above
            await asyncio.gather(*pending)
            product_table[key] = codec.encode(_ProductRecord(step.state, bom_doc, issued))

    return app


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
    """Run one worker in this process until it is stopped (SIGINT/SIGTERM)."""
    ensure_topics(config)
    app = build_app(config)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
