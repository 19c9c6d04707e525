"""The product side: one state per product with a BOM, recomputing its result from its inputs.

A :class:`ProductState` holds the product's current BOM revision and, per input ref, the latest
absolute value the component side sent (with its version and trace). Every accepted message
recomputes the whole result with :func:`~streams.rollup.compute_result` -- replace, never add a
delta -- and the result is published only if its content hash changed.

A new BOM revision subscribes to the refs it adds and unsubscribes from the refs it drops; the
values of dropped refs are forgotten at once, so a retracted line stops contributing in the very
recomputation that follows (and a late value for it is ``UNSUBSCRIBED``).

Cycle detection works without any worker seeing the graph: every published result carries the
``trace`` of product ids whose changes led to it. A product that finds itself in the trace of an
input's value (or in the cycle an input reports) is on a cycle; its result becomes ``CYCLE`` with
the path, a fixed value, so the wave stops after one more turn instead of looping (a different
path through the same product is not news, see :func:`_same`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ._compute import compute_result
from ._messages import (
    BomDeclared,
    Message,
    Outcome,
    ProductMessage,
    ProductRolledUp,
    Step,
    Subscribe,
    Unsubscribe,
    order_outcome,
)
from ._model import Bom, Ref
from ._result import RollupResult, SourceValue, Status

__all__ = ["ChildSlot", "ProductState", "product_step", "product_step_many"]


@dataclass(frozen=True, slots=True)
class ChildSlot:
    """The latest value of one input as the product side received it."""

    version: int
    value: SourceValue
    trace: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProductState:
    """What the product side knows about one product (see the module docstring)."""

    product_id: str
    bom: Bom | None = None
    children: Mapping[Ref, ChildSlot] = field(default_factory=dict)
    result: RollupResult | None = None
    sequence: int = 0
    """Number of results published so far (the ``ProductRolledUp.sequence`` of the last one)."""


def _same(new: RollupResult, old: RollupResult) -> bool:
    """Whether *new* is no news compared with the published *old* result.

    On overlapping cycles a product may see several cycles through it, and which one its inputs
    name depends on the order waves arrive in; re-publishing on every switch would make the
    products of the cycles flip each other forever. So while a product stays on a cycle at the
    same BOM revision, another path is not a change: the first cycle found stays reported.
    """
    if new.content_hash == old.content_hash:
        return True
    return (
        new.status is Status.CYCLE
        and old.status is Status.CYCLE
        and new.bom_revision == old.bom_revision
    )


def _recompute(
    state: ProductState, outputs: tuple[Message, ...], trace: tuple[str, ...]
) -> Step[ProductState]:
    bom = state.bom
    assert bom is not None
    values = {ref: slot.value for ref, slot in state.children.items()}
    traces = {ref: slot.trace for ref, slot in state.children.items() if slot.trace}
    result = compute_result(bom, values, traces)
    if state.result is not None and _same(result, state.result):
        return Step(state, outputs, Outcome.APPLIED if outputs else Outcome.UNCHANGED)
    sequence = state.sequence + 1
    pid = state.product_id
    out_trace = (pid,) if result.status is Status.CYCLE else trace
    published = ProductRolledUp(pid, sequence, result, out_trace)
    new = replace(state, result=result, sequence=sequence)
    return Step(new, (*outputs, published), Outcome.APPLIED)


def _absorb(
    state: ProductState, message: ProductMessage
) -> tuple[ProductState, tuple[Message, ...], Outcome | None, tuple[str, ...]]:
    """Store one message without recomputing: (state, outputs, no-op outcome or None, trace)."""
    pid = state.product_id
    if isinstance(message, BomDeclared):
        bom, old = message.bom, state.bom
        if old is not None:  # (2)
            outcome = order_outcome(bom.revision, old.revision, bom == old)
            if outcome is not None:
                return state, (), outcome, ()
        # (3)
        old_refs = old.refs if old is not None else frozenset()
        new_refs = bom.refs
        outputs: tuple[Message, ...] = (
            *(Unsubscribe(ref, pid, bom.revision) for ref in sorted(old_refs - new_refs)),
            *(Subscribe(ref, pid, bom.revision) for ref in sorted(new_refs - old_refs)),
        )
        children = {ref: slot for ref, slot in state.children.items() if ref in new_refs}
        return replace(state, bom=bom, children=children), outputs, None, (pid,)
    if state.bom is None or message.child not in state.bom.refs:  # (2)
        return state, (), Outcome.UNSUBSCRIBED, ()
    slot = state.children.get(message.child)
    if slot is not None:
        outcome = order_outcome(message.version, slot.version, message.value == slot.value)
        if outcome is not None:
            return state, (), outcome, ()
    children = dict(state.children)  # (3)
    children[message.child] = ChildSlot(message.version, message.value, message.trace)
    return replace(state, children=children), (), None, (*message.trace, pid)


def _check_key(state: ProductState | None, pid: str) -> ProductState:
    if state is None:
        return ProductState(pid)
    if state.product_id != pid:
        raise ValueError(f"message for {pid!r} routed to product {state.product_id!r}")
    return state


def product_step(state: ProductState | None, message: ProductMessage) -> Step[ProductState]:
    """Apply one message to the product side of ``message.key`` (``None``: nothing stored yet).

    1. check the message belongs to this key;
    2. a BOM at or below the stored revision, or a value at or below the stored version, or a
       value for a ref the BOM no longer uses, is a named no-op;
    3. a new BOM revision: (un)subscribe the refs it adds (drops), forget dropped values;
       a new value: store it;
    4. recompute the result from all current values; publish it only if it changed.
    """
    state = _check_key(state, message.key)  # (1)
    new, outputs, outcome, trace = _absorb(state, message)
    if outcome is not None:
        return Step(state, (), outcome)
    return _recompute(new, outputs, trace)  # (4)


def product_step_many(
    state: ProductState | None, messages: Sequence[ProductMessage]
) -> Step[ProductState]:
    """Apply several messages for one product in order, recomputing once at the end.

    Equivalent to :func:`product_step` on each in turn except that intermediate results are
    not published (for a consumer that takes batches, and for batch mode). The outcome is
    ``APPLIED`` if any message was, else the last no-op outcome; ``Step.each`` gives every
    message's own outcome, so a ``CONFLICT`` inside a batch can still go to the DLQ.
    """
    if not messages:
        raise ValueError("product_step_many needs at least one message")
    pid = messages[0].key
    state = _check_key(state, pid)
    outputs: list[Message] = []
    each: list[Outcome] = []
    trace: tuple[str, ...] = (pid,)
    for message in messages:
        if message.key != pid:
            raise ValueError(f"message for {message.key!r} in a batch for {pid!r}")
        state, out, outcome, message_trace = _absorb(state, message)
        outputs.extend(out)
        each.append(Outcome.APPLIED if outcome is None else outcome)
        if outcome is None:
            trace = message_trace
    if Outcome.APPLIED in each:
        step = _recompute(state, tuple(outputs), trace)
        return Step(step.state, step.outputs, Outcome.APPLIED, tuple(each))
    return Step(state, tuple(outputs), each[-1], tuple(each))
