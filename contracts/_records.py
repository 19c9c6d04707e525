"""Our own records: bill of materials, emission factor, supplier key, roll-up lineage, DLQ
rejection, and the gateway's decision/approval/audit records.

Rules Avro cannot express (quantities > 0, known units, no duplicate component lines, a
component names a product or a factor, key validity windows) live here; every violation carries
the field path as written on the wire (``components[2].quantity``).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pcf_exchange.contracts._footprint import (
    CountryCode,
    DataQualityIndicators,
    PilotCategory,
    ProductFootprint,
    SubdivisionCode,
    Uncertainty,
    mass_warnings,
)
from pcf_exchange.contracts._namespace import NAMESPACE_RE, in_namespace
from pcf_exchange.contracts._types import (
    MAX_ID,
    MAX_LIST,
    AnyDecimal,
    Base64Bytes,
    FactorId,
    FieldPath,
    HexSha256,
    IdText,
    Name,
    NonEmptyText,
    NonNegDecimal,
    PercentDecimal,
    PositiveDecimal,
    Record,
    Text,
    UnitName,
    Urn,
    UtcDateTime,
    Uuid,
    format_datetime,
    format_decimal,
    pattern_str,
    unique_items,
)
from pcf_exchange.contracts._validate import HasWarnings, Titled, field_rules, model_rules
from pcf_exchange.contracts.errors import PcfError, ValidationFailed, Violation

__all__ = [
    "MAX_ORIGINAL_BYTES",
    "ActivityLine",
    "ApprovalDecision",
    "ApprovalOutcome",
    "ApprovalRequest",
    "AuditCheckpoint",
    "AuditEntry",
    "BillOfMaterials",
    "BomComponent",
    "Completeness",
    "DeclaredUnit",
    "Destination",
    "DestinationType",
    "EmissionFactor",
    "Facility",
    "FactorCoverage",
    "FactorReference",
    "FieldAction",
    "FieldActionKind",
    "LegalMechanism",
    "LineageInput",
    "MissingComponent",
    "OwnEmissions",
    "ProcessEmissions",
    "ProductInfo",
    "RecordRef",
    "Rejection",
    "RejectionViolation",
    "RolledUpFootprint",
    "SignerRole",
    "SupplierKey",
    "TransferDecision",
    "TransferOutcome",
]

MAX_ORIGINAL_BYTES: Final = 64 * 1024
"""A DLQ record keeps at most this many bytes of the rejected message."""

SequenceNo = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
Count = Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]


def _v(path: str, code: str, message: str, got: Any = ...) -> Violation:
    return Violation.of(path, code, message, got)


# --------------------------------------------------------------------------------------------
# Bill of materials


class DeclaredUnit(Record, Titled):
    """``amount`` x ``unit``: what one footprint value refers to (e.g. 1 kilowatt hour)."""

    json_title: ClassVar[str] = "DeclaredUnit"
    amount: PositiveDecimal
    unit: UnitName


class BomComponent(Record, Titled):
    """One input per declared unit of the product: a supplier footprint and/or a background factor.

    With both ``productId`` and ``factorId``, the factor is the secondary-data fallback used
    while no supplier footprint for the product is available.
    """

    json_title: ClassVar[str] = "BomComponent"
    product_id: Urn | None = None
    factor_id: FactorId | None = None
    quantity: PositiveDecimal
    unit: UnitName
    description: Name | None = None

    @model_validator(mode="after")
    def _reference(self) -> BomComponent:
        if self.product_id is None and self.factor_id is None:
            raise model_rules(
                [
                    _v(
                        "",
                        "required_one_of",
                        "must name a productId (supplier footprint) or a factorId",
                    )
                ]
            )
        return self


class ActivityLine(Record, Titled):
    """Another activity of the product's own process, e.g. natural gas burnt per declared unit."""

    json_title: ClassVar[str] = "ActivityLine"
    factor_id: FactorId
    quantity: PositiveDecimal
    unit: UnitName
    description: Name | None = None


class ProcessEmissions(Record, Titled):
    """The product's own (gate-to-gate) emissions per declared unit."""

    json_title: ClassVar[str] = "ProcessEmissions"
    direct_kg_co2e: NonNegDecimal | None = Field(None, alias="directKgCO2e")
    electricity_k_wh: NonNegDecimal | None = Field(None, alias="electricityKWh")
    electricity_factor_id: FactorId | None = None
    other_activities: Annotated[tuple[ActivityLine, ...], Field(max_length=1_000)] | None = None

    @model_validator(mode="after")
    def _electricity(self) -> ProcessEmissions:
        if (
            self.electricity_k_wh is not None
            and self.electricity_k_wh > 0
            and self.electricity_factor_id is None
        ):
            raise model_rules(
                [
                    _v(
                        "electricityFactorId",
                        "required_if",
                        "is required when electricityKWh is given (which grid factor applies?)",
                    )
                ]
            )
        if self.electricity_factor_id is not None and self.electricity_k_wh is None:
            raise model_rules(
                [
                    _v(
                        "electricityKWh",
                        "required_if",
                        "is required when electricityFactorId is given",
                    )
                ]
            )
        return self


class Facility(Record, Titled):
    """Where the product is made. Location plus volume plus energy can raise a record's data
    grade (regulation.md §6): the gateway classifies these fields, the roll-up only carries them."""

    json_title: ClassVar[str] = "Facility"
    name: Name | None = None
    address: Text | None = None
    city: Name | None = None
    country_subdivision: SubdivisionCode | None = None
    """ISO 3166-2, e.g. ``CN-FJ``."""
    annual_production_volume: NonNegDecimal | None = None
    """Declared units per year."""
    annual_energy_use_kwh: NonNegDecimal | None = Field(None, alias="annualEnergyUseKWh")


class ProductInfo(Record, Titled):
    """What the roll-up needs to issue the product's PACT v3 footprint: who makes it, what it is,
    where, and for which reference period."""

    json_title: ClassVar[str] = "ProductInfo"
    company_name: NonEmptyText
    company_ids: Annotated[tuple[Urn, ...], Field(min_length=1, max_length=MAX_LIST)]
    product_description: Text
    product_name_company: NonEmptyText
    product_classifications: Annotated[tuple[Urn, ...], Field(max_length=MAX_LIST)] | None = None
    geography_country: CountryCode | None = None
    geography_country_subdivision: SubdivisionCode | None = None
    reference_period_start: UtcDateTime
    reference_period_end: UtcDateTime
    pilot_category: PilotCategory | None = None
    facility: Facility | None = None

    @model_validator(mode="after")
    def _period_and_geography(self) -> ProductInfo:
        problems = []
        if not self.reference_period_start < self.reference_period_end:
            problems.append(
                _v(
                    "referencePeriodEnd",
                    "period_order",
                    "must be after referencePeriodStart "
                    f"({format_datetime(self.reference_period_start)})",
                    format_datetime(self.reference_period_end),
                )
            )
        if self.geography_country is not None and self.geography_country_subdivision is not None:
            problems.append(
                _v(
                    "geographyCountrySubdivision",
                    "geography_one_of",
                    "must not be given together with geographyCountry: a footprint names at "
                    "most one geography",
                    self.geography_country_subdivision,
                )
            )
        if problems:
            raise model_rules(problems)
        return self


class BillOfMaterials(Record, Titled, HasWarnings):
    """What one declared unit of a product is made of, and its own process emissions."""

    json_title: ClassVar[str] = "BillOfMaterials"
    product_id: Urn
    product_name: Name | None = None
    owner: IdText | None = None
    """The manufacturer that declares this BOM (its supplier id on the exchange)."""
    declared_unit: DeclaredUnit
    product_mass_per_declared_unit: NonNegDecimal | None = None
    components: Annotated[tuple[BomComponent, ...], Field(max_length=MAX_LIST)] = ()
    process_emissions: ProcessEmissions | None = None
    allocation_note: Text | None = None
    product_info: ProductInfo | None = None
    """Company, description, geography and reference period of the rolled-up footprint."""
    revision: SequenceNo = 0
    """Monotonic per product; a BOM with a revision at or below the stored one is stale."""

    @field_validator("components")
    @classmethod
    def _lines(
        cls, components: tuple[BomComponent, ...], info: ValidationInfo
    ) -> tuple[BomComponent, ...]:
        problems = []
        own = info.data.get("product_id")
        by_product: dict[str, int] = {}
        by_factor: dict[str, int] = {}
        for i, line in enumerate(components):
            if line.product_id is not None:
                if own is not None and line.product_id == own:
                    problems.append(
                        _v(
                            f"components[{i}].productId",
                            "self_reference",
                            "must not be the product itself (a product cannot contain itself)",
                            line.product_id,
                        )
                    )
                first = by_product.setdefault(line.product_id, i)
            else:
                first = by_factor.setdefault(line.factor_id or "", i)
            if first != i:
                problems.append(
                    _v(
                        f"components[{i}]",
                        "duplicate_component",
                        f"repeats components[{first}] ({line.product_id or line.factor_id}); "
                        "merge the quantities into one line",
                    )
                )
        if problems:
            raise field_rules(problems)
        return components

    def warnings(self) -> list[Violation]:
        return mass_warnings(
            self.declared_unit.amount, self.declared_unit.unit, self.product_mass_per_declared_unit
        )

    @model_validator(mode="after")
    def _not_empty(self) -> BillOfMaterials:
        if not self.components and self.process_emissions is None:
            raise model_rules(
                [
                    _v(
                        "components",
                        "min_items",
                        "must list at least one component, or give processEmissions",
                    )
                ]
            )
        return self


# --------------------------------------------------------------------------------------------
# Emission factor, supplier key


_PUBLISHED_RE: Final = re.compile(r"[0-9]{4}(?:-[0-9]{2}(?:-[0-9]{2})?)?")
_HTTP_RE: Final = re.compile(r"https?://\S+")


class FactorReference(Record, Titled):
    """Where a factor's figure was published, so anyone can check it: who published which
    document, when, where to read it, and the figure exactly as the document prints it."""

    json_title: ClassVar[str] = "FactorReference"
    publisher: Name
    """The issuing body, e.g. ``"Ministry of Ecology and Environment; National Bureau of
    Statistics"``."""
    title: Name
    """The document's title (announcement, guideline, table), as published."""
    url: Annotated[
        str, pattern_str(_HTTP_RE, "url", 'must be an http(s) URL such as "https://x.org/a"', 2048)
    ]
    published: Annotated[
        str,
        pattern_str(
            _PUBLISHED_RE, "date", 'must be a date "YYYY-MM-DD" (or "YYYY-MM", "YYYY")', 10
        ),
    ]
    """Publication date of the document (``YYYY-MM-DD``; ``YYYY-MM`` or ``YYYY`` when the
    document gives no day)."""
    as_published: Text | None = None
    """The figure as printed, with its unit (e.g. ``"74 100 kg CO2/TJ"``) when the factor's
    ``value`` is that figure converted to the factor's unit."""

    @field_validator("published")
    @classmethod
    def _real_date(cls, value: str) -> str:
        year, month, day = [*value.split("-"), "01", "01"][:3]
        try:
            date(int(year), int(month), int(day))
        except ValueError:
            raise field_rules(
                [_v("published", "date", "is not a calendar date (YYYY-MM-DD)", value)]
            ) from None
        return value


FactorCoverage = Literal["total", "split"]
"""What a factor's figures cover: ``total`` (one kgCO2e value, nothing said of its origin) or
``split`` (fossil, biogenic non-CO2 and land-use change given separately)."""

_SPLIT_FIELDS: Final = (
    "fossilGhgEmissions",
    "biogenicNonCO2Emissions",
    "landUseChangeGhgEmissions",
)


class EmissionFactor(Record, Titled, HasWarnings):
    """A background (secondary-data) factor: kgCO2e per one ``unit`` of the activity.

    A factor is identified by ``factorId`` and versioned by ``version``: a new version of a
    factor is a new record under the same id on ``pcf.factors`` (kept forever), which supersedes
    the older ones for new roll-ups while they stay readable (``pcfx factors history ID``);
    roll-up lineage names the id *and* the version it used.

    Metadata that makes the number checkable: ``reference`` (publisher, document, URL, date),
    ``geography``, ``referenceYear``, ``dqr``, ``uncertainty``. What the figure covers: either
    ``value`` alone (:attr:`coverage` ``total``) or ``value`` split into ``fossilGhgEmissions``,
    ``biogenicNonCO2Emissions`` and ``landUseChangeGhgEmissions`` (``split``: all three, adding up
    exactly to ``value``). How a ``total`` factor becomes a roll-up input (counted as fossil, by a
    flagged assumption) is :func:`streams.adapt.core_factor`'s business, not the record's.
    Records written before the metadata existed (schema v1/v2) still read: every new field is
    optional.
    """

    json_title: ClassVar[str] = "EmissionFactor"
    factor_id: FactorId
    name: Name
    unit: UnitName
    value: AnyDecimal
    """kgCO2e per unit (negative for credits, e.g. avoided burden of recycling): PACT's
    ``pcfExcludingBiogenicUptake`` of one ``unit``."""
    geography: Annotated[str, Field(min_length=1, max_length=100, strict=True)] | None = None
    source: Name
    """Short source label (named in PACT ``secondaryEmissionFactorSources``); the checkable
    citation is ``reference``."""
    version: Name
    dqr: DataQualityIndicators | None = None
    uncertainty: Uncertainty | None = None
    fossil_carbon_content: NonNegDecimal | None = None
    """kg fossil carbon contained in one ``unit`` (PACT ``fossilCarbonContent``), if stated;
    0 for electricity and for carbon-free materials such as metals. Unstated is not zero."""
    biogenic_carbon_content: NonNegDecimal | None = None
    """kg biogenic carbon contained in one ``unit`` (PACT ``biogenicCarbonContent``), if stated."""
    reference: FactorReference | None = None
    """The published source of the figure (required by ``pcfx factors import``)."""
    reference_year: Annotated[StrictInt, Field(ge=1900, le=2100)] | None = None
    """The year the figure describes (e.g. 2023 for MEE's 2023 grid factor, published 2025)."""
    fossil_ghg_emissions: AnyDecimal | None = None
    """kgCO2e of fossil origin per unit (``split`` coverage)."""
    biogenic_non_co2_emissions: NonNegDecimal | None = Field(
        default=None, alias="biogenicNonCO2Emissions"
    )
    """kgCO2e of biogenic CH4/N2O per unit (``split`` coverage)."""
    land_use_change_ghg_emissions: NonNegDecimal | None = None
    """kgCO2e from land-use change per unit (``split`` coverage)."""

    @property
    def coverage(self) -> FactorCoverage:
        """``split`` when the fossil / biogenic / land-use figures are given, else ``total``."""
        return "split" if self.fossil_ghg_emissions is not None else "total"

    @model_validator(mode="after")
    def _split(self) -> EmissionFactor:
        parts = (
            self.fossil_ghg_emissions,
            self.biogenic_non_co2_emissions,
            self.land_use_change_ghg_emissions,
        )
        given = [name for name, part in zip(_SPLIT_FIELDS, parts, strict=True) if part is not None]
        if given and len(given) != len(parts):
            absent = [name for name in _SPLIT_FIELDS if name not in given]
            raise model_rules(
                [
                    _v(
                        absent[0],
                        "split_incomplete",
                        "is required when " + ", ".join(given) + " is given (a split gives "
                        "fossilGhgEmissions, biogenicNonCO2Emissions and "
                        "landUseChangeGhgEmissions, 0 where there is none)",
                    )
                ]
            )
        if given:
            total = sum((p for p in parts if p is not None), Decimal(0))
            if total != self.value:
                raise model_rules(
                    [
                        _v(
                            "value",
                            "split_sum",
                            "must equal fossilGhgEmissions + biogenicNonCO2Emissions + "
                            f"landUseChangeGhgEmissions ({format_decimal(total)})",
                            format_decimal(self.value),
                        )
                    ]
                )
        return self

    def warnings(self) -> list[Violation]:
        if self.uncertainty is not None:
            return self.uncertainty.interval_warnings("uncertainty", self.value, "value")
        return []


class SignerRole(StrEnum):
    """What a registered key may sign (a field of :class:`SupplierKey`).

    An older reader that meets a role it does not know reads ``company``, the least privileged.
    """

    COMPANY = "company"
    """A supplier or manufacturer: footprints and BOMs for products in its namespaces."""
    OFFICER = "officer"
    """A compliance officer: approvals of held transfers."""
    SERVICE = "service"
    """One of the exchange's own services (e.g. the streams signing what they publish)."""


ProductNamespace = Annotated[
    str,
    pattern_str(
        NAMESPACE_RE,
        "namespace",
        'must be a product-id URN prefix such as "urn:pact:acme.cn" (no spaces)',
        MAX_ID,
    ),
]
"""A product-id URN prefix: see :func:`contracts.keyring.in_namespace` for what it covers."""


class SupplierKey(Record, Titled):
    """An Ed25519 public key the operator registered for a supplier (topic ``pcf.keys``).

    ``namespaces`` are the product-id URN prefixes the key's owner may declare footprints and
    BOMs for (:meth:`owns`); ``role`` says what else it may sign. A newer registration of the
    same (supplier, key id) replaces both.
    """

    json_title: ClassVar[str] = "SupplierKey"
    supplier_id: IdText
    key_id: IdText
    algorithm: Literal["Ed25519"] = "Ed25519"
    public_key: Base64Bytes
    """32 raw bytes (RFC 8032); base64 in JSON."""
    valid_from: UtcDateTime
    valid_until: UtcDateTime | None = None
    revoked_at: UtcDateTime | None = None
    registered_by: IdText
    namespaces: Annotated[
        tuple[ProductNamespace, ...], Field(max_length=1_000), AfterValidator(unique_items)
    ] = ()
    """Product-id URN prefixes the supplier may declare (empty: none)."""
    role: SignerRole = SignerRole.COMPANY

    def owns(self, product_id: str) -> bool:
        """Whether *product_id* is in one of :attr:`namespaces` (URN boundaries, see
        :func:`contracts.keyring.in_namespace`)."""
        return any(in_namespace(product_id, ns) for ns in self.namespaces)

    @field_validator("public_key")
    @classmethod
    def _ed25519(cls, value: bytes) -> bytes:
        if len(value) != 32:
            raise field_rules(
                [
                    _v(
                        "publicKey",
                        "key_length",
                        "must be a raw Ed25519 public key of 32 bytes",
                        f"{len(value)} bytes",
                    )
                ]
            )
        try:
            Ed25519PublicKey.from_public_bytes(value)
        except ValueError:
            raise field_rules(
                [_v("publicKey", "key_invalid", "is not a valid Ed25519 public key")]
            ) from None
        return value

    @field_validator("valid_until")
    @classmethod
    def _window(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("valid_from")
        if until is not None and start is not None and not start < until:
            raise field_rules(
                [
                    _v(
                        "validUntil",
                        "period_order",
                        f"must be after validFrom ({format_datetime(start)})",
                        format_datetime(until),
                    )
                ]
            )
        return until

    def usable_at(self, moment: datetime) -> bool:
        """Whether a signature made at *moment* may be accepted under this key."""
        if moment < self.valid_from:
            return False
        if self.valid_until is not None and moment >= self.valid_until:
            return False
        return self.revoked_at is None or moment < self.revoked_at


# --------------------------------------------------------------------------------------------
# Roll-up lineage (topic pcf.products)


class LineageInput(Record, Titled):
    """One input of a roll-up: which record was used, exactly, and what it contributed."""

    json_title: ClassVar[str] = "LineageInput"
    component_index: Count
    """Index of the BOM line (``components[i]``) this input fulfils."""
    kind: Literal["footprint", "factor"]
    product_id: Urn | None = None
    footprint_id: Uuid | None = None
    factor_id: FactorId | None = None
    factor_version: Name | None = None
    supplier_id: IdText | None = None
    sequence: SequenceNo | None = None
    content_hash: HexSha256
    """sha256 of the input record's signed canonical bytes (:func:`contracts.content_hash`)."""
    quantity: PositiveDecimal
    unit: UnitName
    contribution_kg_co2e: AnyDecimal = Field(alias="contributionKgCO2e")

    @model_validator(mode="after")
    def _refs(self) -> LineageInput:
        if self.kind == "footprint" and (self.footprint_id is None or self.product_id is None):
            raise model_rules(
                [
                    _v(
                        "footprintId",
                        "required_if",
                        'footprintId and productId are required when kind is "footprint"',
                    )
                ]
            )
        if self.kind == "factor" and self.factor_id is None:
            raise model_rules([_v("factorId", "required_if", 'is required when kind is "factor"')])
        return self


class OwnEmissions(Record, Titled):
    """The product's own process emissions per declared unit, as computed."""

    json_title: ClassVar[str] = "OwnEmissions"
    direct_kg_co2e: AnyDecimal = Field(alias="directKgCO2e")
    electricity_kg_co2e: AnyDecimal = Field(alias="electricityKgCO2e")
    other_kg_co2e: AnyDecimal = Field(alias="otherKgCO2e")


class MissingComponent(Record, Titled):
    json_title: ClassVar[str] = "MissingComponent"
    component_index: Count
    product_id: Urn | None = None
    factor_id: FactorId | None = None
    reason: Literal["no_footprint", "no_factor", "unit_mismatch", "expired", "cycle", "other"]
    detail: Text | None = None


class Completeness(Record, Titled):
    json_title: ClassVar[str] = "Completeness"
    components_total: Count
    components_resolved: Count
    components_on_fallback: Count = 0
    """Resolved through the background factor because no supplier footprint was available."""
    coverage_percent: PercentDecimal
    """Share of BOM lines resolved (0..100)."""
    complete: StrictBool


class RolledUpFootprint(Record, Titled):
    """A product's footprint rolled up through its BOM, with the lineage that produced it."""

    json_title: ClassVar[str] = "RolledUpFootprint"
    product_id: Urn
    owner: IdText | None = None
    bom_revision: SequenceNo
    sequence: SequenceNo
    """Monotonic per product: consumers keep the highest."""
    declared_unit: DeclaredUnit
    pcf_excluding_biogenic_uptake: AnyDecimal
    """kgCO2e per declared unit: own emissions + sum of input contributions."""
    own_emissions: OwnEmissions
    inputs: Annotated[tuple[LineageInput, ...], Field(max_length=MAX_LIST)]
    completeness: Completeness
    missing_components: Annotated[tuple[MissingComponent, ...], Field(max_length=MAX_LIST)] = ()
    primary_data_share: PercentDecimal | None = None
    dqi: DataQualityIndicators | None = None
    uncertainty: Uncertainty | None = None
    footprint: ProductFootprint | None = None
    """The PACT v3 record derived from this roll-up, when one was issued."""
    facility: Facility | None = None
    """The manufacturing site from the BOM's productInfo (for the gateway's classification)."""
    method: Name
    """Calculation method, e.g. ``"pcfx-rollup/attributional"``."""
    engine_version: Name
    computed_at: UtcDateTime
    assumptions: Annotated[tuple[Text, ...], Field(max_length=MAX_LIST)] = ()
    """Documented assumptions the figures rest on, here or upstream, e.g. a background factor
    that gave only a total, counted as fossil (see :func:`streams.adapt.core_factor`)."""
    footprint_withheld: Text | None = None
    """Why no PACT ``footprint`` was issued for this roll-up (``None`` when one was)."""


# --------------------------------------------------------------------------------------------
# DLQ


class RejectionViolation(Record, Titled):
    json_title: ClassVar[str] = "RejectionViolation"
    path: Annotated[str, Field(max_length=1_000, strict=True)]
    code: Annotated[str, Field(max_length=100, strict=True)]
    message: Annotated[str, Field(max_length=2_000, strict=True)]
    got: Annotated[str, Field(max_length=200, strict=True)] | None = None


class Rejection(Record, Titled):
    """A record the streams refused (topic ``pcf.rejected``): where it came from and why."""

    json_title: ClassVar[str] = "Rejection"
    source_topic: Name
    partition: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]
    offset: SequenceNo
    key: Base64Bytes | None = None
    error_code: Annotated[str, Field(min_length=1, max_length=100, strict=True)]
    """:attr:`PcfError.code`, e.g. ``validation``, ``serde``, ``trust``."""
    reason: Annotated[str, Field(max_length=100, strict=True)] | None = None
    """Finer reason, e.g. the TrustError reason ``bad_signature``."""
    field_path: Annotated[str, Field(max_length=1_000, strict=True)] | None = None
    """Path of the first violation, when the error has one."""
    message: Annotated[str, Field(max_length=20_000, strict=True)]
    violations: Annotated[tuple[RejectionViolation, ...], Field(max_length=1_000)] = ()
    original: Base64Bytes
    """The rejected message value, cut to :data:`MAX_ORIGINAL_BYTES`."""
    original_size: SequenceNo
    truncated: StrictBool
    rejected_at: UtcDateTime
    processor: Name | None = None

    @field_validator("original")
    @classmethod
    def _bounded(cls, value: bytes) -> bytes:
        if len(value) > MAX_ORIGINAL_BYTES:
            raise field_rules(
                [
                    _v(
                        "original",
                        "max_length",
                        f"must be at most {MAX_ORIGINAL_BYTES} bytes",
                        f"{len(value)} bytes",
                    )
                ]
            )
        return value

    @classmethod
    def of(
        cls,
        error: PcfError,
        *,
        source_topic: str,
        partition: int,
        offset: int,
        original: bytes,
        rejected_at: datetime,
        key: bytes | None = None,
        processor: str | None = None,
    ) -> Rejection:
        """Build the DLQ record for *error*, cutting *original* to the size limit."""
        violations: tuple[Violation, ...] = (
            error.violations if isinstance(error, ValidationFailed) else ()
        )
        path = violations[0].path if violations else getattr(error, "path", None) or None
        return cls(
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key=key,
            error_code=error.code[:100],
            reason=getattr(error, "reason", None),
            field_path=path[:1_000] if path else None,
            message=error.message[:20_000],
            violations=tuple(
                RejectionViolation(
                    path=v.path[:1_000],
                    code=v.code[:100],
                    message=v.message[:2_000],
                    got=None if v.got is None else v.got[:200],
                )
                for v in violations[:1_000]
            ),
            original=original[:MAX_ORIGINAL_BYTES],
            original_size=len(original),
            truncated=len(original) > MAX_ORIGINAL_BYTES,
            rejected_at=rejected_at,
            processor=processor,
        )


# --------------------------------------------------------------------------------------------
# Gateway records (regulation.md §6.2)


class DestinationType(StrEnum):
    DOM = "DOM"
    EU = "EU"
    OTH = "OTH"


class LegalMechanism(StrEnum):
    """Legal basis of a cross-border transfer (CAC Provisions 2024, PIPL Art. 38)."""

    NONE = "NONE"
    """Domestic transfer: no export mechanism needed."""
    EXEMPT_ART3 = "EXEMPT_ART3"
    EXEMPT_DEMINIMIS = "EXEMPT_DEMINIMIS"
    FTZ_OFF_LIST = "FTZ_OFF_LIST"
    SCC = "SCC"
    CERT = "CERT"
    SEC_ASSESSMENT = "SEC_ASSESSMENT"
    UNKNOWN = "UNKNOWN"
    """Read-side fallback for a mechanism this version does not know; never written."""


class FieldActionKind(StrEnum):
    ALLOW = "ALLOW"
    ALLOW_POL = "ALLOW_POL"
    GEN = "GEN"
    PSN = "PSN"
    RED = "RED"
    ENC = "ENC"
    APR = "APR"
    BLK = "BLK"


class TransferOutcome(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    PENDING_APPROVAL = "PENDING_APPROVAL"


class ApprovalOutcome(StrEnum):
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class RecordRef(Record, Titled):
    """Which record, exactly: topic, key, footprint id, sequence and content hash."""

    json_title: ClassVar[str] = "RecordRef"
    topic: Name
    key: Name
    footprint_id: Uuid | None = None
    sequence: SequenceNo | None = None
    content_hash: HexSha256


class Destination(Record, Titled):
    json_title: ClassVar[str] = "Destination"
    type: DestinationType
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$", strict=True)]
    recipient_id: IdText
    recipient_type: Name | None = None


class FieldAction(Record, Titled):
    """What the policy did to one field for one recipient, and why."""

    json_title: ClassVar[str] = "FieldAction"
    path: FieldPath
    action: FieldActionKind
    rule_id: Name
    legal_basis: Text | None = None


class TransferDecision(Record, Titled):
    """One policy decision about one record for one recipient (topic ``gw.decisions``)."""

    json_title: ClassVar[str] = "TransferDecision"
    decision_id: Uuid
    record_ref: RecordRef
    destination: Destination
    outcome: TransferOutcome
    mechanism: LegalMechanism
    mechanism_ref: Name | None = None
    mechanism_expiry: UtcDateTime | None = None
    field_actions: Annotated[tuple[FieldAction, ...], Field(max_length=MAX_LIST)]
    policy_version: Name
    odrl_agreement_id: Name | None = None
    approval_id: Uuid | None = None
    pi_headcount_delta: Count = 0
    decided_at: UtcDateTime


class ApprovalRequest(Record, Titled):
    json_title: ClassVar[str] = "ApprovalRequest"
    approval_id: Uuid
    decision_id: Uuid
    record_ref: RecordRef
    destination: Destination
    rule_ids: Annotated[tuple[Name, ...], Field(min_length=1, max_length=1_000)]
    reason: Text
    requested_by: IdText
    requested_at: UtcDateTime
    expires_at: UtcDateTime | None = None


class ApprovalDecision(Record, Titled):
    json_title: ClassVar[str] = "ApprovalDecision"
    approval_id: Uuid
    outcome: ApprovalOutcome
    approver: IdText
    conditions: Text | None = None
    mechanism_ref: Name | None = None
    decided_at: UtcDateTime
    expires_at: UtcDateTime | None = None


class AuditEntry(Record, Titled):
    """One entry of the hash-chained audit log: ``entryHash`` covers the entry and ``prevHash``."""

    json_title: ClassVar[str] = "AuditEntry"
    seq: SequenceNo
    prev_hash: HexSha256
    """``entryHash`` of entry ``seq - 1``; 64 zeros for the first entry."""
    entry_hash: HexSha256
    record_ref: RecordRef
    decision_id: Uuid
    recipient_id: IdText
    jurisdiction: Annotated[str, Field(pattern=r"^[A-Z]{2}$", strict=True)]
    legal_mechanism: LegalMechanism
    mechanism_ref: Name | None = None
    policy_version: Name
    field_actions: Annotated[tuple[FieldAction, ...], Field(max_length=MAX_LIST)]
    approval_ref: Uuid | None = None
    time: UtcDateTime


class AuditCheckpoint(Record, Titled):
    """A signed Merkle root over the first ``treeSize`` audit entries (RFC 6962 style)."""

    json_title: ClassVar[str] = "AuditCheckpoint"
    tree_size: SequenceNo
    root_hash: HexSha256
    prev_root_hash: HexSha256 | None = None
    signature: Base64Bytes
    key_id: IdText
    issued_at: UtcDateTime
