"""Every adaptation of faust-streaming (and of the aiokafka consumer under it) the worker makes.

Everything that reaches into a private name of faust or aiokafka is in this module and nowhere
else, each with a comment saying what it relies on, so that an upgrade has one file to re-check:
:data:`FAUST_STREAMING_VERSION` is the version they were written against, and
``tests/streams/test_runtime_faust.py`` fails, naming this module, when the installed one is
another. The rest of :mod:`streams` sees plain functions and classes:

- :func:`ready_batches`: a faust stream's events in load-sized batches (:mod:`streams._batching`),
  acknowledged after their work;
- :func:`in_partition`: which changelog partition a table write goes to (faust's "current
  event");
- :func:`assigned` / :func:`generation`: the partitions a worker holds and its consumer
  generation (local delivery and its echo stamps);
- :func:`send`: one record to faust's producer, its future completing on the broker's ack;
- :func:`row_table` / :class:`RowTable`: the nodes table, whose changelog holds a batch's rows
  of a partition in one record (:class:`~streams._rollup_step.RowGroups`);
- :func:`highwater` / :func:`joined`: a partition's end offset and whether the worker is in its
  consumer group (for the lag metric and ``/readyz``, :mod:`contracts.observability`);
- :func:`make_app`: the app with the fixes below (recovery race, fetch wait, agent failures,
  a bounded stream buffer).
"""

from __future__ import annotations

import functools
import typing
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import faust
from faust.streams import _current_event  # private: the context variable of the current event
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka

from pcf_exchange.streams._batching import BATCH_MAX, Batcher
from pcf_exchange.streams._rollup_step import RowGroups

__all__ = [
    "FAUST_STREAMING_VERSION",
    "FETCH_MAX_WAIT_MS",
    "STREAM_BUFFER_MAX",
    "AgentFailureHook",
    "WorkerApp",
    "assigned",
    "generation",
    "highwater",
    "in_partition",
    "joined",
    "make_app",
    "ready_batches",
    "row_table",
    "send",
]

FAUST_STREAMING_VERSION = "0.15.3"
"""The faust-streaming release every adaptation here was written against and tested with."""


# --- batches ---------------------------------------------------------------------------------


async def ready_batches(
    stream: Any, most: int, held: Callable[[Any], bool] | None = None
) -> AsyncIterator[list[Any]]:
    """The events of a faust *stream* in batches of at most *most* (:class:`Batcher`), each
    acknowledged when the next is asked for unless *held* says it is not to be yet."""
    batcher: Batcher[Any] = Batcher(stream, most, held)

    async def gather(value: Any) -> Any:
        await batcher.offer(stream.current_event)  # (public: the event being processed)
        return value

    # relies on: Stream.enable_acks (faust acknowledges an event once its processors and the
    # agent's iteration are done; turned off, acknowledging is ours), add_processor (run on
    # every value as it is delivered), the private _enable_passive (start delivery without an
    # ``async for`` over the stream: the agent iterates the batches instead) and _processors
    # (add_processor has no public inverse)
    acks = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(gather)
    stream._enable_passive(aiter(stream.channel))
    try:
        async for batch in batcher.batches():
            yield batch
    finally:
        stream.enable_acks = acks
        stream._processors.remove(gather)


# --- the changelog partition of a table write ------------------------------------------------


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


def in_partition(topic: str, partition: int) -> None:
    """Make the next table writes go to *partition* of their changelogs, as if for an event of
    *topic* on it.

    A table write goes to the changelog partition of the "current event" (a context variable
    faust sets per event while iterating a stream; :func:`ready_batches` does not set it for
    the agent). The tables are keyed like their input topics: a ledger row is written to its
    record's partition, a node's row to its home partition, whether its messages came in on it
    or were delivered locally.
    """
    # relies on: faust.streams._current_event, a ContextVar holding a weakref to the event,
    # read by Table.on_key_set through event.message.topic/partition
    _current_event.set(weakref.ref(typing.cast(Any, _partition_event(topic, partition))))


# --- the consumer as the roll-up sees it -----------------------------------------------------


def assigned(app: faust.App, topic: str) -> set[int]:
    """The partitions of *topic* this worker holds now (stable while a batch is unacknowledged:
    a rebalance waits for that, ``stream_wait_empty``)."""
    return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}


def generation(app: faust.App) -> int:
    """This worker's consumer group generation (changes with every rebalance)."""
    # relies on: AppT.consumer_generation_id, set by faust on every assignment
    generation_id: int = app.consumer_generation_id
    return generation_id


def joined(app: faust.App) -> bool:
    """Whether this worker has joined its consumer group and is not rebalancing (readiness)."""
    # relies on: AppT.consumer_generation_id (0 until the first assignment; Kafka's generations
    # start at 1) and App.rebalancing (set by on_rebalance_start, cleared by on_rebalance_end)
    return generation(app) > 0 and not app.rebalancing


def highwater(app: faust.App, topic: str, partition: int) -> int | None:
    """The end offset of a partition this worker holds (what the broker last told its fetcher),
    or ``None`` when it does not hold it (any more) or the consumer has not fetched it yet."""
    # relies on: Consumer.highwater(tp) reading aiokafka's subscription state (no I/O); it
    # asserts that the partition is assigned, and may answer None before the first fetch
    try:
        end = app.consumer.highwater(faust.types.TP(topic, partition))
    except (AssertionError, KeyError, AttributeError):
        return None
    return end if isinstance(end, int) else None


async def send(
    app: faust.App,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    partition: int | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> Awaitable[Any]:
    """Hand one record to faust's producer directly (without ``Topic.send``'s per-message
    bookkeeping, which the roll-up does not use); the future completes on the broker's ack.
    Without a *partition*, keyed like ``Topic.send``: Kafka's partitioner on the key."""
    # relies on: Producer.send(topic, key, value, partition, timestamp, headers) -> future
    return await app.producer.send(topic, key, value, partition, None, headers)


# --- the nodes table: a batch's rows of a partition in one changelog record ----------------------


class RowTable(faust.Table[bytes, bytes]):
    """A faust table of bytes (memory store) whose rows a batch stores together
    (:meth:`store_rows`), one changelog record per partition per batch, and whose recovery reads
    those records back into rows (:class:`~streams._rollup_step.RowGroups` explains the
    layout). Plain records (one row each, as workers wrote before groups, and as
    ``table[key] = value`` still writes) are read as before."""

    groups: RowGroups

    def store_rows(
        self, partition: int, rows: dict[bytes, bytes]
    ) -> list[tuple[bytes, bytes | None]]:
        """Set *rows* (all of *partition*) in the table without faust's changelog write per key;
        returns the changelog records to send instead (:meth:`RowGroups.write`)."""
        # relies on: the memory store's ``data`` dict and ``_key_partition`` (which partition a
        # key belongs to: what it drops when a partition is revoked), as its own
        # apply_changelog_batch fills them
        store: Any = self.data
        data, of_partition = store.data, store._key_partition
        for key, value in rows.items():
            data[key] = value
            of_partition[key] = partition
        return self.groups.write(partition, rows)

    # relies on: Recovery calling Table.apply_changelog_batch(events) with a partition's
    # changelog events in offset order, each with raw ``key``/``value`` (bytes key and value
    # types) and ``message.partition``/``message.value`` (``None``: a tombstone)
    def apply_changelog_batch(self, batch: Any) -> None:
        store: Any = self.data
        data, of_partition, apply = store.data, store._key_partition, self.groups.apply
        for event in batch:
            message = event.message
            value = None if message.value is None else event.value
            apply(event.key, value, message.partition, data, of_partition)


def row_table(app: faust.App, name: str, partitions: int, incarnation: bytes) -> RowTable:
    """The app's :class:`RowTable` *name* (keys and values bytes), as ``app.Table`` makes a
    table; its group keys carry *incarnation* (this app's: unique per start)."""
    # relies on: App.Table being ``app.tables.add(conf.Table(app, name=..., beacon=...))``
    table = RowTable(
        app,
        name=name,
        beacon=app.tables.beacon,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
    )
    table.groups = RowGroups(incarnation)
    app.tables.add(table)
    return table


# --- the app -----------------------------------------------------------------------------------


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

    # relies on: Recovery.on_recovery_completed ending with app.flow_control.resume()
    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        self.app.flow_control.suspend()
        await super().on_recovery_completed(generation_id)


class _TableManager(TableManager):
    """faust's table manager, with :class:`_Recovery`."""

    # relies on: TableManager.recovery creating its Recovery lazily into _recovery
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = _Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


FETCH_MAX_WAIT_MS = 10
"""How long the broker may hold a fetch that finds no new records (faust hard-codes 1 500 ms).

aiokafka has one fetch in flight per broker, and leaves out of it every partition whose records
it still buffers (not yet taken by faust). When the agents keep the loop busy for longer than
aiokafka's prefetch backoff (100 ms), the next fetch goes out without the roll-up topics and
waits the full ``fetch_max_wait_ms`` on partitions with nothing new (the ingest topics, a drained
backlog), while the agents' own outputs pile up on the roll-up topics unfetched: the worker
idles. A short wait bounds that stall; an idle worker sends a small fetch every 10 ms instead."""


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's aiokafka consumer thread, with :data:`FETCH_MAX_WAIT_MS`."""

    # relies on: _create_worker_consumer building the AIOKafkaConsumer, whose private
    # _fetch_max_wait_ms its fetcher reads when the consumer starts
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, with :class:`_ConsumerThread`."""

    # relies on: Consumer._new_consumer_thread, and the thread's (consumer, loop, beacon) init
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Producer(faust_aiokafka.Producer):
    """faust's aiokafka producer, idempotent: ``acks=all`` with ``enable_idempotence``, so that
    a retry after a leader change never writes a record twice (faust turns idempotence on only
    inside exactly-once transactions, which the worker does not use)."""

    # relies on: faust building its AIOKafkaProducer from _settings_extra() last (0.15.3)
    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class _Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport, with :class:`_Consumer` and :class:`_Producer` (the app's
    producer is made by this transport: ``App._new_producer``)."""

    Consumer = _Consumer
    Producer = _Producer


STREAM_BUFFER_MAX = BATCH_MAX
"""Most records an agent's stream holds fetched but not yet taken (faust's
``stream_buffer_maxsize``: 4 096 by default), besides the batch :func:`ready_batches` gathers.

faust fetches ahead into each stream's queue until it holds this many, and only then pauses the
partition. On the roll-up topic a record is a pack of up to 256 KB
(:data:`~streams._packs.PACK_MAX_BYTES`): 4 096 of them is up to 1 GB per worker, held for as
long as the worker is behind. In the 10k soak of issue #22 the workers' RSS grew with the
roll-up topic's backlog (0 to 2 500 records over the 8 minutes, +29/+39 MB a minute) and stayed
up once it drained (the heap keeps what it was given). One batch ahead (:data:`BATCH_MAX`)
keeps the agent fed: it takes at most that many at once."""


AgentFailureHook = Callable[[Any, BaseException], Awaitable[None]]
"""Called with the agent and its exception whenever an agent fails."""


class WorkerApp(faust.App):
    """faust's app, reporting every agent failure to :attr:`on_agent_failure`."""

    on_agent_failure: AgentFailureHook
    readiness: Callable[[], Any]
    """The worker's answer to ``/readyz`` (set by :func:`streams.runtime.build_app`)."""

    # relies on: faust passing App._on_agent_error as every agent's on_error (it commits what
    # was acknowledged); ours runs after it
    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        await super()._on_agent_error(agent, exc)
        await self.on_agent_failure(agent, exc)


def make_app(app_id: str, on_agent_failure: AgentFailureHook, **settings: Any) -> WorkerApp:
    """A faust app (``faust.App(app_id, **settings)``) with the recovery race closed
    (:class:`_Recovery`), a short fetch wait (:data:`FETCH_MAX_WAIT_MS`), a bounded stream
    buffer (:data:`STREAM_BUFFER_MAX`, unless *settings* name one) and every agent failure
    reported to *on_agent_failure*."""
    settings.setdefault("stream_buffer_maxsize", STREAM_BUFFER_MAX)
    app = WorkerApp(app_id, TableManager=_TableManager, **settings)
    # relies on: App.transport being created lazily, so a transport set first is the one used
    app.transport = _Transport(app.conf.broker_consumer, app)
    app.on_agent_failure = on_agent_failure
    return app
