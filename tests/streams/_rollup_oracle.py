"""An independent oracle for the roll-up: plain recursion over the *final* inputs, in Fractions.

It shares nothing with ``streams.rollup`` but the input dataclasses: its own unit table, its own
cycle detection (Tarjan SCC), exact rational arithmetic and a straightforward depth-first
evaluation. Tests compare the streaming core's converged state with it digit for digit.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TypedDict, TypeVar

from pcf_exchange.streams.rollup import Bom, ComponentFootprint, Factor

E = "pcfExcludingBiogenicUptake"
REQUIRED = ("pcfExcludingBiogenicUptake", "pcfIncludingBiogenicUptake", "fossilGhgEmissions")

UNITS: dict[str, tuple[str, Fraction]] = {
    "kilogram": ("mass", Fraction(1)),
    "gram": ("mass", Fraction(1, 1000)),
    "ton": ("mass", Fraction(1000)),
    "megajoule": ("energy", Fraction(1)),
    "kilowatt hour": ("energy", Fraction(36, 10)),
    "megawatt hour": ("energy", Fraction(3600)),
    "cubic meter": ("volume", Fraction(1)),
    "liter": ("volume", Fraction(1, 1000)),
    "square meter": ("area", Fraction(1)),
    "piece": ("count", Fraction(1)),
    "ton kilometer": ("transport", Fraction(1)),
    "hour": ("time", Fraction(1)),
    "megabit second": ("data", Fraction(1)),
}


sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))  # deep chains recurse


def Q(value: object) -> Fraction:
    return Fraction(str(value))


_Part = tuple[
    dict[str, Fraction],
    bool,
    Fraction,
    Fraction,
    Fraction,
    dict[str, tuple[Fraction, Fraction]],
    dict[str, Fraction],
]
"""One summand of a roll-up: (figures, neutral, primary, variance, unassessed, dqr, stages)."""


class _Head(TypedDict):
    """The declared-unit fields every OValue of a BOM product carries, whatever its status."""

    unit: str
    amount: Fraction
    mass: Fraction | None


@dataclass
class OValue:
    status: str  # complete | incomplete | error | blocked | cycle
    unit: str = "piece"
    amount: Fraction = Fraction(1)
    mass: Fraction | None = None
    figures: dict[str, Fraction] = field(default_factory=dict)
    primary: Fraction = Fraction(0)
    variance: Fraction = Fraction(0)
    unassessed: Fraction = Fraction(0)
    dqr: dict[str, tuple[Fraction, Fraction]] = field(default_factory=dict)
    stages: dict[str, Fraction] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    lines: list[tuple[str, Fraction]] = field(default_factory=list)
    """(input ref, multiplier) of every evaluated line, plus own direct kgCO2e under 'own'."""

    @property
    def pcf(self) -> Fraction:
        return self.figures[E]


T = TypeVar("T")


def _latest(items: Iterable[T], key: Callable[[T], str], seq: Callable[[T], int]) -> dict[str, T]:
    out: dict[str, T] = {}
    for item in items:
        k = key(item)
        if k not in out or seq(item) > seq(out[k]):
            out[k] = item
    return out


def _from_footprint(fp: ComponentFootprint) -> OValue:
    e = Q(fp.figures[E])
    share = Q(fp.primary_data_share) if fp.primary_data_share is not None else Fraction(0)
    sigma = None if fp.std_dev is None else Q(fp.std_dev)
    return OValue(
        "complete",
        fp.declared_unit,
        Q(fp.declared_unit_amount),
        None if fp.product_mass_per_declared_unit is None else Q(fp.product_mass_per_declared_unit),
        {k: Q(v) for k, v in fp.figures.items()},
        e * share / 100,
        Fraction(0) if sigma is None else sigma * sigma,
        e if sigma is None else Fraction(0),
        {k: (e * Q(v), e) for k, v in fp.dqr.items()},
        {k: Q(v) for k, v in fp.stages.items()} or {"unspecified": e},
    )


def _from_factor(f: Factor) -> OValue:
    e = Q(f.figures[E])
    sigma = None if f.std_dev is None else Q(f.std_dev)
    return OValue(
        "complete",
        f.unit,
        Fraction(1),
        None if f.mass_per_unit is None else Q(f.mass_per_unit),
        {k: Q(v) for k, v in f.figures.items()},
        Fraction(0),
        Fraction(0) if sigma is None else sigma * sigma,
        e if sigma is None else Fraction(0),
        {k: (e * Q(v), e) for k, v in f.dqr.items()},
        {f.stage or "unspecified": e},
    )


def convert(quantity: Fraction, unit: str, src: OValue) -> Fraction | None:
    """Declared units of *src* in *quantity* *unit*; ``None`` if it cannot be converted."""
    line_dim, line_f = UNITS[unit]
    src_dim, src_f = UNITS[src.unit]
    if line_dim == src_dim:
        return quantity * line_f / (src_f * src.amount)
    if line_dim == "mass" and src.mass:
        return quantity * line_f / src.mass
    return None


def cycle_members(boms: dict[str, Bom], declared: set[str]) -> set[str]:
    """Products on a cycle of the graph product -> rolled-up component (Tarjan's SCC)."""
    graph = {
        pid: sorted({ln.component_id for ln in b.components} & (set(boms) - declared))
        for pid, b in boms.items()
        if pid not in declared
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: set[str] = set()
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.update(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def evaluate(
    footprints: Iterable[ComponentFootprint], boms: Iterable[Bom], factors: Iterable[Factor]
) -> dict[str, OValue]:
    """The oracle's result for every product that has a BOM (latest sequences only)."""
    fps = _latest(footprints, lambda f: f.product_id, lambda f: f.sequence)
    fcs = _latest(factors, lambda f: f.factor_id, lambda f: f.sequence)
    bs = _latest(boms, lambda b: b.product_id, lambda b: b.revision)
    on_cycle = cycle_members(bs, set(fps))
    memo: dict[str, OValue] = {}

    def product_value(pid: str) -> OValue | None:
        if pid in fps:
            return _from_footprint(fps[pid])
        if pid in bs:
            return rolled(pid)
        return None

    def rolled(pid: str) -> OValue:
        if pid in memo:
            return memo[pid]
        b = bs[pid]
        head: _Head = {
            "unit": b.declared_unit,
            "amount": Q(b.declared_unit_amount),
            "mass": None
            if b.product_mass_per_declared_unit is None
            else Q(b.product_mass_per_declared_unit),
        }
        if pid in on_cycle:
            memo[pid] = OValue("cycle", **head)
            return memo[pid]
        # parts: (figures, neutral, primary, variance, unassessed, dqr, stages)
        parts: list[_Part] = []
        missing: set[str] = set()
        errors = blocked = 0
        used: list[tuple[str, Fraction]] = []
        own = b.own
        d = Q(own.direct_kgco2e)
        if d:
            sd = None if own.direct_std_dev is None else Q(own.direct_std_dev)
            parts.append(
                (
                    dict.fromkeys(REQUIRED, d),
                    True,
                    d,
                    Fraction(0) if sd is None else sd * sd,
                    d if sd is None else Fraction(0),
                    {k: (d * Q(v), d) for k, v in own.dqr.items()},
                    {own.stage: d},
                )
            )
            used.append(("own", d))
        kwh = Q(own.electricity_kwh)
        if kwh and own.grid_factor_id is not None:
            g = fcs.get(own.grid_factor_id)
            if g is None:
                missing.add(f"factor:{own.grid_factor_id}")
            else:
                gv = _from_factor(g)
                k = convert(kwh, "kilowatt hour", gv)
                if k is None:
                    errors += 1
                else:
                    ge = gv.figures[E] * k
                    parts.append(
                        (
                            {m: v * k for m, v in gv.figures.items()},
                            True,
                            ge,
                            gv.variance * k * k,
                            gv.unassessed * k,
                            {n: (ws * k, w * k) for n, (ws, w) in gv.dqr.items()},
                            {own.stage: ge},
                        )
                    )
                    used.append((f"factor:{own.grid_factor_id}", k))
        for ln in b.components:
            child = product_value(ln.component_id)
            ref = f"product:{ln.component_id}"
            if child is None and ln.factor_id is not None and ln.factor_id in fcs:
                child = _from_factor(fcs[ln.factor_id])
                ref = f"factor:{ln.factor_id}"
            if child is None:
                missing.add(f"product:{ln.component_id}")
                if ln.factor_id is not None:
                    missing.add(f"factor:{ln.factor_id}")
                continue
            if child.status not in ("complete", "incomplete"):
                blocked += 1
                continue
            k = convert(Q(ln.quantity), ln.unit, child)
            if k is None:
                errors += 1
                continue
            parts.append(
                (
                    {m: v * k for m, v in child.figures.items()},
                    False,
                    child.primary * k,
                    child.variance * k * k,
                    child.unassessed * k,
                    {n: (ws * k, w * k) for n, (ws, w) in child.dqr.items()},
                    {s: v * k for s, v in child.stages.items()},
                )
            )
            used.append((ref, k))
            if child.status == "incomplete":
                missing |= child.missing
        if errors:
            memo[pid] = OValue("error", **head)
            return memo[pid]
        if blocked:
            memo[pid] = OValue("blocked", **head)
            return memo[pid]
        line_sets = [set(p[0]) for p in parts if not p[1]]
        common = set.intersection(*line_sets) if line_sets else set(REQUIRED)
        figures = {m: sum((p[0].get(m, Fraction(0)) for p in parts), Fraction(0)) for m in common}
        dqr: dict[str, tuple[Fraction, Fraction]] = {}
        stages: dict[str, Fraction] = {}
        for p in parts:
            for n, (ws, w) in p[5].items():
                a, bw = dqr.get(n, (Fraction(0), Fraction(0)))
                dqr[n] = (a + ws, bw + w)
            for s, v in p[6].items():
                stages[s] = stages.get(s, Fraction(0)) + v
        memo[pid] = OValue(
            "incomplete" if missing else "complete",
            figures=figures,
            primary=sum((p[2] for p in parts), Fraction(0)),
            variance=sum((p[3] for p in parts), Fraction(0)),
            unassessed=sum((p[4] for p in parts), Fraction(0)),
            dqr=dqr,
            stages=stages,
            missing=missing,
            lines=used,
            **head,
        )
        return memo[pid]

    return {pid: rolled(pid) for pid in sorted(bs)}
