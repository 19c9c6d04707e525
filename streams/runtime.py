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
is an upsert with a sequence, so a redelivered message is a ``DUPLICATE`` no-op in the core. A
crash can lose the *outputs* of a message whose state change was already in the changelog, so on
a ``DUPLICATE`` the agents re-send the state's current outputs; downstream, those are duplicates
too. Replays, restarts and rebalances therefore converge to the same results.

Internal topics and table changelogs hold :mod:`streams.codec` JSON (never pickle).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts import (
    AvroSerde,
    BillOfMaterials,
    KafkaSchemaRegistry,
    Rejection,
    SchemaRegistry,
    SignedBillOfMaterials,
    SignedEmissionFactor,
    SignedFootprint,
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
    Status,
    Subscribe,
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


def replay_component(state: ComponentState) -> tuple[Message, ...]:
    """What the component side would have sent for its current value (after a redelivery)."""
    if state.value is None:
        return ()
    return tuple(
        ChildValue(parent, state.ref, state.version, state.value, state.trace)
        for parent in state.parents
    )


def replay_product(state: ProductState) -> tuple[Message, ...]:
    """What the product side would have sent for its current BOM and result."""
    out: list[Message] = []
    if state.bom is not None:
        out.extend(Subscribe(ref, state.product_id, state.bom.revision) for ref in state.bom.refs)
    if state.result is not None:
        trace = (state.product_id,) if state.result.status is Status.CYCLE else ()
        out.append(ProductRolledUp(state.product_id, state.sequence, state.result, trace))
    return tuple(out)


class _Keys:
    """The key registry every worker keeps, fed by a reader of the whole ``pcf.keys`` topic."""

    def __init__(self, config: StreamsConfig, serde: AvroSerde) -> None:
        self.config = config
        self.serde = serde
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
    serde = AvroSerde(registry)
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
        stream_wait_empty=False,
    )
    keys = _Keys(config, serde)

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
    bom_table = table("boms")
    issued_table = table("issued")
    ledger = SequenceLedger(_TableLedger(ledger_table))

    async def send(messages: Iterable[Message]) -> None:
        for message in messages:
            if isinstance(message, BomDeclared | ChildValue):
                await product_in.send(key=message.key.encode(), value=codec.encode_message(message))
            else:
                ref: Ref = message.ref
                await component_in.send(key=str(ref).encode(), value=codec.encode_message(message))

    async def reject(result: Ingested, original: bytes) -> None:
        rejection: Rejection = result.rejection(original[:65536], _now(), config.processor)
        await rejected.send(
            key=result.source.key, value=serde.encode(config.topic("pcf.rejected"), rejection)
        )

    @app.task  # type: ignore[untyped-decorator]
    async def follow_keys() -> None:
        await keys.follow()

    async def ingest(stream: AsyncIterator[Any], name: str) -> AsyncIterator[Ingested]:
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
            # the BOM's metadata travels with it, so the product side holds it in its own table
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
            if step.outcome is Outcome.APPLIED:
                component_table[key] = codec.encode(step.state)
            outputs = step.outputs
            if step.outcome is Outcome.DUPLICATE:
                outputs = replay_component(step.state)
            await send(outputs)

    @app.agent(product_in)
    async def product_side(stream: Any) -> None:
        async for event in stream.events():
            message = codec.decode_message(event.value)
            pid = message.key
            key = pid.encode()
            bom_json = _header(event, "bom")
            stored = product_table.get(key)
            state = codec.decode(ProductState, stored) if stored else None
            step = product_step(state, message)
            if step.outcome is Outcome.APPLIED:
                product_table[key] = codec.encode(step.state)
                if bom_json is not None:
                    bom_table[key] = bom_json
            outputs = step.outputs
            if step.outcome is Outcome.DUPLICATE:
                outputs = replay_product(step.state)
            await send(outputs)
            raw_bom = bom_table.get(key)
            for out in outputs:
                if isinstance(out, ProductRolledUp) and raw_bom is not None:
                    bom = BillOfMaterials.model_validate_json(raw_bom)
                    issued = issued_table.get(key)
                    record = rolled_up_record(
                        out.result,
                        sequence=out.sequence,
                        bom=bom,
                        previous_pf_id=issued.decode() if issued else None,
                        now=_now(),
                    )
                    if record.footprint is not None:
                        issued_table[key] = str(record.footprint.id).encode()
                    await products_out.send(
                        key=pid.encode(), value=serde.encode(config.topic("pcf.products"), record)
                    )

    return app


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
