"""The records the roll-up's two roles exchange, and the node each is for.

The roll-up is a hand-built foreign-key join (reference/streaming.md section 2.2), keyed so that
no worker needs the whole graph. Every node of the graph (a product, or a factor in its own key
space) plays up to two roles:

* as an **input** (the *component* role: :func:`component_step`, keyed by the node's :attr:`ref`)
  it knows its current value and which parents subscribe to it, and sends each of them the
  *absolute* value (:class:`ChildValue`) whenever it changes;
* as a **parent** (the *product* role: :func:`product_step`, keyed by the product id,
  :attr:`key`) it holds its BOM and the latest value per input, applies a new value to its
  running sums by the difference it makes, and publishes its new value
  (:class:`ProductRolledUp`) when it changes -- which its own input role takes to feed the next
  tier.

Messages are absolute values with versions (so duplicates and replays are no-ops) and *thin*:
a :class:`~streams.rollup.SourceValue` carries totals and status, not lineage; the full result of
a rolled-up product is built from its pending identity only where it is published
(:attr:`ProductRolledUp.result`), and the codec resolves identities to plain strings before a
value crosses a topic or a row.

An adapter routes a message to the node it is for (:func:`node_of`). The streams runtime keys
both roles of a product by its ref (``product:<id>``), so one worker holds both in one row.

===============================  ==============================================================
message                          for (role)
===============================  ==============================================================
FootprintDeclared                the product's ref (input; from ingest)
FactorPublished                  the factor's ref (input; from ingest)
BomDeclared                      the product (parent; from ingest)
ProductRolledUp/ProductOffered   the product's ref (input; from its own parent role)
Subscribe/Unsubscribe            the child's ref (input; from a parent's new BOM revision)
ChildValue                       the parent product (parent; from an input)
===============================  ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from ._compute import source_from_result
from ._model import Bom, ComponentFootprint, Factor, Ref
from ._result import RollupResult, SourceValue

__all__ = [
    "BomDeclared",
    "ChildValue",
    "ComponentMessage",
    "FactorPublished",
    "FootprintDeclared",
    "Message",
    "Outcome",
    "ProductMessage",
    "ProductOffered",
    "ProductRolledUp",
    "Step",
    "Subscribe",
    "Unsubscribe",
    "node_of",
    "order_outcome",
]


class Outcome(StrEnum):
    """What one message did to the state. Every outcome but ``APPLIED`` is a normal no-op."""

    APPLIED = "applied"
    """The state changed; outputs (if any) were produced."""
    UNCHANGED = "unchanged"
    """Accepted and stored, but nothing anyone can see changed, so nothing is emitted."""
    DUPLICATE = "duplicate"
    """Same sequence and same content as stored (a redelivery)."""
    STALE = "stale"
    """A sequence below the stored one (a replay or a late record)."""
    CONFLICT = "conflict"
    """Same sequence as stored but different content: ignored, and worth a DLQ record."""
    UNSUBSCRIBED = "unsubscribed"
    """A value for an input the product's current BOM no longer uses."""


@dataclass(frozen=True, slots=True)
class FootprintDeclared:
    """A verified supplier footprint (upsert; monotonic ``footprint.sequence`` per product)."""

    footprint: ComponentFootprint

    @property
    def ref(self) -> Ref:
        return self.footprint.ref

    @property
    def key(self) -> str:
        return self.footprint.product_id


@dataclass(frozen=True, slots=True)
class FactorPublished:
    """A background factor version (upsert; monotonic ``factor.sequence`` per factor id)."""

    factor: Factor

    @property
    def ref(self) -> Ref:
        return self.factor.ref

    @property
    def key(self) -> str:
        return self.factor.factor_id


@dataclass(frozen=True, slots=True)
class BomDeclared:
    """A BOM revision (upsert; monotonic ``bom.revision`` per product)."""

    bom: Bom

    @property
    def key(self) -> str:
        return self.bom.product_id


class _ProductNews:
    """News about a product for its input role: keyed by its id, for its ref."""

    __slots__ = ()
    product_id: str

    @property
    def ref(self) -> Ref:
        return Ref.product(self.product_id)

    @property
    def key(self) -> str:
        return self.product_id


class ProductRolledUp(_ProductNews):
    """A product's new value. ``sequence`` counts the product's emissions (monotonic).

    ``value`` is the thin value the product offers its parents; :attr:`result` is its full
    result (lineage, content hash, id), built on first access and cached -- at the edge that
    publishes it, once, never while an update propagates. Constructed from a result (batch tools,
    tests), it carries that result. ``trace`` is the chain of product ids whose changes led to
    this one (cycle detection); it is transport metadata and not part of the result.
    """

    __slots__ = ("product_id", "sequence", "trace", "value")

    def __init__(
        self,
        product_id: str,
        sequence: int,
        value: SourceValue | RollupResult,
        trace: tuple[str, ...] = (),
    ) -> None:
        if isinstance(value, RollupResult):
            value = source_from_result(value)
        self.product_id = product_id
        self.sequence = sequence
        self.value: SourceValue = value
        self.trace = tuple(trace)

    @property
    def result(self) -> RollupResult:
        """The full result of :attr:`value` (built now if not yet, then cached)."""
        result = self.value.identity.result
        if result is None:
            raise ValueError(f"the value of {self.product_id!r} has no result to build")
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProductRolledUp):
            return NotImplemented
        return (self.product_id, self.sequence, self.trace, self.value) == (
            other.product_id,
            other.sequence,
            other.trace,
            other.value,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"ProductRolledUp({self.product_id!r}, {self.sequence}, {self.value!r}, {self.trace!r})"
        )


@dataclass(frozen=True, slots=True)
class ProductOffered(_ProductNews):
    """What a :class:`ProductRolledUp` offers the products that use it, and all the component
    side keeps of it: the result as an input value (no lineage), its sequence and trace.

    Adapters hand this, not the whole result, to the input role; :func:`component_step` takes
    either (see :func:`~streams.rollup.offered`).
    """

    product_id: str
    sequence: int
    value: SourceValue
    trace: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``parent``'s BOM revision ``revision`` uses ``child``: send it the child's value."""

    child: Ref
    parent: str
    revision: int

    @property
    def ref(self) -> Ref:
        return self.child

    @property
    def key(self) -> str:
        return self.child.id


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """``parent``'s BOM revision ``revision`` no longer uses ``child``: stop sending it."""

    child: Ref
    parent: str
    revision: int

    @property
    def ref(self) -> Ref:
        return self.child

    @property
    def key(self) -> str:
        return self.child.id


@dataclass(frozen=True, slots=True)
class ChildValue:
    """The absolute current value of ``child`` for ``parent`` (``version``: monotonic per child)."""

    parent: str
    child: Ref
    version: int
    value: SourceValue
    trace: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.parent


ComponentMessage = (
    FootprintDeclared | FactorPublished | ProductRolledUp | ProductOffered | Subscribe | Unsubscribe
)
"""What the component side consumes (keyed by ``msg.ref``)."""
ProductMessage = BomDeclared | ChildValue
"""What the product side consumes (keyed by the product id, ``msg.key``)."""
Message = ComponentMessage | ProductMessage


def node_of(message: Message) -> Ref:
    """The node *message* is for (the table above): messages for a product as a parent (its BOM,
    its inputs' values) and as an input share its ref, so one key holds both roles."""
    if isinstance(message, BomDeclared | ChildValue):
        return Ref.product(message.key)
    return message.ref


S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Step(Generic[S]):
    """What one transition returns: the new state, the messages to send, and what happened."""

    state: S
    outputs: tuple[Message, ...]
    outcome: Outcome
    each: tuple[Outcome, ...] = ()
    """For a batch (``product_step_many``): the outcome of every message, in order."""


def order_outcome(new: int, stored: int, same_content: bool) -> Outcome | None:
    """``None`` if a record with sequence *new* supersedes *stored*, else the named no-op."""
    if new > stored:
        return None
    if new == stored:
        return Outcome.DUPLICATE if same_content else Outcome.CONFLICT
    return Outcome.STALE
