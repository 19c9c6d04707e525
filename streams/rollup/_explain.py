"""Where a footprint comes from: hotspots and a contribution tree, read from results' lineage.

Both walk the lineage of rolled-up results (no recomputation): a rolled-up input is expanded
into its own lineage, scaled by the line's multiplier, so every figure is per declared unit of
the product asked about. Inputs reached through several BOM paths are summed (``paths`` counts
them). Meant for a terminal view and for "which supplier should we talk to first".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from ._numbers import ZERO, rollup_context
from ._result import RollupResult, SourceKind, Status

__all__ = ["ContributionNode", "Hotspot", "contribution_tree", "hotspots"]

_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class Hotspot:
    """One leaf input (supplier footprint, factor, own process) and what it adds to the product."""

    ref: str
    kind: SourceKind
    contribution: Decimal
    """kgCO2e (``pcfExcludingBiogenicUptake``) per declared unit of the product asked about."""
    share: Decimal | None
    """Percent of the product's figure (``None`` if that figure is 0 or unknown)."""
    paths: int


@dataclass(frozen=True, slots=True)
class ContributionNode:
    """One node of the contribution tree; children sorted by contribution, largest first."""

    label: str
    ref: str
    kind: SourceKind
    multiplier: Decimal | None
    """Declared units of this input per declared unit of the root product (cumulative)."""
    contribution: Decimal | None
    share: Decimal | None
    status: Status
    children: tuple[ContributionNode, ...] = ()


def _product_of(ref: str) -> str | None:
    return ref.removeprefix("product:") if ref.startswith("product:") else None


def _leaves(
    results: Mapping[str, RollupResult],
    product_id: str,
    memo: dict[str, dict[tuple[str, SourceKind], tuple[Decimal, int]]],
    active: set[str],
) -> dict[tuple[str, SourceKind], tuple[Decimal, int]]:
    cached = memo.get(product_id)
    if cached is not None:
        return cached
    active.add(product_id)
    out: dict[tuple[str, SourceKind], tuple[Decimal, int]] = {}
    result = results[product_id]
    for entry in result.lineage:
        if entry.contribution is None:
            continue
        child = _product_of(entry.ref) if entry.kind is SourceKind.ROLLED_UP else None
        if child is not None and child in results and child not in active and entry.multiplier:
            k = entry.multiplier
            for key, (value, paths) in _leaves(results, child, memo, active).items():
                acc, n = out.get(key, (ZERO, 0))
                out[key] = (acc + value * k, n + paths)
        else:
            key = (entry.ref, entry.kind)
            acc, n = out.get(key, (ZERO, 0))
            out[key] = (acc + entry.contribution, n + 1)
    active.discard(product_id)
    memo[product_id] = out
    return out


def _share(part: Decimal | None, total: Decimal | None) -> Decimal | None:
    if part is None or total is None or total == 0:
        return None
    return _HUNDRED * part / total


def hotspots(
    results: Mapping[str, RollupResult], product_id: str, *, top: int | None = 10
) -> list[Hotspot]:
    """The leaf inputs of *product_id*, largest contribution first (at most *top* of them)."""
    if product_id not in results:
        raise KeyError(f"no result for product {product_id!r}")
    result = results[product_id]
    total = None if result.totals is None else result.totals.headline
    with rollup_context():
        leaves = _leaves(results, product_id, {}, set())
        spots = [
            Hotspot(ref, kind, value, _share(value, total), paths)
            for (ref, kind), (value, paths) in leaves.items()
        ]
    spots.sort(key=lambda h: (-h.contribution, h.ref))
    return spots if top is None else spots[:top]


def contribution_tree(
    results: Mapping[str, RollupResult], product_id: str, *, max_depth: int | None = None
) -> ContributionNode:
    """The BOM tree of *product_id* with each input's contribution, down to *max_depth* tiers."""
    if product_id not in results:
        raise KeyError(f"no result for product {product_id!r}")
    root = results[product_id]
    total = None if root.totals is None else root.totals.headline

    def expand(
        result: RollupResult, scale: Decimal, depth: int, seen: frozenset[str]
    ) -> tuple[ContributionNode, ...]:
        if max_depth is not None and depth >= max_depth:
            return ()
        nodes = []
        for entry in result.lineage:
            multiplier = None if entry.multiplier is None else entry.multiplier * scale
            contribution = None if entry.contribution is None else entry.contribution * scale
            children: tuple[ContributionNode, ...] = ()
            child = _product_of(entry.ref) if entry.kind is SourceKind.ROLLED_UP else None
            if child is not None and child in results and child not in seen and multiplier:
                children = expand(results[child], multiplier, depth + 1, seen | {child})
            nodes.append(
                ContributionNode(
                    label=f"{entry.path} {entry.ref}",
                    ref=entry.ref,
                    kind=entry.kind,
                    multiplier=multiplier,
                    contribution=contribution,
                    share=_share(contribution, total),
                    status=entry.status,
                    children=children,
                )
            )
        nodes.sort(key=lambda n: (-(n.contribution or ZERO), n.label))
        return tuple(nodes)

    with rollup_context():
        return ContributionNode(
            label=product_id,
            ref=f"product:{product_id}",
            kind=SourceKind.ROLLED_UP,
            multiplier=Decimal(1),
            contribution=total,
            share=_share(total, total),
            status=root.status,
            children=expand(root, Decimal(1), 0, frozenset({product_id})),
        )
