"""The roll-up core's own inputs: supplier footprints, background factors and bills of materials.

These are small frozen dataclasses, independent of the Avro/pydantic contracts (an adapter maps
``contracts`` models onto them). Each checks itself on construction and raises
:class:`~contracts.errors.RollupError` naming the field path (``components[2].unit``).

Which PACT v3 ``CarbonFootprint`` figures are rolled up
------------------------------------------------------
All figures are per declared unit (``declaredUnitAmount`` x ``declaredUnitOfMeasurement``).

* **Additive emissions** (:data:`REQUIRED_METRICS` + :data:`OPTIONAL_EMISSION_METRICS`): kgCO2e
  that belong to the cradle-to-gate life cycle of the product, so the parent's figure is its own
  process plus ``sum(quantity x component figure)``. The three required ones
  (``pcfExcludingBiogenicUptake``, ``pcfIncludingBiogenicUptake``, ``fossilGhgEmissions``) are on
  every input. Optional ones (``biogenicCO2Uptake``, ``landUseChangeGhgEmissions``,
  ``aircraftGhgEmissions``, CCS, removals, land management ...) are rolled up only when *every*
  component line reports them; otherwise the parent leaves the figure out and lists which inputs
  lacked it (``RollupResult.metric_gaps``) -- a missing figure is never read as zero. The
  manufacturer's own process (direct + electricity) is declared to contribute nothing to them
  except what its grid factor reports.
* **Carbon contents** (:data:`CARBON_CONTENT_METRICS`, kgC per declared unit): rolled up as a mass
  balance of the inputs (``sum(quantity x content)``; the own process adds none). This assumes the
  carbon of every component ends up in the product; when the process loses material (scrap
  counted in the BOM quantity) the figure is an upper bound.
* **Not rolled up** (:data:`NOT_ROLLED_UP`): figures that describe the declared product itself
  rather than its inputs (its packaging, its outbound logistics), or that are not emissions.
  Percentages and ratings (``primaryDataShare``, DQRs) are *derived*: emission-weighted, see
  :class:`~streams.rollup.Totals`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pcf_exchange.contracts.canonical import canonical_json
from pcf_exchange.contracts.errors import RollupError, UnitError
from pcf_exchange.contracts.units import unit

from ._numbers import ZERO, check_decimal, check_mapping

__all__ = [
    "CARBON_CONTENT_METRICS",
    "DQR_RATINGS",
    "FOSSIL_GHG_EMISSIONS",
    "HEADLINE_METRIC",
    "NOT_ROLLED_UP",
    "OPTIONAL_EMISSION_METRICS",
    "PCF_EXCLUDING_BIOGENIC_UPTAKE",
    "PCF_INCLUDING_BIOGENIC_UPTAKE",
    "REQUIRED_METRICS",
    "ROLLED_UP_METRICS",
    "UNSPECIFIED_STAGE",
    "Bom",
    "BomLine",
    "ComponentFootprint",
    "Factor",
    "OwnProcess",
    "Ref",
    "RefKind",
]

PCF_EXCLUDING_BIOGENIC_UPTAKE = "pcfExcludingBiogenicUptake"
PCF_INCLUDING_BIOGENIC_UPTAKE = "pcfIncludingBiogenicUptake"
FOSSIL_GHG_EMISSIONS = "fossilGhgEmissions"
HEADLINE_METRIC = PCF_EXCLUDING_BIOGENIC_UPTAKE
"""The figure primary-data share, DQR weights, stages and uncertainty refer to."""

REQUIRED_METRICS: tuple[str, ...] = (
    PCF_EXCLUDING_BIOGENIC_UPTAKE,
    PCF_INCLUDING_BIOGENIC_UPTAKE,
    FOSSIL_GHG_EMISSIONS,
)
OPTIONAL_EMISSION_METRICS: tuple[str, ...] = (
    "biogenicCO2Uptake",
    "biogenicNonCO2Emissions",
    "landUseChangeGhgEmissions",
    "landCarbonLeakage",
    "landManagementFossilGhgEmissions",
    "landManagementBiogenicCO2Emissions",
    "landManagementBiogenicCO2Removals",
    "aircraftGhgEmissions",
    "ccsTechnologicalCO2Capture",
    "technologicalCO2Removals",
)
CARBON_CONTENT_METRICS: tuple[str, ...] = (
    "fossilCarbonContent",
    "biogenicCarbonContent",
    "recycledCarbonContent",
    "ccuCarbonContent",
)
ROLLED_UP_METRICS: frozenset[str] = frozenset(
    REQUIRED_METRICS + OPTIONAL_EMISSION_METRICS + CARBON_CONTENT_METRICS
)
NOT_ROLLED_UP: Mapping[str, str] = {
    "packagingGhgEmissions": "a component's packaging is inbound packaging, already inside its "
    "PCF; the parent's own packaging is not in its BOM",
    "packagingBiogenicCarbonContent": "describes the declared product's own packaging",
    "outboundLogisticsGhgEmissions": "a component's outbound logistics is the parent's inbound "
    "logistics, not the parent's outbound",
    "landAreaOccupation": "m2*year, not an emission figure",
    "exemptedEmissionsPercent": "a percentage of each input's own PCF; not additive",
    "primaryDataShare": "derived: emission-weighted share of primary data",
    "dqi": "derived: contribution-weighted average ratings",
}
"""PACT figures the roll-up deliberately does not add up, with the reason."""

DQR_RATINGS: tuple[str, ...] = (
    "technologicalDQR",
    "geographicalDQR",
    "temporalDQR",
    "completenessDQR",
    "reliabilityDQR",
)
"""PACT data-quality ratings (v3 keeps the first three; v2 and Catena-X also the last two)."""

UNSPECIFIED_STAGE = "unspecified"
"""Life-cycle stage of emissions whose input did not split them by stage."""

_MIN_DQR, _MAX_DQR = Decimal(1), Decimal(5)
_HUNDRED = Decimal(100)


class RefKind(StrEnum):
    """Which key space an input lives in: products (footprints, roll-ups) or background factors."""

    PRODUCT = "product"
    FACTOR = "factor"


@dataclass(frozen=True, slots=True, order=True)
class Ref:
    """A reference to something a BOM consumes: a product id or a factor id.

    Refs are the keys of every per-node dict of the roll-up (children, lines, subscribers),
    looked up some fifteen times per product per update, so equality and hash are written out
    rather than generated: the generated ones build a tuple of both fields and hash the enum
    each time (measured: about a fifth of the calls an update made).
    """

    kind: RefKind
    id: str

    def __hash__(self) -> int:
        return hash(self.id)  # (a product and a factor of the same id merely share a bucket)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Ref:
            return NotImplemented
        return self.id == other.id and self.kind is other.kind

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"

    @classmethod
    def product(cls, product_id: str) -> Ref:
        """The ref of a product id; the same object each time (so dict lookups by it compare
        by identity: one ref per id in the graph, kept for the process's life)."""
        ref = _PRODUCT_REFS.get(product_id)
        if ref is None:
            ref = _PRODUCT_REFS[product_id] = cls(RefKind.PRODUCT, product_id)
        return ref

    @classmethod
    def factor(cls, factor_id: str) -> Ref:
        """The ref of a factor id (the same object each time, like :meth:`product`)."""
        ref = _FACTOR_REFS.get(factor_id)
        if ref is None:
            ref = _FACTOR_REFS[factor_id] = cls(RefKind.FACTOR, factor_id)
        return ref


_PRODUCT_REFS: dict[str, Ref] = {}
_FACTOR_REFS: dict[str, Ref] = {}


def _digest(payload: Mapping[str, Any], *, checked: bool = False) -> str:
    """``sha256:`` and the hex digest of *payload*'s canonical JSON (*checked*: see
    :func:`~contracts.canonical.canonical_json`)."""
    return "sha256:" + hashlib.sha256(canonical_json(payload, checked=checked)).hexdigest()


def _check_id(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RollupError(f"'{path}' must be a non-empty string (got {value!r})", path=path)
    return value


def _check_sequence(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RollupError(f"'{path}' must be an integer >= 0 (got {value!r})", path=path)
    return value


def _check_unit(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise RollupError(f"'{path}' must be a unit name (got {value!r})", path=path)
    try:
        unit(value)
    except UnitError as exc:
        raise RollupError(f"'{path}': {exc.message}", path=path) from exc
    return value


def _check_figures(value: object, path: str) -> dict[str, Decimal]:
    figures = check_mapping(value, path)
    for name in figures:
        if name not in ROLLED_UP_METRICS:
            why = NOT_ROLLED_UP.get(name, "not a PACT CarbonFootprint figure the roll-up knows")
            raise RollupError(f"'{path}.{name}' is not rolled up ({why})", path=f"{path}.{name}")
    for name in REQUIRED_METRICS:
        if name not in figures:
            raise RollupError(f"'{path}.{name}' is required (got nothing)", path=f"{path}.{name}")
    check_decimal(figures[HEADLINE_METRIC], f"{path}.{HEADLINE_METRIC}", minimum=ZERO)
    check_decimal(figures[FOSSIL_GHG_EMISSIONS], f"{path}.{FOSSIL_GHG_EMISSIONS}", minimum=ZERO)
    return figures


def _check_dqr(value: object, path: str) -> dict[str, Decimal]:
    ratings = check_mapping(value, path)
    for name, rating in ratings.items():
        if name not in DQR_RATINGS:
            known = ", ".join(DQR_RATINGS)
            raise RollupError(
                f"'{path}.{name}' is not a DQR rating (expected one of {known})",
                path=f"{path}.{name}",
            )
        check_decimal(rating, f"{path}.{name}", minimum=_MIN_DQR, maximum=_MAX_DQR)
    return ratings


def _check_stages(value: object, path: str, total: Decimal) -> dict[str, Decimal]:
    stages = check_mapping(value, path)
    if stages and sum(stages.values(), ZERO) != total:
        raise RollupError(
            f"'{path}' must add up to {HEADLINE_METRIC} {total} (got {sum(stages.values(), ZERO)})",
            path=path,
        )
    return stages


@dataclass(frozen=True, slots=True)
class ComponentFootprint:
    """A supplier's signed footprint for one product, as the roll-up needs it.

    ``figures`` are per declared unit (``declared_unit_amount`` x ``declared_unit``), keyed by PACT
    names; the three :data:`REQUIRED_METRICS` must be there. ``sequence`` is monotonic per
    ``product_id``: a record at or below the stored sequence is a no-op. ``std_dev`` is one
    standard deviation of ``pcfExcludingBiogenicUptake`` (kgCO2e per declared unit) if the
    supplier assessed it; ``stages`` splits ``pcfExcludingBiogenicUptake`` by life-cycle stage and
    must add up to it. ``content_hash`` identifies the signed record (the adapter passes the
    envelope's hash); when left empty a SHA-256 of the fields above is used.
    """

    product_id: str
    footprint_id: str
    sequence: int
    declared_unit: str
    declared_unit_amount: Decimal
    figures: Mapping[str, Decimal]
    product_mass_per_declared_unit: Decimal | None = None
    primary_data_share: Decimal | None = None
    dqr: Mapping[str, Decimal] = field(default_factory=dict)
    std_dev: Decimal | None = None
    stages: Mapping[str, Decimal] = field(default_factory=dict)
    secondary_sources: tuple[str, ...] = ()
    content_hash: str = ""
    supplier: str = ""
    """Who declared it (the signing company's id; empty when unknown, e.g. in batch mode)."""

    def __post_init__(self) -> None:
        _check_id(self.product_id, "productId")
        _check_id(self.footprint_id, "id")
        _check_sequence(self.sequence, "sequence")
        _check_unit(self.declared_unit, "declaredUnitOfMeasurement")
        check_decimal(self.declared_unit_amount, "declaredUnitAmount", positive=True)
        figures = _check_figures(self.figures, "pcf")
        object.__setattr__(self, "figures", figures)
        if self.product_mass_per_declared_unit is not None:
            check_decimal(
                self.product_mass_per_declared_unit, "productMassPerDeclaredUnit", minimum=ZERO
            )
        if self.primary_data_share is not None:
            check_decimal(
                self.primary_data_share, "primaryDataShare", minimum=ZERO, maximum=_HUNDRED
            )
        object.__setattr__(self, "dqr", _check_dqr(self.dqr, "dqi"))
        if self.std_dev is not None:
            check_decimal(self.std_dev, "uncertainty.stdDev", minimum=ZERO)
        stages = _check_stages(self.stages, "stages", figures[HEADLINE_METRIC])
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "secondary_sources", tuple(sorted(set(self.secondary_sources))))
        if not self.content_hash:
            object.__setattr__(self, "content_hash", _digest(self._payload()))

    def _payload(self) -> dict[str, Any]:
        return {
            "kind": "footprint",
            "productId": self.product_id,
            "id": self.footprint_id,
            "sequence": self.sequence,
            "declaredUnitOfMeasurement": self.declared_unit,
            "declaredUnitAmount": self.declared_unit_amount,
            "figures": dict(self.figures),
            "productMassPerDeclaredUnit": self.product_mass_per_declared_unit,
            "primaryDataShare": self.primary_data_share,
            "dqi": dict(self.dqr),
            "stdDev": self.std_dev,
            "stages": dict(self.stages),
            "secondaryEmissionFactorSources": list(self.secondary_sources),
        }

    @property
    def ref(self) -> Ref:
        return Ref.product(self.product_id)


@dataclass(frozen=True, slots=True)
class Factor:
    """A background (secondary) emission factor, per one ``unit``, versioned by ``sequence``.

    Used for a BOM line that has no supplier footprint (the line names it in ``factor_id``) and for
    the grid electricity of a product's own process. ``figures`` needs the three
    :data:`REQUIRED_METRICS` (write the same number three times for a plain fossil GWP factor).
    ``source`` is what PACT's ``secondaryEmissionFactorSources`` will name (e.g. ``ecoinvent
    3.10``); ``mass_per_unit`` (kg) lets a factor per piece serve a line measured in kilograms.
    """

    factor_id: str
    sequence: int
    unit: str
    figures: Mapping[str, Decimal]
    std_dev: Decimal | None = None
    dqr: Mapping[str, Decimal] = field(default_factory=dict)
    stage: str | None = None
    source: str = ""
    mass_per_unit: Decimal | None = None
    content_hash: str = ""
    publisher: str = ""
    """Who signed it (the operator's id; empty when unknown, e.g. in batch mode)."""
    version: str = ""
    """The factor record's ``version`` (empty when unknown): lineage names ``id@version``."""

    def __post_init__(self) -> None:
        _check_id(self.factor_id, "factorId")
        _check_sequence(self.sequence, "sequence")
        _check_unit(self.unit, "unit")
        object.__setattr__(self, "figures", _check_figures(self.figures, "figures"))
        if self.std_dev is not None:
            check_decimal(self.std_dev, "stdDev", minimum=ZERO)
        object.__setattr__(self, "dqr", _check_dqr(self.dqr, "dqi"))
        if self.stage is not None:
            _check_id(self.stage, "stage")
        if self.mass_per_unit is not None:
            check_decimal(self.mass_per_unit, "massPerUnit", minimum=ZERO)
        if not self.content_hash:
            object.__setattr__(self, "content_hash", _digest(self._payload()))

    def _payload(self) -> dict[str, Any]:
        return {
            "kind": "factor",
            "factorId": self.factor_id,
            "sequence": self.sequence,
            "unit": self.unit,
            "figures": dict(self.figures),
            "stdDev": self.std_dev,
            "dqi": dict(self.dqr),
            "stage": self.stage,
            "source": self.source,
            "massPerUnit": self.mass_per_unit,
        } | ({"version": self.version} if self.version else {})

    @property
    def ref(self) -> Ref:
        return Ref.factor(self.factor_id)

    @property
    def record_id(self) -> str:
        """Which factor record exactly: ``id@version`` (the id alone when no version is known).
        It is the factor's identity in lineage (``footprint_id``), so a result names the version
        it used; ``@`` cannot occur in a factor id."""
        return f"{self.factor_id}@{self.version}" if self.version else self.factor_id


@dataclass(frozen=True, slots=True)
class BomLine:
    """One line: ``quantity`` ``unit`` of ``component_id`` per declared unit of the parent.

    ``factor_id`` names the background factor to fall back on while (or if) no footprint of the
    component exists; the line is then flagged secondary.
    """

    component_id: str
    quantity: Decimal
    unit: str
    factor_id: str | None = None

    @property
    def ref(self) -> Ref:
        return Ref.product(self.component_id)

    @property
    def factor_ref(self) -> Ref | None:
        return None if self.factor_id is None else Ref.factor(self.factor_id)


@dataclass(frozen=True, slots=True)
class OwnProcess:
    """The manufacturer's own process per declared unit of the product: primary activity data.

    Emissions are ``direct_kgco2e + electricity_kwh x grid factor``. ``direct_std_dev`` is one
    standard deviation of the direct emissions if assessed; ``dqr`` rates the direct data (the
    electricity part carries the grid factor's ratings); ``stage`` is the life-cycle stage both
    parts are booked under.
    """

    direct_kgco2e: Decimal = ZERO
    electricity_kwh: Decimal = ZERO
    grid_factor_id: str | None = None
    direct_std_dev: Decimal | None = None
    dqr: Mapping[str, Decimal] = field(default_factory=dict)
    stage: str = "production"

    def __post_init__(self) -> None:
        check_decimal(self.direct_kgco2e, "ownProcess.directKgCO2e", minimum=ZERO)
        check_decimal(self.electricity_kwh, "ownProcess.electricityKWh", minimum=ZERO)
        if self.electricity_kwh > 0:
            _check_id(self.grid_factor_id, "ownProcess.gridFactorId")
        if self.direct_std_dev is not None:
            check_decimal(self.direct_std_dev, "ownProcess.directStdDev", minimum=ZERO)
        object.__setattr__(self, "dqr", _check_dqr(self.dqr, "ownProcess.dqi"))
        _check_id(self.stage, "ownProcess.stage")

    @property
    def grid_ref(self) -> Ref | None:
        if self.grid_factor_id is None or not self.electricity_kwh > 0:
            return None
        return Ref.factor(self.grid_factor_id)


_NO_OWN_PROCESS = OwnProcess()


@dataclass(frozen=True, slots=True)
class Bom:
    """A manufacturer's bill of materials for one product, revision ``revision`` (monotonic).

    The roll-up of the product is expressed per its declared unit (``declared_unit_amount`` x
    ``declared_unit``); ``product_mass_per_declared_unit`` (kg) lets parents measure it by mass.
    """

    product_id: str
    revision: int
    components: tuple[BomLine, ...] = ()
    own: OwnProcess = _NO_OWN_PROCESS
    declared_unit: str = "piece"
    declared_unit_amount: Decimal = Decimal(1)
    product_mass_per_declared_unit: Decimal | None = None
    owner: str = ""
    """The manufacturer whose product this is (the BOM's ``owner``; empty when unknown): its
    rolled-up result belongs to it, and no other company's declared footprint replaces it."""

    def __post_init__(self) -> None:
        _check_id(self.product_id, "productId")
        _check_sequence(self.revision, "revision")
        _check_unit(self.declared_unit, "declaredUnitOfMeasurement")
        check_decimal(self.declared_unit_amount, "declaredUnitAmount", positive=True)
        if self.product_mass_per_declared_unit is not None:
            check_decimal(
                self.product_mass_per_declared_unit, "productMassPerDeclaredUnit", minimum=ZERO
            )
        object.__setattr__(self, "components", tuple(self.components))
        for i, line in enumerate(self.components):
            path = f"components[{i}]"
            if not isinstance(line, BomLine):
                raise RollupError(f"'{path}' must be a BomLine (got {line!r})", path=path)
            _check_id(line.component_id, f"{path}.componentId")
            check_decimal(line.quantity, f"{path}.quantity", positive=True)
            _check_unit(line.unit, f"{path}.unit")
            if line.factor_id is not None:
                _check_id(line.factor_id, f"{path}.factorId")
        if not isinstance(self.own, OwnProcess):
            raise RollupError(
                f"'ownProcess' must be an OwnProcess (got {self.own!r})", path="ownProcess"
            )

    @property
    def ref(self) -> Ref:
        return Ref.product(self.product_id)

    @property
    def refs(self) -> frozenset[Ref]:
        """Everything this BOM subscribes to: component products, fallback factors, the grid."""
        refs: set[Ref] = set()
        for line in self.components:
            refs.add(line.ref)
            if line.factor_ref is not None:
                refs.add(line.factor_ref)
        if self.own.grid_ref is not None:
            refs.add(self.own.grid_ref)
        return frozenset(refs)
