"""Local delivery: a batch of messages applied to the nodes one process holds, in one call.

Between workers the roll-up stays a protocol of absolute values with sequences (``_messages``):
a product's new value is a :class:`~streams.rollup.ProductRolledUp`, its input role turns it into
one :class:`~streams.rollup.ChildValue` per parent, and each parent applies it by the difference
it makes (``_running``). Inside one process none of that has to be a queue of immutable steps.
:class:`Engine` holds the states of the nodes it owns and delivers a batch to them directly:

* **in place, copied once.** A product the batch changes is copied once (its state, its running
  sums) the first time the batch touches it; every later change in the batch -- another input, a
  second wave on a cycle -- goes to that copy, which is what the batch writes back. A state a
  caller held before the batch never changes under it. An input role's state is changed the same
  way, on a :class:`~streams.rollup._component.Draft` made the first time the batch touches it
  and frozen once at the end (a factor a batch subscribes ten thousand parents to copies its
  subscribers once).
* **lowest first, each product once.** Input-side records (footprints, factors, subscriptions,
  products' own new values) are applied as they come; the products with values waiting are taken
  lowest in the BOM graph first (:meth:`Engine.height`), each absorbing everything that reached
  it at once. Every change to a product comes from something lower, so on a DAG each product
  the batch affects is recomputed and republished exactly once, however many paths reach it.
* **values straight to parents.** A product's new value goes to its own input role and from
  there to every local parent without a round through a topic; only values for nodes the
  process does not own (``local``) leave the engine, as messages (:attr:`Delivery.remote`),
  and of an input's values for one such parent only the batch's last. Past a *spill* limit of
  messages the batch made and applied itself, the rest leaves too (a streams worker's topic
  takes it to a later batch) instead of the batch growing without bound; past a *deadline*, too
  (a batch bounded in time as well as in messages).
* **no result.** Nothing here computes a hash, a uuid or lineage: a published value's result is
  pending (:class:`~streams.rollup.Identity`) until the edge asks for it, once per product per
  batch (:attr:`Delivery.published` holds each product's *last* new value of the batch).

The transitions are the per-node ones (:func:`~streams.rollup.component_step`, the product
side's check/store/publish of ``_product``) in the same order as :meth:`Network.run` with
``coalesce=True`` had them, so the engine reaches the same states and the same values, digit for
digit, as one message at a time -- ``tests/streams/test_rollup_engine.py`` checks it against
:func:`~streams.rollup.compute_result` and against per-message delivery.

A streams worker uses it for each batch the same way (``streams._rollup_step.roll_up``: one
:meth:`Engine.deliver` with ``load`` reading the stored rows and ``local`` the partitions it
owns): states in, the states that changed out, plus the messages for other workers. *heights*
may be kept by the caller from one engine to the next (a worker makes one per batch); a height
that is out of date (a BOM changed on another worker) costs order, never correctness: a product
taken too early is simply taken again when the later value reaches it.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from pcf_exchange.contracts.errors import RollupError

from ._component import ComponentState, Draft, Subscription, offered
from ._messages import (
    BomDeclared,
    ChildValue,
    Message,
    Outcome,
    ProductMessage,
    ProductOffered,
    ProductRolledUp,
    Step,
)
from ._model import Ref, RefKind
from ._product import ProductState, _check, _check_key, _publish, _store

__all__ = ["Delivery", "Engine"]

Observer = Callable[[Message, Step[object]], None]
Loader = Callable[[Ref], tuple[ComponentState | None, ProductState | None]]


@dataclass(slots=True)
class Delivery:
    """What one :meth:`Engine.deliver` did."""

    products: dict[str, ProductState] = field(default_factory=dict)
    """The product states the batch changed (each built once, the batch's last)."""
    components: dict[Ref, ComponentState] = field(default_factory=dict)
    """The input states the batch changed or created."""
    published: dict[str, ProductRolledUp] = field(default_factory=dict)
    """Each product's last new value of the batch, in the order they were last published: what
    the edge publishes (and builds the result of), once."""
    remote: list[Message] = field(default_factory=list)
    """Messages for nodes this engine does not own (``local``), in the order they were made."""
    applied: list[Message] = field(default_factory=list)
    """Messages the batch made for nodes this engine owns and applied itself, in order (a
    product's new value to its own input role aside): a streams worker still sends them, so
    that a crash between storing one node's row and another's loses nothing."""
    noops: list[tuple[Message, Outcome]] = field(default_factory=list)
    """Messages that changed nothing, with why (a ``CONFLICT`` is worth a DLQ record)."""
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    delivered: int = 0
    """Messages applied to a node's state (any outcome)."""
    count: int = 0
    """Messages taken from the queue (what a ``max_messages`` fuse counts)."""


class Engine:
    """The states of the nodes one process owns, and the batch delivery over them.

    ``products`` and ``components`` are the states (keyed by product id and by ref); they may be
    a cache in front of *load*, which gives both states of a node not yet in memory (a stored
    row). *local* says whether a node is this process's (default: all are).
    """

    def __init__(
        self,
        products: dict[str, ProductState] | None = None,
        components: dict[Ref, ComponentState] | None = None,
        *,
        load: Loader | None = None,
        local: Callable[[Ref], bool] | None = None,
        heights: dict[str, int] | None = None,
    ) -> None:
        self.products: dict[str, ProductState] = {} if products is None else products
        self.components: dict[Ref, ComponentState] = {} if components is None else components
        self._load = load
        self._local = local
        self._loaded: set[Ref] = set()
        self._heights: dict[str, int] = {} if heights is None else heights
        self._drafts: dict[Ref, Draft] = {}

    # ------------------------------------------------------------------ states

    def _fetch(self, ref: Ref) -> None:
        if self._load is None or ref in self._loaded:
            return
        self._loaded.add(ref)
        component, product = self._load(ref)
        if component is not None:
            self.components.setdefault(ref, component)
        if product is not None:
            self.products.setdefault(ref.id, product)

    def product(self, product_id: str) -> ProductState | None:
        state = self.products.get(product_id)
        if state is None and self._load is not None:
            self._fetch(Ref.product(product_id))
            state = self.products.get(product_id)
        return state

    def component(self, ref: Ref) -> ComponentState | None:
        state = self.components.get(ref)
        if state is None and self._load is not None:
            self._fetch(ref)
            state = self.components.get(ref)
        return state

    def height(self, product_id: str) -> int:
        """1 + the height of the highest product this one's BOM uses (0: uses no product with a
        BOM). Memoised until a BOM changes; on a cycle, a product met again counts 0."""
        known = self._heights
        if product_id in known:
            return known[product_id]
        acc = {product_id: 0}
        on_path = {product_id}
        stack = [(product_id, iter(self._children_of(product_id) or ()))]
        while stack:  # post-order, iteratively (a BOM graph may be deep)
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.discard(node)
                known[node] = acc[node]
                if stack:
                    parent = stack[-1][0]
                    acc[parent] = max(acc[parent], 1 + acc[node])
            elif child in known:
                acc[node] = max(acc[node], 1 + known[child])
            elif child not in on_path and self._children_of(child) is not None:
                acc[child] = 0
                on_path.add(child)
                stack.append((child, iter(self._children_of(child) or ())))
        return known[product_id]

    def _subscribers(self, ref: Ref) -> Mapping[str, Subscription] | None:
        draft = self._drafts.get(ref)
        if draft is not None:
            return draft.subscribers
        component = self.components.get(ref)
        return None if component is None else component.subscribers

    def _forget_height(self, product_id: str) -> None:
        """A new BOM of *product_id* may change its height and its ancestors' (found through the
        subscribers its input role knows), nobody else's: forget just those."""
        heights = self._heights
        stack = [product_id]
        seen = {product_id}
        while stack:
            pid = stack.pop()
            heights.pop(pid, None)
            subscribers = self._subscribers(Ref.product(pid))
            if subscribers is None:
                continue
            for parent in subscribers:  # (active or not: a dropped line counts too)
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)

    def _children_of(self, product_id: str) -> list[str] | None:
        """The product ids *product_id*'s BOM uses (``None``: it has no BOM)."""
        state = self.product(product_id)
        if state is None or state.bom is None:
            return None
        return [ref.id for ref in state._refs if ref.kind is RefKind.PRODUCT]

    # ------------------------------------------------------------------ delivery

    def deliver(
        self,
        messages: Iterable[Message],
        max_messages: int | None = None,
        observe: Observer | None = None,
        *,
        spill: int | None = None,
        past_deadline: Callable[[], bool] | None = None,
    ) -> Delivery:
        """Apply *messages* and everything they cause on this engine's nodes until none is left.

        *max_messages* is a fuse: exceeding it raises :class:`RollupError` rather than spinning.
        *spill* is a softer one, for a process whose messages have somewhere else to go (a
        streams worker's topic): once the batch has applied that many messages it made itself,
        every further message it makes leaves as :attr:`Delivery.remote` instead (the products
        already waiting still update once, and a product's own new value still reaches its own
        input role, the same node). *past_deadline* (asked at each message the batch makes) is
        the same limit in time: once it says yes, every further message the batch makes leaves
        as remote, so a worker's batch that fans out to thousands of products hands the event
        loop back (its consumer's heartbeats) instead of holding it past the group's session.
        The engine keeps no clock itself (a pure core): the caller's check holds it. *observe*, if
        given, sees every input-side message with its step, and every product's update with the
        messages it absorbed (one call per message, all with the same step).
        """
        out = Delivery()
        queue: deque[Message] = deque(messages)
        inputs = len(queue)  # (what the queue holds beyond them, the batch made)
        pending: dict[str, list[ProductMessage]] = {}
        ready: list[tuple[int, str]] = []  # (height, product id) of the pending products
        owned: dict[str, ProductState] = {}  # products this batch has copied (changed in place)
        drafts = self._drafts = {}  # inputs this batch has touched (changed in place)
        remote: list[Message | None] = []
        last_value: dict[tuple[str, Ref], int] = {}  # (parent, child) -> index in remote
        local = self._local
        count = 0
        limit = None if spill is None else inputs + spill
        try:
            while queue or pending:
                while queue:
                    if max_messages is not None and count >= max_messages:
                        raise RollupError(
                            f"roll-up did not settle within {max_messages} messages "
                            f"({len(queue) + sum(map(len, pending.values()))} still queued)"
                        )
                    message = queue.popleft()
                    count += 1
                    made = count > inputs
                    if made and past_deadline is not None and past_deadline():
                        limit, past_deadline = count - 1, None  # from here on, all it makes leaves
                    if isinstance(message, BomDeclared | ChildValue):
                        pid = message.key
                        if (local is not None and not local(Ref.product(pid))) or (
                            made and limit is not None and count > limit
                        ):
                            _send(remote, last_value, message)
                            continue
                        if made:
                            out.applied.append(message)
                        waiting = pending.get(pid)
                        if waiting is None:
                            pending[pid] = [message]
                            heapq.heappush(ready, (self.height(pid), pid))
                        else:
                            waiting.append(message)
                        continue
                    ref = message.ref
                    if not (made and isinstance(message, ProductOffered)):  # (its own node)
                        if (local is not None and not local(ref)) or (
                            made and limit is not None and count > limit
                        ):
                            _send(remote, last_value, message)
                            continue
                        if made:
                            out.applied.append(message)
                    draft = drafts.get(ref)
                    if draft is None:
                        draft = drafts[ref] = Draft(self.component(ref), ref)
                    outcome, outputs = draft.apply(message)
                    self._count(out, message, outcome)
                    queue.extend(outputs)
                    if observe is not None:
                        step = Step(draft.freeze(), tuple(outputs), outcome)
                        observe(message, step)  # type: ignore[arg-type]
                if not ready:
                    continue
                _, pid = heapq.heappop(ready)
                self._product_batch(pid, pending.pop(pid), owned, out, queue, observe)
        finally:
            for ref, draft in drafts.items():
                if draft.changed:
                    self.components[ref] = out.components[ref] = draft.freeze()
            self._drafts = {}
        out.remote = [m for m in remote if m is not None]
        out.count = count
        return out

    def _count(self, out: Delivery, message: Message, outcome: Outcome) -> None:
        out.outcomes[outcome] += 1
        out.delivered += 1
        if outcome is not Outcome.APPLIED and outcome is not Outcome.UNCHANGED:
            out.noops.append((message, outcome))

    def _product_batch(
        self,
        pid: str,
        messages: list[ProductMessage],
        owned: dict[str, ProductState],
        out: Delivery,
        queue: deque[Message],
        observe: Observer | None,
    ) -> None:
        """One product absorbs what reached it, updates once, and hands its new value on."""
        state = owned.get(pid)
        base = state if state is not None else _check_key(self.product(pid), pid)
        outputs: list[Message] = []
        trace: tuple[str, ...] = (pid,)
        applied = False
        bom_changed = False
        for message in messages:
            outcome = _check(state or base, message)
            if outcome is not None:
                self._count(out, message, outcome)
                continue
            if state is None:  # (the batch's own copy, made once)
                state = owned[pid] = base._copy()
                self.products[pid] = out.products[pid] = state
            stored, trace = _store(state, message)
            outputs.extend(stored)
            applied = True
            bom_changed = bom_changed or isinstance(message, BomDeclared)
            self._count(out, message, Outcome.APPLIED)
        if bom_changed:
            self._forget_height(pid)
        if not applied:
            return
        assert state is not None
        step = _publish(state, tuple(outputs), trace)
        if observe is not None:
            for message in messages:
                observe(message, step)  # type: ignore[arg-type]
        for made in step.outputs:
            if isinstance(made, ProductRolledUp):
                out.published.pop(pid, None)  # (keeps the order of the last values)
                out.published[pid] = made
                queue.append(offered(made))
            else:
                queue.append(made)


def _send(
    remote: list[Message | None], last_value: dict[tuple[str, Ref], int], message: Message
) -> None:
    """*message* leaves the engine; a parent keeps only an input's latest value, so an earlier
    value of the same input for the same parent in the batch is dropped (its place left empty)."""
    if isinstance(message, ChildValue):
        slot = (message.parent, message.child)
        at = last_value.get(slot)
        if at is not None:
            remote[at] = None
        last_value[slot] = len(remote)
    remote.append(message)
