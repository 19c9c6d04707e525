"""The product side: one state per product with a BOM, keeping its roll-up up to date.

A :class:`ProductState` holds the product's current BOM revision and, per input ref, the latest
absolute value the component side sent (with its version and trace) -- messages stay absolute
values with sequences, so duplicates and replays are no-ops (ARCHITECTURE decision 4). What it
does with a new value is incremental (decision 12): it keeps a :class:`~streams.rollup._running.
Running` roll-up -- each line's scaled part and running sums of every figure and accumulator --
and applies the new value by the difference it makes to the lines that use it, exactly. A step
copies the state once (shallow: a few small dicts) and changes the copy, so a state a caller
holds never changes under it; :func:`product_step_many` copies once per batch.

What it publishes (:class:`ProductRolledUp`) is the product's new *value*, thin: totals, status,
what is missing, and a pending identity whose result (lineage, content hash, id) is built only if
someone asks for it -- the edge that publishes it, once. A value is news only if it differs from
the one published last; two values are compared by their figures and the values their lines used,
never by hashing.

A new BOM revision subscribes to the refs it adds and unsubscribes from the refs it drops; the
values of dropped refs are forgotten at once, so a retracted line stops contributing in the very
recomputation that follows (and a late value for it is ``UNSUBSCRIBED``); the line state is then
rebuilt from scratch.

Cycle detection works without any worker seeing the graph: every published value carries the
``trace`` of product ids whose changes led to it. A product that finds itself in the trace of an
input's value (or in the cycle an input reports) is on a cycle; its value becomes ``CYCLE`` with
the path, a fixed value, so the wave stops after one more turn instead of looping (a different
path through the same product is not news, see :func:`_same`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._compute import compute_result
from ._messages import (
    BomDeclared,
    ChildValue,
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
from ._running import Running

__all__ = ["ChildSlot", "ProductState", "product_step", "product_step_many"]


@dataclass(frozen=True, slots=True)
class ChildSlot:
    """The latest value of one input as the product side received it."""

    version: int
    value: SourceValue
    trace: tuple[str, ...] = ()


class ProductState:
    """What the product side knows about one product (see the module docstring).

    Stored (and what the codec writes): ``product_id``, ``bom``, ``children`` (the latest value
    per input), ``sequence`` (number of values published) and ``value`` (the last published).
    The running roll-up is derived from them, so a row holds no result and no sums: reading a
    row back rebuilds it (arithmetic only, no hashing).
    """

    __slots__ = (
        "_dirty",
        "_rebuild",
        "_refs",
        "_run",
        "bom",
        "children",
        "product_id",
        "sequence",
        "value",
    )

    def __init__(
        self,
        product_id: str,
        bom: Bom | None = None,
        children: Mapping[Ref, ChildSlot] | None = None,
        sequence: int = 0,
        value: SourceValue | None = None,
    ) -> None:
        self.product_id = product_id
        self.bom = bom
        self.children: dict[Ref, ChildSlot] = dict(children or {})
        self.sequence = sequence
        """Number of values published so far (the ``ProductRolledUp.sequence`` of the last)."""
        self.value = value
        """The value published last (``None`` before the first)."""
        self._run = None if bom is None else Running(bom, self.children)
        self._refs = frozenset() if bom is None else bom.refs
        self._dirty: set[Ref] = set()
        self._rebuild = False

    @property
    def result(self) -> RollupResult | None:
        """The full result of the value published last, built on first access (the edge)."""
        if self.value is None:
            return None
        result = self.value.identity.result
        if result is None and self.bom is not None:  # a value read back from a row
            values = {ref: slot.value for ref, slot in self.children.items()}
            traces = {ref: slot.trace for ref, slot in self.children.items() if slot.trace}
            result = compute_result(self.bom, values, traces)
        return result

    def _copy(self) -> ProductState:
        new = ProductState.__new__(ProductState)
        new.product_id = self.product_id
        new.bom = self.bom
        new.children = dict(self.children)
        new.sequence = self.sequence
        new.value = self.value
        new._run = None if self._run is None else self._run.copy()
        new._refs = self._refs
        new._dirty = set()
        new._rebuild = False
        return new

    @classmethod
    def _rebuilt(
        cls,
        old: ProductState,
        children: dict[Ref, ChildSlot],
        sequence: int,
        value: SourceValue,
    ) -> ProductState:
        """*old* with new *children*, *sequence* and *value* (what the flat path computed), its
        running roll-up left to be rebuilt from the children if a step ever needs it."""
        new = cls.__new__(cls)
        new.product_id = old.product_id
        new.bom = old.bom
        new.children = children
        new.sequence = sequence
        new.value = value
        new._run = None
        new._refs = old._refs
        new._dirty = set()
        new._rebuild = False
        return new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProductState):
            return NotImplemented
        return (
            self.product_id == other.product_id
            and self.sequence == other.sequence
            and self.bom == other.bom
            and self.children == other.children
            and self.value == other.value
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"ProductState({self.product_id!r}, bom={self.bom!r}, children={self.children!r}, "
            f"sequence={self.sequence}, value={self.value!r})"
        )


def _same(new: SourceValue, old: SourceValue, run: Running) -> bool:
    """Whether *new* is no news compared with the published *old* value (*run*: the running
    roll-up *new* came from).

    On overlapping cycles a product may see several cycles through it, and which one its inputs
    name depends on the order waves arrive in; re-publishing on every switch would make the
    products of the cycles flip each other forever. So while a product stays on a cycle at the
    same BOM revision, another path is not a change: the cycle reported stays -- as long as an
    input still shows it. A path no input shows any more is stale (an edge of it was cut, e.g.
    by a supplier footprint that now stands for a product on it): the current one replaces it.
    """
    if new.status is Status.CYCLE and old.status is Status.CYCLE:
        return new.sequence == old.sequence and run.shows(old.cycle)
    return new == old


def _check(state: ProductState, message: ProductMessage) -> Outcome | None:
    """The named no-op *message* is for *state*, or ``None`` if it changes it (step 2)."""
    if isinstance(message, BomDeclared):
        bom, old = message.bom, state.bom
        if old is None or bom.revision > old.revision:
            return None
        return order_outcome(bom.revision, old.revision, bom == old)
    if state.bom is None or message.child not in state._refs:
        return Outcome.UNSUBSCRIBED
    slot = state.children.get(message.child)
    if slot is None or message.version > slot.version:
        return None  # (the content is compared only when the versions say it might be a copy)
    return order_outcome(message.version, slot.version, message.value == slot.value)


def _store(
    state: ProductState, message: ProductMessage
) -> tuple[tuple[Message, ...], tuple[str, ...]]:
    """Store one accepted message in *state* (a copy this step owns): (outputs, trace) (step 3)."""
    pid = state.product_id
    if isinstance(message, BomDeclared):
        bom, old = message.bom, state.bom
        old_refs = old.refs if old is not None else frozenset()
        new_refs = bom.refs
        outputs: tuple[Message, ...] = (
            *(Unsubscribe(ref, pid, bom.revision) for ref in sorted(old_refs - new_refs)),
            *(Subscribe(ref, pid, bom.revision) for ref in sorted(new_refs - old_refs)),
        )
        for ref in old_refs - new_refs:
            state.children.pop(ref, None)
        state.bom = bom
        state._refs = new_refs
        state._rebuild = True
        return outputs, (pid,)
    assert isinstance(message, ChildValue)
    state.children[message.child] = ChildSlot(message.version, message.value, message.trace)
    state._dirty.add(message.child)
    return (), (*message.trace, pid)


def _publish(
    state: ProductState, outputs: tuple[Message, ...], trace: tuple[str, ...]
) -> Step[ProductState]:
    """Bring the running roll-up up to date with what was stored; publish if it changed (4)."""
    bom = state.bom
    assert bom is not None
    if state._rebuild or state._run is None:
        state._run = Running(bom, state.children)
    elif state._dirty:
        state._run.update(state._dirty, state.children)
    state._dirty = set()
    state._rebuild = False
    value = state._run.value()
    if state.value is not None and _same(value, state.value, state._run):
        return Step(state, outputs, Outcome.APPLIED if outputs else Outcome.UNCHANGED)
    state.sequence += 1
    state.value = value
    pid = state.product_id
    out_trace = (pid,) if value.status is Status.CYCLE else trace
    published = ProductRolledUp(pid, state.sequence, value, out_trace)
    return Step(state, (*outputs, published), Outcome.APPLIED)


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
    4. apply it to the running roll-up (a new BOM: rebuild it); publish the new value only if
       it changed.
    """
    state = _check_key(state, message.key)  # (1)
    outcome = _check(state, message)  # (2)
    if outcome is not None:
        return Step(state, (), outcome)
    new = state._copy()
    outputs, trace = _store(new, message)  # (3)
    return _publish(new, outputs, trace)  # (4)


def product_step_many(
    state: ProductState | None, messages: Sequence[ProductMessage]
) -> Step[ProductState]:
    """Apply several messages for one product in order, updating the roll-up once at the end.

    Equivalent to :func:`product_step` on each in turn except that intermediate values are
    not published (for a consumer that takes batches, and for batch mode). The outcome is
    ``APPLIED`` if any message was, else the last no-op outcome; ``Step.each`` gives every
    message's own outcome, so a ``CONFLICT`` inside a batch can still go to the DLQ.
    """
    if not messages:
        raise ValueError("product_step_many needs at least one message")
    pid = messages[0].key
    state = _check_key(state, pid)
    new: ProductState | None = None
    outputs: list[Message] = []
    each: list[Outcome] = []
    trace: tuple[str, ...] = (pid,)
    for message in messages:
        if message.key != pid:
            raise ValueError(f"message for {message.key!r} in a batch for {pid!r}")
        outcome = _check(new or state, message)
        each.append(Outcome.APPLIED if outcome is None else outcome)
        if outcome is not None:
            continue
        if new is None:
            new = state._copy()
        out, trace = _store(new, message)
        outputs.extend(out)
    if new is not None:
        step = _publish(new, tuple(outputs), trace)
        return Step(step.state, step.outputs, Outcome.APPLIED, tuple(each))
    return Step(state, tuple(outputs), each[-1], tuple(each))
