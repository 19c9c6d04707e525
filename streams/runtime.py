"""The faust-streaming application: short wiring of plain steps around the pure core.

Topology (every topic has the same partition count)::

    pcf.declared ─ingest─▶ FootprintDeclared ─┐   (key: the node's ref, product:… or factor:…)
    pcf.factors  ─ingest─▶ FactorPublished ───┼─▶ pcf.rollup ─▶ roll_up ─▶ pcf.products (Avro,
                                              │                         signed per batch)
    pcf.bom      ─ingest─▶ BomDeclared ───────┘        ▲          │  (table: nodes)
                                                       └──────────┘  ChildValue, Subscribe,
                                                                     Unsubscribe to other nodes
    anything refused ─────────────────────────────────────────▶ pcf.rejected (Avro Rejection)
    a figure far outside its category's range (contracts.pcr) ─▶ pcf.review (held for review)
    pcf.review.decisions ─▶ an officer's signed release (ingested again) or rejection (DLQ)
    pcf.keys ─▶ every worker reads it whole (the key registry) + one agent DLQs bad registrations

This module only wires; each step is a plain module with typed inputs and outputs:

- :mod:`streams._batching`: an agent's events in batches sized by the load;
- :mod:`streams._ingest_step`: a batch of data-topic records checked (accepted, rejected,
  parked) and forwarded to the roll-up as messages;
- :mod:`streams._packs`: those messages keyed by node and packed per partition;
- :mod:`streams._rollup_step`: a batch of messages applied to the nodes' rows, with local
  delivery (one :class:`~streams.rollup.Engine` per batch: products lowest first, each once),
  giving new rows, messages for other nodes and, per product, its last new result;
- :mod:`streams._publish`: those results built, encoded and signed once per batch;
- :mod:`streams._faust`: every adaptation of faust's and aiokafka's internals, and the faust
  version they were written against.

**Effectively once** (ARCHITECTURE decision 4): faust delivers at least once; every state change
is an upsert with a sequence, so a redelivered message is a ``DUPLICATE`` no-op in the core. The
roll-up agent works in batches (what arrived while it worked on the last one, up to
:data:`~streams._batching.BATCH_MAX` messages): a batch's messages are applied in order per key
(a product's are absorbed together and recomputed once), every output of the batch is sent (its
``pcf.products`` records, then the messages it applied itself, then the others), and the agent
waits for the broker to acknowledge all of them *before* it stores the batch's new states, one
row per key, written to the changelog (what a restarted worker recovers) as one record per
partition per batch (:class:`~streams._rollup_step.RowGroups`); the batch's input offsets are
acknowledged to faust after that. A crash therefore leaves, for every key, either no
new stored state (its redelivered messages are applied again and their outputs, sent again, are
duplicates downstream) or the state *and* all its outputs, so a ``DUPLICATE`` never needs
anything re-sent. (Re-sending the state's outputs on a ``DUPLICATE`` instead makes parents and
inputs echo each other forever: the re-sent ones are duplicates too.) One round of
acknowledgements per batch instead of per message is what lets a worker keep up with more than a
few hundred messages a second. The ingest agents record a sequence in the ledger before they
forward the record, so they do forward a ``DUPLICATE`` again; their inputs come from outside, so
nothing echoes. A redelivered record *older* than its subject's stored one is ``SUPERSEDED``:
counted and logged, neither forwarded nor sent to the DLQ (redelivery is not replay; see
:mod:`streams._ingest_step`). A rebalance waits until every message an agent has taken is
acknowledged (``stream_wait_empty``; messages in a batch are not acknowledged until the batch's
states are stored), so a worker that loses a partition never writes that partition's changelog
afterwards.
Replays, restarts and rebalances therefore converge to the same results, without faust's
(experimental) exactly-once mode.

**No stalls.** A record signed with a key not (yet) on ``pcf.keys`` (keys and data travel on
different topics, which Kafka does not order) is parked (:class:`~streams.ingest.ParkingLot`,
in memory) and the agent goes on with the records behind it. The task ``settle_parked``
re-checks it, in arrival order, as soon as a registration for its key comes into force, and
sends it to the DLQ (``unknown_key``) at its deadline: the time the broker appended it plus
``key_grace_s`` (:func:`~streams._ingest_step.settle`). At least once: a parked record's event
stays *unacknowledged* until it is resolved (the batches skip it; faust commits a partition's
offsets only up to its first unacknowledged record), so after a crash it and the records after
it are read again (those are then ``DUPLICATE`` no-ops, forwarded again like any redelivery,
or ``SUPERSEDED``).
Nothing is written to a table for it, so nothing needs recovering; the price is that a rebalance
(which waits for every taken record to be acknowledged) can wait up to ``key_grace_s`` for the
parked ones, which keeps that well below the rebalance timeout.

**The broker's clock.** The data topics are created with ``message.timestamp.type=
LogAppendTime`` (:func:`ensure_topics`, which refuses to start on one that has producer
timestamps); key validity is judged at a record's append time
(:func:`~streams._ingest_step.appended_at`).

Agents never block the event loop on the schema registry: the ids the worker encodes with are
resolved at start-up, and a schema id an incoming record names is fetched in a thread before the
record is decoded (:class:`~streams._schemas.Schemas`).

**Operations** (:mod:`contracts.observability`, label ``service="streams"``). Each batch adds
to the process's metrics once: records taken per topic and the partitions' lag (each
partition's end as the fetcher last saw it, minus the offset after the batch), records written
per topic, DLQ records by reason, and for the roll-up the time from the batch's oldest message
to its outputs acknowledged. :meth:`_Worker.readiness` answers ``/readyz``; :func:`run_worker`
sets up the log format and the metrics port.

Internal topics and table changelogs hold :mod:`streams.codec` bytes (positional JSON, layout 1;
never pickle; what workers wrote before, layout 0 and one changelog record per row, still
reads). The roll-up agent keeps the rows it last wrote decoded
(:class:`~streams._rollup_step.Rows`); a row whose bytes in the table are not those (a recovery,
a rebalance) is decoded from the table again, when its node is next touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faust
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pcf_exchange.contracts import (
    SERVICE_STARTUP_S,
    AvroSerde,
    KafkaSchemaRegistry,
    Rejection,
    RolledUpFootprint,
    SchemaRegistry,
    register_all,
    register_missing,
    topic_schemas,
)
from pcf_exchange.contracts import topics as table_topics
from pcf_exchange.contracts.errors import InfrastructureError, KeyStoreError, PcfError, TrustError
from pcf_exchange.contracts.handoff import HandoffSigner
from pcf_exchange.contracts.kafka_client import (
    faust_credentials,
    kafka_python_kwargs,
    librdkafka_config,
)
from pcf_exchange.contracts.observability import (
    METRICS,
    Readiness,
    configure_logging,
    start_ops_server,
)
from pcf_exchange.contracts.pcr import REVIEW_TOPICS, ReviewSerde
from pcf_exchange.streams import _faust, codec
from pcf_exchange.streams._batching import BATCH_MAX
from pcf_exchange.streams._ingest_step import (
    Held,
    Hold,
    Keys,
    TableLedger,
    act_on_decision,
    check_batch,
    forward,
    held_event,
    settle,
    source_of,
)
from pcf_exchange.streams._memory import HEAP_TRIM_S, collect_less, trim_heap
from pcf_exchange.streams._packs import ECHO_HEADER, Keyed, echo_stamp, packs, partition, unpack
from pcf_exchange.streams._publish import Publisher
from pcf_exchange.streams._rollup_step import BATCH_SECONDS, NodeRecord, Rows, Work, roll_up
from pcf_exchange.streams._schemas import Schemas
from pcf_exchange.streams.ingest import (
    DATA_TOPICS,
    Ingested,
    IngestOutcome,
    KeyRegistry,
    ParkingLot,
    SequenceLedger,
    SourceRef,
)
from pcf_exchange.streams.rollup import ProductRolledUp

__all__ = [
    "TABLES",
    "TOPICS",
    "AgentFailures",
    "StreamsConfig",
    "build_app",
    "ensure_topics",
    "run_worker",
]

log = logging.getLogger("pcfx.streams")

SERVICE = "streams"
"""The ``service`` label of this worker's metrics and logs (:mod:`contracts.observability`)."""


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


@dataclass
class AgentFailures:
    """What a worker does when one of its agents raises (a bug or a broken cluster, never a bad
    record: those go to the DLQ): it stops (every agent error is reported here,
    :func:`streams._faust.make_app`).

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


def _now() -> datetime:
    return datetime.now(UTC)


PARKED_POLL_S = 0.25
"""Longest the worker goes without looking at its parked records (a registration that comes
into force wakes it at once)."""


PRODUCER_LINGER_S = 0.005
"""How long the producer waits to fill a batch (faust's default is 0: a produce request as soon
as the previous one is answered). The agents send a few messages per input, and acknowledgements
are awaited per batch, so 5 ms more per hop buys fuller produce requests: about 14 % less worker
CPU per update, measured on the backlog bench (3.5 -> 3.0 ms)."""


def _header(event: Any, name: str) -> bytes | None:
    headers = event.headers or {}
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:
        if key == name:
            return bytes(value)
    return None


class _Edge:
    """The worker's outputs: records handed to faust's producer (each returns the future of
    the broker's acknowledgement) and rejections to the DLQ."""

    def __init__(
        self, app: faust.App, config: StreamsConfig, serde: AvroSerde, reviews: ReviewSerde
    ) -> None:
        self.app = app
        self.config = config
        self.serde = serde
        self.reviews = reviews
        self.nodes = config.topic("pcf.rollup")
        self.products = config.topic("pcf.products")
        self.rejected = config.topic("pcf.rejected")
        self.review = config.topic("pcf.review")
        out = METRICS.records_out
        self._out_products = out.labels(SERVICE, self.products)
        self._out_nodes = out.labels(SERVICE, self.nodes)
        self._out_rejected = out.labels(SERVICE, self.rejected)
        self._out_review = out.labels(SERVICE, self.review)

    async def publish(
        self, records: list[tuple[bytes, bytes]], headers: list[list[tuple[str, bytes]]]
    ) -> list[Awaitable[Any]]:
        """A batch's ``pcf.products`` records, in order, with their signature headers."""
        self._out_products.inc(len(records))
        return [
            await _faust.send(self.app, self.products, key, value, None, signed)
            for (key, value), signed in zip(records, headers, strict=True)
        ]

    async def send(
        self, messages: Keyed, headers: list[tuple[str, bytes]] | None = None
    ) -> list[Awaitable[Any]]:
        """Messages (with their nodes' keys) packed, one record per partition of their nodes
        (:func:`~streams._packs.packs`)."""
        sent = [
            await _faust.send(self.app, self.nodes, None, pack, home, headers)
            for home, pack in packs(messages, self.config.partitions)
        ]
        self._out_nodes.inc(len(sent))
        return sent

    async def reject(self, result: Ingested, original: bytes) -> None:
        rejection: Rejection = result.rejection(original[:65536], _now(), self.config.processor)
        value = self.serde.encode(self.rejected, rejection)
        METRICS.dlq.labels(SERVICE, rejection.reason or rejection.error_code).inc()
        self._out_rejected.inc()
        # (acknowledged with the batch's other outputs: faust flushes its producer before it
        # commits the batch's offsets)
        await _faust.send(self.app, self.rejected, result.source.key, value)

    async def hold(self, hold: Hold) -> None:
        """A record held for review (:mod:`contracts.pcr`): to ``pcf.review``, on its own
        partition (the officer's decision goes to the same one, with the ledger's rows)."""
        value = self.reviews.encode(self.review, held_event(hold, _now()))
        source = hold.result.source
        self._out_review.inc()
        await _faust.send(self.app, self.review, source.key, value, source.partition)

    async def unreadable(self, event: Any, error: codec.CodecError) -> None:
        """An internal-topic record no worker wrote (or a worker of another version): the DLQ."""
        source = source_of(event, self.nodes)
        await self.reject(Ingested(IngestOutcome.REJECTED, source, error=error), event.value or b"")

    async def unwritable(self, out: ProductRolledUp, error: PcfError, origin: Any) -> None:
        """A product result no contract record can hold (:mod:`streams._publish`): the DLQ,
        with the result, keyed by the product and placed at the roll-up batch that computed it
        (*origin*, its first event), instead of failing the agent on it at every restart."""
        at = origin.message
        key = out.product_id.encode()
        source = SourceRef(self.nodes, at.partition, at.offset, _now(), key)
        log.error("result for %s sent to the DLQ: %s", out.product_id, error)
        result = Ingested(IngestOutcome.REJECTED, source, error=error)
        await self.reject(result, codec.encode_message(out))

    async def forward(self, name: str, checked: list[Ingested]) -> None:
        """Send checked records of data topic *name* to the roll-up
        (:func:`~streams._ingest_step.forward`)."""
        forwarded = forward(name, checked)
        for rejected in forwarded.rejected:
            await self.reject(rejected, b"")
        for messages, headers in forwarded.sends:
            await self.send(messages, headers)


def cluster_replication(bootstrap: str) -> int:
    """The replication factor the topic table gives on the cluster at *bootstrap*
    (:func:`contracts.topics.replication_for` of the brokers it lists now)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(librdkafka_config(**{"bootstrap.servers": bootstrap}))
    try:
        brokers = len(admin.list_topics(timeout=30).brokers)
    except KafkaException as exc:  # the cluster did not answer
        raise InfrastructureError(
            f"cannot list the brokers at {bootstrap}: {exc}",
            hint="Check KAFKA_BOOTSTRAP_SERVERS and the client's security settings.",
        ) from exc
    return table_topics.replication_for(brokers).factor


def build_app(config: StreamsConfig, failures: AgentFailures | None = None) -> _faust.WorkerApp:
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
    registry = config.registry
    if registry is None:
        # Register what is missing with a short-lived writer (only the operator may write the
        # schemas topic, and a new writer fences the previous one), then read with a plain
        # client: a worker under its own principal needs only read access once they are there.
        # The deployment's own registry topic (<prefix>pcf._schemas).
        register_missing(
            config.bootstrap, topic_schemas(config.topic_prefix), prefix=config.topic_prefix
        )
        registry = KafkaSchemaRegistry(
            config.bootstrap, prefix=config.topic_prefix, startup_s=SERVICE_STARTUP_S
        )
    else:
        register_all(registry, config.topic_prefix)
    schemas = Schemas(registry)
    serde = AvroSerde(schemas)
    encodes = [("pcf.products", RolledUpFootprint), ("pcf.rejected", Rejection)]
    schemas.warm(serde, [(config.topic(name), model) for name, model in encodes])
    review_serde = ReviewSerde(schemas)
    for name in REVIEW_TOPICS:  # (resolved at start-up, like the ids above)
        schema_id = review_serde.schema_id(config.topic(name))
        schemas.schemas[schema_id] = registry.get_schema(schema_id)
    app = _faust.make_app(
        config.app_id,
        failures if failures is not None else AgentFailures(),
        broker=f"kafka://{config.bootstrap}",
        broker_credentials=faust_credentials(),
        store="memory://",
        datadir=str(config.data_dir),
        topic_partitions=config.partitions,
        # what the topic table gives on this cluster (3 on a 3-node cluster): faust creates its
        # leader-election topic (<app id>-__assignor-__leader) itself, with this factor
        topic_replication_factor=cluster_replication(config.bootstrap),
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
        # (stream_wait_empty stays on: a rebalance waits for the message each agent is on, so
        # a worker never writes the changelog of a partition it has lost; see the docstring)
    )

    def topic(name: str) -> Any:
        return app.topic(
            config.topic(name), key_type=bytes, value_type=bytes, partitions=config.partitions
        )

    def table(name: str) -> Any:
        # Keys and values are bytes (codec JSON): typed as bytes, faust uses its raw codec;
        # otherwise its JSON default fails to read the changelog back on recovery.
        return app.Table(name, partitions=config.partitions, key_type=bytes, value_type=bytes)

    incarnation = os.urandom(8)  # this app's, so that it knows its own echoes and row groups
    ledger_table = table(TABLES[0])
    node_table = _faust.row_table(app, TABLES[1], config.partitions, incarnation)
    worker = _Worker(
        app,
        config,
        config.signer,
        serde,
        review_serde,
        schemas,
        ledger_table,
        node_table,
        incarnation,
    )
    app.readiness = worker.readiness

    @app.task  # type: ignore[untyped-decorator]
    async def follow_keys() -> None:
        await worker.keys.follow()

    @app.task  # type: ignore[untyped-decorator]
    async def settle_parked() -> None:
        await worker.settle_parked()

    @app.timer(HEAP_TRIM_S)  # type: ignore[untyped-decorator]
    async def give_back_free_memory() -> None:
        trim_heap()

    @app.agent(topic("pcf.declared"))
    async def ingest_declared(stream: Any) -> None:
        await worker.ingest(stream, "pcf.declared")

    @app.agent(topic("pcf.factors"))
    async def ingest_factors(stream: Any) -> None:
        await worker.ingest(stream, "pcf.factors")

    @app.agent(topic("pcf.bom"))
    async def ingest_boms(stream: Any) -> None:
        await worker.ingest(stream, "pcf.bom")

    @app.agent(topic("pcf.review.decisions"))
    async def review_decisions(stream: Any) -> None:
        await worker.review_decisions(stream)

    @app.agent(topic("pcf.keys"))
    async def audit_keys(stream: Any) -> None:
        await worker.audit_keys(stream)

    @app.agent(topic("pcf.rollup"))
    async def roll_up_nodes(stream: Any) -> None:
        await worker.roll_up(stream)

    return app


class _Worker:
    """What the agents of one app do, each batch through the plain steps; the I/O is here."""

    def __init__(
        self,
        app: faust.App,
        config: StreamsConfig,
        signer: HandoffSigner,
        serde: AvroSerde,
        reviews: ReviewSerde,
        schemas: Schemas,
        ledger_table: Any,
        node_table: _faust.RowTable,
        incarnation: bytes,
    ) -> None:
        self.app = app
        self.config = config
        self.serde = serde
        self.reviews = reviews
        self.schemas = schemas
        self.edge = _Edge(app, config, serde, reviews)
        self.keys = Keys(
            config.topic("pcf.keys"), config.bootstrap, config.operator_keys, serde, schemas
        )
        self.ledger_rows = TableLedger(ledger_table)
        self.ledger = SequenceLedger(self.ledger_rows)
        self.node_table = node_table
        self.node_rows = Rows(NodeRecord, limit=200_000)  # products and the inputs they use
        self.heights: dict[str, int] = {}  # products' heights in the BOM graph (Engine.height)
        self.nodes = config.topic("pcf.rollup")
        self.publisher = Publisher(serde, config.topic("pcf.products"), signer)
        self.parking: ParkingLot[Held] = ParkingLot(timedelta(seconds=config.key_grace_s))
        self.parked: set[int] = set()
        """``id()`` of every parked event: the batches leave those unacknowledged."""
        self.incarnation = incarnation
        self.changelog = config.changelog(TABLES[1])

    def check(self, name: str) -> Callable[[bytes, SourceRef], Ingested]:
        """The checks of data topic *name*'s records, against the keys and ledger as they are."""
        record_type = DATA_TOPICS[name]
        return lambda data, source: self.keys.check(data, source, self.ledger, record_type)

    async def ingest(self, stream: Any, name: str) -> None:
        """Each batch checked (:func:`~streams._ingest_step.check_batch`): rejections to the
        DLQ, records whose key is not known yet parked (see "No stalls"), the ledger rows
        written, the checked records forwarded. What it hands the producer is delivered
        before the batch's offsets are committed (faust flushes the producer first)."""
        topic = self.config.topic(name)
        parked = self.parked
        taken = METRICS.records_in.labels(SERVICE, topic)
        async for events in _faust.ready_batches(stream, BATCH_MAX, lambda e: id(e) in parked):
            taken.inc(len(events))
            self.lag(topic, events)
            await self.keys.ready.wait()
            for event in events:
                await self.schemas.resolve(event.value)
            records = [(event, source_of(event, topic), event.value) for event in events]
            batch = check_batch(records, self.check(name), self.ledger_rows)
            for event, result in batch.parked:
                assert result.signer is not None
                held = Held(name, stream, event, result.source)
                self.parking.park(result.signer, held.source.appended_at, held)
                parked.add(id(event))
            for result, original in batch.rejected:
                await self.edge.reject(result, original)
            for hold in batch.held:
                await self.edge.hold(hold)
            self.ledger_rows.flush()
            await self.edge.forward(name, batch.checked)

    async def settle_parked(self) -> None:
        """Release parked records whose key came into force, and send those past their
        deadline to the DLQ (``unknown_key``), as keys arrive and deadlines pass."""
        keys, parking = self.keys, self.parking
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
            settled = settle(
                parking,
                keys.registry,
                lambda held: self.check(held.name)(held.event.value, held.source),
                self.ledger_rows,
                _now(),
                self.config.key_grace_s,
            )
            for result, original in settled.rejected:
                await self.edge.reject(result, original)
            for hold in settled.held:
                await self.edge.hold(hold)
            self.ledger_rows.flush()
            for name, results in settled.checked.items():
                await self.edge.forward(name, results)
            for held in settled.resolved:  # resolved: its offset may be committed
                self.parked.discard(id(held.event))
                await held.stream.ack(held.event)

    async def review_decisions(self, stream: Any) -> None:
        """Compliance officers' decisions on held records
        (:func:`~streams._ingest_step.act_on_decision`): a release re-enters ingestion (range
        waived) and is forwarded, a rejection (or a decision that does not verify) goes to the
        DLQ. One at a time: decisions are rare, and each is a person's. At least once: a
        redelivered release re-checks as a ``DUPLICATE`` and is forwarded again (a no-op in the
        roll-up); a redelivered rejection writes its DLQ record again."""
        topic = self.config.topic("pcf.review.decisions")
        prefix = self.config.topic_prefix
        async for event in stream.events():
            await self.keys.ready.wait()
            await self.schemas.resolve(event.value)
            source = source_of(event, topic)
            try:
                review = self.reviews.decode(event.value or b"")
            except PcfError as exc:
                unreadable = Ingested(IngestOutcome.REJECTED, source, error=exc)
                await self.edge.reject(unreadable, event.value or b"")
                continue
            name = review.source_topic.removeprefix(prefix)
            if name not in DATA_TOPICS or not review.source_topic.startswith(prefix):
                data_topics = ", ".join(map(self.config.topic, DATA_TOPICS))
                error = TrustError(
                    f"the decision on {review.held_id} names topic {review.source_topic!r}, not"
                    f" a data topic of this deployment ({data_topics})",
                    reason="decision_mismatch",
                )
                refused = Ingested(IngestOutcome.REJECTED, source, error=error)
                await self.edge.reject(refused, event.value or b"")
                continue
            await self.schemas.resolve(review.original)
            self.ledger_rows.at(review.source_topic, review.source_partition)
            acted = act_on_decision(review, source, self.keys.registry, self.check(name))
            if acted.rejected is not None:
                await self.edge.reject(acted.rejected, review.original)
            self.ledger_rows.flush()
            if acted.checked is not None:
                await self.edge.forward(name, [acted.checked])

    async def audit_keys(self, stream: Any) -> None:
        """One worker per partition reports bad key registrations to the DLQ (once)."""
        registrations = KeyRegistry(operator_keys=dict(self.config.operator_keys))
        topic = self.config.topic("pcf.keys")
        async for event in stream.events():
            await self.schemas.resolve(event.value)
            result = registrations.apply(event.value, source_of(event, topic), self.serde)
            if result.outcome is IngestOutcome.REJECTED:
                await self.edge.reject(result, event.value)

    def lag(self, topic: str, events: list[Any]) -> None:
        """Set the consumer lag of the partitions of *topic* a batch came from: each one's end
        minus the offset after the batch's last event on it (per batch, a look-up each)."""
        last = {event.message.partition: event.message.offset for event in events}
        for partition_, offset in last.items():
            end = _faust.highwater(self.app, topic, partition_)
            if end is not None:
                METRICS.lag(SERVICE, topic, partition_, end, offset + 1)

    def readiness(self) -> Readiness:
        """``/readyz``: the key registry read (records are judged against it) and the consumer
        group joined, not rebalancing."""
        if not self.keys.ready.is_set():
            return Readiness.no(f"reading the key registry ({self.config.topic('pcf.keys')})")
        if not _faust.joined(self.app):
            return Readiness.no(f"joining consumer group {self.config.app_id!r}")
        return Readiness.yes()

    def row_of(self, key: bytes) -> NodeRecord | None:
        """A node's stored row (decoded once per version, :class:`Rows`)."""
        return self.node_rows.get(key, self.node_table.get(key))

    async def roll_up(self, stream: Any) -> None:
        """Each batch of roll-up packs: applied (:func:`~streams._rollup_step.roll_up`), its
        products' last results published (:class:`~streams._publish.Publisher`), every output
        sent and acknowledged, then the new rows stored (see "Effectively once")."""
        nodes, partitions, edge = self.nodes, self.config.partitions, self.edge
        taken = METRICS.records_in.labels(SERVICE, nodes)
        latency = METRICS.rollup_latency.labels(SERVICE)
        async for events in _faust.ready_batches(stream, BATCH_MAX):
            taken.inc(len(events))
            self.lag(nodes, events)
            oldest = min(event.message.timestamp for event in events)
            local = _faust.assigned(self.app, nodes)
            stamp = echo_stamp(self.incarnation, _faust.generation(self.app))
            work: Work = {}
            for event in events:
                if _header(event, ECHO_HEADER) == stamp:
                    continue  # applied by this app before it sent it: see "Local delivery"
                try:
                    keyed = unpack(event.value or b"", event.message.partition, nodes, partitions)
                except codec.CodecError as exc:
                    await edge.unreadable(event, exc)
                    continue
                bom = _header(event, "bom")
                for key, message in keyed:
                    work.setdefault(key, []).append((bom, message))
            batch = roll_up(
                work,
                self.row_of,
                local,
                partitions,
                heights=self.heights,
                deadline=time.monotonic() + BATCH_SECONDS,
            )
            published = self.publisher.publish(batch.results, batch.rows, _now)
            for unwritable in published.unwritable:
                await edge.unwritable(unwritable.result, unwritable.error, events[0])
            # every output goes to the topic, the ones applied above too (see "Local delivery"),
            # those first (a node's later messages may be among the others); the batch's outputs
            # acknowledged first, then its states: see "Effectively once"
            pending = await edge.publish(published.records, published.headers)
            pending.extend(await edge.send(batch.applied, [(ECHO_HEADER, stamp)]))
            pending.extend(await edge.send(batch.others))
            await asyncio.gather(*pending)
            latency.observe(max(0.0, time.time() - oldest))
            # the new rows, one changelog record per partition (_rollup_step.RowGroups)
            by_partition: dict[int, dict[bytes, bytes]] = {}
            for key, node in {**batch.rows, **published.rows}.items():
                data = codec.encode(node)
                by_partition.setdefault(partition(key, partitions), {})[key] = data
                self.node_rows.keep(key, data, node)
            for home, rows in by_partition.items():
                for key, value in self.node_table.store_rows(home, rows):
                    await _faust.send(self.app, self.changelog, key, value, home)


TOPICS = (
    "pcf.declared",
    "pcf.factors",
    "pcf.bom",
    "pcf.keys",
    "pcf.products",
    "pcf.rejected",
    "pcf.rollup",
    "pcf.review",
    "pcf.review.decisions",
)
TABLES = ("ingest-ledger", "nodes")
"""The app's tables: the ingestion ledger and the roll-up's nodes (both roles of each)."""
_CO_PARTITIONED = (*DATA_TOPICS, "pcf.rollup", "pcf.review.decisions")
"""The topics whose agents write the tables: faust needs as many partitions as the changelogs."""


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


def run_worker(
    config: StreamsConfig,
    loglevel: str = "warn",
    *,
    log_format: str = "text",
    metrics_port: int = 0,
) -> None:
    """Run one worker in this process until it is stopped (SIGINT/SIGTERM).

    Logs go to stderr in *log_format* from *loglevel* up (:func:`contracts.observability.
    configure_logging`: faust's own logging set-up is turned off, so that the worker's lines
    have the same fields as the other services'). With a *metrics_port*, ``/metrics``,
    ``/healthz`` and ``/readyz`` are served on it (:meth:`_Worker.readiness`).

    When an agent fails (:class:`AgentFailures`) the process exits at once with code 3, saying
    why (:func:`_exit_failed`).
    """
    configure_logging(SERVICE, loglevel, log_format)
    ensure_topics(config)
    app = build_app(config, AgentFailures(stop=_exit_failed))
    start_ops_server(SERVICE, metrics_port, app.readiness)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, override_logging=False)
    # faust's progress spinner sets the root logger to DEBUG (so that it spins on every record):
    # aiokafka then builds a debug record for every message sent, a few % of the worker's CPU
    worker.spinner = None
    collect_less()
    worker.execute_from_commandline()


def _exit_failed(failed: BaseException) -> None:
    """End this worker process as a crash would, exit code 3, saying why.

    Not a graceful stop: faust's rebalance waits until every message an agent took is
    acknowledged, and the failed batch's never will be (acknowledging it would commit the
    offsets of records nobody processed). Like a ``kill -9``, this leaves every record whose
    state was not stored to the worker's successor (see "Effectively once").
    """
    error = InfrastructureError(
        f"the streams worker stopped because an agent failed: {failed!r}",
        hint=(
            "The log above has the traceback. Restart the worker (as a supervisor would):"
            " the records it had not finished are processed again."
        ),
    )
    # plain stderr, no rich: this package sits below the command line (it never imports pcfx);
    # 3 is the README's exit code for "infrastructure unavailable", as pcfx.console maps it
    sys.stderr.write(f"{type(error).__name__}: {error.message}\n→ {error.hint}\n")
    sys.stderr.flush()
    logging.shutdown()
    os._exit(3)
