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
from collections.abc import Callable, Iterable
from typing import Any

from pcf_exchange.contracts.errors import RollupError

from ._component import ComponentState, component_step
from ._engine import Delivery, Engine
from ._messages import (
    BomDeclared,
    ChildValue,
    FactorPublished,
    FootprintDeclared,
    Message,
    Outcome,
    Step,
)
from ._model import Bom, ComponentFootprint, Factor, Ref, RefKind
from ._product import ProductState, product_step
from ._result import RollupResult

__all__ = ["Network", "children_first", "run_batch"]


class Network:
    """Both roles' states plus a FIFO of messages in flight (one process, no Kafka).

    ``run(coalesce=True)`` delivers through the :class:`~streams.rollup.Engine` that holds the
    same two dicts of states; ``run()`` and :meth:`apply` deliver one message at a time.
    """

    def __init__(self) -> None:
        self.components: dict[Ref, ComponentState] = {}
        self.products: dict[str, ProductState] = {}
        self.outcomes: Counter[Outcome] = Counter()
        self.delivered = 0
        self._queue: deque[Message] = deque()
        self.engine = Engine(self.products, self.components)
        self.last: Delivery | None = None
        """What the last coalesced :meth:`run` did (its products' last values: ``published``)."""

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
        step: Step[Any]
        if isinstance(message, BomDeclared | ChildValue):
            pid = message.key
            step = product_step(self.products.get(pid), message)
            self.products[pid] = step.state
            if isinstance(message, BomDeclared):
                self.engine._heights.clear()
        else:
            ref = message.ref
            step = component_step(self.components.get(ref), message)
            self.components[ref] = step.state
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
        """
        if coalesce:
            messages, self._queue = self._queue, deque()
            delivery = self.engine.deliver(messages, max_messages, observe)
            self.outcomes.update(delivery.outcomes)
            self.delivered += delivery.delivered
            self.last = delivery
            return delivery.count
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
