"""A product's roll-up kept incrementally: per-line parts and running sums, applied by difference.

:func:`~streams.rollup.compute_result` adds every input up from scratch and builds the whole
result (lineage, content hash, id). A parent in a live network does not need that at every
update: it needs its new *value* (totals, status, what is missing) to pass on, and the full result
only where it is published. :class:`Running` is that value kept up to date:

* per BOM line (and the own process's direct and electricity parts) the line's classification --
  ok, missing, blocked, error -- and, when ok, its scaled *part*: every figure, primary data,
  variance, unassessed share, DQR (weighted sum, weight) pairs and stages, flattened into one
  ``{key: Decimal}`` (figure names as they are; ``~primary``, ``~variance``, ``~unassessed``,
  ``~dqr:<rating>``, ``~dqw:<rating>``, ``~stage:<stage>`` for the rest);
* running sums of every key over all parts, and the counts that decide presence the way
  ``compute_result`` does: how many parts carry a key (a DQR rating or stage is reported when one
  part has it, even if its sum is back to 0), how many ok lines report each figure ("common"
  figures -- reported by every ok line -- are summed, the others are gaps), and multisets of the
  missing and blocked refs, the factor sources and the lines that rounded.

A new value of one input re-evaluates only the lines that use it (:meth:`Running.update`): the
line's old part is subtracted from the sums and the new one added. A part is the input's totals
times the line multiplier by exactly the operations of ``compute_result``'s
:func:`~streams.rollup.line_part` (50-digit products, the same digits, see :func:`_scaled`); the
multiplier itself is kept per line for the input unit it was computed for, since a new value
rarely changes the input's unit. The sums run in the exact context (``_numbers``), so
subtracting and adding is exact, and each sum is kept written with the exponent a from-scratch
sum would have (see :meth:`Running._sum`). Which figures, ratings and stages the totals report
(their *shape*) is kept too, until a key appears or disappears. A new BOM revision simply
rebuilds the product's lines from scratch.

:meth:`Running.value` is the thin :class:`~streams.rollup.SourceValue` the product offers its
parents. Its identity is *pending* (:class:`~streams.rollup.Identity`): the key is the BOM and the
values the lines used, the builder :func:`_assemble` -- so no hash, uuid, lineage or canonical
JSON is computed while an update propagates, and a published result is built once, at the edge.
That builder does not add the inputs up again: the lines hold each input's part, multiplier and
value, and the totals, missing refs and factor sources are the running ones, so it only writes
the lineage rows and figure gaps, giving what ``compute_result`` over the same values gives
(a product with a unit error is built by ``compute_result`` itself, for its violations' text).
The property test ``tests/streams/test_rollup_incremental.py`` checks that the value kept here,
and the result built from it, equal, digit for digit, those of a from-scratch
``compute_result`` after any history.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from decimal import Context, Decimal, Inexact, localcontext
from typing import Protocol

from pcf_exchange.contracts.errors import RollupError

from ._compute import (
    _canonical_cycle,
    _direct_entry,
    _grid_entry,
    _line_entry,
    _metric_gaps,
    _Part,
    compute_result,
    cycle_result,
    direct_part,
    grid_part,
    line_multiplier,
)
from ._model import (
    CARBON_CONTENT_METRICS,
    DQR_RATINGS,
    HEADLINE_METRIC,
    OPTIONAL_EMISSION_METRICS,
    REQUIRED_METRICS,
    Bom,
    BomLine,
    Ref,
    RefKind,
)
from ._numbers import EXACT_CONTEXT, ROLLUP_CONTEXT, ZERO, rollup_context
from ._result import (
    Identity,
    LineageInput,
    RollupResult,
    SourceKind,
    SourceValue,
    Status,
    Totals,
)

__all__ = ["Running"]

_METRIC_ORDER: tuple[str, ...] = (
    REQUIRED_METRICS + OPTIONAL_EMISSION_METRICS + CARBON_CONTENT_METRICS
)
_METRIC_INDEX = {name: i for i, name in enumerate(_METRIC_ORDER)}
_PRIMARY, _VARIANCE, _UNASSESSED = "~primary", "~variance", "~unassessed"
_DQR, _DQW, _STAGE = "~dqr:", "~dqw:", "~stage:"
_DQR_KEYS = tuple((name, _DQR + name, _DQW + name) for name in DQR_RATINGS)

_OK, _MISSING, _BLOCKED, _ERROR = range(4)

_Shape = tuple[tuple[str, ...], tuple[tuple[str, str, str], ...], tuple[tuple[str, str], ...]]
"""What the totals report: (common figures, (rating, weighted key, weight key)s, (stage, key)s)."""


class Slot(Protocol):
    """What the product side stores per input (:class:`~streams.rollup.ChildSlot`)."""

    @property
    def value(self) -> SourceValue: ...

    @property
    def trace(self) -> tuple[str, ...]: ...


Slots = Mapping[Ref, Slot]


def _value(children: Slots, ref: Ref | None) -> SourceValue | None:
    if ref is None:
        return None
    slot = children.get(ref)
    return None if slot is None else slot.value


def _flat(part: _Part) -> dict[str, Decimal]:
    flat = dict(part.figures)
    flat[_PRIMARY] = part.primary
    flat[_VARIANCE] = part.variance
    flat[_UNASSESSED] = part.unassessed
    for name, (ws, w) in part.dqr.items():
        flat[_DQR + name] = ws
        flat[_DQW + name] = w
    for stage, value in part.stages.items():
        flat[_STAGE + stage] = value
    return flat


class _Line:
    """One BOM line (or the grid electricity) as evaluated from the current input values."""

    __slots__ = ("exact", "is_line", "k", "kind", "metrics", "missing", "part", "ref", "source")

    def __init__(
        self,
        kind: int,
        source: SourceValue | None,
        *,
        part: dict[str, Decimal] | None = None,
        metrics: frozenset[str] = frozenset(),
        missing: tuple[str, ...] = (),
        exact: bool = True,
        is_line: bool = True,
        k: Decimal | None = None,
    ) -> None:
        self.kind = kind
        self.is_line = is_line
        """A BOM line (counts for "common" figures), not the grid electricity."""
        self.source = source
        """The value the line used (``None`` when missing)."""
        self.ref = "" if source is None or kind != _BLOCKED else str(source.ref)
        """The input's ref as text (only a blocked line needs it: ``blocked`` counts by it)."""
        self.part = part
        self.metrics = metrics
        self.missing = missing
        """Refs this line makes missing: its own (no value at all) or an incomplete input's."""
        self.exact = exact
        self.k = k
        """The multiplier the part was scaled by (an ok line; the result's lineage names it)."""


def _scaled(totals: Totals, k: Decimal, ctx: Context) -> tuple[dict[str, Decimal], bool]:
    """*totals* times the line multiplier *k*, flattened, and whether the figures' products were
    exact: what ``line_part`` gives (then ``_flat``), by the same operations in the same order (so
    the same digits), without the intermediate :class:`_Part`. Runs in the roll-up context *ctx*;
    like ``line_part``, exactness covers the figures, not the quality accumulators."""
    ctx.clear_flags()
    flat = {name: value * k for name, value in totals.figures.items()}
    exact = not ctx.flags[Inexact]
    flat[_PRIMARY] = totals.primary * k
    flat[_VARIANCE] = totals.variance * k * k
    flat[_UNASSESSED] = totals.unassessed * k
    for name, (ws, w) in totals.dqr.items():
        flat[_DQR + name] = ws * k
        flat[_DQW + name] = w * k
    for stage, value in totals.stages.items():
        flat[_STAGE + stage] = value * k
    return flat, exact


_Multiplier = tuple[str, Decimal, Decimal | None, Decimal | None, bool]
"""A line's multiplier for one input unit: ``(declared unit, amount, mass, k, exact)``, ``k``
``None`` when the units do not convert (an error line)."""


def _same_decimal(a: Decimal | None, b: Decimal | None) -> bool:
    """Same value *and* same exponent (``1`` and ``1.0`` give multipliers of other exponents)."""
    return a is b or (a is not None and b is not None and a == b and a.as_tuple() == b.as_tuple())


def _evaluate(
    line: BomLine,
    refs: tuple[Ref, Ref | None],
    index: int,
    children: Slots,
    ctx: Context,
    cached: _Multiplier | None = None,
) -> tuple[_Line, _Multiplier | None]:
    """Step (3) of ``compute_result`` for one line (runs in the roll-up context *ctx*);
    *refs* are the line's ``ref`` and ``factor_ref``, *index* its place in the BOM.

    The line multiplier depends only on the line and the input's declared unit, amount and mass,
    which an input's new value almost never changes: *cached* is the one computed last (returned
    with the line, to pass back next time), reused while those stay the same, so an update costs
    the scaling of the input's totals and nothing else."""
    ref, factor_ref = refs
    source = _value(children, ref)
    if source is None:
        source = _value(children, factor_ref)
    if source is None:
        both = (ref,) if factor_ref is None else (ref, factor_ref)
        return _Line(_MISSING, None, missing=tuple(map(str, both))), cached
    totals = source.totals
    if totals is None or not source.usable:
        return _Line(_BLOCKED, source), cached
    if (
        cached is None
        or cached[0] != source.declared_unit
        or (
            cached[1] is not source.declared_unit_amount
            and not _same_decimal(cached[1], source.declared_unit_amount)
        )
        or (
            cached[2] is not source.mass_per_declared_unit
            and not _same_decimal(cached[2], source.mass_per_declared_unit)
        )
    ):
        ctx.clear_flags()
        try:
            path = f"components[{index}]"
            k: Decimal | None = line_multiplier(line.quantity, line.unit, source, path)
        except RollupError:
            k = None
        cached = (
            source.declared_unit,
            source.declared_unit_amount,
            source.mass_per_declared_unit,
            k,
            not ctx.flags[Inexact],
        )
    k = cached[3]
    if k is None:
        return _Line(_ERROR, source), cached
    part, exact = _scaled(totals, k, ctx)
    exact = exact and source.exact and cached[4]
    missing = source.missing if source.status is Status.INCOMPLETE else ()
    return _Line(
        _OK,
        source,
        part=part,
        metrics=frozenset(totals.figures),
        missing=missing,
        exact=exact,
        k=k,
    ), cached


class Running:
    """One product's incrementally kept roll-up (see the module docstring).

    Built from a BOM and the current input values (from scratch: a new BOM revision builds a
    new one), then kept up to date with :meth:`update`. Mutable, so that applying an update
    costs what the update touches; :class:`~streams.rollup.ProductState` copies it
    (:meth:`copy`, shallow) before a step changes it, so a state a caller holds never changes
    under it.
    """

    __slots__ = (
        "_shape",
        "_sources",
        "blocked",
        "bom",
        "counts",
        "cycles",
        "deps",
        "direct",
        "errors",
        "factor_sources",
        "grid",
        "inexact",
        "lines",
        "metric_lines",
        "missing",
        "mults",
        "n_ok",
        "ref",
        "refs",
        "sums",
    )

    def __init__(self, bom: Bom, children: Slots) -> None:
        self.bom = bom
        self.ref = bom.ref
        self.sums: dict[str, Decimal] = {}
        self.counts: dict[str, int] = {}
        """How many parts carry each key."""
        self.metric_lines: dict[str, int] = {}
        """How many ok lines report each figure."""
        self.n_ok = 0
        self.missing: dict[str, int] = {}
        self.blocked: dict[str, int] = {}
        self.factor_sources: dict[str, int] = {}
        self.errors = 0
        self.inexact = 0
        self._sources: tuple[str, ...] | None = None
        """``sorted(factor_sources)``, kept until they change."""
        self._shape: _Shape | None = None
        """Which figures, DQR ratings and stages the totals report, kept until the keys of
        ``counts`` or ``metric_lines`` (or ``n_ok``) change."""
        self.cycles: dict[Ref, tuple[tuple[str, ...], ...]] = {}
        deps: dict[Ref, list[int]] = {}
        refs: list[tuple[Ref, Ref | None]] = []
        for i, line in enumerate(bom.components):
            refs.append((line.ref, line.factor_ref))
            deps.setdefault(line.ref, []).append(i)
            if line.factor_ref is not None:
                deps.setdefault(line.factor_ref, []).append(i)
        self.deps = deps
        self.refs = refs
        """Each line's ``(ref, factor_ref)`` (properties that build a new Ref at every call)."""
        direct = direct_part(bom.own)
        self.direct = None if direct is None else _flat(direct)
        self.grid: _Line | None = None
        self.lines: list[_Line] = []
        self.mults: list[_Multiplier | None] = []
        """Each line's multiplier for the input unit it saw last (see :func:`_evaluate`)."""
        with rollup_context() as ctx:
            if bom.own.grid_ref is not None:
                self.grid = self._evaluate_grid(children, ctx)
            for i, line in enumerate(bom.components):
                evaluated, mult = _evaluate(line, refs[i], i, children, ctx)
                self.lines.append(evaluated)
                self.mults.append(mult)
        with localcontext(EXACT_CONTEXT):
            if self.direct is not None:
                self._sum(None, self.direct)
            if self.grid is not None:
                self._count(self.grid, 1)
                self._sum(None, self.grid.part)
            for line_state in self.lines:
                self._count(line_state, 1)
                self._sum(None, line_state.part)
        for ref, slot in children.items():
            self._trace(ref, slot.value, slot.trace)

    def copy(self) -> Running:
        new = Running.__new__(Running)
        new.bom = self.bom
        new.ref = self.ref
        new.sums = dict(self.sums)
        new.counts = dict(self.counts)
        new.metric_lines = dict(self.metric_lines)
        new.n_ok = self.n_ok
        new.missing = dict(self.missing)
        new.blocked = dict(self.blocked)
        new.factor_sources = dict(self.factor_sources)
        new.errors = self.errors
        new.inexact = self.inexact
        new._sources = self._sources
        new._shape = self._shape
        new.cycles = dict(self.cycles)
        new.deps = self.deps  # (a function of the BOM: never changed in place)
        new.refs = self.refs
        new.direct = self.direct
        new.grid = self.grid
        new.lines = list(self.lines)  # (the _Line objects themselves are never changed)
        new.mults = list(self.mults)
        return new

    # ------------------------------------------------------------------ applying a difference

    def _evaluate_grid(self, children: Slots, ctx: Context) -> _Line:
        own = self.bom.own
        grid_ref = own.grid_ref
        assert grid_ref is not None
        grid = _value(children, grid_ref)
        if grid is None or grid.totals is None:
            return _Line(_MISSING, None, missing=(str(grid_ref),), is_line=False)
        try:
            part, k, exact = grid_part(own, grid, ctx)
        except RollupError:
            return _Line(_ERROR, grid, is_line=False)
        # (the grid is not a line: it neither reports figures for "common" nor passes on missing)
        return _Line(_OK, grid, part=_flat(part), exact=exact, is_line=False, k=k)

    def _count(self, line: _Line, sign: int, skip_lists: bool = False) -> None:
        """Add (*sign* 1) or take away (-1) what *line* contributes besides its part's sums
        (with *skip_lists*, not its missing refs, factor sources and figure names: the caller
        knows they cancel out)."""
        kind = line.kind
        if not skip_lists:
            for ref in line.missing:
                _bump(self.missing, ref, sign)
        if kind == _OK:
            assert line.source is not None
            if not line.exact:
                self.inexact += sign
            if not skip_lists:
                self._sources = None
                for name in line.source.factor_sources:
                    _bump(self.factor_sources, name, sign)
            if line.is_line:
                self.n_ok += sign
                if not skip_lists:
                    self._shape = None
                    for name in line.metrics:
                        _bump(self.metric_lines, name, sign)
        elif kind == _BLOCKED:
            _bump(self.blocked, line.ref, sign)
        elif kind == _ERROR:
            self.errors += sign

    def _parts(self) -> Iterable[dict[str, Decimal]]:
        if self.direct is not None:
            yield self.direct
        if self.grid is not None and self.grid.part is not None:
            yield self.grid.part
        for line in self.lines:
            if line.part is not None:
                yield line.part

    def _sum(self, old: dict[str, Decimal] | None, new: dict[str, Decimal] | None) -> None:
        """Replace part *old* by *new* in the running sums (in the exact context).

        Every sum is kept written as ``ZERO + parts`` would write it from scratch: with the
        smallest exponent among 0 and the parts it holds. Adding a part does that by itself (an
        exact sum takes the smaller exponent); taking one away does too, unless that part had
        the sum's exponent and no other part (nor 0) has it: then that one sum is added up again
        from the parts (rare: the part that set the exponent was the only one to have it).
        """
        sums, counts = self.sums, self.counts
        if old is not None and new is not None and old.keys() == new.keys():
            # the common case (an input's new value: the same figures, same exponents): one pass,
            # the sum's exponent holds and no key appears or disappears
            for key, value in new.items():
                if not value.same_quantum(old[key]):
                    break
            else:
                for key, value in new.items():
                    sums[key] = sums[key] - old[key] + value
                return
        suspects: list[tuple[str, Decimal]] = []
        if old is not None:
            for key, value in old.items():
                total = sums[key]
                replacement = None if new is None else new.get(key)
                if replacement is not None and replacement.same_quantum(value):
                    # same exponent in, same exponent out: the sum's exponent holds
                    sums[key] = total - value + replacement
                    continue
                if (
                    value.same_quantum(total)
                    and not total.same_quantum(ZERO)
                    and (replacement is None or _exponent(replacement) > _exponent(value))
                ):  # (a replacement with a smaller exponent sets the new one by itself)
                    suspects.append((key, total))
                sums[key] = total - value
                left = counts[key] - 1
                if left:
                    counts[key] = left
                else:
                    del counts[key]
                    self._shape = None
        if new is not None:
            for key, value in new.items():
                if old is not None:
                    replaced = old.get(key)
                    if replaced is not None and replaced.same_quantum(value):
                        continue  # (done above)
                sums[key] = sums.get(key, ZERO) + value
                n = counts.get(key)
                if n is None:
                    counts[key] = 1
                    self._shape = None
                else:
                    counts[key] = n + 1
        for key, before in suspects:
            parts = [p[key] for p in self._parts() if key in p]
            if any(v.same_quantum(before) for v in parts):
                continue
            total = ZERO
            for value in parts:
                total += value
            sums[key] = total

    def _replace(self, old: _Line, new: _Line) -> None:
        # (an input's new value mostly has the same figures, sources and missing refs as before)
        same = (
            old.kind == new.kind == _OK
            and old.metrics == new.metrics
            and old.missing == new.missing
            and old.source is not None
            and new.source is not None
            and old.source.factor_sources == new.source.factor_sources
        )
        if same and old.is_line is new.is_line:  # (then only exactness can differ)
            self.inexact += (not new.exact) - (not old.exact)
        else:
            self._count(old, -1, same)
            self._count(new, 1, same)
        self._sum(old.part, new.part)

    def _trace(self, ref: Ref, value: SourceValue | None, trace: tuple[str, ...]) -> None:
        """Step (1) of ``compute_result`` for one input: the cycles through us it shows."""
        if ref.kind is not RefKind.PRODUCT or value is None:
            self.cycles.pop(ref, None)
            return
        pid = self.bom.product_id
        found: list[tuple[str, ...]] = []
        if pid in trace:
            last = len(trace) - 1 - trace[::-1].index(pid)
            flow = trace[last:]
            found.append(_canonical_cycle((pid, *reversed(flow[1:]))))
        if value.status is Status.CYCLE and pid in value.cycle:
            path = value.cycle
            if path[path.index(pid) + 1] == ref.id:
                found.append(path)
        if found:
            self.cycles[ref] = tuple(found)
        else:
            self.cycles.pop(ref, None)

    def shows(self, cycle: tuple[str, ...]) -> bool:
        """Whether an input still shows the cycle path *cycle* through us (its trace, or the
        path the next product on it reports). A path none shows any more is stale: an edge of
        it was cut (e.g. by a supplier footprint that now stands for a product on it)."""
        return any(cycle in found for found in self.cycles.values())

    def update(self, refs: Iterable[Ref], children: Slots) -> None:
        """The inputs *refs* have new values (or none any more): re-evaluate the lines that use
        them and apply each line's difference to the sums."""
        grid_ref = self.bom.own.grid_ref
        touched: set[int] = set()
        grid = False
        for ref in refs:
            touched.update(self.deps.get(ref, ()))
            if ref == grid_ref:
                grid = True
            if ref.kind is RefKind.PRODUCT:
                slot = children.get(ref)
                if slot is None:
                    self.cycles.pop(ref, None)
                else:
                    self._trace(ref, slot.value, slot.trace)
        changes: list[tuple[int, _Line]] = []
        components = self.bom.components
        mults = self.mults
        with localcontext(ROLLUP_CONTEXT) as ctx:
            if grid:
                changes.append((-1, self._evaluate_grid(children, ctx)))
            for i in sorted(touched):
                evaluated, mults[i] = _evaluate(
                    components[i], self.refs[i], i, children, ctx, mults[i]
                )
                changes.append((i, evaluated))
        with localcontext(EXACT_CONTEXT):
            for i, new in changes:
                old = self.grid if i < 0 else self.lines[i]
                assert old is not None
                if new.source is old.source and new.kind == old.kind:
                    continue  # (the line uses an input that did not change: a fallback)
                if i < 0:
                    self.grid = new
                else:
                    self.lines[i] = new
                self._replace(old, new)

    # ------------------------------------------------------------------ the value

    def value(self) -> SourceValue:
        """The product's current value for its parents (thin; its result is built on demand)."""
        bom = self.bom
        cycle: tuple[str, ...] = ()
        totals: Totals | None = None
        missing: tuple[str, ...] = ()
        factor_sources: tuple[str, ...] = ()
        if self.cycles:
            cycle = min(
                (c for found in self.cycles.values() for c in found), key=lambda c: (len(c), c)
            )
            status = Status.CYCLE
            identity = Identity.pending(("cycle", bom, cycle), lambda: cycle_result(bom, cycle))
        else:
            if self.errors:
                status = Status.ERROR
            elif self.blocked:
                status = Status.BLOCKED
            elif self.missing:
                status = Status.INCOMPLETE
            else:
                status = Status.COMPLETE
            if status in (Status.COMPLETE, Status.INCOMPLETE):
                totals = self._totals()
            missing = tuple(sorted(self.missing))
            factor_sources = self._factor_sources()
            grid_line = self.grid
            grid = None if grid_line is None else grid_line.source
            lines = tuple(self.lines)
            used = tuple([line.source for line in lines])
            build: Callable[[], RollupResult]
            if status is Status.ERROR:  # (the violations' messages: compute_result's own)
                build = functools.partial(_build, bom, grid, used)
            else:
                build = functools.partial(
                    _assemble,
                    bom,
                    self.refs,
                    grid_line,
                    lines,
                    status,
                    totals,
                    missing,
                    factor_sources,
                    self.inexact == 0,
                    tuple(sorted(self.blocked)),
                )
            identity = Identity.pending(
                (bom, grid, used),
                build,
                tuple([v.identity for v in (grid, *used) if v is not None]),
            )
        return SourceValue(
            ref=self.ref,
            kind=SourceKind.ROLLED_UP,
            sequence=bom.revision,
            declared_unit=bom.declared_unit,
            declared_unit_amount=bom.declared_unit_amount,
            mass_per_declared_unit=bom.product_mass_per_declared_unit,
            status=status,
            totals=totals,
            missing=missing,
            cycle=cycle,
            factor_sources=factor_sources,
            exact=bool(cycle) or self.inexact == 0,
            supplier=bom.owner,
            identity=identity,
        )

    def _factor_sources(self) -> tuple[str, ...]:
        if self._sources is None:
            self._sources = tuple(sorted(self.factor_sources))
        return self._sources

    def _totals(self) -> Totals:
        shape = self._shape
        if shape is None:
            shape = self._shape = self._compute_shape()
        common, dqrs, stages = shape
        sums = self.sums
        return Totals(
            figures={name: sums.get(name, ZERO) for name in common},
            primary=sums.get(_PRIMARY, ZERO),
            variance=sums.get(_VARIANCE, ZERO),
            unassessed=sums.get(_UNASSESSED, ZERO),
            dqr={name: (sums[ws], sums[w]) for name, ws, w in dqrs},
            stages={stage: sums[key] for stage, key in stages},
        )

    def _compute_shape(self) -> _Shape:
        counts, n_ok = self.counts, self.n_ok
        if n_ok:
            common = [name for name, n in self.metric_lines.items() if n == n_ok]
            common.sort(key=_METRIC_INDEX.__getitem__)
        else:
            common = list(REQUIRED_METRICS)
        stages = sorted(key for key in counts if key.startswith(_STAGE))
        return (
            tuple(common),
            tuple(keys for keys in _DQR_KEYS if keys[2] in counts),
            tuple((key[len(_STAGE) :], key) for key in stages),
        )


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # (figures are finite: checked on the way in)
    return exponent


def _bump(counter: dict[str, int], key: str, sign: int) -> None:
    left = counter.get(key, 0) + sign
    if left:
        counter[key] = left
    else:
        del counter[key]


def _build(
    bom: Bom, grid: SourceValue | None, used: tuple[SourceValue | None, ...]
) -> RollupResult:
    """The full result of a product from the values its lines used (a pending identity's
    builder): ``compute_result`` over exactly those, so the result is a pure function of them."""
    values: dict[Ref, SourceValue] = {}
    if grid is not None:
        values[grid.ref] = grid
    for source in used:
        if source is not None:
            values[source.ref] = source
    return compute_result(bom, values)


def _assemble(
    bom: Bom,
    refs: list[tuple[Ref, Ref | None]],
    grid: _Line | None,
    lines: tuple[_Line, ...],
    status: Status,
    totals: Totals | None,
    missing: tuple[str, ...],
    factor_sources: tuple[str, ...],
    exact: bool,
    blocked: tuple[str, ...],
) -> RollupResult:
    """The full result of a product that is not on a cycle and has no error, from its lines as
    :class:`Running` evaluated them (a pending identity's builder): what ``compute_result``
    gives over the values those lines used (:func:`_build`), field for field and digit for
    digit, without scaling every input again. The lines already hold each input's part, its
    multiplier and the value it used, and the running totals, missing refs, factor sources and
    exactness are ``compute_result``'s (``tests/streams/test_rollup_incremental.py`` compares
    the two results, content hash included, after any history); what is left is the lineage
    rows, in ``compute_result``'s order, and the figure gaps."""
    pid = bom.product_id
    own = bom.own
    lineage: list[LineageInput] = []
    direct = own.direct_kgco2e
    if direct != 0:  # (compute_result: a direct part exactly when there are direct emissions)
        lineage.append(_direct_entry(bom))
    if grid is not None and grid.kind == _OK:
        source = grid.source
        assert source is not None and grid.part is not None and grid.k is not None
        lineage.append(_grid_entry(own, source, grid.k, grid.part[HEADLINE_METRIC]))
    secondary: list[str] = []
    line_metrics: list[tuple[str, frozenset[str]]] = []
    for i, (line, evaluated) in enumerate(zip(bom.components, lines, strict=True)):
        kind = evaluated.kind
        if kind == _MISSING:
            continue
        source = evaluated.source
        assert source is not None and kind in (_OK, _BLOCKED)
        path = f"components[{i}]"
        # (the line's own input had no value when the one it used is another: its fallback)
        is_secondary = source.ref != refs[i][0]
        if kind == _BLOCKED:
            lineage.append(
                _line_entry(path, source, line.quantity, line.unit, secondary=is_secondary)
            )
            continue
        assert evaluated.part is not None
        line_metrics.append((str(source.ref), evaluated.metrics))
        if is_secondary:
            secondary.append(path)
        lineage.append(
            _line_entry(
                path,
                source,
                line.quantity,
                line.unit,
                secondary=is_secondary,
                multiplier=evaluated.k,
                contribution=evaluated.part[HEADLINE_METRIC],
            )
        )
    return RollupResult(
        product_id=pid,
        bom_revision=bom.revision,
        status=status,
        declared_unit=bom.declared_unit,
        declared_unit_amount=bom.declared_unit_amount,
        mass_per_declared_unit=bom.product_mass_per_declared_unit,
        totals=totals,
        lineage=tuple(lineage),
        missing=missing,
        blocked_by=blocked,
        metric_gaps=_metric_gaps(line_metrics)[1],
        secondary=tuple(secondary),
        factor_sources=factor_sources,
        exact=exact,
        owner=bom.owner,
    )
