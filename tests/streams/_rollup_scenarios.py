"""Random multi-tier supply chains for property tests, and a chaotic Kafka-like delivery.

A :class:`Scenario` is a layered DAG (tier 0 = finished goods, the last tier = purchased parts)
with diamonds and skip-level lines, several versions of each footprint/factor/BOM (all
consistent with the tier order, so every mix of versions is acyclic), missing footprints with
and without a background factor, own processes with grid electricity, and units that convert
within a dimension or through a mass per declared unit.

:func:`deliver_chaotically` plays the messages the way at-least-once Kafka may: one append-only
log per receiving key (per-key order kept, interleaving across keys random), input records in
random order with older versions and duplicates, consumers that re-read part of their log
(state kept, offsets lost) and consumers that roll back state *and* offsets to an earlier
snapshot (so they re-emit what they had already sent).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from pcf_exchange.streams.rollup import (
    Bom,
    BomDeclared,
    BomLine,
    ChildValue,
    ComponentFootprint,
    Factor,
    FactorPublished,
    FootprintDeclared,
    Message,
    Network,
    OwnProcess,
    Ref,
)

E, INC, F = "pcfExcludingBiogenicUptake", "pcfIncludingBiogenicUptake", "fossilGhgEmissions"

UNITS_BY_DIM = {
    "count": ["piece"],
    "mass": ["kilogram", "gram", "ton"],
    "energy": ["kilowatt hour", "megajoule", "megawatt hour"],
    "volume": ["liter", "cubic meter"],
    "area": ["square meter"],
}
DIM_OF = {u: d for d, us in UNITS_BY_DIM.items() for u in us}
DQRS = ("technologicalDQR", "geographicalDQR", "temporalDQR")
MASSES = ["0.5", "1", "2", "2.5", "4", "0.125"]
AMOUNTS = ["1", "1", "1", "2", "5", "10", "0.5"]


@dataclass
class Scenario:
    footprints: list[ComponentFootprint] = field(default_factory=list)
    boms: list[Bom] = field(default_factory=list)
    factors: list[Factor] = field(default_factory=list)
    tiers: int = 0

    def messages(self) -> list[Message]:
        return [
            *(FootprintDeclared(f) for f in self.footprints),
            *(FactorPublished(f) for f in self.factors),
            *(BomDeclared(b) for b in self.boms),
        ]

    def latest(self) -> tuple[list[ComponentFootprint], list[Bom], list[Factor]]:
        def pick(items: list[Any], key: Any, seq: Any) -> list[Any]:
            best: dict[str, Any] = {}
            for item in items:
                if key(item) not in best or seq(item) > seq(best[key(item)]):
                    best[key(item)] = item
            return list(best.values())

        return (
            pick(self.footprints, lambda f: f.product_id, lambda f: f.sequence),
            pick(self.boms, lambda b: b.product_id, lambda b: b.revision),
            pick(self.factors, lambda f: f.factor_id, lambda f: f.sequence),
        )


def bom_depth(boms: list[Bom]) -> int:
    """Products on the longest chain of BOM lines (a product whose lines are all purchased parts
    is 1 deep)."""
    lines = {b.product_id: [line.component_id for line in b.components] for b in boms}
    depth: dict[str, int] = {}

    def of(product: str) -> int:
        if product not in depth:
            depth[product] = 1 + max((of(c) for c in lines[product] if c in lines), default=0)
        return depth[product]

    return max((of(p) for p in lines), default=0)


def diamonds(boms: list[Bom]) -> int:
    """Products reached from one product along two different lines (the shape a BOM tree
    cannot have: an input counted through two paths)."""
    lines = {b.product_id: {line.component_id for line in b.components} for b in boms}
    below: dict[str, frozenset[str]] = {}

    def reach(product: str) -> frozenset[str]:
        if product not in below:
            found: set[str] = set()
            for child in lines.get(product, ()):
                found |= {child} | reach(child)
            below[product] = frozenset(found)
        return below[product]

    shared: set[str] = set()
    for children in lines.values():
        seen: set[str] = set()
        for child in children:
            here = {child} | reach(child)
            shared |= seen & here
            seen |= here
    return len(shared)


def _dec(draw: Any, lo: int, hi: int, places: int) -> Decimal:
    return Decimal(draw(st.integers(lo, hi))).scaleb(-places)


def _figures(draw: Any, optional: bool, lo: int = 0) -> dict[str, Decimal]:
    e = _dec(draw, lo, 10**6, 3)
    fossil = _dec(draw, 0, int(e * 1000), 3)
    figs = {E: e, INC: e, F: fossil, "fossilCarbonContent": _dec(draw, 0, 5000, 3)}
    if optional and draw(st.booleans()):
        uptake = -_dec(draw, 0, 10**5, 3)
        figs["biogenicCO2Uptake"] = uptake
        figs[INC] = e + uptake
    if optional and draw(st.booleans()):
        figs["aircraftGhgEmissions"] = _dec(draw, 0, 1000, 3)
    return figs


@st.composite
def scenarios(
    draw: Any,
    *,
    min_tiers: int = 2,
    max_tiers: int = 8,
    max_width: int = 3,
    complete: bool = False,
    allow_errors: bool = True,
    well_conditioned: bool = False,
    spine: bool = False,
) -> Scenario:
    """A random layered supply chain.

    ``spine=True`` makes every tier at least 2 wide and gives each product two lines into the
    tier just below (``p{t}_j`` uses ``p{t+1}_j`` and ``p{t+1}_{j+1}``, wrapping): the BOM graph
    is then exactly as deep as its tiers, with a diamond at every tier (:func:`bom_depth`,
    :func:`diamonds`); otherwise lines go to any lower node and the depth is what they make.

    ``complete=True`` gives every input a value and no unit errors. ``well_conditioned=True``
    keeps every technosphere coefficient below 1 (lines in the component's own unit, quantities
    0.01..0.99, declared amounts >= 1, at most 0.99 kWh): SuperLU's partial pivoting (what
    bw2calc uses without pypardiso/UMFPACK) then keeps the diagonal pivots of the triangular BOM
    matrix and the solve stays within 1e-9. With coefficients above 1 it pivots off the diagonal
    and we measured relative errors up to ~1e-8 even on products with no inputs.
    """
    tiers = draw(st.integers(min_tiers, max_tiers))
    sc = Scenario(tiers=tiers)
    grids = []
    for g in range(draw(st.integers(1, 2))):
        gid = f"grid{g}"
        gunits = ["kilowatt hour", "megawatt hour", "megajoule"]
        gunit = draw(st.sampled_from(gunits[: 2 if well_conditioned else 3]))
        grids.append(gid)
        for seq in range(1, draw(st.integers(1, 2)) + 1):
            sc.factors.append(
                Factor(
                    gid,
                    seq,
                    gunit,
                    _figures(draw, False, 1000 * well_conditioned),
                    std_dev=_dec(draw, 0, 100, 3),
                )
            )

    # declared unit, mass per declared unit of every node (products and purchased parts)
    unit_of: dict[str, str] = {}
    mass_of: dict[str, Decimal | None] = {}
    amount_of: dict[str, Decimal] = {}

    def describe(node: str) -> None:
        dim = draw(st.sampled_from(sorted(UNITS_BY_DIM)))
        unit_of[node] = draw(st.sampled_from(UNITS_BY_DIM[dim]))
        has_mass = dim != "mass" and draw(st.booleans())
        mass_of[node] = Decimal(draw(st.sampled_from(MASSES))) if has_mass else None
        amount_of[node] = Decimal(draw(st.sampled_from(AMOUNTS)))
        if well_conditioned:
            amount_of[node] = max(amount_of[node], Decimal(1))

    layers: list[list[str]] = []
    for t in range(tiers):
        width = draw(st.integers(2, max(2, max_width)) if spine else st.integers(1, max_width))
        layers.append([f"p{t}_{j}" for j in range(width)])
        for node in layers[-1]:
            describe(node)
    parts = [f"part{j}" for j in range(draw(st.integers(1, max_width + 2)))]
    for node in parts:
        describe(node)

    def line_unit(child: str) -> str:
        if well_conditioned:
            return unit_of[child]
        options = list(UNITS_BY_DIM[DIM_OF[unit_of[child]]])
        if mass_of[child] is not None:
            options += ["kilogram", "gram"]
        if allow_errors and not complete and draw(st.integers(0, 30)) == 0:
            options = ["square meter", "liter", "piece"]  # likely mismatch -> ERROR
        chosen: str = draw(st.sampled_from(options))
        return chosen

    below_all = parts[:]
    factor_ids: dict[str, str] = {}
    for t in reversed(range(tiers)):
        below = below_all[:]
        for pid in layers[t]:
            candidates = draw(st.lists(st.sampled_from(below), min_size=0 if t else 1, max_size=4))
            if spine and t + 1 < tiers:
                under = layers[t + 1]
                j = layers[t].index(pid)
                candidates = [under[j % len(under)], under[(j + 1) % len(under)], *candidates]
            drop = draw(st.sampled_from(below)) if draw(st.booleans()) else None
            n_rev = draw(st.integers(1, 2))
            for rev in range(1, n_rev + 1):
                chosen = candidates if rev == n_rev else [*candidates, *([drop] if drop else [])]
                lines = []
                for child in chosen:
                    fallback = None
                    if child in parts and (complete or draw(st.booleans())):
                        fallback = factor_ids.setdefault(child, f"f-{child}")
                    qty = _dec(draw, 1, 2000, 2)
                    if well_conditioned:
                        qty = _dec(draw, 1, 99, 2)
                    lines.append(BomLine(child, qty, line_unit(child), fallback))
                kwh = _dec(draw, 0, 5000, 1) if draw(st.booleans()) else Decimal(0)
                if well_conditioned and kwh:
                    kwh = _dec(draw, 1, 99, 2)
                own = OwnProcess(
                    direct_kgco2e=_dec(draw, 1000 * well_conditioned, 10**5, 3),
                    electricity_kwh=kwh,
                    grid_factor_id=draw(st.sampled_from(grids)) if kwh else None,
                    direct_std_dev=_dec(draw, 0, 100, 2) if draw(st.booleans()) else None,
                    dqr={DQRS[0]: Decimal(draw(st.integers(1, 5)))} if draw(st.booleans()) else {},
                )
                sc.boms.append(
                    Bom(
                        pid,
                        rev,
                        tuple(lines),
                        own,
                        unit_of[pid],
                        amount_of[pid],
                        mass_of[pid],
                    )
                )
        below_all += layers[t]

    # purchased parts: footprints (several versions), a factor, both, or nothing
    for part in parts:
        fid = factor_ids.get(part)
        with_factor = fid is not None and (complete or draw(st.integers(0, 2)) > 0)
        if complete or with_factor:
            with_footprint = draw(st.booleans())
        else:
            with_footprint = draw(st.integers(0, 3)) > 0
        if with_factor:
            assert fid is not None
            part_mass = mass_of[part]
            for seq in range(1, draw(st.integers(1, 2)) + 1):
                sc.factors.append(
                    Factor(
                        fid,
                        seq,
                        unit_of[part],
                        _figures(draw, True, 1000 * well_conditioned),
                        std_dev=_dec(draw, 0, 100, 3) if draw(st.booleans()) else None,
                        mass_per_unit=None if part_mass is None else part_mass / amount_of[part],
                        source=f"db-{fid}",
                    )
                )
        if with_footprint:
            for seq in range(1, draw(st.integers(1, 3)) + 1):
                figs = _figures(draw, True, 1000 * well_conditioned)
                share = _dec(draw, 0, 100, 0) if draw(st.booleans()) else None
                dqr = {n: Decimal(draw(st.integers(1, 5))) for n in DQRS if draw(st.booleans())}
                stages: dict[str, Decimal] = {}
                if draw(st.booleans()):
                    first = _dec(draw, 0, int(figs[E] * 1000), 3)
                    stages = {"raw material": first, "production": figs[E] - first}
                sc.footprints.append(
                    ComponentFootprint(
                        part,
                        f"fp-{part}-{seq}",
                        seq,
                        unit_of[part],
                        amount_of[part],
                        figs,
                        product_mass_per_declared_unit=mass_of[part],
                        primary_data_share=share,
                        dqr=dqr,
                        std_dev=_dec(draw, 0, 100, 3) if draw(st.booleans()) else None,
                        stages=stages,
                    )
                )
    # now and then a mid-tier product is also sold with a declared footprint (takes precedence)
    if tiers > 1 and draw(st.integers(0, 4)) == 0:
        pid = draw(st.sampled_from(layers[-1]))
        sc.footprints.append(
            ComponentFootprint(
                pid,
                f"fp-{pid}",
                1,
                unit_of[pid],
                amount_of[pid],
                _figures(draw, False, 1000 * well_conditioned),
                product_mass_per_declared_unit=mass_of[pid],
            )
        )
    return sc


# --------------------------------------------------------------------------- delivery


def _receiver(message: Message) -> tuple[str, Any]:
    if isinstance(message, BomDeclared | ChildValue):
        return ("product", message.key)
    return ("component", message.ref)


def deliver_chaotically(
    messages: list[Message],
    seed: int,
    *,
    duplicates: float = 0.2,
    replays: int = 30,
    rollbacks: int = 15,
    max_steps: int = 2_000_000,
) -> Network:
    """Deliver *messages* and everything they cause, at least once, in a random order."""
    rng = random.Random(seed)
    inputs = list(messages)
    inputs += [m for m in messages if rng.random() < duplicates]
    rng.shuffle(inputs)
    net = Network()
    logs: dict[tuple[str, Any], list[Message]] = defaultdict(list)
    cursor: dict[tuple[str, Any], int] = defaultdict(int)
    history: dict[tuple[str, Any], list[tuple[int, Any]]] = defaultdict(list)

    def state_of(key: tuple[str, Any]) -> Any:
        side, k = key
        return (net.products if side == "product" else net.components).get(k)

    def restore(key: tuple[str, Any], state: Any) -> None:
        side, k = key
        store: dict[Any, Any] = net.products if side == "product" else net.components
        if state is None:
            store.pop(k, None)
        else:
            store[k] = state

    steps = 0
    while True:
        ready = [k for k, log in logs.items() if cursor[k] < len(log)]
        if not ready and not inputs:
            return net
        steps += 1
        if steps > max_steps:
            raise AssertionError("delivery did not settle")
        if inputs and (not ready or rng.random() < 0.25):
            msg = inputs.pop()
            logs[_receiver(msg)].append(msg)
            continue
        key = ready[rng.randrange(len(ready))]
        history[key].append((cursor[key], state_of(key)))
        step = net.apply(logs[key][cursor[key]])
        cursor[key] += 1
        for out in step.outputs:
            logs[_receiver(out)].append(out)
        roll = rng.random()
        if replays and roll < 0.02:
            replays -= 1  # offsets lost, state kept: re-read a suffix of the log
            cursor[key] = rng.randrange(cursor[key])
        elif rollbacks and roll < 0.03:
            rollbacks -= 1  # crash: state and offsets both back to an earlier snapshot
            position, state = history[key][rng.randrange(len(history[key]))]
            cursor[key] = position
            restore(key, state)


def product_refs(scenario: Scenario) -> set[Ref]:
    return {Ref.product(b.product_id) for b in scenario.boms}
