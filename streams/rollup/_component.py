"""The component side: one state per input (product or factor), fanning its value out to parents.

A :class:`ComponentState` is keyed by a :class:`~streams.rollup.Ref`. For a product ref it holds
the supplier's declared footprint and/or the product's own rolled-up result; for a factor ref,
the factor. The value it offers parents is, in order of precedence:

1. the declared (signed) supplier footprint -- what the supplier actually sells; a declared
   footprint also cuts any cycle through the product, since it does not depend on a BOM. Not
   when the product has a rolled-up result of another company (its BOM's owner): a product
   belongs to its BOM's owner, and another company's footprint never overrides it (ingestion
   refuses footprints outside the signer's namespaces; this holds even if two companies'
   namespaces overlap);
2. the product's rolled-up result;
3. the factor.

It also holds the set of subscribing parents with the BOM revision of each (un)subscription, so
that a replayed subscription at or below that revision is a no-op. Whenever the offered value
changes, :func:`component_step` bumps ``version`` and emits one absolute :class:`ChildValue` per
active parent; a new subscriber gets the current value at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ._compute import source_from_factor, source_from_footprint
from ._messages import (
    ChildValue,
    ComponentMessage,
    FactorPublished,
    FootprintDeclared,
    Message,
    Outcome,
    ProductOffered,
    ProductRolledUp,
    Step,
    Subscribe,
    Unsubscribe,
    order_outcome,
)
from ._model import ComponentFootprint, Factor, Ref, RefKind
from ._result import SourceValue

__all__ = [
    "ComponentState",
    "Draft",
    "Subscription",
    "component_step",
    "component_step_many",
    "offered",
]


@dataclass(frozen=True, slots=True)
class Subscription:
    """Latest (un)subscription of one parent: the BOM revision that made it, and which it was."""

    revision: int
    active: bool


@dataclass(frozen=True, slots=True)
class ComponentState:
    """What the component side knows about one input (see the module docstring)."""

    ref: Ref
    declared: ComponentFootprint | None = None
    factor: Factor | None = None
    rolled: ProductOffered | None = None
    subscribers: Mapping[str, Subscription] = field(default_factory=dict)
    version: int = 0
    """Bumped each time :attr:`value` changes; parents drop values at or below what they hold."""
    value: SourceValue | None = None
    """The value currently offered to parents (``None`` until there is one)."""
    trace: tuple[str, ...] = ()
    """Products the current value flowed through (empty for footprints and factors)."""

    @property
    def parents(self) -> tuple[str, ...]:
        """Parents currently subscribed, sorted."""
        return tuple(sorted(p for p, sub in self.subscribers.items() if sub.active))


def _offered(state: ComponentState | Draft) -> tuple[SourceValue | None, tuple[str, ...]]:
    if state.declared is not None and (
        state.rolled is None or state.declared.supplier == state.rolled.value.supplier
    ):
        return source_from_footprint(state.declared), ()
    if state.rolled is not None:
        return state.rolled.value, state.rolled.trace
    if state.factor is not None:
        return source_from_factor(state.factor), ()
    return None, ()


class Draft:
    """A :class:`ComponentState` being changed in place: what one input's messages of a batch
    do, applied one after the other to one mutable copy, frozen once at the end
    (:meth:`freeze`).

    Its subscribers are copied the first time a (un)subscription changes them, not before: a
    popular input (a grid factor) that a batch subscribes ten thousand parents to copies its
    subscribers once, not once per parent. :func:`component_step` is one message on a draft of
    its own; the :class:`~streams.rollup.Engine` keeps one draft per input for a whole batch.
    """

    __slots__ = (
        "_own",
        "base",
        "changed",
        "declared",
        "factor",
        "ref",
        "rolled",
        "subscribers",
        "trace",
        "value",
        "version",
    )

    def __init__(self, state: ComponentState | None, ref: Ref) -> None:
        if state is None:
            state = ComponentState(ref)
        elif state.ref != ref:
            raise ValueError(f"message for {ref} routed to the component state of {state.ref}")
        self.base = state
        """The state the draft started from (what :meth:`freeze` returns if nothing changed)."""
        self.changed = False
        """Whether a message was stored (``APPLIED`` or ``UNCHANGED``): the state to keep."""
        self.ref = ref
        self.declared = state.declared
        self.factor = state.factor
        self.rolled = state.rolled
        self.subscribers: Mapping[str, Subscription] = state.subscribers
        self._own = False
        self.version = state.version
        self.value = state.value
        self.trace = state.trace

    def freeze(self) -> ComponentState:
        """The state the draft holds now (its :attr:`base` if nothing was stored)."""
        if not self.changed:
            return self.base
        self._own = False  # (the frozen state keeps the dict: a later change copies it again)
        return ComponentState(
            self.ref,
            self.declared,
            self.factor,
            self.rolled,
            self.subscribers,
            self.version,
            self.value,
            self.trace,
        )

    def parents(self) -> list[str]:
        """Parents currently subscribed, sorted."""
        return sorted([p for p, sub in self.subscribers.items() if sub.active])

    def apply(self, message: ComponentMessage) -> tuple[Outcome, list[Message]]:
        """Apply one message (the steps of :func:`component_step`): its outcome and what it
        sends."""
        if type(message) is ProductOffered:  # (the most frequent: a product's own new value)
            return self._rolled(message)
        if isinstance(message, Subscribe | Unsubscribe):
            return self._subscription(message)
        if isinstance(message, FootprintDeclared):
            if self.ref.kind is not RefKind.PRODUCT:  # pragma: no cover - guarded by Ref
                raise ValueError(f"footprint routed to {self.ref}")
            fp, old_fp = message.footprint, self.declared
            if old_fp is not None:  # (2)
                same = fp.content_hash == old_fp.content_hash
                outcome = order_outcome(fp.sequence, old_fp.sequence, same)
                if outcome is not None:
                    return outcome, []
            self.declared = fp  # (3)
            return self._republish()  # (4)
        if isinstance(message, FactorPublished):
            factor, old_factor = message.factor, self.factor
            if old_factor is not None:
                same = factor.content_hash == old_factor.content_hash
                outcome = order_outcome(factor.sequence, old_factor.sequence, same)
                if outcome is not None:
                    return outcome, []
            self.factor = factor
            return self._republish()
        if isinstance(message, ProductRolledUp):
            message = offered(message)
        return self._rolled(message)

    def _rolled(self, message: ProductOffered) -> tuple[Outcome, list[Message]]:
        old_rolled = self.rolled
        if old_rolled is not None and message.sequence <= old_rolled.sequence:
            same = message.value == old_rolled.value
            outcome = order_outcome(message.sequence, old_rolled.sequence, same)
            if outcome is not None:
                return outcome, []
        self.rolled = message
        return self._republish()

    def _republish(self) -> tuple[Outcome, list[Message]]:
        self.changed = True
        value, trace = _offered(self)
        if value == self.value:
            return Outcome.UNCHANGED, []
        self.version += 1
        self.value, self.trace = value, trace
        if value is None:
            return Outcome.APPLIED, []
        ref, version = self.ref, self.version
        return Outcome.APPLIED, [
            ChildValue(parent, ref, version, value, trace) for parent in self.parents()
        ]

    def _subscription(self, message: Subscribe | Unsubscribe) -> tuple[Outcome, list[Message]]:
        active = isinstance(message, Subscribe)
        current = self.subscribers.get(message.parent)
        if current is not None:
            outcome = order_outcome(message.revision, current.revision, current.active is active)
            if outcome is not None:
                return outcome, []
        if not self._own:
            self.subscribers = dict(self.subscribers)
            self._own = True
        self.subscribers[message.parent] = Subscription(message.revision, active)  # type: ignore[index]
        self.changed = True
        if active and self.value is not None:
            child = ChildValue(message.parent, self.ref, self.version, self.value, self.trace)
            return Outcome.APPLIED, [child]
        return Outcome.APPLIED, []


def offered(rolled: ProductRolledUp) -> ProductOffered:
    """What a product's new value offers its component side (what adapters send): the thin
    value as it is, its result not built."""
    return ProductOffered(rolled.product_id, rolled.sequence, rolled.value, rolled.trace)


def component_step(state: ComponentState | None, message: ComponentMessage) -> Step[ComponentState]:
    """Apply one message to the component side of ``message.ref`` (``None``: nothing stored yet).

    1. check the message belongs to this key;
    2. drop records at or below the stored sequence (``STALE``/``DUPLICATE``/``CONFLICT``);
    3. store the record (upsert of an absolute value);
    4. if the offered value changed, bump the version and send it to every subscribed parent;
       a (re)subscription gets the current value right away.

    (One message on a :class:`Draft` of its own; a state a caller holds never changes.)
    """
    draft = Draft(state, message.ref)  # (1)
    outcome, outputs = draft.apply(message)
    return Step(draft.freeze(), tuple(outputs), outcome)


def component_step_many(
    state: ComponentState | None, messages: Sequence[ComponentMessage]
) -> Step[ComponentState]:
    """Apply several messages for one input in order, sending each parent only its last value.

    Equivalent to :func:`component_step` on each in turn, except that a value superseded within
    the batch is not sent: a parent keeps only the highest version of an input anyway, so it
    ends with the same values, from one message instead of several. The outcome is ``APPLIED``
    if any message was, else ``UNCHANGED`` if any was (the state must still be stored), else
    the last no-op; ``Step.each`` gives every message's own outcome.
    """
    if not messages:
        raise ValueError("component_step_many needs at least one message")
    draft = Draft(state, messages[0].ref)
    latest: dict[str, ChildValue] = {}  # parent -> its last value, in first-sent order
    each: list[Outcome] = []
    for message in messages:
        if message.ref != draft.ref:
            raise ValueError(
                f"message for {message.ref} routed to the component state of {draft.ref}"
            )
        outcome, outputs = draft.apply(message)
        each.append(outcome)
        for out in outputs:
            assert isinstance(out, ChildValue)  # all that an input sends
            latest[out.parent] = out
    stored = [o for o in (Outcome.APPLIED, Outcome.UNCHANGED) if o in each]
    outcome = stored[0] if stored else each[-1]
    return Step(draft.freeze(), tuple(latest.values()), outcome, tuple(each))
