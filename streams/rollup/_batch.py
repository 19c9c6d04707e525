"""Batch mode: the streaming transitions run over an in-memory message queue until quiescence.

:class:`Network` stands in for the topic between the two roles: it routes each message to the
input role (by ``msg.ref``) or the parent role (by ``msg.key``), applies
:func:`component_step`/:func:`product_step`, and queues what they emit. Because batch mode is
*the same transitions*, a dry run gives exactly what the streaming deployment converges to.

Kept around, a network is also the incremental core (the bench measures this): submit one
changed footprint and :meth:`Network.run` touches only that input's ancestors. With
``coalesce=True`` the queue goes to the :class:`~streams.rollup.Engine` that holds the network's
states (``_engine``): component-side messages are applied as they come, and the products that
have values waiting are taken lowest in the BOM graph first, each absorbing everything that
reached it at once, in place. Every change to a product comes from an input lower than it, so on
a DAG each product affected by a batch is updated and republished exactly once -- a diamond is
not recomputed once per path that reaches it. Only results are built on demand
(:meth:`results`): the network itself never computes a hash.

A network kept around also has a *flat* mirror of its states (``_flat``): a coalesced batch of
new footprint or factor versions that it models -- the steady-state update, figures changing
but not their shape -- runs there as integer arithmetic, and the object states, values and
:attr:`Network.last` that the engine would have made are built from it only when something
reads them (``_sync``: lowest first, each republished product's slots from its inputs' states,
its value from the mirror's sums, its input role through :func:`component_step`). Everything
else syncs them first and runs on the engine; the mirror is then loaded again when the next
batch it models comes (or by :meth:`Network.flatten`). ``Network(flat=False)`` never takes it.

>>> from decimal import Decimal as D
>>> from pcf_exchange.streams.rollup import Bom, BomLine, ComponentFootprint, run_batch
>>> figures = {"pcfExcludingBiogenicUptake": D("2.5"), "pcfIncludingBiogenicUptake": D("2.5"),
...            "fossilGhgEmissions": D("2.5")}
>>> cell = ComponentFootprint("cell", "fp-1", 1, "piece", D(1), figures)
>>> module = Bom("module", 1, (BomLine("cell", D(12), "piece"),))
>>> run_batch([cell], [module], []).get("module").pcf
Decimal('30.0')
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from pcf_exchange.contracts.errors import RollupError

from ._component import ComponentState, component_step
from ._engine import Delivery, Engine
from ._flat import FlatRollup, rolled_value
from ._messages import (
    BomDeclared,
    ChildValue,
    FactorPublished,
    FootprintDeclared,
    Message,
    Outcome,
    ProductOffered,
    ProductRolledUp,
    Step,
)
from ._model import Bom, ComponentFootprint, Factor, Ref, RefKind
from ._product import ChildSlot, ProductState, product_step
from ._result import RollupResult, SourceValue

__all__ = ["Network", "children_first", "run_batch"]


class Network:
    """Both roles' states plus a FIFO of messages in flight (one process, no Kafka).

    ``run(coalesce=True)`` delivers through the :class:`~streams.rollup.Engine` that holds the
    same two dicts of states -- or, for the updates it models, through the flat mirror of those
    states (:class:`~streams.rollup._flat.FlatRollup`, see :meth:`run`); ``run()`` and
    :meth:`apply` deliver one message at a time. *flat* ``False`` keeps every run on the engine.
    """

    def __init__(self, *, flat: bool = True) -> None:
        self._components: dict[Ref, ComponentState] = {}
        self._products: dict[str, ProductState] = {}
        self.outcomes: Counter[Outcome] = Counter()
        self.delivered = 0
        self._queue: deque[Message] = deque()
        self._engine = Engine(self._products, self._components)
        self._last: Delivery | None = None
        self.flat = flat
        """Whether coalesced runs may take the flat path (``False``: every run on the engine)."""
        self.flat_runs = 0
        """How many coalesced runs the flat mirror took."""
        self._mirror: FlatRollup | None = None
        self._pending: _Pending | None = None

    # ------------------------------------------------------------------ the object states

    @property
    def products(self) -> dict[str, ProductState]:
        """The product side's states (what the flat mirror changed, built now)."""
        self._sync()
        return self._products

    @property
    def components(self) -> dict[Ref, ComponentState]:
        """The input side's states (what the flat mirror changed, built now)."""
        self._sync()
        return self._components

    @property
    def engine(self) -> Engine:
        self._sync()
        return self._engine

    @property
    def last(self) -> Delivery | None:
        """What the last coalesced :meth:`run` did (its products' last values: ``published``)."""
        self._sync()
        return self._last

    def height(self, product_id: str) -> int:
        """1 + the height of the highest product this one's BOM uses (see
        :meth:`Engine.height`)."""
        return self.engine.height(product_id)

    def submit(self, *messages: Message) -> None:
        """Queue input records (footprints, factors, BOMs) or any other message."""
        self._queue.extend(messages)

    def apply(self, message: Message) -> Step[Any]:
        """Deliver one message to its side and store the new state; return the step.

        The outputs are *not* queued: :meth:`run` does that, and tests with their own delivery
        schedule (reordering, duplicates, replays) call this directly.
        """
        self._sync()
        self._mirror = None
        step: Step[Any]
        if isinstance(message, BomDeclared | ChildValue):
            pid = message.key
            step = product_step(self._products.get(pid), message)
            self._products[pid] = step.state
            if isinstance(message, BomDeclared):
                self._engine._heights.clear()
        else:
            ref = message.ref
            step = component_step(self._components.get(ref), message)
            self._components[ref] = step.state
        self.outcomes[step.outcome] += 1
        self.delivered += 1
        return step

    def run(
        self,
        max_messages: int | None = None,
        observe: Callable[[Message, Step[Any]], None] | None = None,
        *,
        coalesce: bool = False,
    ) -> int:
        """Deliver queued messages (and what they cause) until none is left; return how many.

        *max_messages* is a fuse: exceeding it raises :class:`RollupError` rather than spinning.
        *observe*, if given, sees every delivered message with the step it caused.

        With *coalesce*, the queue goes to the engine as one batch (:meth:`Engine.deliver`):
        component-side messages are applied at once, the products with values waiting are taken
        lowest first, each absorbing everything that arrived for it and updating once, in place.
        Same final state, each product of a DAG updated once per run -- batch mode. What it did
        is kept in :attr:`last`.

        A coalesced batch of new footprint or factor versions that the flat mirror models (no
        fuse, no observer: see ``_flat``) runs there instead: the numbers of every ancestor are
        brought up to date as plain integers, and the states, values and :attr:`last` those
        ancestors would have from the engine -- the same, field for field -- are built when
        someone reads them. Anything else syncs them first and runs on the engine.
        """
        if coalesce:
            messages, self._queue = self._queue, deque()
            if max_messages is None and observe is None and self._run_flat(messages):
                return self._pending.count if self._pending is not None else 0
            self._sync()
            self._mirror = None
            delivery = self._engine.deliver(messages, max_messages, observe)
            self.outcomes.update(delivery.outcomes)
            self.delivered += delivery.delivered
            self._last = delivery
            return delivery.count
        self._sync()
        self._mirror = None
        count = 0
        queue = self._queue
        while queue:
            if max_messages is not None and count >= max_messages:
                raise RollupError(
                    f"roll-up did not settle within {max_messages} messages "
                    f"({len(queue)} still queued)"
                )
            message = queue.popleft()
            count += 1
            step = self.apply(message)
            queue.extend(step.outputs)
            if observe is not None:
                observe(message, step)
        return count

    def result(self, product_id: str) -> RollupResult | None:
        state = self.products.get(product_id)
        return None if state is None else state.result

    def results(self) -> dict[str, RollupResult]:
        """The current result of every product that has a BOM."""
        return {
            pid: state.result for pid, state in self.products.items() if state.result is not None
        }

    # ------------------------------------------------------------------ the flat path

    def flatten(self) -> FlatRollup | None:
        """Load the flat mirror now (otherwise the first coalesced run it can take loads it):
        for a caller that wants that one-off cost outside what it measures (and, with
        :meth:`FlatRollup.preload`, its influence rows'). Returns it (``None``: not
        :attr:`flat`)."""
        if self.flat and self._mirror is None:
            self._sync()
            self._mirror = FlatRollup.load(self._products, self._components)
        return self._mirror if self.flat else None

    @property
    def mirror(self) -> FlatRollup | None:
        """The flat mirror as loaded now (``None``: not loaded, or dropped by a message it does
        not model; the next update it models loads it again)."""
        return self._mirror

    def _run_flat(self, messages: deque[Message]) -> bool:
        """Run *messages* on the flat mirror if it models every one of them (nothing changes
        otherwise); whether it did."""
        if not self.flat or not messages:
            return False
        if not all(type(m) in (FootprintDeclared, FactorPublished) for m in messages):
            return False
        if self._mirror is None and not self._worth_flattening(messages):
            return False
        self.flatten()
        mirror = self._mirror
        assert mirror is not None
        components = self._components
        staged: dict[Ref, ComponentState] = {}
        changes: list[tuple[tuple[int, int, int], SourceValue, list[Message]]] = []
        steps: list[tuple[Message, Outcome]] = []
        for message in messages:
            ref = message.ref  # type: ignore[union-attr]
            current = staged.get(ref) or components.get(ref)
            step = component_step(current, message)  # type: ignore[arg-type]
            steps.append((message, step.outcome))
            if current is None or step.state.version == current.version:
                if current is None and step.state.value is not None:
                    return False  # (a new input: its subscribers are the engine's business)
                staged[ref] = step.state
                continue
            value = step.state.value
            accepted = None if value is None else mirror.accepts(value)
            if accepted is None:
                return False
            assert value is not None
            staged[ref] = step.state
            changes.append((accepted, value, list(step.outputs)))
        pending = self._pending
        if pending is None:
            pending = self._pending = _Pending()
        components_before = {ref: components.get(ref) for ref in staged}
        components.update(staged)
        pending.run_components = [
            ref for ref, state in staged.items() if state is not components_before.get(ref)
        ]
        made: list[Message] = []
        for accepted, value, outputs in changes:
            mirror.set_leaf(accepted, value)
            pending.changed[accepted[0]] = None
            made.extend(outputs)
        run, fanout = mirror.republished([accepted[0] for accepted, _, _ in changes], pending.last)
        times = pending.times
        if times:
            for node in run:
                times[node] = times.get(node, 0) + 1
        else:  # (the common case: the states were built since the last run)
            pending.times = dict.fromkeys(run, 1)
        count = len(messages) + len(made) + len(run) + fanout
        pending.changed.update(dict.fromkeys(run))
        pending.run_touched = run
        pending.run_made = made
        pending.count = count
        outcomes: Counter[Outcome] = Counter()
        for _, outcome in steps:
            outcomes[outcome] += 1
        outcomes[Outcome.APPLIED] += count - len(messages)
        pending.run_outcomes = outcomes
        pending.run_noops = [
            (m, o) for m, o in steps if o is not Outcome.APPLIED and o is not Outcome.UNCHANGED
        ]
        totals = self.outcomes
        for outcome, times_seen in outcomes.items():
            totals[outcome] += times_seen
        self.delivered += count
        self.flat_runs += 1
        return True

    def _worth_flattening(self, messages: Iterable[Message]) -> bool:
        """Whether loading the mirror (a pass over every node) could pay for *messages*: each
        is for an input that has a value and parents, none of which meters it as its grid
        (a grid factor's part is not modelled). A cheap look at the object states, so that a
        batch the mirror would refuse anyway -- a grid revision, a first value -- does not pay
        for loading it."""
        components, products = self._components, self._products
        for message in messages:
            ref = message.ref  # type: ignore[union-attr]
            state = components.get(ref)
            if state is None or state.value is None or not state.subscribers:
                return False
            if ref.kind is RefKind.PRODUCT and ref.id in products:
                return False  # (a product with a BOM: its input role is not a leaf)
            for parent in state.subscribers:
                bom = getattr(products.get(parent), "bom", None)
                if bom is not None and bom.own.grid_ref == ref:
                    return False
        return True

    def _sync(self) -> None:
        """Build the object states (and :attr:`last`) of what the flat mirror changed: each
        republished product lowest first, its children's slots from their input roles' states
        (a child's change reached every parent), its value from the mirror's sums, its trace
        extending its last child's, its input role through :func:`component_step`."""
        pending, mirror = self._pending, self._mirror
        if pending is None:
            return
        self._pending = None
        assert mirror is not None
        products, components = self._products, self._components
        refs, lines, changed = mirror.refs, mirror.lines, pending.changed
        delivery = Delivery()
        traces: dict[int, tuple[str, ...]] = {}
        run = dict.fromkeys(pending.run_touched)
        made: list[Message] = list(pending.run_made)
        for node in sorted(pending.times, key=lambda n: (mirror.height[n], n)):
            ref = refs[node]
            pid = ref.id
            old = products[pid]
            bom = old.bom
            assert bom is not None and old.value is not None
            children = dict(old.children)
            for child in lines[node]:
                if child in changed:
                    comp = components[refs[child]]
                    assert comp.value is not None
                    children[comp.ref] = ChildSlot(comp.version, comp.value, comp.trace)
            times = pending.times[node]
            sequence = old.sequence + times
            value = rolled_value(old.value, mirror.totals(node), bom, children)
            mirror.value[node] = value
            last = pending.last[node]
            trace = traces[node] = (*traces.get(last, ()), pid)
            state = ProductState._rebuilt(old, children, sequence, value)
            products[pid] = state
            before = components[ref]
            comp = component_step(before, ProductOffered(pid, sequence, value, trace)).state
            if times > 1:  # (the engine's input role took each of its values: one version each)
                comp = replace(comp, version=before.version + times)
            components[ref] = comp
            if node in run:
                delivery.published[pid] = ProductRolledUp(pid, sequence, value, trace)
                delivery.products[pid] = state
                delivery.components[ref] = comp
                made.extend(
                    ChildValue(parent, ref, comp.version, value, trace) for parent in comp.parents
                )
        for ref in pending.run_components:
            delivery.components.setdefault(ref, components[ref])
        delivery.applied = made
        delivery.noops = pending.run_noops
        delivery.outcomes = pending.run_outcomes
        delivery.delivered = delivery.count = pending.count
        self._last = delivery


class _Pending:
    """What the flat mirror changed since the object states were last built (``Network._sync``),
    and what its last run did (for :attr:`Network.last`)."""

    def __init__(self) -> None:
        self.changed: dict[int, None] = {}
        """The nodes whose values changed (inputs and products)."""
        self.times: dict[int, int] = {}
        """Per product, how many times it republished."""
        self.last: dict[int, int] = {}
        """Per product, the last child that reached it the last time it republished."""
        # what the last run did (each set by every run, ``Network._run_flat``):
        self.run_touched: Sequence[int] = ()
        self.run_made: list[Message] = []
        self.run_components: list[Ref] = []
        self.run_outcomes: Counter[Outcome] = Counter()
        self.run_noops: list[tuple[Message, Outcome]] = []
        self.count = 0


def children_first(boms: Iterable[Bom]) -> list[Bom]:
    """BOMs ordered so that (on a DAG) each product comes after the products it consumes.

    Only an optimisation for loading: any order converges to the same results, this one
    recomputes each product fewest times. Several revisions of a product keep their order.
    """
    by_product: dict[str, list[Bom]] = {}
    for bom in boms:
        by_product.setdefault(bom.product_id, []).append(bom)
    for revisions in by_product.values():
        revisions.sort(key=lambda b: b.revision)
    ordered: list[Bom] = []
    done: set[str] = set()
    for root in sorted(by_product):
        if root in done:
            continue
        done.add(root)
        stack: list[tuple[str, list[str]]] = [(root, _children(by_product[root][-1]))]
        while stack:
            pid, todo = stack[-1]
            while todo and (todo[-1] in done or todo[-1] not in by_product):
                todo.pop()
            if todo:
                child = todo.pop()
                done.add(child)
                stack.append((child, _children(by_product[child][-1])))
            else:
                stack.pop()
                ordered.extend(by_product[pid])
    return ordered


def _children(bom: Bom) -> list[str]:
    return sorted({ref.id for ref in bom.refs if ref.kind is RefKind.PRODUCT}, reverse=True)


def run_batch(
    footprints: Iterable[ComponentFootprint],
    boms: Iterable[Bom],
    factors: Iterable[Factor],
    *,
    max_messages: int | None = None,
) -> dict[str, RollupResult]:
    """Roll every BOM up from files' worth of inputs; return ``{product_id: result}``.

    Runs exactly the streaming transitions; duplicates and older sequences among the inputs are
    ignored as they would be on the topics. Products on a cycle come back ``CYCLE``.
    """
    network = Network()
    network.submit(*(FootprintDeclared(fp) for fp in footprints))
    network.submit(*(FactorPublished(f) for f in factors))
    network.run(max_messages, coalesce=True)
    for bom in children_first(boms):
        network.submit(BomDeclared(bom))
        network.run(max_messages, coalesce=True)
    return network.results()
