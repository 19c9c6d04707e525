"""The records the two sides of the roll-up exchange, and where a faust agent sends each.

The roll-up runs as two keyed sides joined by topics (a hand-built foreign-key join,
reference/streaming.md section 2.2), so that no worker needs the whole graph:

* the **component side**, keyed by the thing a BOM consumes (a product id, or a factor id in its
  own key space), knows the input's current value and which parents subscribe to it, and sends
  each of them the *absolute* value (:class:`ChildValue`) whenever it changes;
* the **product side**, keyed by the parent product, holds the BOM and the latest value per
  input, recomputes the whole result (replace, never add deltas) and publishes it
  (:class:`ProductRolledUp`) when it changes -- which the component side of that product reads
  to feed the next tier (the topic loop).

Every message knows its :attr:`topic` role and Kafka :attr:`key`; an adapter only has to send
``value`` to ``topics[msg.topic]`` with ``key=msg.key``. Topics keyed by product id must be
co-partitioned (same partition count), as must the two factor-keyed ones.

=========================  ======================  ================================================
topic role                 key                     message (producer -> consumer)
=========================  ======================  ================================================
``DECLARED``               product id              FootprintDeclared (ingest -> component side)
``FACTORS``                factor id               FactorPublished (operator -> component side)
``BOMS``                   product id              BomDeclared (manufacturer -> product side)
``PRODUCTS``               product id              ProductRolledUp (product side -> out to the
                                                   gateway; its ProductOffered -> component side)
``SUBSCRIPTIONS``          component product id    Subscribe/Unsubscribe (product -> component side)
``FACTOR_SUBSCRIPTIONS``   factor id               Subscribe/Unsubscribe for factor refs
``CONTRIBUTIONS``          parent product id       ChildValue (component side -> product side)
=========================  ======================  ================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from ._model import Bom, ComponentFootprint, Factor, Ref, RefKind
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
    "TopicRole",
    "Unsubscribe",
    "order_outcome",
]


class TopicRole(StrEnum):
    """Where a message goes. Values are suggested topic names; the adapter may map them."""

    DECLARED = "pcf.declared"
    FACTORS = "pcf.factors"
    BOMS = "pcf.bom"
    PRODUCTS = "pcf.products"
    SUBSCRIPTIONS = "pcf.rollup.subscriptions"
    FACTOR_SUBSCRIPTIONS = "pcf.rollup.factor-subscriptions"
    CONTRIBUTIONS = "pcf.rollup.contributions"


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


def _subscription_topic(ref: Ref) -> TopicRole:
    if ref.kind is RefKind.FACTOR:
        return TopicRole.FACTOR_SUBSCRIPTIONS
    return TopicRole.SUBSCRIPTIONS


@dataclass(frozen=True, slots=True)
class FootprintDeclared:
    """A verified supplier footprint (upsert; monotonic ``footprint.sequence`` per product)."""

    footprint: ComponentFootprint

    @property
    def ref(self) -> Ref:
        return self.footprint.ref

    @property
    def topic(self) -> TopicRole:
        return TopicRole.DECLARED

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
    def topic(self) -> TopicRole:
        return TopicRole.FACTORS

    @property
    def key(self) -> str:
        return self.factor.factor_id


@dataclass(frozen=True, slots=True)
class BomDeclared:
    """A BOM revision (upsert; monotonic ``bom.revision`` per product)."""

    bom: Bom

    @property
    def topic(self) -> TopicRole:
        return TopicRole.BOMS

    @property
    def key(self) -> str:
        return self.bom.product_id


class _ProductNews:
    """Where news about a product goes: the ``PRODUCTS`` role, keyed by its id."""

    __slots__ = ()
    product_id: str

    @property
    def ref(self) -> Ref:
        return Ref.product(self.product_id)

    @property
    def topic(self) -> TopicRole:
        return TopicRole.PRODUCTS

    @property
    def key(self) -> str:
        return self.product_id


@dataclass(frozen=True, slots=True)
class ProductRolledUp(_ProductNews):
    """A product's new result. ``sequence`` counts the product's emissions (monotonic).

    ``trace`` is the chain of product ids whose changes led to this one (cycle detection); it is
    transport metadata and not part of the result.
    """

    product_id: str
    sequence: int
    result: RollupResult
    trace: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProductOffered(_ProductNews):
    """What a :class:`ProductRolledUp` offers the products that use it, and all the component
    side keeps of it: the result as an input value (no lineage), its sequence and trace.

    Adapters send this, not the whole result, on the component topic; :func:`component_step`
    takes either (see :func:`~streams.rollup.offered`).
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
    def topic(self) -> TopicRole:
        return _subscription_topic(self.child)

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
    def topic(self) -> TopicRole:
        return _subscription_topic(self.child)

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
    def topic(self) -> TopicRole:
        return TopicRole.CONTRIBUTIONS

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
