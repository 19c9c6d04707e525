"""The roll-up arithmetic: one product's result from its BOM and the current value of each input.

:func:`compute_result` is the from-scratch reference: it adds every input up, in BOM order, and
builds the whole result (lineage, content hash, id). The streaming transitions do not call it
per update: a product keeps per-line parts and running sums (``_running``) and applies a new
input by its difference, and a result asked for at the edge that publishes it is assembled from
those lines (``_running._assemble``: the same result, without scaling the inputs again);
``compute_result`` builds batch mode's results, a product's with a unit error and one whose
value was read back from a row. Both sides scale each input by the same operations in the same
order (:func:`line_part`, :func:`grid_part`, :func:`direct_part`; ``_running`` scales a line with
``_scaled``, ``line_part``'s operations on a multiplier it keeps: 50-digit products, so the same
digits) and add in the exact context (``_numbers``), so they agree digit for digit;
``tests/streams/test_rollup_incremental.py`` checks it after any history.

Steps (numbered in the code as ``# (n)``):

1. cycle check: an input whose trace (the chain of products a value flowed through) contains
   this product, or an input on a cycle through this product, makes the result ``CYCLE``;
2. own process: direct emissions, then metered electricity x grid factor (primary data);
3. each BOM line: the component's footprint or rolled-up value, else the line's background
   factor (flagged secondary), else the component is missing; convert the line quantity into
   the input's declared units (within a dimension, or from a mass through the input's mass per
   declared unit) and scale the input's totals by that multiplier;
4. which figures can be added (those every line reports) and which inputs lacked the others;
5. status (``ERROR`` > ``BLOCKED`` > ``INCOMPLETE`` > ``COMPLETE``), sums, lineage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Context, Decimal, Inexact

from pcf_exchange.contracts.errors import RollupError, Violation
from pcf_exchange.contracts.units import Dimension, unit

from ._model import (
    CARBON_CONTENT_METRICS,
    DQR_RATINGS,
    HEADLINE_METRIC,
    OPTIONAL_EMISSION_METRICS,
    REQUIRED_METRICS,
    UNSPECIFIED_STAGE,
    Bom,
    BomLine,
    ComponentFootprint,
    Factor,
    OwnProcess,
    Ref,
    RefKind,
)
from ._numbers import ZERO, exact_context, rollup_context
from ._result import (
    Identity,
    LineageInput,
    RollupResult,
    SourceKind,
    SourceValue,
    Status,
    Totals,
)

__all__ = [
    "compute_result",
    "cycle_result",
    "direct_part",
    "grid_part",
    "line_multiplier",
    "line_part",
    "source_from_factor",
    "source_from_footprint",
    "source_from_result",
]

_METRIC_ORDER: tuple[str, ...] = (
    REQUIRED_METRICS + OPTIONAL_EMISSION_METRICS + CARBON_CONTENT_METRICS
)
_HUNDRED = Decimal(100)
_KWH = "kilowatt hour"


# --------------------------------------------------------------------------- input -> value


def source_from_footprint(footprint: ComponentFootprint) -> SourceValue:
    """The value a supplier footprint offers its parents (primary by its own share)."""
    headline = footprint.figures[HEADLINE_METRIC]
    share, sigma, ratings = footprint.primary_data_share, footprint.std_dev, footprint.dqr
    primary = variance = ZERO
    dqr: dict[str, tuple[Decimal, Decimal]] = {}
    if share is not None or sigma is not None or ratings:  # (no arithmetic: no context)
        with rollup_context():
            if share is not None:
                primary = headline * share / _HUNDRED
            if sigma is not None:
                variance = sigma * sigma
            dqr = {name: (headline * rating, headline) for name, rating in ratings.items()}
    totals = Totals(
        figures=dict(footprint.figures),
        primary=primary,
        variance=variance,
        unassessed=headline if sigma is None else ZERO,
        dqr=dqr,
        stages=dict(footprint.stages) or {UNSPECIFIED_STAGE: headline},
    )
    return SourceValue(
        ref=footprint.ref,
        kind=SourceKind.SUPPLIER,
        identity=Identity(footprint.footprint_id, footprint.content_hash),
        sequence=footprint.sequence,
        declared_unit=footprint.declared_unit,
        declared_unit_amount=footprint.declared_unit_amount,
        mass_per_declared_unit=footprint.product_mass_per_declared_unit,
        status=Status.COMPLETE,
        totals=totals,
        factor_sources=footprint.secondary_sources,
        supplier=footprint.supplier,
    )


def source_from_factor(factor: Factor) -> SourceValue:
    """The value a background factor offers (secondary data: no primary share)."""
    headline = factor.figures[HEADLINE_METRIC]
    with rollup_context():
        sigma = factor.std_dev
        totals = Totals(
            figures=dict(factor.figures),
            primary=ZERO,
            variance=ZERO if sigma is None else sigma * sigma,
            unassessed=headline if sigma is None else ZERO,
            dqr={name: (headline * rating, headline) for name, rating in factor.dqr.items()},
            stages={factor.stage or UNSPECIFIED_STAGE: headline},
        )
    return SourceValue(
        ref=factor.ref,
        kind=SourceKind.FACTOR,
        identity=Identity(factor.record_id, factor.content_hash),
        sequence=factor.sequence,
        declared_unit=factor.unit,
        declared_unit_amount=Decimal(1),
        mass_per_declared_unit=factor.mass_per_unit,
        status=Status.COMPLETE,
        totals=totals,
        factor_sources=(factor.source or factor.factor_id,),
        supplier=factor.publisher,
    )


def source_from_result(result: RollupResult) -> SourceValue:
    """The value a rolled-up product offers to the products further downstream."""
    usable = result.status in (Status.COMPLETE, Status.INCOMPLETE)
    return SourceValue(
        ref=Ref.product(result.product_id),
        kind=SourceKind.ROLLED_UP,
        identity=Identity.of_result(result),
        sequence=result.bom_revision,
        declared_unit=result.declared_unit,
        declared_unit_amount=result.declared_unit_amount,
        mass_per_declared_unit=result.mass_per_declared_unit,
        status=result.status,
        totals=result.totals if usable else None,
        missing=result.missing,
        cycle=result.cycle,
        factor_sources=result.factor_sources,
        exact=result.exact,
        supplier=result.owner,
    )


# --------------------------------------------------------------------------- units


def line_multiplier(quantity: Decimal, line_unit: str, source: SourceValue, path: str) -> Decimal:
    """Declared units of *source* in *quantity* *line_unit* (must run in the roll-up context).

    Within one dimension the conversion is exact up to the final division by the declared unit
    amount. Across dimensions only a mass line can be converted, through the source's mass per
    declared unit; anything else raises :class:`RollupError` naming ``<path>.unit``.
    """
    line_u = unit(line_unit)
    source_u = unit(source.declared_unit)
    if line_u.dimension is source_u.dimension:
        return quantity * line_u.to_base / (source_u.to_base * source.declared_unit_amount)
    if line_u.dimension is Dimension.MASS:
        mass = source.mass_per_declared_unit
        if mass is None or mass == 0:
            got = "nothing" if mass is None else "0"
            raise RollupError(
                f"'{path}.unit' is {line_unit!r} (mass) but {source.ref} is declared per "
                f"{source.declared_unit!r} ({source_u.dimension}) and gives no "
                f"productMassPerDeclaredUnit > 0 to convert with (got {got})",
                path=f"{path}.unit",
            )
        return quantity * line_u.to_base / mass
    raise RollupError(
        f"'{path}.unit' is {line_unit!r} ({line_u.dimension}) but {source.ref} is declared per "
        f"{source.declared_unit!r} ({source_u.dimension}); a line may cross dimensions only "
        "when it is measured in a mass unit (through productMassPerDeclaredUnit)",
        path=f"{path}.unit",
    )


# --------------------------------------------------------------------------- the roll-up


class _Part:
    """One scaled input of a product (own direct, own electricity, or a BOM line)."""

    __slots__ = ("dqr", "figures", "neutral", "primary", "stages", "unassessed", "variance")

    def __init__(
        self,
        figures: dict[str, Decimal],
        *,
        neutral: bool,
        primary: Decimal,
        variance: Decimal,
        unassessed: Decimal,
        dqr: dict[str, tuple[Decimal, Decimal]],
        stages: dict[str, Decimal],
    ) -> None:
        self.figures = figures
        self.neutral = neutral
        """Own-process parts report every figure (0 where they have none)."""
        self.primary = primary
        self.variance = variance
        self.unassessed = unassessed
        self.dqr = dqr
        self.stages = stages


def _scaled_quality(
    totals: Totals, k: Decimal
) -> tuple[Decimal, Decimal, Decimal, dict[str, tuple[Decimal, Decimal]], dict[str, Decimal]]:
    return (
        totals.primary * k,
        totals.variance * k * k,
        totals.unassessed * k,
        {name: (ws * k, w * k) for name, (ws, w) in totals.dqr.items()},
        {stage: value * k for stage, value in totals.stages.items()},
    )


def direct_part(own: OwnProcess) -> _Part | None:
    """The own process's direct emissions as a part (``None`` when there are none)."""
    direct = own.direct_kgco2e
    if direct == 0:
        return None
    with rollup_context():
        sigma = own.direct_std_dev
        return _Part(
            dict.fromkeys(REQUIRED_METRICS, direct),
            neutral=True,
            primary=direct,
            variance=ZERO if sigma is None else sigma * sigma,
            unassessed=direct if sigma is None else ZERO,
            dqr={name: (direct * rating, direct) for name, rating in own.dqr.items()},
            stages={own.stage: direct},
        )


def grid_part(own: OwnProcess, grid: SourceValue, ctx: Context) -> tuple[_Part, Decimal, bool]:
    """Metered electricity x grid factor: (part, multiplier, exact); raises
    :class:`RollupError` when the grid factor is not per an energy unit. Runs in *ctx* (the
    roll-up context)."""
    assert grid.totals is not None
    ctx.clear_flags()
    k = line_multiplier(own.electricity_kwh, _KWH, grid, "ownProcess")
    figures = {name: value * k for name, value in grid.totals.figures.items()}
    exact = grid.exact and not ctx.flags[Inexact]
    head = figures[HEADLINE_METRIC]
    _, variance, unassessed, dqr, _ = _scaled_quality(grid.totals, k)
    part = _Part(
        figures,
        neutral=True,
        primary=head,
        variance=variance,
        unassessed=unassessed,
        dqr=dqr,
        stages={own.stage: head},
    )
    return part, k, exact


def line_part(
    line: BomLine, source: SourceValue, path: str, ctx: Context
) -> tuple[_Part, Decimal, bool]:
    """One usable input scaled by its BOM line: (part, multiplier, exact); raises
    :class:`RollupError` naming ``<path>.unit`` when the units do not convert. Runs in *ctx*."""
    assert source.totals is not None
    ctx.clear_flags()
    k = line_multiplier(line.quantity, line.unit, source, path)
    figures = {name: value * k for name, value in source.totals.figures.items()}
    exact = source.exact and not ctx.flags[Inexact]
    primary, variance, unassessed, dqr, stages = _scaled_quality(source.totals, k)
    part = _Part(
        figures,
        neutral=False,
        primary=primary,
        variance=variance,
        unassessed=unassessed,
        dqr=dqr,
        stages=stages,
    )
    return part, k, exact


def cycle_result(bom: Bom, cycle: tuple[str, ...]) -> RollupResult:
    """The result of a product found on *cycle*: no figures, the path."""
    return RollupResult(
        product_id=bom.product_id,
        bom_revision=bom.revision,
        status=Status.CYCLE,
        declared_unit=bom.declared_unit,
        declared_unit_amount=bom.declared_unit_amount,
        mass_per_declared_unit=bom.product_mass_per_declared_unit,
        totals=None,
        cycle=cycle,
        owner=bom.owner,
    )


def _canonical_cycle(nodes: tuple[str, ...]) -> tuple[str, ...]:
    start = nodes.index(min(nodes))
    rotated = nodes[start:] + nodes[:start]
    return (*rotated, rotated[0])


def _find_cycle(
    product_id: str,
    refs: Iterable[Ref],
    values: Mapping[Ref, SourceValue],
    traces: Mapping[Ref, tuple[str, ...]],
) -> tuple[str, ...]:
    """The shortest cycle through *product_id* its inputs show: their traces, or a cycle that
    the next product on it reports."""
    candidates: list[tuple[str, ...]] = []
    for ref in refs:
        if ref.kind is not RefKind.PRODUCT:
            continue
        value = values.get(ref)
        if value is None:
            continue
        trace = traces.get(ref, ())
        if product_id in trace:
            last = len(trace) - 1 - trace[::-1].index(product_id)
            flow = trace[last:]  # our value flowed into flow[1], ..., into this input
            candidates.append(_canonical_cycle((product_id, *reversed(flow[1:]))))
        if value.status is Status.CYCLE and product_id in value.cycle:
            # only the product after us on that path can vouch for it: it uses that product's
            # roll-up. A path reported by another input may be stale (an edge since cut, e.g.
            # by a supplier footprint that now stands for a product) and would otherwise be
            # passed around its members forever (each keeps the first path it reported).
            path = value.cycle
            if path[path.index(product_id) + 1] == ref.id:
                candidates.append(path)
    if not candidates:
        return ()
    return min(candidates, key=lambda c: (len(c), c))


def _line_entry(
    path: str,
    source: SourceValue,
    quantity: Decimal,
    line_unit: str,
    *,
    secondary: bool,
    multiplier: Decimal | None = None,
    contribution: Decimal | None = None,
) -> LineageInput:
    return LineageInput(
        path=path,
        kind=source.kind,
        ref=str(source.ref),
        footprint_id=source.footprint_id,
        sequence=source.sequence,
        content_hash=source.content_hash,
        quantity=quantity,
        unit=line_unit,
        multiplier=multiplier,
        contribution=contribution,
        secondary=secondary,
        status=source.status,
        supplier=source.supplier,
    )


def _direct_entry(bom: Bom) -> LineageInput:
    """The lineage row of *bom*'s direct emissions (written when they are not zero)."""
    direct = bom.own.direct_kgco2e
    return LineageInput(
        path="ownProcess.direct",
        kind=SourceKind.OWN_DIRECT,
        ref=f"own:{bom.product_id}",
        footprint_id=bom.product_id,
        sequence=bom.revision,
        content_hash="",
        quantity=direct,
        unit="kgCO2e",
        multiplier=None,
        contribution=direct,
    )


def _grid_entry(
    own: OwnProcess, grid: SourceValue, k: Decimal, contribution: Decimal
) -> LineageInput:
    """The lineage row of the electricity *own* draws, at the grid factor *grid*."""
    return LineageInput(
        path="ownProcess.electricity",
        kind=SourceKind.OWN_ELECTRICITY,
        ref=str(own.grid_ref),
        footprint_id=grid.footprint_id,
        sequence=grid.sequence,
        content_hash=grid.content_hash,
        quantity=own.electricity_kwh,
        unit=_KWH,
        multiplier=k,
        contribution=contribution,
    )


def _metric_gaps(
    line_metrics: list[tuple[str, frozenset[str]]],
) -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
    """The figures every line reports (those add up), and per figure only some lines report,
    the refs of the lines that lack it; *line_metrics* is (ref, figures reported) per usable
    line."""
    if line_metrics:
        common = frozenset.intersection(*(metrics for _, metrics in line_metrics))
        reported = frozenset.union(*(metrics for _, metrics in line_metrics))
    else:
        common = reported = frozenset(REQUIRED_METRICS)
    return common, {
        name: tuple(sorted({ref for ref, metrics in line_metrics if name not in metrics}))
        for name in _METRIC_ORDER
        if name in reported and name not in common
    }


def compute_result(
    bom: Bom,
    values: Mapping[Ref, SourceValue],
    traces: Mapping[Ref, tuple[str, ...]] | None = None,
) -> RollupResult:
    """Roll *bom* up from the current *values* of its inputs (a pure function).

    *values* maps each ref the BOM uses (``bom.refs``) to the input's current value; a ref that
    is absent has no value yet. *traces* (streaming only) maps refs to the chain of product ids
    the value flowed through, for cycle detection; batch callers may omit it.
    """
    pid = bom.product_id
    # (1) cycle check
    cycle = _find_cycle(pid, bom.refs, values, traces or {})
    if cycle:
        return cycle_result(bom, cycle)

    parts: list[_Part] = []
    lineage: list[LineageInput] = []
    errors: list[Violation] = []
    missing: set[str] = set()
    blocked: set[str] = set()
    secondary: list[str] = []
    factor_sources: set[str] = set()
    line_metrics: list[tuple[str, frozenset[str]]] = []
    exact = True
    own = bom.own

    with rollup_context() as ctx:
        # (2) own process: direct emissions, then electricity x grid factor
        direct_part_ = direct_part(own)
        if direct_part_ is not None:
            parts.append(direct_part_)
            lineage.append(_direct_entry(bom))
        grid_ref = own.grid_ref
        if grid_ref is not None:
            grid = values.get(grid_ref)
            if grid is None or grid.totals is None:
                missing.add(str(grid_ref))
            else:
                try:
                    part, k, part_exact = grid_part(own, grid, ctx)
                except RollupError as exc:
                    errors.append(Violation("ownProcess.gridFactorId", "unit", exc.message))
                else:
                    exact = exact and part_exact
                    head = part.figures[HEADLINE_METRIC]
                    parts.append(part)
                    factor_sources.update(grid.factor_sources)
                    lineage.append(_grid_entry(own, grid, k, head))

        # (3) BOM lines
        for i, line in enumerate(bom.components):
            path = f"components[{i}]"
            source = values.get(line.ref)
            is_secondary = False
            if source is None and line.factor_ref is not None:
                source = values.get(line.factor_ref)
                is_secondary = source is not None
            if source is None:
                missing.add(str(line.ref))
                if line.factor_ref is not None:
                    missing.add(str(line.factor_ref))
                continue
            if not source.usable or source.totals is None:
                blocked.add(str(source.ref))
                lineage.append(
                    _line_entry(path, source, line.quantity, line.unit, secondary=is_secondary)
                )
                continue
            try:
                part, k, part_exact = line_part(line, source, path, ctx)
            except RollupError as exc:
                errors.append(Violation(exc.path, "unit", exc.message))
                lineage.append(
                    _line_entry(path, source, line.quantity, line.unit, secondary=is_secondary)
                )
                continue
            figures = part.figures
            exact = exact and part_exact
            parts.append(part)
            line_metrics.append((str(source.ref), frozenset(figures)))
            factor_sources.update(source.factor_sources)
            if source.status is Status.INCOMPLETE:
                missing.update(source.missing)
            if is_secondary:
                secondary.append(path)
            lineage.append(
                _line_entry(
                    path,
                    source,
                    line.quantity,
                    line.unit,
                    secondary=is_secondary,
                    multiplier=k,
                    contribution=figures[HEADLINE_METRIC],
                )
            )

        # (4) which figures add up: those every line reports
        common, gaps = _metric_gaps(line_metrics)

        # (5) status, sums, lineage
        if errors:
            status = Status.ERROR
        elif blocked:
            status = Status.BLOCKED
        elif missing:
            status = Status.INCOMPLETE
        else:
            status = Status.COMPLETE
        totals: Totals | None = None
        if status in (Status.COMPLETE, Status.INCOMPLETE):
            with exact_context():  # sums are exact (see ``_numbers``)
                sums: dict[str, Decimal] = {}
                for name in _METRIC_ORDER:
                    if name in common:
                        total = ZERO
                        for part in parts:
                            value = part.figures.get(name)
                            if value is not None:
                                total += value
                        sums[name] = total
                totals = _sum_quality(parts, sums)

    return RollupResult(
        product_id=pid,
        bom_revision=bom.revision,
        status=status,
        declared_unit=bom.declared_unit,
        declared_unit_amount=bom.declared_unit_amount,
        mass_per_declared_unit=bom.product_mass_per_declared_unit,
        totals=totals,
        lineage=tuple(lineage),
        missing=tuple(sorted(missing)),
        errors=tuple(errors),
        blocked_by=tuple(sorted(blocked)),
        metric_gaps=gaps,
        secondary=tuple(secondary),
        factor_sources=tuple(sorted(factor_sources)),
        exact=exact,
        owner=bom.owner,
    )


def _sum_quality(parts: list[_Part], figures: dict[str, Decimal]) -> Totals:
    primary = variance = unassessed = ZERO
    dqr: dict[str, tuple[Decimal, Decimal]] = {}
    stage_sums: dict[str, Decimal] = {}
    for part in parts:
        primary += part.primary
        variance += part.variance
        unassessed += part.unassessed
        for name, (ws, w) in part.dqr.items():
            acc = dqr.get(name, (ZERO, ZERO))
            dqr[name] = (acc[0] + ws, acc[1] + w)
        for stage, value in part.stages.items():
            stage_sums[stage] = stage_sums.get(stage, ZERO) + value
    return Totals(
        figures=figures,
        primary=primary,
        variance=variance,
        unassessed=unassessed,
        dqr={name: dqr[name] for name in DQR_RATINGS if name in dqr},
        stages={stage: stage_sums[stage] for stage in sorted(stage_sums)},
    )
