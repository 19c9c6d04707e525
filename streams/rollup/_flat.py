"""The flat roll-up: one record of plain integers per node, an update applied by difference.

:class:`~streams.rollup.Engine` moves values between nodes as objects (a
:class:`~streams.rollup.SourceValue` with its :class:`~streams.rollup.Totals`, a ``ChildValue``,
a ``ChildSlot``, a ``Step``...) and keeps each product's running sums as ``{key: Decimal}``.
Session 14's profile charged five sixths of an ancestor's 133 µs to building those objects, not
to the arithmetic. :class:`FlatRollup` keeps the same numbers with no object on the hot path:

* **nodes are small integers**, interned once when the network is loaded
  (:meth:`FlatRollup.load`), products numbered in id order so that ``(height, node)`` orders
  them as the engine's ``(height, product id)`` does;
* **a node's value is two integers**: every figure and accumulator is a scaled integer (a
  coefficient at one exponent ``E`` per node, the smallest any of its keys needs), and all of
  them but the variance are *packed* into one Python integer, a field of ``W`` bits per key
  (``Σ coefficient_i · 2^(W·i)``); the variance, which scales by ``k²``, is the second integer.
  A line's part is then ``packed · a1`` and ``variance · a2`` -- two multiplications whatever
  the number of keys -- where ``a1 = k · 10^(E_child + e_k - E_parent)`` (``k²`` for ``a2``)
  puts the child's coefficients at the parent's exponent;
* **an update is a column of the Leontief inverse, exact** (session 17, issue #19): every
  scaling is an integer, so an ancestor ``X``'s packed value is *linear* in a leaf's: a new
  leaf value moves ``X`` by ``Δpacked · C1[leaf→X]`` (the variance by ``Δvariance ·
  C2[leaf→X]``), where ``C[leaf→X] = Σ over the paths leaf→X of Π a`` -- an integer, the
  paths of a diamond summed. Each leaf keeps an :class:`Influence` row: its ancestors in the
  order an update reaches them (by height, then node: the engine's ``(height, product id)``),
  per ancestor ``C1`` and the last child that reaches it (whose trace the ancestor's extends),
  and how many parents they have (the messages their new values make). An update is then
  two big-integer operations per ancestor, no line walked, no dirty set; exact by
  construction, no context, no ``Inexact``. A line's part is not kept: it is
  ``packed[child] · a1``, derived where needed (at load). ``C2`` is built on the first change
  of that leaf's variance (most leaves never have one). Several leaves in one batch: each
  moves the ancestors by its own row in turn (sums are linear: the order does not matter),
  and the products they reach are found by one walk over the union, by height;
* **rows built on first use, kept least recently used first out**: one walk up from the leaf
  (:meth:`FlatRollup._influence`), then kept, up to :data:`ROW_LIMIT` ancestors in all
  (``FlatRollup.row_limit``); :meth:`FlatRollup.preload` builds them all at load, like a
  factorisation, for a caller that wants that cost out of its updates
  (``bench/bench_rollup.py`` reports both). Rows depend on the lines, heights and parents,
  never on the bounds (:meth:`FlatRollup._widen` leaves them as they are). Anything that
  changes the structure -- a BOM, a subscription, any message :meth:`FlatRollup.accepts`
  refuses -- drops the whole mirror, its rows with it (the simplest rule: no row can be
  stale), and the next update it models loads it again;
* **objects at the edge**: :class:`~streams.rollup.Network`, which holds the flat mirror, builds
  the states, the new values and the :class:`~streams.rollup.ProductRolledUp` of what changed
  only when someone looks (:meth:`FlatRollup.totals` writes each figure back as a ``Decimal`` at
  the exponent a from-scratch sum gives it).

**What it models, and the bounds that keep it exact.** The steady state of an exchange: a new
value of a footprint or factor whose figures change but not their keys, exponents, unit, status
or sources, reaching products whose lines are all usable (or missing), with no cycle, no gap (a
figure only some lines report), no grid factor on the way (a grid part is not a scaling: its
headline becomes primary data and a stage) and no product whose input role offers a declared
footprint instead of its roll-up. ``Decimal`` multiplies exactly up to 50 digits (``PRECISION``)
and rounds past that, and a field of ``W`` bits holds ``|c| < 2^(W-1)``; neither may be reached
silently, so each node keeps an upper bound ``B`` of its coefficients (a leaf: its largest times
:data:`HEADROOM`, a variance of 0 staying 0; a product: ``Σ B_child · a`` plus its constant
parts, for the packed keys and the variance apart). A line whose ``B_child · k²`` could reach
``10^50`` is not modelled (a rounding would move an exponent), and ``W`` is chosen at load so
that every ``B`` fits. A leaf value past its bound raises it and its ancestors'
(:meth:`FlatRollup._widen`) if both conditions still hold. Influence rows change none of this:
an ancestor's value is the same sum however it is reached, so a leaf within its bound keeps
every ancestor within theirs (the bounds are ``Σ B_child · a``). Anything else -- a value that
would break them, a BOM change, a subscription, a value of another shape --
:meth:`FlatRollup.accepts` refuses, and the caller hands it to the object engine, the reference
(the mirror is then loaded again when the next update it models comes). At load every product's
sums made from its parts are checked against the object state's value, digit for digit and
exponent for exponent; a product that does not match is not modelled.
``tests/streams/test_rollup_flat.py`` checks the flat path against the object engine and
:func:`~streams.rollup.compute_result`, state for state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

from ._component import ComponentState
from ._model import Bom, Ref
from ._numbers import EXACT_CONTEXT, PRECISION
from ._result import Identity, SourceValue, Status, Totals

__all__ = ["HEADROOM", "ROW_LIMIT", "FlatRollup", "Influence", "flat_keys"]

_PRIMARY, _VARIANCE, _UNASSESSED = "~primary", "~variance", "~unassessed"
_DQR, _DQW, _STAGE = "~dqr:", "~dqw:", "~stage:"

_DIGITS = 10**PRECISION
"""A product of coefficients below this in magnitude is exact in the roll-up context."""
HEADROOM = 1000
"""A leaf's bound is its largest coefficient times this, so that most new values fit it."""
ROW_LIMIT = 4_000_000
"""Influence-row entries a mirror keeps at most (least recently used rows out first)."""


class Influence:
    """One leaf's influence row: its ancestors in the order an update reaches them, and
    per ancestor ``X`` the integer ``C1[leaf→X]`` (``C2`` for the variance, built on the
    first change of it) by which the leaf's packed value moves ``X``'s (module docstring)."""

    __slots__ = ("c1", "c2", "fanout", "lasts", "nodes")

    def __init__(
        self, nodes: tuple[int, ...], lasts: tuple[int, ...], c1: tuple[int, ...], fanout: int
    ) -> None:
        self.nodes = nodes
        """The ancestors, lowest first (by height, then node): the products that republish."""
        self.lasts = lasts
        """Per ancestor, the last child that reaches it (whose trace its own extends)."""
        self.c1 = c1
        self.c2: tuple[int, ...] | None = None
        self.fanout = fanout
        """How many parents the ancestors have in all (the messages their new values make)."""


def flat_keys(totals: Totals) -> dict[str, Decimal]:
    """*totals* as ``{key: figure}`` with the keys ``_running`` uses for the accumulators."""
    flat = dict(totals.figures)
    flat[_PRIMARY] = totals.primary
    flat[_VARIANCE] = totals.variance
    flat[_UNASSESSED] = totals.unassessed
    for name, (ws, w) in totals.dqr.items():
        flat[_DQR + name] = ws
        flat[_DQW + name] = w
    for stage, value in totals.stages.items():
        flat[_STAGE + stage] = value
    return flat


def _pair(value: Decimal) -> tuple[int, int]:
    """*value* as (coefficient, exponent): ``value == coefficient · 10^exponent``."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # (figures are finite: checked on the way in)
    return int(value.scaleb(-exponent, EXACT_CONTEXT)), exponent


def _decimal(coef: int, exponent: int) -> Decimal:
    """``coef · 10^exponent`` written with that exponent (``0E-3`` is ``0.000``)."""
    return Decimal(coef).scaleb(exponent, EXACT_CONTEXT)


def _bases(parts: Iterable[Mapping[str, Decimal]]) -> tuple[int, int]:
    """The exponents to keep *parts* at: (packed keys', variance's), each ``<= 0``."""
    base = vbase = 0
    for part in parts:
        for key, value in part.items():
            exponent = _pair(value)[1]
            if key == _VARIANCE:
                vbase = min(vbase, exponent)
            else:
                base = min(base, exponent)
    return base, vbase


def _split(part: Mapping[str, Decimal], base: int, vbase: int) -> tuple[list[int], int]:
    """*part*'s coefficients at exponent *base* (every key but the variance), and the
    variance's at *vbase*."""
    coefs, var = [], 0
    for key, value in part.items():
        coef, exponent = _pair(value)
        if key == _VARIANCE:
            var = coef * 10 ** (exponent - vbase)
        else:
            coefs.append(coef * 10 ** (exponent - base))
    return coefs, var


def _exactly(a: Mapping[str, Decimal], b: Mapping[str, Decimal]) -> bool:
    """The same keys in the same order, each the same digits at the same exponent."""
    return list(a) == list(b) and all(v.as_tuple() == b[k].as_tuple() for k, v in a.items())


def _same_decimal(a: Decimal | None, b: Decimal | None) -> bool:
    return a is b or (a is not None and b is not None and a.as_tuple() == b.as_tuple())


def _same_kind(old: SourceValue, new: SourceValue) -> bool:
    """Whether *new* is *old*'s kind of value: the same unit, status and everything else a
    line's classification or its parent's lists depend on (the figures aside)."""
    return not (
        old.totals is None
        or new.totals is None
        or old.ref != new.ref
        or old.kind is not new.kind
        or old.declared_unit != new.declared_unit
        or not _same_decimal(old.declared_unit_amount, new.declared_unit_amount)
        or not _same_decimal(old.mass_per_declared_unit, new.mass_per_declared_unit)
        or old.status is not new.status
        or old.missing != new.missing
        or old.cycle != new.cycle
        or old.factor_sources != new.factor_sources
        or old.exact != new.exact
    )  # (``usable`` is the totals and the status: the same when those are)


class FlatRollup:
    """The numbers of a loaded roll-up network, one flat record per node (module docstring)."""

    def __init__(self) -> None:
        self.index: dict[Ref, int] = {}
        self.refs: list[Ref] = []
        self.bad: list[bool] = []
        """Per node: not modelled (its own value, or one of its lines)."""
        self.clean: list[bool] = []
        """Per node: neither it nor anything above it is bad (an update may start here)."""
        self.product: list[bool] = []
        """Per node: a product that has a state (a BOM or not) -- not a leaf."""
        self.has_bom: list[bool] = []
        self._subscribed: list[set[int]] = []
        self.height: list[int] = []
        self.keys: list[tuple[str, ...]] = []
        """Per node, the keys of its value, in its Totals' order."""
        self.exps: list[tuple[int, ...]] = []
        """Per node, each key's exponent as a from-scratch sum writes it (fixed here)."""
        self.base: list[int] = []
        """Per node, the exponent ``E`` its coefficients are kept at (``<=`` every key's)."""
        self.packed: list[int] = []
        self.var: list[int] = []
        """Per node, its value: every key but the variance packed, and the variance."""
        self.vbase: list[int] = []
        self.bound: list[int] = []
        self.vbound: list[int] = []
        self.cbound: list[int] = []
        self.cvbound: list[int] = []
        """Per product, the part of its bounds its constant parts take."""
        self.parents: list[list[int]] = []
        """Per node, the products its value goes to (its input role's active subscribers,
        sorted: the order the engine's queue brings them)."""
        self.lines: list[dict[int, list[list[int]]]] = []
        """Per product: child node -> that child's lines, each ``[a1, a2, k coefficient,
        k exponent]`` (a line's part is ``packed[child] · a1``: derived, not kept)."""
        self.constants: list[list[dict[str, Decimal]]] = []
        """Per product, the parts that no update here changes (direct emissions, the grid)."""
        self.value: list[SourceValue | None] = []
        """Per node, the value the object side last had (the shape a new value must keep)."""
        self.slot: dict[str, int] = {}
        """Key -> field number in a packed value."""
        self.width = 64
        """Bits per field."""
        self._plans: dict[int, tuple[tuple[Decimal, Decimal, int, int], ...]] = {}
        """Leaf -> how :meth:`accepts` packs its figures (:meth:`_plan`), built on first use."""
        self._shapes: dict[
            tuple[tuple[str, ...], tuple[int, ...], int, int],
            tuple[tuple[Decimal, Decimal, int, int], ...],
        ] = {}
        self._rows: dict[int, Influence] = {}
        """Leaf -> its influence row, least recently used first."""
        self.row_limit = ROW_LIMIT
        self.row_entries = 0
        """Ancestors in the rows kept."""
        self.rows_built = 0
        """Rows built so far (a row built again after it was dropped counts again)."""

    # ------------------------------------------------------------------ loading

    def _node(self, ref: Ref) -> int:
        at = self.index.get(ref)
        if at is None:
            at = self.index[ref] = len(self.refs)
            self.refs.append(ref)
            for column in (self.bad, self.clean, self.product, self.has_bom):
                column.append(False)
            for number in (
                self.height,
                self.base,
                self.vbase,
                self.packed,
                self.var,
                self.bound,
                self.vbound,
                self.cbound,
                self.cvbound,
            ):
                number.append(0)
            self.keys.append(())
            self.exps.append(())
            self.parents.append([])
            self.lines.append({})
            self.constants.append([])
            self.value.append(None)
        return at

    @classmethod
    def load(
        cls, products: Mapping[str, object], components: Mapping[Ref, ComponentState]
    ) -> FlatRollup:
        """Intern every node of an object network (a ``Network``'s two dicts of states) with
        each product's lines, constant parts and sums; mark what is not modelled."""
        from ._product import ProductState

        flat = cls()
        for pid in sorted(products):  # (products first, in id order: see the module docstring)
            flat.product[flat._node(Ref.product(pid))] = True
        for ref, comp in components.items():
            node = flat._node(ref)
            if not flat.product[node]:
                flat.value[node] = comp.value
                if comp.value is None or comp.value.totals is None or not comp.value.usable:
                    flat.bad[node] = True
            for parent_id, sub in sorted(comp.subscribers.items()):
                if sub.active:
                    flat.parents[node].append(flat._node(Ref.product(parent_id)))
        states: dict[int, ProductState] = {}
        for pid, state in products.items():
            assert isinstance(state, ProductState)
            node = flat.index[Ref.product(pid)]
            states[node] = state
            flat.has_bom[node] = state.bom is not None
            role = components.get(Ref.product(pid))
            offered = None if role is None else role.value
            flat.value[node] = state.value
            if (
                state.bom is None
                or state.value is None
                or state.value.status not in (Status.COMPLETE, Status.INCOMPLETE)
                or state.value.totals is None
                or (offered is not None and offered is not state.value and offered != state.value)
            ):
                flat.bad[node] = True
        for node, value in enumerate(flat.value):
            if value is None:
                flat.bad[node] = True  # (a subscriber with no state, an input with no value)
            elif value.totals is not None:
                keys = flat_keys(value.totals)
                flat.keys[node] = tuple(keys)
                flat.exps[node] = tuple(_pair(v)[1] for v in keys.values())
                for key in keys:
                    flat.slot.setdefault(key, len(flat.slot))
        flat._subscribed = [set(p) for p in flat.parents]
        for node, state in states.items():
            if not flat.bad[node]:
                flat._lines(node, state)
        flat._order()
        flat._pack()
        return flat

    def _lines(self, node: int, state: object) -> None:
        """Product *node*'s lines from its running roll-up: the child each uses, its multiplier,
        and its constant parts (direct emissions, the grid)."""
        from ._product import ProductState
        from ._running import _MISSING, _OK, Running

        assert isinstance(state, ProductState) and state.bom is not None
        run = state._run
        if run is None:
            run = state._run = Running(state.bom, state.children)
        if run.cycles or run.errors or run.blocked:
            self.bad[node] = True
            return
        constants: list[dict[str, Decimal]] = []
        if run.direct is not None:
            constants.append(run.direct)
        if run.grid is not None:
            if run.grid.kind not in (_OK, _MISSING):
                self.bad[node] = True
                return
            if run.grid.part is not None:
                constants.append(run.grid.part)
            grid = self.index.get(state.bom.own.grid_ref)  # type: ignore[arg-type]
            if grid is not None:  # (a grid factor's part is not a scaling of its value)
                self.bad[grid] = True
        union = {key for part in constants for key in part}
        lines: dict[int, list[list[int]]] = {}
        for i, line in enumerate(run.lines):
            if line.kind == _MISSING:
                continue
            mult = run.mults[i]
            if line.kind != _OK or line.part is None or line.source is None or mult is None:
                self.bad[node] = True
                return
            k = mult[3]
            child = self.index.get(line.source.ref)
            if k is None or child is None or self.value[child] != line.source:
                self.bad[node] = True
                return
            if node not in self._subscribed[child]:
                self.bad[node] = True
                return
            union.update(line.part)
            kc, ke = _pair(k)
            lines.setdefault(child, []).append([0, 0, kc, ke])
        if union != set(self.keys[node]):
            self.bad[node] = True  # (a figure some lines lack: a gap, not summed)
            return
        self.lines[node] = lines
        self.constants[node] = constants

    def _order(self) -> None:
        """Heights (as :meth:`Engine.height`: 1 + the highest product child with lines) and
        badness upwards: a product with a bad child is bad; then ``clean`` downwards."""
        n = len(self.refs)
        done = [False] * n
        for root in range(n):
            if done[root]:
                continue
            stack = [(root, False)]
            while stack:
                node, expanded = stack.pop()
                if done[node]:
                    continue
                children = list(self.lines[node])
                if not expanded:
                    stack.append((node, True))
                    stack.extend((c, False) for c in children if not done[c])
                    continue
                done[node] = True
                height = 0
                for child in children:
                    if self.bad[child]:
                        self.bad[node] = True
                    if self.has_bom[child]:
                        height = max(height, 1 + self.height[child])
                self.height[node] = height
        for node in sorted(range(n), key=lambda i: -self.height[i]):
            self.clean[node] = not self.bad[node] and all(self.clean[p] for p in self.parents[node])
        # (parents are higher than their children, so they were done first)

    def _pack(self) -> None:
        """Exponents, multipliers, bounds, field width, then every value packed and every
        product's parts and sums made -- and checked against the object state's value.

        The packed keys and the variance each have their own exponent and bound per node (the
        variance scales by ``k²``: at one exponent with the figures it would drag every figure's
        coefficient down by ``2·e_k`` digits a tier)."""
        order = sorted(
            (i for i in range(len(self.refs)) if not self.bad[i]),
            key=lambda i: self.height[i] if self.product[i] else -1,  # (leaves first)
        )
        base, vbase, bound, vbound = self.base, self.vbase, self.bound, self.vbound
        for node in order:
            value = self.value[node]
            assert value is not None and value.totals is not None
            own = flat_keys(value.totals)
            if not self.lines[node] and not self.constants[node]:  # a leaf, or lines all missing
                base[node], vbase[node] = _bases([own])
                coefs = _split(own, base[node], vbase[node])
                bound[node] = max(1, *map(abs, coefs[0])) * HEADROOM
                # (a variance of 0 stays bounded by 0: a leaf that gains a standard deviation
                # is refused, rather than every tier above it budgeting digits for one)
                vbound[node] = abs(coefs[1]) * HEADROOM
                continue
            b, vb = _bases([own, *self.constants[node]])
            for child, records in self.lines[node].items():
                for record in records:
                    ke = record[3]
                    b, vb = min(b, base[child] + ke), min(vb, vbase[child] + 2 * ke)
            base[node], vbase[node] = b, vb
            total = vtotal = 0
            for part in self.constants[node]:
                figures, variance = _split(part, b, vb)
                total += sum(abs(c) for c in figures)
                vtotal += abs(variance)
            self.cbound[node], self.cvbound[node] = total, vtotal
            for child, records in self.lines[node].items():
                for record in records:
                    kc, ke = record[2], record[3]
                    record[0] = kc * 10 ** (base[child] + ke - b)
                    record[1] = kc * kc * 10 ** (vbase[child] + 2 * ke - vb)
                    if bound[child] * abs(kc) >= _DIGITS or vbound[child] * kc * kc >= _DIGITS:
                        self.bad[node] = True  # (a product could round: an exponent would move)
                    total += bound[child] * abs(record[0])
                    vtotal += vbound[child] * abs(record[1])
            bound[node], vbound[node] = total, vtotal
        for node in order:
            if any(self.bad[child] for child in self.lines[node]):
                self.bad[node] = True
        self.width = max(64, max(bound, default=1).bit_length() + 2)
        for node in order:
            if self.bad[node]:
                continue
            value = self.value[node]
            assert value is not None and value.totals is not None
            if not self.lines[node] and not self.constants[node]:
                self.packed[node], self.var[node] = self._packed(
                    flat_keys(value.totals), base[node], vbase[node]
                )
                continue
            packed = var = 0
            for part in self.constants[node]:
                m, v = self._packed(part, base[node], vbase[node])
                packed += m
                var += v
            for child, records in self.lines[node].items():
                for record in records:
                    packed += self.packed[child] * record[0]
                    var += self.var[child] * record[1]
            self.packed[node], self.var[node] = packed, var
            try:
                same = _exactly(self.totals_flat(node), flat_keys(value.totals))
            except AssertionError:
                same = False
            if not same:
                self.bad[node] = True  # (not what the object side has: leave it to that)
        for node in sorted(range(len(self.refs)), key=lambda i: -self.height[i]):
            self.clean[node] = not self.bad[node] and all(self.clean[p] for p in self.parents[node])

    def _packed(self, part: Mapping[str, Decimal], base: int, vbase: int) -> tuple[int, int]:
        """*part* as (packed keys at exponent *base*, variance at exponent *vbase*)."""
        packed = var = 0
        width, slot = self.width, self.slot
        for key, value in part.items():
            coef, exponent = _pair(value)
            if key == _VARIANCE:
                var = coef * 10 ** (exponent - vbase)
            else:
                packed += (coef * 10 ** (exponent - base)) << (width * slot[key])
        return packed, var

    # ------------------------------------------------------------------ a new value

    def accepts(self, value: SourceValue) -> tuple[int, int, int] | None:
        """Where a new *value* of an input goes here, or ``None`` if it is not modelled (module
        docstring): ``(node, packed, variance)`` for a clean leaf when *value* has the shape of
        the leaf's value now and fits its bounds; :meth:`set_leaf` then applies it."""
        node = self.index.get(value.ref)
        if node is None or self.product[node] or not self.clean[node]:
            return None
        old = self.value[node]
        if old is None or value.totals is None or not _same_kind(old, value):
            return None
        figures = flat_keys(value.totals)
        if tuple(figures) != self.keys[node]:
            return None
        plan = self._plans.get(node)
        if plan is None:
            plan = self._plans[node] = self._plan(node)
        packed = var = largest = raw = 0
        seen = seen_unscale = None  # (a figure often is the headline again: converted once)
        for figure, (quantum, unscale, scale, shift) in zip(figures.values(), plan, strict=True):
            if figure is not seen or unscale is not seen_unscale:
                if not figure.same_quantum(quantum):  # (another exponent: the sums' would move)
                    return None
                raw = int(figure.scaleb(unscale, EXACT_CONTEXT))
                seen, seen_unscale = figure, unscale
            coef = raw * scale
            if shift < 0:
                var = coef
            else:
                if coef > largest or -coef > largest:
                    largest = abs(coef)
                packed += coef << shift
        if (largest > self.bound[node] or abs(var) > self.vbound[node]) and not self._widen(
            node, largest * HEADROOM, abs(var) * HEADROOM
        ):
            return None
        return node, packed, var

    def _plan(self, leaf: int) -> tuple[tuple[Decimal, Decimal, int, int], ...]:
        """Per key of *leaf*'s value, how :meth:`accepts` packs a figure: its exponent as a
        quantum to compare with, the shift that makes it a coefficient, the scale to the
        leaf's ``E`` and its field's offset (``-1``: the variance, kept apart). One plan per
        shape (keys, exponents, ``E``s): leaves of the same shape share it."""
        shape = (self.keys[leaf], self.exps[leaf], self.base[leaf], self.vbase[leaf])
        plan = self._shapes.get(shape)
        if plan is None:
            plan = self._shapes[shape] = self._new_plan(leaf)
        return plan

    def _new_plan(self, leaf: int) -> tuple[tuple[Decimal, Decimal, int, int], ...]:
        plan = []
        by_exponent: dict[int, tuple[Decimal, Decimal]] = {}  # (one object per exponent)
        for key, exponent in zip(self.keys[leaf], self.exps[leaf], strict=True):
            if exponent not in by_exponent:
                by_exponent[exponent] = _decimal(1, exponent), Decimal(-exponent)
            quantum, unscale = by_exponent[exponent]
            if key == _VARIANCE:
                plan.append((quantum, unscale, 10 ** (exponent - self.vbase[leaf]), -1))
            else:
                shift = self.width * self.slot[key]
                plan.append((quantum, unscale, 10 ** (exponent - self.base[leaf]), shift))
        return tuple(plan)

    def _widen(self, leaf: int, bound: int, vbound: int) -> bool:
        """Raise *leaf*'s bounds to take a larger value, and every ancestor's with them, if every
        line above still multiplies under 50 digits and every field still fits its width;
        whether they were raised (nothing changes otherwise)."""
        new_bound = {leaf: max(bound, self.bound[leaf])}
        new_vbound = {leaf: max(vbound, self.vbound[leaf])}
        limit = 1 << (self.width - 2)
        levels: dict[int, dict[int, None]] = {}
        for parent in self.parents[leaf]:
            levels.setdefault(self.height[parent], {})[parent] = None
        while levels:
            level = min(levels)
            for node in sorted(levels.pop(level)):
                total, vtotal = self.cbound[node], self.cvbound[node]
                for child, records in self.lines[node].items():
                    b = new_bound.get(child, self.bound[child])
                    vb = new_vbound.get(child, self.vbound[child])
                    for record in records:
                        kc = record[2]
                        if b * abs(kc) >= _DIGITS or vb * kc * kc >= _DIGITS:
                            return False
                        total += b * abs(record[0])
                        vtotal += vb * abs(record[1])
                if total >= limit:
                    return False
                new_bound[node], new_vbound[node] = total, vtotal
                for parent in self.parents[node]:
                    levels.setdefault(self.height[parent], {})[parent] = None
        for node, value in new_bound.items():
            self.bound[node] = value
        for node, value in new_vbound.items():
            self.vbound[node] = value
        return True

    # ------------------------------------------------------------------ influence rows

    def influence(self, leaf: int) -> Influence:
        """Leaf *leaf*'s :class:`Influence` row, built on first use and kept (least recently
        used first out, past :attr:`row_limit` entries in all)."""
        rows = self._rows
        row = rows.pop(leaf, None)
        if row is None:
            row = self._influence(leaf)
            self.rows_built += 1
            self.row_entries += len(row.nodes)
            while rows and self.row_entries > self.row_limit:
                self.row_entries -= len(rows.pop(next(iter(rows))).nodes)
        rows[leaf] = row
        return row

    def preload(self) -> int:
        """Build the influence row (and :meth:`accepts`' plan) of every leaf an update may
        start at, as many as :attr:`row_limit` keeps (for a caller that wants that cost at
        load); how many rows are kept."""
        for node in range(len(self.refs)):
            if self.clean[node] and not self.product[node]:
                self.influence(node)
                if node not in self._plans:
                    self._plans[node] = self._plan(node)
                if self.row_entries >= self.row_limit:
                    break
        return len(self._rows)

    def _reach(self, changed: Iterable[int]) -> tuple[list[int], dict[int, int]]:
        """The products the *changed* nodes reach, each once, lowest first (by height, then
        node: the engine's order), and per product the last child that reached it (the order
        the engine's queue brings them: the changed nodes in turn, then each product as it
        is done)."""
        height, parents = self.height, self.parents
        last: dict[int, int] = {}
        levels: list[list[int]] = []
        for child in changed:
            for parent in parents[child]:
                if parent not in last:
                    up = height[parent]
                    while len(levels) <= up:
                        levels.append([])
                    levels[up].append(parent)
                last[parent] = child
        out: list[int] = []
        at = 0
        while at < len(levels):  # (a parent is higher than its child: levels only grow above)
            level = levels[at]
            at += 1
            level.sort()
            for node in level:
                out.append(node)
                for parent in parents[node]:
                    if parent not in last:
                        up = height[parent]
                        while len(levels) <= up:
                            levels.append([])
                        levels[up].append(parent)
                    last[parent] = node
        return out, last

    def _influence(self, leaf: int) -> Influence:
        """Walk once from *leaf* up: its ancestors in order, the last child that reaches each,
        and ``C1[leaf→X]``, summed over every path (children come before their parents)."""
        out, last = self._reach((leaf,))
        parents = self.parents
        return Influence(
            tuple(out),
            tuple([last[node] for node in out]),
            self._coefficients(leaf, out, 0),
            sum(len(parents[node]) for node in out),
        )

    def _coefficients(self, leaf: int, nodes: Iterable[int], which: int) -> tuple[int, ...]:
        """``C[leaf→X]`` for each of *nodes* (*leaf*'s ancestors in order) with the lines'
        ``a1`` (*which* 0) or ``a2`` (1): ``Σ over X's children c of C[leaf→c] · Σ a``."""
        lines = self.lines
        coef = {leaf: 1}
        out = []
        for node in nodes:
            c = 0
            for child, records in lines[node].items():
                cc = coef.get(child)
                if cc is not None:
                    for record in records:
                        c += cc * record[which]
            coef[node] = c
            out.append(c)
        return tuple(out)

    # ------------------------------------------------------------------ an update

    def set_leaf(self, accepted: tuple[int, int, int], value: SourceValue) -> None:
        """Give a leaf its new *value*, as :meth:`accepts` packed it, and move every ancestor's
        numbers by the difference: ``Δpacked · C1`` and ``Δvariance · C2`` along the leaf's
        influence row (exact: integers, and the sums are linear in the leaf's value)."""
        node, packed, var = accepted
        row = self.influence(node)
        delta = packed - self.packed[node]
        if delta:
            numbers = self.packed
            for x, c in zip(row.nodes, row.c1, strict=True):
                numbers[x] += delta * c
        delta = var - self.var[node]
        if delta:
            c2 = row.c2
            if c2 is None:  # (built on the first change of this leaf's variance)
                c2 = row.c2 = self._coefficients(node, row.nodes, 1)
            numbers = self.var
            for x, c in zip(row.nodes, c2, strict=True):
                numbers[x] += delta * c
        self.packed[node], self.var[node], self.value[node] = packed, var, value

    def republished(self, changed: list[int], last: dict[int, int]) -> tuple[Sequence[int], int]:
        """The products the *changed* leaves (given their values by :meth:`set_leaf`) reach,
        each once, lowest first (by height, then node: the engine's order), each of which
        republishes, and how many parents those have in all (the messages their new values
        make); *last* gets, per product, the last child that reached it (whose trace its own
        extends). One leaf: its row's; several: one walk over the union."""
        if len(changed) == 1:
            row = self.influence(changed[0])
            last.update(zip(row.nodes, row.lasts, strict=True))
            return row.nodes, row.fanout
        out, reached = self._reach(changed)
        last.update(reached)
        parents = self.parents
        return out, sum(len(parents[node]) for node in out)

    # ------------------------------------------------------------------ the edge

    def _fields(self, node: int) -> dict[str, int]:
        """Node *node*'s coefficients at its exponent ``E``, by key."""
        width = self.width
        mask, half = (1 << width) - 1, 1 << (width - 1)
        packed = self.packed[node]
        by_slot: dict[int, int] = {}
        wanted = {self.slot[key] for key in self.keys[node] if key != _VARIANCE}
        top = max(wanted, default=-1)
        for field in range(top + 1):
            coef = packed & mask
            if coef >= half:
                coef -= 1 << width
            packed = (packed - coef) >> width
            by_slot[field] = coef
        out = {}
        for key in self.keys[node]:
            out[key] = self.var[node] if key == _VARIANCE else by_slot[self.slot[key]]
        return out

    def totals_flat(self, node: int) -> dict[str, Decimal]:
        """Node *node*'s value as ``{key: Decimal}``, each figure at its from-scratch exponent."""
        base, vbase = self.base[node], self.vbase[node]
        out = {}
        for (key, coef), exponent in zip(self._fields(node).items(), self.exps[node], strict=True):
            unit = exponent - (vbase if key == _VARIANCE else base)
            whole, rest = divmod(coef, 10**unit)
            if rest:  # (a from-scratch sum's digits stop at its exponent: never happens)
                raise AssertionError(f"{self.refs[node]}: {key} is not at exponent {exponent}")
            out[key] = _decimal(whole, exponent)
        return out

    def totals(self, node: int) -> Totals:
        """Node *node*'s :class:`Totals`, in the shape of the value the object side last had."""
        old = self.value[node]
        assert old is not None and old.totals is not None
        flat = self.totals_flat(node)
        shape = old.totals
        return Totals(
            figures={name: flat[name] for name in shape.figures},
            primary=flat[_PRIMARY],
            variance=flat[_VARIANCE],
            unassessed=flat[_UNASSESSED],
            dqr={name: (flat[_DQR + name], flat[_DQW + name]) for name in shape.dqr},
            stages={stage: flat[_STAGE + stage] for stage in shape.stages},
        )


def rolled_value(
    old: SourceValue, totals: Totals, bom: Bom, children: Mapping[Ref, object]
) -> SourceValue:
    """A product's new value: *old* with new *totals* and the pending identity
    :meth:`Running.value <streams.rollup._running.Running.value>` gives for the values its lines
    now use (*children*: its :class:`~streams.rollup.ChildSlot`\\ s)."""
    from ._running import _build

    def used_value(ref: Ref | None) -> SourceValue | None:
        slot = None if ref is None else children.get(ref)
        return None if slot is None else slot.value  # type: ignore[attr-defined]

    grid_ref = bom.own.grid_ref
    grid = None
    if grid_ref is not None:
        grid = used_value(grid_ref)
        if grid is not None and grid.totals is None:
            grid = None
    used = tuple([used_value(line.ref) or used_value(line.factor_ref) for line in bom.components])
    identity = Identity.pending(
        (bom, grid, used),
        lambda: _build(bom, grid, used),
        tuple([v.identity for v in (grid, *used) if v is not None]),
    )
    return SourceValue(
        ref=old.ref,
        kind=old.kind,
        sequence=old.sequence,
        declared_unit=old.declared_unit,
        declared_unit_amount=old.declared_unit_amount,
        mass_per_declared_unit=old.mass_per_declared_unit,
        status=old.status,
        totals=totals,
        missing=old.missing,
        cycle=old.cycle,
        factor_sources=old.factor_sources,
        exact=old.exact,
        supplier=old.supplier,
        identity=identity,
    )
