"""What the roll-up produces: additive totals, the value one input offers, and the result record.

:class:`Totals` holds only *additive* quantities, so a parent's totals are exactly its own part
plus ``sum(multiplier x child totals)`` and nothing is ever averaged twice:

* ``figures`` -- PACT figures per declared unit (see ``_model`` for which ones and why);
* ``primary`` -- the part of ``pcfExcludingBiogenicUptake`` that rests on primary data. Own process
  emissions from the manufacturer's activity data count as primary, background factors as
  secondary, a supplier footprint by its own ``primaryDataShare`` (absent: counted secondary, so
  the share is a lower bound). ``primaryDataShare = 100 x primary / pcfExcludingBiogenicUptake``;
* ``variance`` -- first-order variance of ``pcfExcludingBiogenicUptake`` assuming independent
  inputs: ``var(P) = var(own) + sum((multiplier x sigma_i)^2)``. A component reached through two
  paths (a diamond) is treated as two independent inputs, which understates the spread;
* ``unassessed`` -- the part of the headline figure whose inputs gave no standard deviation; the
  interval is reported together with that share, never as if those inputs were certain;
* ``dqr`` -- per rating, ``(sum(weight x rating), sum(weight))`` with weight = contribution to
  ``pcfExcludingBiogenicUptake``; the contribution-weighted average is their quotient;
* ``stages`` -- ``pcfExcludingBiogenicUptake`` by life-cycle stage (inputs that gave no split are
  booked under ``unspecified``); the stages always add up to the headline figure.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pcf_exchange.contracts.errors import RollupError, Violation

from ._model import HEADLINE_METRIC, Ref, _digest
from ._numbers import rollup_context

__all__ = [
    "RESULT_NAMESPACE",
    "Identity",
    "LineageInput",
    "RollupResult",
    "SourceKind",
    "SourceValue",
    "Status",
    "Totals",
    "Uncertainty",
]

RESULT_NAMESPACE = uuid.UUID("6c1f3f0e-4c1d-5a8e-9a55-0c9f0a7e2b31")
"""UUIDv5 namespace of rolled-up result ids (a new id per distinct content, as PACT v3 wants)."""


def _d(value: Decimal | None) -> str | None:
    """A decimal as canonical JSON carries it (a string of its digits, PACT style)."""
    return None if value is None else format(value, "f")


_Z95 = Decimal("1.959963984540054")  # two-sided 95 % quantile of the standard normal
_HUNDRED = Decimal(100)


class Status(StrEnum):
    """How far a product could be rolled up. Only ``COMPLETE`` results carry figures."""

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    """Some input (here or upstream) has no footprint and no factor: partial figures only."""
    ERROR = "error"
    """A line of this product's own BOM cannot be evaluated (e.g. units that do not convert)."""
    BLOCKED = "blocked"
    """An input is in ERROR, BLOCKED or on a cycle this product is not part of."""
    CYCLE = "cycle"
    """The product is on a cycle of the BOM graph; ``cycle`` gives the path."""


class SourceKind(StrEnum):
    SUPPLIER = "supplier"
    """A supplier's signed footprint (primary by its own share)."""
    FACTOR = "factor"
    """A background emission factor (secondary)."""
    ROLLED_UP = "rolled_up"
    """Another product's rolled-up result."""
    OWN_DIRECT = "own_direct"
    """The manufacturer's direct process emissions (primary)."""
    OWN_ELECTRICITY = "own_electricity"
    """The manufacturer's metered electricity times a grid factor (primary activity data)."""


@dataclass(frozen=True, slots=True)
class Uncertainty:
    """First-order 95 % interval of ``pcfExcludingBiogenicUptake`` (normal approximation)."""

    std_dev: Decimal
    low: Decimal
    high: Decimal
    unassessed_share: Decimal | None
    """Percent of the figure whose inputs gave no standard deviation (0 = fully assessed)."""


@dataclass(frozen=True, slots=True)
class Totals:
    """Additive accumulators per declared unit (see the module docstring)."""

    figures: Mapping[str, Decimal]
    primary: Decimal
    variance: Decimal
    unassessed: Decimal
    dqr: Mapping[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    stages: Mapping[str, Decimal] = field(default_factory=dict)

    @property
    def headline(self) -> Decimal:
        return self.figures[HEADLINE_METRIC]

    @property
    def primary_data_share(self) -> Decimal | None:
        """Percent of the headline figure from primary data (``None`` if the figure is 0)."""
        total = self.headline
        if total == 0:
            return None
        with rollup_context():
            return _HUNDRED * self.primary / total

    @property
    def dqr_averages(self) -> dict[str, Decimal]:
        """Contribution-weighted average of each rating that inputs reported."""
        out: dict[str, Decimal] = {}
        with rollup_context():
            for name, (weighted, weight) in self.dqr.items():
                if weight != 0:
                    out[name] = weighted / weight
        return out

    @property
    def uncertainty(self) -> Uncertainty:
        with rollup_context():
            std_dev = self.variance.sqrt()
            total = self.headline
            share = None if total == 0 else _HUNDRED * self.unassessed / total
            return Uncertainty(std_dev, total - _Z95 * std_dev, total + _Z95 * std_dev, share)

    def canonical(self) -> dict[str, Any]:
        """Plain JSON values (decimals as strings)."""
        return {
            "figures": {name: _d(value) for name, value in self.figures.items()},
            "primary": _d(self.primary),
            "variance": _d(self.variance),
            "unassessed": _d(self.unassessed),
            "dqr": {name: [_d(ws), _d(w)] for name, (ws, w) in self.dqr.items()},
            "stages": {stage: _d(value) for stage, value in self.stages.items()},
        }


class Identity:
    """Which record a value came from (``footprint_id``, ``content_hash``), resolved lazily.

    A supplier footprint or a factor knows its identity up front (the signed record's id and
    hash). A rolled-up product's identity is its result's id and content hash, and building that
    result (lineage, canonical JSON, SHA-256, UUIDv5) is what an update must *not* pay for at every
    tier it crosses. So a rolled-up value carries a *pending* identity instead: an immutable
    snapshot of what its result is a pure function of (``key``: the BOM and the values its lines
    used, themselves carrying their own identities) and a ``build`` that makes that result from
    it. The result is built the first time anyone asks for it (the edge publishing it, a parent
    building its own result's lineage, the codec writing the value to a topic or row) and cached,
    so it is built at most once however many parents hold the value.

    Because the snapshot holds the inputs' *values* and not a history, the identity is the same
    whatever order the inputs arrived in (one worker or two, batch or streaming): two pending
    identities are equal when their snapshots are, which compares values, never hashes; a pending
    and a resolved identity (one read back from a row) are compared by building the result.
    """

    __slots__ = ("_build", "_content_hash", "_footprint_id", "_inputs", "_key", "_result")

    def __init__(
        self,
        footprint_id: str | None = None,
        content_hash: str | None = None,
        *,
        key: object = None,
        build: Callable[[], RollupResult] | None = None,
        inputs: tuple[Identity, ...] = (),
        result: RollupResult | None = None,
    ) -> None:
        if (footprint_id is None) != (content_hash is None) or (
            footprint_id is None and build is None and result is None
        ):
            raise ValueError("an identity needs its id and hash, a result, or a way to build it")
        self._footprint_id = footprint_id
        self._content_hash = content_hash
        self._key = key
        self._build = build
        self._inputs = inputs
        self._result = result
        if result is not None:
            self._resolve_from(result)

    @classmethod
    def of_result(cls, result: RollupResult) -> Identity:
        """The identity of a result at hand (resolved, and able to hand the result back)."""
        return cls(result=result)

    @classmethod
    def pending(
        cls, key: object, build: Callable[[], RollupResult], inputs: tuple[Identity, ...] = ()
    ) -> Identity:
        """An identity whose result *build* makes on first use; equal to another on *key*.
        *inputs* are the identities *build* will read (resolved first, without recursion)."""
        return cls(key=key, build=build, inputs=inputs)

    def _resolve_from(self, result: RollupResult) -> None:
        self._result = result
        self._footprint_id = result.result_id
        self._content_hash = result.content_hash
        self._build = None  # (drops the snapshot's closure: the result now stands for it)
        self._inputs = ()

    @property
    def resolved(self) -> bool:
        return self._content_hash is not None

    @property
    def result(self) -> RollupResult | None:
        """The rolled-up result this identifies (built now if pending; ``None`` for a footprint,
        a factor, or a rolled-up identity read back from bytes)."""
        if self._result is None and self._build is not None:
            # the inputs' results first, deepest first, so that a long chain of products does not
            # build itself by recursion (each build then only reads resolved identities)
            stack: list[Identity] = [self]  # a path: each input is pushed when its turn comes
            while stack:
                top = stack[-1]
                waiting = next((i for i in top._inputs if i._build is not None), None)
                if waiting is not None:
                    stack.append(waiting)
                    continue
                stack.pop()
                if top._build is not None:
                    top._resolve_from(top._build())
        return self._result

    @property
    def footprint_id(self) -> str:
        if self._footprint_id is None:
            self.result  # noqa: B018 - resolves
        assert self._footprint_id is not None
        return self._footprint_id

    @property
    def content_hash(self) -> str:
        if self._content_hash is None:
            self.result  # noqa: B018 - resolves
        assert self._content_hash is not None
        return self._content_hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Identity):
            return NotImplemented
        if self._key is not None and other._key is not None:
            return bool(self._key == other._key)
        return (self.footprint_id, self.content_hash) == (other.footprint_id, other.content_hash)

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def __repr__(self) -> str:
        if self._content_hash is None:
            return "Identity(<pending>)"
        return f"Identity({self._footprint_id!r}, {self._content_hash!r})"


@dataclass(frozen=True, slots=True)
class SourceValue:
    """The current value one input offers to the BOMs that use it, per its declared unit.

    Built by the component side from a supplier footprint, a factor or a rolled-up product's
    state; sent to every subscribing parent inside a ``ChildValue``. It is *thin*: the totals and
    what a parent's status depends on, never lineage. :attr:`footprint_id`/``sequence``/
    :attr:`content_hash` identify exactly which record it came from (for a rolled-up product:
    the result id, the BOM revision and the result's content hash), through :attr:`identity`,
    which a rolled-up value resolves only when asked (see :class:`Identity`). ``identity`` is the
    last field, so comparing two values compares their figures before their identities.
    """

    ref: Ref
    kind: SourceKind
    sequence: int
    declared_unit: str
    declared_unit_amount: Decimal
    mass_per_declared_unit: Decimal | None
    status: Status
    totals: Totals | None
    missing: tuple[str, ...] = ()
    cycle: tuple[str, ...] = ()
    factor_sources: tuple[str, ...] = ()
    exact: bool = True
    supplier: str = ""
    """Whose value it is: the declaring supplier, the factor's publisher, the BOM's owner."""
    identity: Identity = field(kw_only=True)

    @property
    def footprint_id(self) -> str:
        return self.identity.footprint_id

    @property
    def content_hash(self) -> str:
        return self.identity.content_hash

    @property
    def usable(self) -> bool:
        """Whether a parent can compute with it (complete, or incomplete with partial totals)."""
        return self.totals is not None and self.status in (Status.COMPLETE, Status.INCOMPLETE)


@dataclass(frozen=True, slots=True)
class LineageInput:
    """One input of a result: enough to fetch it, check its hash and recompute its share.

    ``multiplier`` is how many declared units of the input go into one declared unit of the
    product (quantity after unit conversion, divided by the input's declared unit amount);
    ``contribution`` = multiplier x the input's ``pcfExcludingBiogenicUptake``.
    """

    path: str
    """``components[i]``, ``ownProcess.direct`` or ``ownProcess.electricity``."""
    kind: SourceKind
    ref: str
    footprint_id: str
    sequence: int
    content_hash: str
    quantity: Decimal
    unit: str
    multiplier: Decimal | None
    contribution: Decimal | None
    secondary: bool = False
    status: Status = Status.COMPLETE
    supplier: str = ""
    """The company the input's value came from (:attr:`SourceValue.supplier`)."""

    def canonical(self) -> dict[str, Any]:
        """Plain JSON values (decimals as strings); ``supplier`` only when known (so results
        without one keep the content hash they had before it was recorded)."""
        supplier = {"supplier": self.supplier} if self.supplier else {}
        return supplier | {
            "path": self.path,
            "kind": self.kind.value,
            "ref": self.ref,
            "footprintId": self.footprint_id,
            "sequence": self.sequence,
            "contentHash": self.content_hash,
            "quantity": _d(self.quantity),
            "unit": self.unit,
            "multiplier": _d(self.multiplier),
            "contribution": _d(self.contribution),
            "secondary": self.secondary,
            "status": self.status.value,
        }


@dataclass(frozen=True, slots=True)
class RollupResult:
    """The rolled-up footprint of one product at one BOM revision, with its lineage.

    A pure function of the product's BOM and the current value of each input: the same inputs
    give an equal result (same digits, same ``content_hash``) whatever order they arrived in.
    Figures are exposed through :attr:`figures` only when the status is ``COMPLETE``; an
    ``INCOMPLETE`` result offers :attr:`partial_figures` and lists what is ``missing``.
    """

    product_id: str
    bom_revision: int
    status: Status
    declared_unit: str
    declared_unit_amount: Decimal
    mass_per_declared_unit: Decimal | None
    totals: Totals | None
    lineage: tuple[LineageInput, ...] = ()
    missing: tuple[str, ...] = ()
    """Refs (``product:x``, ``factor:y``) with neither footprint nor usable factor, transitively."""
    errors: tuple[Violation, ...] = ()
    blocked_by: tuple[str, ...] = ()
    cycle: tuple[str, ...] = ()
    """Product ids along the cycle in BOM direction, first id repeated at the end."""
    metric_gaps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Figures some inputs reported and others did not (so left out), with the inputs lacking."""
    secondary: tuple[str, ...] = ()
    """Lines that used a background factor because the component has no footprint."""
    factor_sources: tuple[str, ...] = ()
    exact: bool = True
    """No division rounded anywhere in this figure or upstream (50 significant digits)."""
    content_hash: str = ""
    owner: str = ""
    """The BOM's owner, whose product this is (empty when unknown)."""

    def __post_init__(self) -> None:
        if not self.content_hash:
            # canonical() builds only JSON-native values (str keys, no float): no walk to check
            object.__setattr__(self, "content_hash", _digest(self.canonical(), checked=True))

    def canonical(self) -> dict[str, Any]:
        """Plain JSON values (decimals as strings) that the content hash covers."""
        return {
            "productId": self.product_id,
            "bomRevision": self.bom_revision,
            "status": self.status.value,
            "declaredUnitOfMeasurement": self.declared_unit,
            "declaredUnitAmount": _d(self.declared_unit_amount),
            "productMassPerDeclaredUnit": _d(self.mass_per_declared_unit),
            "totals": None if self.totals is None else self.totals.canonical(),
            "lineage": [entry.canonical() for entry in self.lineage],
            "missing": list(self.missing),
            "errors": [{"path": v.path, "code": v.code, "message": v.message} for v in self.errors],
            "blockedBy": list(self.blocked_by),
            "cycle": list(self.cycle),
            "metricGaps": {name: list(refs) for name, refs in self.metric_gaps.items()},
            "secondary": list(self.secondary),
            "factorSources": list(self.factor_sources),
            "exact": self.exact,
        } | ({"owner": self.owner} if self.owner else {})

    @property
    def result_id(self) -> str:
        """Deterministic UUIDv5 of product and content: the PACT id of this exact result."""
        return str(uuid.uuid5(RESULT_NAMESPACE, f"{self.product_id}|{self.content_hash}"))

    @property
    def is_complete(self) -> bool:
        return self.status is Status.COMPLETE

    @property
    def figures(self) -> Mapping[str, Decimal] | None:
        """PACT figures per declared unit, only when the roll-up is complete."""
        return self.totals.figures if self.is_complete and self.totals is not None else None

    @property
    def partial_figures(self) -> Mapping[str, Decimal] | None:
        """Sum of the inputs available so far, only for an incomplete roll-up."""
        if self.status is Status.INCOMPLETE and self.totals is not None:
            return self.totals.figures
        return None

    @property
    def pcf(self) -> Decimal | None:
        """``pcfExcludingBiogenicUptake`` per declared unit when complete."""
        figures = self.figures
        return None if figures is None else figures[HEADLINE_METRIC]

    @property
    def primary_data_share(self) -> Decimal | None:
        """Percent of ``pcfExcludingBiogenicUptake`` from primary data, when complete."""
        totals = self.totals if self.is_complete else None
        return None if totals is None else totals.primary_data_share

    @property
    def dqr(self) -> dict[str, Decimal]:
        return {} if self.figures is None or self.totals is None else self.totals.dqr_averages

    @property
    def stages(self) -> Mapping[str, Decimal]:
        return {} if self.figures is None or self.totals is None else self.totals.stages

    @property
    def uncertainty(self) -> Uncertainty | None:
        return None if self.figures is None or self.totals is None else self.totals.uncertainty

    def verify(self) -> RollupResult:
        """Return the result if complete; raise :class:`RollupError` saying why not otherwise."""
        if self.status is Status.COMPLETE:
            return self
        if self.status is Status.ERROR and self.errors:
            first = self.errors[0]
            raise RollupError(
                f"product {self.product_id!r} cannot be rolled up: {first}", path=first.path
            )
        if self.status is Status.CYCLE:
            raise RollupError(
                f"product {self.product_id!r} is on a cycle: {' -> '.join(self.cycle)}"
            )
        if self.status is Status.BLOCKED:
            raise RollupError(
                f"product {self.product_id!r} is blocked by inputs that cannot be rolled up: "
                + ", ".join(self.blocked_by)
            )
        raise RollupError(
            f"product {self.product_id!r} is incomplete; missing: " + ", ".join(self.missing),
            hint="Publish the missing footprints, or name a background factor on those lines.",
        )
