"""The roll-up step: a batch of node messages applied to the nodes' rows, with local delivery.

The two roles of the pure core's foreign-key join (reference/streaming.md section 2.2) share
one row per node (:class:`NodeRecord`): a product is a *parent* (its BOM and its inputs' latest
values, :func:`~streams.rollup.product_step_many`) and an *input* of its own parents (its value
and who subscribes to it, :func:`~streams.rollup.component_step_many`); a factor is only an
input. A product's new result feeds its input role in the same step.

:func:`roll_up` takes a batch's messages per node and returns a :class:`RollupBatch`: the rows
to store, the messages for other nodes (those it applied itself and the others), and per
product only its *last* new result of the batch, which the publish step
(:mod:`streams._publish`) turns into records once, after every round. It does no I/O: the
caller reads rows through *row_of* and sends and stores what it returns (in the order
:mod:`streams.runtime` explains under "Effectively once").

**Local delivery.** A message for a node of a partition this worker holds (*local*) is also
applied at once, in the same batch (a round per tier, at most :data:`LOCAL_ROUNDS`), so an
update reaches the top of its graph in one batch instead of one batch per tier (with one worker,
every node is local). It still goes to the topic like every other output
(:attr:`RollupBatch.applied`): when it comes back it is a ``DUPLICATE`` no-op, which the app
that applied it skips without decoding (its pack carries :func:`~streams._packs.echo_stamp`:
that app, in that consumer generation). That copy is what keeps a crash harmless: a batch's rows
are one changelog record per partition (:class:`RowGroups`), so a crash may keep a sender's new
row but lose the receiver's in another partition (or in a partition's next record, past
:data:`GROUP_BYTES`). The redelivered batch is then a ``DUPLICATE`` for the sender, which
sends nothing again, and the receiver (a new app) gets the message from the topic instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from streams import codec
from streams._packs import Keyed, keyed, partition
from streams.rollup import (
    BomDeclared,
    ComponentMessage,
    ComponentState,
    Message,
    Outcome,
    ProductMessage,
    ProductRolledUp,
    ProductState,
    component_step_many,
    offered,
    product_step_many,
)

__all__ = [
    "GROUP_BYTES",
    "GROUP_PREFIX",
    "LOCAL_ROUNDS",
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

LOCAL_ROUNDS = 64
"""Most rounds of local delivery in one batch (a round per tier): a fuse, since everything a
round delivers is also on the topic; deeper graphs and cycles go on from there."""

_STORED = (Outcome.APPLIED, Outcome.UNCHANGED)
"""Outcomes whose step state must be stored (``UNCHANGED`` stored a record nobody sees yet)."""

Work = dict[bytes, list[tuple[bytes | None, Message]]]
"""A round's messages per node key, in order, each with the ``bom`` header of the pack it came
in (``None`` for one delivered locally, or without one)."""


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
    """Messages for the nodes of other workers, or left for the topic by the last round."""
    results: dict[bytes, ProductRolledUp] = field(default_factory=dict)
    """Per product (node key), its last new result in the batch: the one to publish."""


def roll_up(
    work: Work,
    row_of: Callable[[bytes], NodeRecord | None],
    local: set[int],
    partitions: int,
    rounds: int = LOCAL_ROUNDS,
) -> RollupBatch:
    """Apply a batch's messages (*work*) to the rows (*row_of*: a node's stored row, if any),
    then the messages they make for nodes of the *local* partitions, one round per tier, at
    most *rounds* rounds."""
    batch = RollupBatch()
    rows = batch.rows
    for round_ in range(1, rounds + 1):
        new: Keyed = []
        for key, items in work.items():
            row = rows.get(key) or row_of(key) or NodeRecord()
            node = _step(key, row, items, new, batch.results)
            if node is not row:
                rows[key] = node
        work = _route(batch, new, local, partitions, last_round=round_ == rounds)
        if not work:
            break
    return batch


def _route(
    batch: RollupBatch, new: Keyed, local: set[int], partitions: int, *, last_round: bool
) -> Work:
    """The next round's work: the messages of a round's *new* outputs for this worker's
    nodes, per node (none after the *last round*: those go to the topic only)."""
    work: Work = {}
    for key, message in new:
        if not last_round and partition(key, partitions) in local:
            work.setdefault(key, []).append((None, message))
            batch.applied.append((key, message))
        else:
            batch.others.append((key, message))
    return work


def _step(
    key: bytes,
    row: NodeRecord,
    items: list[tuple[bytes | None, Message]],
    outputs: Keyed,
    results: dict[bytes, ProductRolledUp],
) -> NodeRecord:
    """One node's messages in a round: its new row (*row* itself if nothing is to be stored).
    The messages for other nodes go to *outputs*, a product's last new result to *results*."""
    as_parent = [(b, m) for b, m in items if isinstance(m, ProductMessage)]
    as_input = [m for _, m in items if not isinstance(m, ProductMessage)]
    product = row.product
    new: list[Message] = []
    if as_parent:
        product, rolled = _parent_role(product, as_parent, new)
        if rolled:
            results.pop(key, None)  # (the order of the batch's last results)
            results[key] = rolled[-1]
        # a product's new result goes straight to its own input role (same node)
        as_input.extend(offered(r) for r in rolled)
    component = _input_role(row.component, as_input, new)
    outputs.extend(keyed(new))
    if product is row.product and component is row.component:
        return row
    return NodeRecord(component, product)


def _parent_role(
    row: ProductRecord | None,
    items: list[tuple[bytes | None, ProductMessage]],
    outputs: list[Message],
) -> tuple[ProductRecord | None, list[ProductRolledUp]]:
    """A product's BOM and input values in a round: absorbed in order, recomputed once.

    Returns its new row (*row* itself if nothing is to be stored) and its new results; the
    messages for other nodes go to *outputs*."""
    step = product_step_many(row.state if row else None, [m for _, m in items])
    bom_doc = row.bom if row else None
    for (bom, message), outcome in zip(items, step.each, strict=True):
        if outcome is not Outcome.APPLIED:
            _no_op(outcome, message)
        elif isinstance(message, BomDeclared) and bom is not None:
            bom_doc = bom.decode()
    if step.outcome not in _STORED:
        return row, []
    rolled = [out for out in step.outputs if isinstance(out, ProductRolledUp)]
    outputs.extend(out for out in step.outputs if not isinstance(out, ProductRolledUp))
    if row is None:
        return ProductRecord(step.state, bom_doc), rolled
    return replace(row, state=step.state, bom=bom_doc), rolled


def _input_role(
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


def _no_op(outcome: Outcome, message: Message) -> None:
    """A message the core ignored: nothing to send or store (``CONFLICT`` is worth a warning)."""
    if outcome is Outcome.CONFLICT:
        log.warning("ignored %s: same sequence as stored, other content", type(message).__name__)
