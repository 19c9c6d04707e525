"""The roll-up step: a batch of node messages applied to the nodes' rows, with local delivery.

The two roles of the pure core's foreign-key join (reference/streaming.md section 2.2) share
one row per node (:class:`NodeRecord`): a product is a *parent* (its BOM and its inputs' latest
values, a :class:`~streams.rollup.ProductState`) and an *input* of its own parents (its value
and who subscribes to it, a :class:`~streams.rollup.ComponentState`); a factor is only an
input. A product's new result feeds its input role in the same batch.

:func:`roll_up` takes a batch's messages per node and hands them to one
:class:`~streams.rollup.Engine` (:meth:`~streams.rollup.Engine.deliver`), whose states are the
rows (``load`` reads a node's row through *row_of*, once per batch): it returns a
:class:`RollupBatch` with the rows to store (a new :class:`NodeRecord` for every node whose
component or product state changed; a product's BOM document is the ``bom`` header of the
batch's BOM that its state now holds), the messages for other nodes (those it applied itself and
the others), and per product only its *last* new result of the batch, which the publish step
(:mod:`streams._publish`) turns into records once. It does no I/O: the caller reads rows through
*row_of* and sends and stores what it returns (in the order :mod:`streams.runtime` explains
under "Effectively once").

**Local delivery.** A message for a node of a partition this worker holds (*local*) is also
applied at once, in the same batch: the engine takes the products lowest in the BOM graph first,
so an update reaches the top of its graph in one batch, each product recomputed and republished
once (with one worker, every node is local). At most :data:`SPILL` such messages per batch;
past that, what the batch makes goes to the topic only, for a later batch. A message applied
locally still goes to the topic like every other output (:attr:`RollupBatch.applied`): when it
comes back it is a ``DUPLICATE`` no-op, which the app that applied it skips without decoding (its
pack carries :func:`~streams._packs.echo_stamp`: that app, in that consumer generation). That
copy is what keeps a crash harmless: a batch's rows are one changelog record per partition
(:class:`RowGroups`), so a crash may keep a sender's new row but lose the receiver's in another
partition (or in a partition's next record, past :data:`GROUP_BYTES`). The redelivered batch is
then a ``DUPLICATE`` for the sender, which sends nothing again, and the receiver (a new app) gets
the message from the topic instead. Of the values an input sends a parent of another worker in
one batch, only the last leaves (a parent keeps only an input's latest version anyway).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from pcf_exchange.streams import codec
from pcf_exchange.streams._packs import Keyed, keyed, partition
from pcf_exchange.streams.rollup import (
    BomDeclared,
    ComponentState,
    Engine,
    Message,
    Outcome,
    ProductRolledUp,
    ProductState,
    Ref,
)

__all__ = [
    "BATCH_SECONDS",
    "GROUP_BYTES",
    "GROUP_PREFIX",
    "SPILL",
    "Changelog",
    "NodeRecord",
    "ProductRecord",
    "RollupBatch",
    "RowGroups",
    "Rows",
    "Work",
    "roll_up",
]

log = logging.getLogger("pcfx.streams")
T = TypeVar("T")

SPILL = 100_000
"""Most messages a batch makes and applies itself (local delivery, :meth:`Engine.deliver`'s
*spill*): everything it applies is also on the topic, so past it what the batch makes goes to
the topic only (:attr:`RollupBatch.others`) and a later batch takes it from there. A fuse for
cycles and very large waves, and a bound on a batch's memory and time."""

BATCH_SECONDS = 2.0
"""How long a batch's cascade runs locally before what it makes spills to the topic (the
*deadline* of :func:`roll_up`). The worker's session is 10 s and its heartbeats go out only
between batches: a grid-factor revision reaching 3 700 products in one batch ran 16 s under load
and the group evicted the worker, which reloaded and took the same batch again (the soak's
livelock, issue #22). Spilled work is exact (a later batch applies it), so this bounds a batch's
time at the cost of some products being republished once per batch that reaches them."""

Work = dict[bytes, list[tuple[bytes | None, Message]]]
"""A batch's messages per node key, in order, each with the ``bom`` header of the pack it came
in (``None`` without one)."""


@dataclass(frozen=True)
class ProductRecord:
    """One product's row: the core state, the BOM document and the last issued PACT footprint.

    One table row, so one changelog record: a crash cannot keep the state but lose the BOM or the
    predecessor that go with it.
    """

    state: ProductState
    bom: str | None = None
    """The BOM's JSON (the metadata a PACT footprint needs), from the ``bom`` header."""
    issued: str | None = None
    """Id of the last PACT footprint issued for the product (the next one's predecessor)."""
    issued_record: bytes | None = None
    """The ``pcf.products`` record (Avro) that issued ``issued``, exactly as it was sent: the
    ``Deprecated`` copy the next footprint sends before itself is made from it only then
    (:mod:`streams._publish`)."""
    retire: bytes | None = None
    """Rows of workers before ``issued_record``: the ready ``Deprecated`` copy of the record
    that issued ``issued`` (used once, then replaced by ``issued_record``)."""


@dataclass(frozen=True)
class NodeRecord:
    """One node of the graph (a product or a factor, keyed by its ref): both its roles' states.

    As an input to its parents (``component``: its value and subscribers) and, for a product
    with a BOM, as a parent (``product``). One row, so one changelog record: a crash cannot keep
    a product's new result but lose the value it feeds to the next tier.
    """

    component: ComponentState | None = None
    product: ProductRecord | None = None


class Rows(Generic[T]):
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


GROUP_PREFIX = b"\x00rows:"
"""The start of a changelog key that names a group of rows (:class:`RowGroups`); a node's key
starts with ``product:`` or ``factor:``."""

Changelog = list[tuple[bytes, bytes | None]]
"""Changelog records to send, (key, value) in order (``None``: a tombstone)."""

GROUP_BYTES = 512 * 1024
"""Most bytes of rows in one changelog record (the broker's default limit for a record batch is
1 MiB); a batch with more rows for one partition writes several records."""


class RowGroups:
    """The nodes table's changelog as a batch writes it: one record per partition per batch.

    A batch's new rows of one partition are stored as *one* changelog record (a *group*,
    :func:`~streams.codec.encode_rows`, at most :data:`GROUP_BYTES` of rows each) instead of one
    record per node: 6 tiers of an update are one record, not six, and a partition's rows of a
    batch (up to :data:`GROUP_BYTES`) are stored together or not at all.

    A group's key is unique (:data:`GROUP_PREFIX`, the app's incarnation, a counter), since
    compaction keeps only the last record per key and a group's rows stay the latest until
    later groups hold them all. Recovery replays the records in offset order (:meth:`apply`),
    so a later group's row wins, as a later record of the same key did. To keep the changelog
    from growing without end, a group whose rows are all in later groups (or later plain
    records) is *dead*, and the next write to its partition also writes its tombstone
    (:meth:`write`); compaction then drops both. A crash between a group and its tombstone
    leaves a dead group that the next recovery finds dead again.

    Plain bookkeeping, no I/O (the faust table of :mod:`streams._faust` reads and writes
    through it)."""

    def __init__(self, incarnation: bytes) -> None:
        self.prefix = GROUP_PREFIX + incarnation.hex().encode() + b":"
        self.count = 0
        self.owner: dict[bytes, bytes] = {}
        """Per node key: the group its latest row is in (none: a plain record, or no row)."""
        self.live: dict[bytes, int] = {}
        """Per group: how many of its rows are still the latest of their keys."""
        self.dead: dict[int, dict[bytes, None]] = {}
        """Per partition: groups whose rows are all superseded (their tombstones are due)."""

    def write(
        self, partition: int, rows: Mapping[bytes, bytes]
    ) -> list[tuple[bytes, bytes | None]]:
        """The changelog records (key, value) that store *rows* (stored bytes per node key, all
        of *partition*): its groups, then the tombstones of the partition's dead groups."""
        records: Changelog = []
        chunk: list[tuple[bytes, bytes]] = []
        size = 0
        for key, value in rows.items():
            if chunk and size + len(key) + len(value) > GROUP_BYTES:
                records.append(self._group(partition, chunk))
                chunk, size = [], 0
            chunk.append((key, value))
            size += len(key) + len(value)
        if chunk:
            records.append(self._group(partition, chunk))
        dead = [g for g in self.dead.pop(partition, {}) if not self.live.get(g)]
        for group in dead:
            self.live.pop(group, None)
        records.extend((group, None) for group in dead)
        return records

    def _group(self, partition: int, rows: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
        self.count += 1
        group = self.prefix + str(self.count).encode()
        self.place(group, partition, [key for key, _ in rows])
        return group, codec.encode_rows(rows)

    def place(self, group: bytes, partition: int, keys: Iterable[bytes]) -> None:
        """*group* (of *partition*) now holds the latest rows of *keys*."""
        live = self.live
        live.setdefault(group, 0)
        for key in keys:
            old = self.owner.get(key)
            if old == group:
                continue  # (a group replayed again: a partition recovered a second time)
            if old is not None:
                self._superseded(old, partition)
            self.owner[key] = group
            live[group] += 1

    def apply(
        self,
        key: bytes,
        value: bytes | None,
        partition: int,
        rows: MutableMapping[bytes, bytes],
        of_partition: MutableMapping[bytes, int],
    ) -> None:
        """One changelog record read back (recovery, in offset order) into *rows* (the table's
        stored bytes per node key) and *of_partition*: a group's rows, a group's tombstone, or
        a plain record of one row (workers before groups) or its tombstone."""
        if key.startswith(GROUP_PREFIX):
            if value is None:
                self.forget(key, partition)
                return
            group = codec.decode_rows(value)
            self.place(key, partition, [k for k, _ in group])
            for k, row in group:
                rows[k] = row
                of_partition[k] = partition
            return
        self.release(key, partition)
        if value is None:
            rows.pop(key, None)
            of_partition.pop(key, None)
        else:
            rows[key] = value
            of_partition[key] = partition

    def release(self, key: bytes, partition: int) -> None:
        """A plain record (of a worker before groups) now holds *key*'s latest row."""
        old = self.owner.pop(key, None)
        if old is not None:
            self._superseded(old, partition)

    def forget(self, group: bytes, partition: int) -> None:
        """*group*'s tombstone was read: it is gone."""
        self.live.pop(group, None)
        self.dead.get(partition, {}).pop(group, None)

    def _superseded(self, group: bytes, partition: int) -> None:
        left = self.live.get(group, 0) - 1
        self.live[group] = left
        if left <= 0:
            self.dead.setdefault(partition, {})[group] = None


@dataclass
class RollupBatch:
    """What a batch's messages did (:func:`roll_up`)."""

    rows: dict[bytes, NodeRecord] = field(default_factory=dict)
    """The new rows, per node key (only those that changed)."""
    applied: Keyed = field(default_factory=list)
    """Messages for other nodes applied in this batch (local delivery), in order: still sent."""
    others: Keyed = field(default_factory=list)
    """Messages for the nodes of other workers, or left for the topic past the batch's
    :data:`SPILL` (only each input's last value per parent)."""
    results: dict[bytes, ProductRolledUp] = field(default_factory=dict)
    """Per product (node key), its last new result in the batch: the one to publish."""


def roll_up(
    work: Work,
    row_of: Callable[[bytes], NodeRecord | None],
    local: set[int],
    partitions: int,
    spill: int = SPILL,
    heights: dict[str, int] | None = None,
    deadline: float | None = None,
) -> RollupBatch:
    """Apply a batch's messages (*work*) to the rows (*row_of*: a node's stored row, if any),
    and what they make for nodes of the *local* partitions, in one :meth:`Engine.deliver`
    (at most *spill* messages of its own; *heights*: the products' heights in the BOM graph,
    kept by the caller from batch to batch, or ``None`` to work them out again; *deadline*: a
    :func:`time.monotonic` instant past which what the batch makes spills, as past *spill*)."""
    loaded: dict[bytes, NodeRecord] = {}
    keys: dict[Ref, bytes] = {}

    def key_of(ref: Ref) -> bytes:
        key = keys.get(ref)
        if key is None:
            key = keys[ref] = str(ref).encode()
        return key

    def load(ref: Ref) -> tuple[ComponentState | None, ProductState | None]:
        key = key_of(ref)
        row = row_of(key)
        if row is None:
            return None, None
        loaded[key] = row
        return row.component, None if row.product is None else row.product.state

    def is_local(ref: Ref) -> bool:  # (a batch's own inputs are this worker's, whatever
        key = key_of(ref)  # a rebalance has done to *local* since)
        return key in work or partition(key, partitions) in local

    messages: list[Message] = []
    boms: list[tuple[BomDeclared, bytes]] = []
    for items in work.values():
        for bom, message in items:
            messages.append(message)
            if bom is not None and isinstance(message, BomDeclared):
                boms.append((message, bom))
    engine = Engine(load=load, local=is_local, heights=heights)
    past = None if deadline is None else (lambda: time.monotonic() > deadline)
    delivery = engine.deliver(messages, spill=spill, past_deadline=past)
    for message, outcome in delivery.noops:
        _no_op(outcome, message)

    # a product's BOM document: the header of the batch's BOM that its state now holds
    docs: dict[str, bytes] = {}
    for message, bom in boms:
        state = delivery.products.get(message.key)
        if state is not None and state.bom is message.bom:
            docs[message.key] = bom
    batch = RollupBatch()
    rows = batch.rows
    for pid, product in delivery.products.items():
        ref = Ref.product(pid)
        key = key_of(ref)
        old = loaded.get(key) or row_of(key) or NodeRecord()
        doc = docs.get(pid)
        bom_doc = doc.decode() if doc is not None else None
        if old.product is None:
            record = ProductRecord(product, bom_doc)
        else:
            record = replace(old.product, state=product, bom=bom_doc or old.product.bom)
        rows[key] = NodeRecord(engine.components.get(ref), record)
    for ref, component in delivery.components.items():
        key = key_of(ref)
        if key not in rows:
            old = loaded.get(key) or row_of(key) or NodeRecord()
            rows[key] = NodeRecord(component, old.product)
    batch.results = {key_of(Ref.product(p)): r for p, r in delivery.published.items()}
    batch.applied = keyed(delivery.applied)
    batch.others = keyed(delivery.remote)
    return batch


def _no_op(outcome: Outcome, message: Message) -> None:
    """A message the core ignored: nothing to send or store (``CONFLICT`` is worth a warning)."""
    if outcome is Outcome.CONFLICT:
        log.warning("ignored %s: same sequence as stored, other content", type(message).__name__)
