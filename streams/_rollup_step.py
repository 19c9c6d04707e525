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
that app, in that consumer generation). That copy is what keeps a crash harmless: the rows of a
batch are separate changelog records, and a crash may keep a sender's new row but lose the
receiver's. The redelivered batch is then a ``DUPLICATE`` for the sender, which sends nothing
again, and the receiver (a new app) gets the message from the topic instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
    "LOCAL_ROUNDS",
    "NodeRecord",
    "ProductRecord",
    "RollupBatch",
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
