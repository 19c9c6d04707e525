"""PACT v3 ``ProductFootprint`` / ``CarbonFootprint`` as frozen pydantic records + our extension.

Field-level rules follow ``pact/v3/openapi.yaml`` (normative); rules the schema cannot express
(geography one-of, validity window, packaging/CCS consistency, unique ids) are field validators
that read fields declared before them, so they still run when an unrelated field is wrong.
Our extension (pilot category, standards, life-cycle stages, uncertainty, field labels) travels
in PACT JSON as a Data Model Extension and in Avro as the typed ``pcfx`` field.
"""

from __future__ import annotations

import functools
import math
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    AfterValidator,
    Field,
    SerializationInfo,
    StrictBool,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from pcf_exchange.contracts._types import (
    MAX_DECIMAL_CHARS,
    MAX_LIST,
    AnyDecimal,
    DecimalOneToFive,
    FieldPath,
    JsonNumber,
    Name,
    NegOrZeroDecimal,
    NonNegDecimal,
    PercentDecimal,
    PositiveDecimal,
    Record,
    SemVer,
    Text,
    Uri,
    Urn,
    UtcDateTime,
    Uuid,
    format_datetime,
    format_decimal,
    pattern_str,
    unique_items,
)
from pcf_exchange.contracts._validate import HasWarnings, Titled, field_rules, model_rules
from pcf_exchange.contracts.errors import Violation
from pcf_exchange.contracts.units import UNITS

__all__ = [
    "DECLARED_UNITS",
    "PCFX_EXTENSION_SCHEMA",
    "REGIONS",
    "CarbonFootprint",
    "DataGrade",
    "DataModelExtension",
    "DataQualityIndicators",
    "EmissionFactorSource",
    "FieldLabel",
    "PcfxExtension",
    "PersonalInfo",
    "PilotCategory",
    "ProductFootprint",
    "ProductOrSectorSpecificRule",
    "Uncertainty",
    "Verification",
]

PCFX_EXTENSION_SCHEMA: Final = (
    "https://pcf-exchange.io/schemas/pcfx-footprint/1.0.0/data-model.json"
)
"""``dataSchema`` of the Data Model Extension that carries our extension fields in PACT JSON."""

DeclaredUnit = Literal[
    "liter",
    "kilogram",
    "cubic meter",
    "kilowatt hour",
    "megajoule",
    "ton kilometer",
    "square meter",
    "piece",
    "hour",
    "megabit second",
]
DECLARED_UNITS: Final = DeclaredUnit.__args__  # type: ignore[attr-defined]

Region = Literal[
    "Africa",
    "Americas",
    "Asia",
    "Europe",
    "Oceania",
    "Australia and New Zealand",
    "Central Asia",
    "Eastern Asia",
    "Eastern Europe",
    "Latin America and the Caribbean",
    "Melanesia",
    "Micronesia",
    "Northern Africa",
    "Northern America",
    "Northern Europe",
    "Polynesia",
    "South-eastern Asia",
    "Southern Asia",
    "Southern Europe",
    "Sub-Saharan Africa",
    "Western Asia",
    "Western Europe",
]
REGIONS: Final = Region.__args__  # type: ignore[attr-defined]


SpecVersion = Annotated[
    str,
    pattern_str(
        r"[0-9]+\.[0-9]+\.[0-9]+(-[0-9]{8})?",
        "spec_version",
        'must look like "3.0.0" (major.minor.patch)',
        32,
    ),
]
CountryCode = Annotated[
    str,
    pattern_str(r"[A-Z]{2}", "country_code", 'must be an ISO 3166-1 alpha-2 code such as "CN"', 2),
]
SubdivisionCode = Annotated[
    str,
    pattern_str(
        r"[A-Z]{2}-[A-Z0-9]{1,3}",
        "subdivision_code",
        'must be an ISO 3166-2 code such as "CN-GD"',
        6,
    ),
]
IpccReport = Annotated[
    str,
    pattern_str(r"AR[0-9]+", "ipcc_report", 'must name an IPCC assessment report like "AR6"', 16),
]
StageName = Annotated[
    str,
    pattern_str(
        r"[a-z][a-z0-9_]{0,63}",
        "stage_name",
        'must be a stage name in snake_case, e.g. "raw_material_acquisition"',
        64,
    ),
]

UniqueUrns = Annotated[
    tuple[Urn, ...], Field(min_length=1, max_length=MAX_LIST), AfterValidator(unique_items)
]
UniqueNames = Annotated[
    tuple[Name, ...], Field(min_length=1, max_length=1_000), AfterValidator(unique_items)
]


def _v(path: str, code: str, message: str, got: Any = ...) -> Violation:
    return Violation.of(path, code, message, got)


def _same_at_precision(stated: Decimal, computed: Decimal) -> bool:
    """Whether *computed* rounds to *stated* at the number of decimals *stated* was given with."""
    exponent = stated.as_tuple().exponent
    if not isinstance(exponent, int):
        return False
    return computed.quantize(Decimal(1).scaleb(exponent), context=_ROOMY) == stated


_ROOMY = Context(prec=2 * MAX_DECIMAL_CHARS, rounding=ROUND_HALF_EVEN)
"""Sums and roundings of stated figures with room for every digit they may have (the default
context rounds to 28 digits, and its quantize raises ``InvalidOperation`` beyond them, on figures
the contract allows)."""


# --------------------------------------------------------------------------------------------
# PACT nested types


class DataQualityIndicators(Record, Titled):
    """PACT v3 ``DataQualityIndicators``: three DQRs, each a decimal string in 1..5."""

    json_title: ClassVar[str] = "DataQualityIndicators"
    technological_dqr: DecimalOneToFive = Field(alias="technologicalDQR")
    geographical_dqr: DecimalOneToFive = Field(alias="geographicalDQR")
    temporal_dqr: DecimalOneToFive = Field(alias="temporalDQR")


class EmissionFactorSource(Record, Titled):
    json_title: ClassVar[str] = "EmissionFactorSource"
    name: Name
    version: Name


class ProductOrSectorSpecificRule(Record, Titled, HasWarnings):
    json_title: ClassVar[str] = "ProductOrSectorSpecificRule"
    operator: Literal["PEF", "EPD International", "Other"]
    rule_names: UniqueNames
    other_operator_name: Name | None = None

    @model_validator(mode="after")
    def _other_operator(self) -> ProductOrSectorSpecificRule:
        # openapi ProductOrSectorSpecificRule.otherOperatorName: "If operator is Other, then this
        # attribute must be populated with the name of the operator."
        if self.operator == "Other" and self.other_operator_name is None:
            raise model_rules(
                [_v("otherOperatorName", "required_if", 'is required when operator is "Other"')]
            )
        return self

    def warnings(self) -> list[Violation]:
        if self.operator != "Other" and self.other_operator_name is not None:
            return [
                _v(
                    "otherOperatorName",
                    "ignored_field",
                    f'is only meaningful when operator is "Other" (operator is "{self.operator}")',
                    self.other_operator_name,
                )
            ]
        return []


class Verification(Record, Titled):
    json_title: ClassVar[str] = "Verification"
    coverage: Literal["PCF calculation model", "PCF program", "product level"] | None = None
    provider_name: Name | None = None
    """The OpenAPI text says "The non-empty name", so the empty string is refused."""
    completed_at: UtcDateTime | None = None
    standard_name: Text | None = None
    comments: Text | None = None


def _exact(value: Any, path: str, problems: list[Violation], depth: int) -> Any:
    """Extension data as plain JSON values with exact numbers (binary floats become decimals)."""
    if depth > 64:
        problems.append(
            _v(path, "json_depth", "nests arrays or objects too deeply (more than 64 levels)")
        )
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            problems.append(
                _v(
                    path,
                    "json_constant",
                    "must be a finite number (NaN and Infinity are not JSON)",
                    value,
                )
            )
            return value
        return JsonNumber(repr(value))
    if isinstance(value, Decimal) and not value.is_finite():
        problems.append(_v(path, "json_constant", "must be a finite number", str(value)))
        return value
    if value is None or isinstance(value, str | int | Decimal):
        return value
    if isinstance(value, dict):
        return {str(k): _exact(v, f"{path}.{k}", problems, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_exact(v, f"{path}[{i}]", problems, depth + 1) for i, v in enumerate(value)]
    problems.append(_v(path, "type", f"must be a JSON value (got a {type(value).__name__})"))
    return value


class DataModelExtension(Record, Titled):
    """A foreign PACT Data Model Extension, kept verbatim (``data`` is any JSON object)."""

    json_title: ClassVar[str] = "DataModelExtension"
    spec_version: SemVer
    data_schema: Uri
    documentation: Uri | None = None
    data: dict[str, Any]
    """Any JSON object (in Avro: its JSON text, numbers exact)."""

    @field_serializer("data")
    def _data_to_avro(self, value: dict[str, Any], info: SerializationInfo) -> Any:
        if info.context and info.context.get("avro"):
            from pcf_exchange.contracts._jsonio import dumps

            return dumps(value)
        return value

    @field_validator("data", mode="before")
    @classmethod
    def _data_from_avro(cls, value: Any, info: ValidationInfo) -> Any:
        # In Avro the object travels as JSON text (its schema is the extension's, not ours).
        if isinstance(value, str) and info.context and info.context.get("avro"):
            from pcf_exchange.contracts._jsonio import loads

            return loads(value, subject="extension data")
        return value

    @field_validator("data")
    @classmethod
    def _exact_numbers(cls, value: dict[str, Any]) -> dict[str, Any]:
        problems: list[Violation] = []
        result = _exact(value, "data", problems, 0)
        if problems:
            raise field_rules(problems[:20])
        return result  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# Our extension


class PilotCategory(StrEnum):
    """Product categories of China's carbon-label certification pilots."""

    LITHIUM_BATTERY = "LITHIUM_BATTERY"
    PHOTOVOLTAIC = "PHOTOVOLTAIC"
    STEEL = "STEEL"
    TEXTILES = "TEXTILES"
    ELECTRONICS = "ELECTRONICS"
    TYRES = "TYRES"
    CEMENT = "CEMENT"
    ELECTROLYTIC_ALUMINIUM = "ELECTROLYTIC_ALUMINIUM"
    UREA = "UREA"
    PHOSPHATE_FERTILISER = "PHOSPHATE_FERTILISER"
    WOOD_PRODUCTS = "WOOD_PRODUCTS"
    OTHER = "OTHER"


class DataGrade(StrEnum):
    """Data-security grade (DSL Art. 21 / MIIT): general, important, core."""

    GENERAL = "GENERAL"
    IMPORTANT = "IMPORTANT"
    CORE = "CORE"


class PersonalInfo(StrEnum):
    """Personal-information class under PIPL."""

    NONE = "NONE"
    PI = "PI"
    SENSITIVE_PI = "SENSITIVE_PI"


class FieldLabel(Record, Titled):
    """Classification of one field (regulation.md §4.4/§6.1), read by the gateway's policy."""

    json_title: ClassVar[str] = "FieldLabel"
    grade: DataGrade
    personal_info: PersonalInfo = PersonalInfo.NONE
    trade_secret: StrictBool = False
    basis: Text | None = None
    """Catalogue / FTZ list / notice id the grade rests on, when it is not GENERAL by default."""


class Uncertainty(Record, Titled):
    """Uncertainty of a value: relative standard uncertainty and/or a 95 % interval."""

    json_title: ClassVar[str] = "Uncertainty"
    relative_standard_uncertainty_percent: NonNegDecimal | None = None
    lower95: AnyDecimal | None = None
    upper95: AnyDecimal | None = None
    method: Text | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Uncertainty:
        problems = []
        lo, hi = self.lower95, self.upper95
        if self.relative_standard_uncertainty_percent is None and lo is None and hi is None:
            problems.append(
                _v(
                    "",
                    "required_one_of",
                    "must give relativeStandardUncertaintyPercent or lower95 and upper95",
                )
            )
        if (lo is None) != (hi is None):
            missing = "upper95" if hi is None else "lower95"
            problems.append(_v(missing, "required_if", "is required when the other bound is given"))
        if lo is not None and hi is not None and lo > hi:
            problems.append(_v("upper95", "range", f"must be >= lower95 ({lo})", str(hi)))
        if problems:
            raise model_rules(problems)
        return self

    def interval_warnings(self, prefix: str, value: Decimal, value_name: str) -> list[Violation]:
        lo, hi = self.lower95, self.upper95
        if lo is not None and hi is not None and not lo <= value <= hi:
            return [
                _v(
                    prefix,
                    "interval_excludes_value",
                    f"95 % interval [{lo}, {hi}] does not contain {value_name} ({value})",
                )
            ]
        return []


class PcfxExtension(Record, Titled):
    """pcf-exchange fields beyond PACT v3 (GB/T 24067 report content, gateway labels)."""

    json_title: ClassVar[str] = "pcf-exchange extension"
    pilot_category: PilotCategory | None = None
    standards: UniqueNames | None = None
    """Standards applied, as written, e.g. ``"GB/T 24067-2024"``, ``"ISO14067"``."""
    stage_breakdown: (
        Annotated[dict[StageName, AnyDecimal], Field(min_length=1, max_length=64)] | None
    ) = None
    """Life-cycle stage -> kgCO2e per declared unit (``raw_material_acquisition``, ...)."""
    uncertainty: Uncertainty | None = None
    """Uncertainty of ``pcfExcludingBiogenicUptake``."""
    field_labels: (
        Annotated[dict[FieldPath, FieldLabel], Field(min_length=1, max_length=1_000)] | None
    ) = None
    """Field path (as in PACT JSON, ``[*]`` for every item) -> classification."""


# --------------------------------------------------------------------------------------------
# CarbonFootprint


class CarbonFootprint(Record, Titled, HasWarnings):
    """PACT v3 ``CarbonFootprint``. Emissions are kgCO2e per declared unit."""

    json_title: ClassVar[str] = "CarbonFootprint"
    unknown_field_hints: ClassVar[dict[str, tuple[str, str]]] = {
        "otherOperatorName": (
            "misplaced_field",
            "belongs inside an item of productOrSectorSpecificRules, not in pcf",
        ),
        "declaredUnit": ("v2_field", "is PACT v2; v3 uses declaredUnitOfMeasurement"),
        "unitaryProductAmount": ("v2_field", "is PACT v2; v3 uses declaredUnitAmount"),
        "pCfExcludingBiogenic": ("v2_field", "is PACT v2; v3 uses pcfExcludingBiogenicUptake"),
        "pCfIncludingBiogenic": ("v2_field", "is PACT v2; v3 uses pcfIncludingBiogenicUptake"),
        "dLucGhgEmissions": ("v2_field", "is PACT v2; v3 uses landUseChangeGhgEmissions"),
        "iLucGhgEmissions": ("v2_field", "was removed in PACT v3"),
        "landManagementGhgEmissions": (
            "v2_field",
            "is PACT v2; v3 splits it into landManagementFossilGhgEmissions, "
            "landManagementBiogenicCO2Emissions and landManagementBiogenicCO2Removals",
        ),
        "otherBiogenicGhgEmissions": (
            "v2_field",
            "was removed in PACT v3 (see biogenicNonCO2Emissions)",
        ),
        "biogenicCarbonWithdrawal": ("v2_field", "is PACT v2; v3 uses biogenicCO2Uptake"),
        "biogenicCO2Withdrawal": ("v2_field", "is not a v3 field; v3 names it biogenicCO2Uptake"),
        "biogenicAccountingMethodology": ("v2_field", "was removed in PACT v3"),
        "characterizationFactors": ("v2_field", "is PACT v2; v3 uses ipccCharacterizationFactors"),
        "crossSectoralStandardsUsed": ("v2_field", "is PACT v2; v3 uses crossSectoralStandards"),
        "assurance": ("v2_field", "is PACT v2; v3 uses verification"),
        "uncertaintyAssessmentDescription": ("v2_field", "was removed in PACT v3"),
    }

    declared_unit_of_measurement: DeclaredUnit
    declared_unit_amount: PositiveDecimal
    product_mass_per_declared_unit: NonNegDecimal
    """kg of product (without packaging) per declared unit; "0" where mass is not relevant."""
    reference_period_start: UtcDateTime
    reference_period_end: UtcDateTime
    geography_region_or_subregion: Region | None = None
    geography_country: CountryCode | None = None
    geography_country_subdivision: SubdivisionCode | None = None
    boundary_processes_description: Text | None = None
    pcf_excluding_biogenic_uptake: AnyDecimal
    pcf_including_biogenic_uptake: AnyDecimal
    fossil_carbon_content: NonNegDecimal
    biogenic_carbon_content: NonNegDecimal | None = None
    recycled_carbon_content: NonNegDecimal | None = None
    fossil_ghg_emissions: NonNegDecimal
    land_use_change_ghg_emissions: NonNegDecimal | None = None
    land_carbon_leakage: NonNegDecimal | None = None
    land_management_fossil_ghg_emissions: NonNegDecimal | None = None
    land_management_biogenic_co2_emissions: NonNegDecimal | None = Field(
        None, alias="landManagementBiogenicCO2Emissions"
    )
    land_management_biogenic_co2_removals: NegOrZeroDecimal | None = Field(
        None, alias="landManagementBiogenicCO2Removals"
    )
    biogenic_co2_uptake: NegOrZeroDecimal | None = Field(None, alias="biogenicCO2Uptake")
    biogenic_non_co2_emissions: NonNegDecimal | None = Field(None, alias="biogenicNonCO2Emissions")
    land_area_occupation: NonNegDecimal | None = None
    aircraft_ghg_emissions: NonNegDecimal | None = None
    packaging_emissions_included: StrictBool | None = None
    packaging_ghg_emissions: NonNegDecimal | None = None
    packaging_biogenic_carbon_content: NonNegDecimal | None = None
    outbound_logistics_ghg_emissions: NonNegDecimal | None = None
    ccs_technological_co2_capture_included: StrictBool | None = Field(
        None, alias="ccsTechnologicalCO2CaptureIncluded"
    )
    ccs_technological_co2_capture: NegOrZeroDecimal | None = Field(
        None, alias="ccsTechnologicalCO2Capture"
    )
    technological_co2_capture_origin: Text | None = Field(
        None, alias="technologicalCO2CaptureOrigin"
    )
    technological_co2_removals: NegOrZeroDecimal | None = Field(
        None, alias="technologicalCO2Removals"
    )
    ccu_carbon_content: NonNegDecimal | None = None
    ccu_calculation_approach: Literal["Cut-off", "Credit"] | None = None
    ccu_credit_certification: Uri | None = None
    ipcc_characterization_factors: Annotated[
        tuple[IpccReport, ...], Field(min_length=1, max_length=32), AfterValidator(unique_items)
    ]
    cross_sectoral_standards: UniqueNames
    """Unknown values are accepted, as the spec demands of a host system."""
    product_or_sector_specific_rules: (
        Annotated[
            tuple[ProductOrSectorSpecificRule, ...],
            Field(min_length=1, max_length=100),
            AfterValidator(unique_items),
        ]
        | None
    ) = None
    exempted_emissions_percent: PercentDecimal
    exempted_emissions_description: Text | None = None
    allocation_rules_description: Text | None = None
    secondary_emission_factor_sources: (
        Annotated[tuple[EmissionFactorSource, ...], Field(min_length=1, max_length=1_000)] | None
    ) = None
    primary_data_share: PercentDecimal | None = None
    dqi: DataQualityIndicators | None = None
    verification: Verification | None = None

    # -- cross-field rules: each sits on the later field and reads earlier ones from info.data

    @field_validator("reference_period_end")
    @classmethod
    def _period_order(cls, end: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("reference_period_start")
        if start is not None and not start < end:
            raise field_rules(
                [
                    _v(
                        "referencePeriodEnd",
                        "period_order",
                        f"must be after referencePeriodStart ({format_datetime(start)})",
                        format_datetime(end),
                    )
                ]
            )
        return end

    @field_validator("geography_country_subdivision", "geography_country")
    @classmethod
    def _one_geography(cls, value: str | None, info: ValidationInfo) -> str | None:
        # openapi CarbonFootprint.oneOf: at most one geography field may be defined
        if value is None:
            return value
        earlier = [
            alias
            for alias, name in (
                ("geographyRegionOrSubregion", "geography_region_or_subregion"),
                ("geographyCountry", "geography_country"),
            )
            if name != info.field_name and info.data.get(name) is not None
        ]
        if earlier:
            here = (
                "geographyCountry"
                if info.field_name == "geography_country"
                else "geographyCountrySubdivision"
            )
            raise field_rules(
                [
                    _v(
                        here,
                        "geography_one_of",
                        f"must not be given together with {' and '.join(earlier)}: "
                        "a footprint names at most one geography",
                        value,
                    )
                ]
            )
        return value

    @field_validator("packaging_ghg_emissions")
    @classmethod
    def _packaging(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        if value is not None and info.data.get("packaging_emissions_included") is False:
            raise field_rules(
                [
                    _v(
                        "packagingGhgEmissions",
                        "forbidden_if",
                        "must be undefined when packagingEmissionsIncluded is false",
                        str(value),
                    )
                ]
            )
        return value

    @field_validator(
        "ccs_technological_co2_capture",
        "technological_co2_capture_origin",
        "technological_co2_removals",
    )
    @classmethod
    def _ccs(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("ccs_technological_co2_capture_included") is False:
            alias = cls.model_fields[info.field_name or ""].alias or ""
            raise field_rules(
                [
                    _v(
                        alias,
                        "forbidden_if",
                        "must be undefined when ccsTechnologicalCO2CaptureIncluded is false",
                        value if isinstance(value, str) else str(value),
                    )
                ]
            )
        return value

    def warnings(self) -> list[Violation]:
        out: list[Violation] = []
        if self.declared_unit_of_measurement == "kilogram":
            out += mass_warnings(
                self.declared_unit_amount, "kilogram", self.product_mass_per_declared_unit
            )
        uptake = self.biogenic_co2_uptake
        if uptake is not None:
            computed = _ROOMY.add(self.pcf_excluding_biogenic_uptake, uptake)
            if not _same_at_precision(self.pcf_including_biogenic_uptake, computed):
                out.append(
                    _v(
                        "pcfIncludingBiogenicUptake",
                        "sum_mismatch",
                        "should equal pcfExcludingBiogenicUptake + biogenicCO2Uptake "
                        f"= {computed} (at the precision given)",
                        str(self.pcf_including_biogenic_uptake),
                    )
                )
        if self.ccu_credit_certification is not None and self.ccu_calculation_approach != "Credit":
            out.append(
                _v(
                    "ccuCreditCertification",
                    "ignored_field",
                    'is only meaningful with ccuCalculationApproach "Credit"',
                )
            )
        for i, rule in enumerate(self.product_or_sector_specific_rules or ()):
            for w in rule.warnings():
                out.append(
                    Violation(
                        f"productOrSectorSpecificRules[{i}].{w.path}", w.code, w.message, w.got
                    )
                )
        return out


# --------------------------------------------------------------------------------------------
# ProductFootprint


def mass_warnings(amount: Decimal, unit: str, mass: Decimal | None) -> list[Violation]:
    """A mass declared unit fixes the product mass: flag a productMassPerDeclaredUnit off it."""
    from pcf_exchange.contracts.units import Dimension, convert, dimension_of

    if mass is None or unit not in UNITS or dimension_of(unit) is not Dimension.MASS:
        return []
    expected = convert(amount, unit, "kilogram")
    if mass == expected:
        return []
    return [
        _v(
            "productMassPerDeclaredUnit",
            "mass_mismatch",
            f"should be {format_decimal(expected)} kg: the declared unit is {amount} {unit}",
            format_decimal(mass),
        )
    ]


@functools.lru_cache(maxsize=1024)
def _add_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February -> 28 February
        return moment.replace(year=moment.year + years, day=28)


class ProductFootprint(Record, Titled, HasWarnings):
    """PACT v3 ``ProductFootprint`` plus our typed extension ``pcfx``.

    ``extensions`` holds *foreign* Data Model Extensions only; ours lives in ``pcfx`` and is
    written back into ``extensions`` by :func:`contracts.to_pact_json`.
    """

    json_title: ClassVar[str] = "ProductFootprint"
    unknown_field_hints: ClassVar[dict[str, tuple[str, str]]] = {
        "version": (
            "v2_field",
            "was removed in PACT v3: a changed footprint gets a new id (ADR-41)",
        ),
        "updated": ("v2_field", "was removed in PACT v3: footprints are immutable after creation"),
        "statusComment": ("v2_field", "was removed in PACT v3"),
        "productCategoryCpc": ("v2_field", "was removed in PACT v3; use productClassifications"),
    }

    id: Uuid
    spec_version: SpecVersion
    preceding_pf_ids: (
        Annotated[
            tuple[Uuid, ...], Field(min_length=1, max_length=MAX_LIST), AfterValidator(unique_items)
        ]
        | None
    ) = Field(None, alias="precedingPfIds")
    created: UtcDateTime
    status: Literal["Active", "Deprecated"]
    validity_period_start: UtcDateTime | None = None
    validity_period_end: UtcDateTime | None = None
    company_name: Name
    company_ids: UniqueUrns
    product_description: Text
    product_ids: UniqueUrns
    product_classifications: UniqueUrns | None = None
    product_name_company: Name
    comment: Text | None = None
    pcf: CarbonFootprint
    extensions: (
        Annotated[tuple[DataModelExtension, ...], Field(min_length=1, max_length=100)] | None
    ) = None
    pcfx: PcfxExtension | None = None

    @field_validator("spec_version")
    @classmethod
    def _v3(cls, value: str) -> str:
        if not value.startswith("3."):
            raise field_rules(
                [
                    _v(
                        "specVersion",
                        "spec_version",
                        'must be a PACT v3 version such as "3.0.0"; convert v2 footprints first',
                        value,
                    )
                ]
            )
        return value

    @field_validator("preceding_pf_ids")
    @classmethod
    def _not_self(
        cls, value: tuple[Any, ...] | None, info: ValidationInfo
    ) -> tuple[Any, ...] | None:
        own = info.data.get("id")
        if value is not None and own is not None and own in value:
            raise field_rules(
                [
                    _v(
                        f"precedingPfIds[{value.index(own)}]",
                        "self_reference",
                        "must not contain the footprint's own id (no footprint precedes itself)",
                        str(own),
                    )
                ]
            )
        return value

    @field_validator("validity_period_end")
    @classmethod
    def _validity_order(cls, end: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("validity_period_start")
        if end is not None and start is not None and not start < end:
            raise field_rules(
                [
                    _v(
                        "validityPeriodEnd",
                        "period_order",
                        f"must be after validityPeriodStart ({format_datetime(start)})",
                        format_datetime(end),
                    )
                ]
            )
        return end

    @field_validator("pcf")
    @classmethod
    def _validity_window(cls, pcf: CarbonFootprint, info: ValidationInfo) -> CarbonFootprint:
        # spec §validity-period: validityPeriodStart >= referencePeriodEnd and
        # validityPeriodEnd <= referencePeriodEnd + 3 years
        ref_end = pcf.reference_period_end
        start = info.data.get("validity_period_start")
        end = info.data.get("validity_period_end")
        problems = []
        if start is not None and start < ref_end:
            problems.append(
                _v(
                    "validityPeriodStart",
                    "validity_window",
                    f"must not be before pcf.referencePeriodEnd ({format_datetime(ref_end)})",
                    format_datetime(start),
                )
            )
        limit = _add_years(ref_end, 3)
        if end is not None and end > limit:
            problems.append(
                _v(
                    "validityPeriodEnd",
                    "validity_window",
                    "must be at most 3 years after pcf.referencePeriodEnd, "
                    f"i.e. <= {format_datetime(limit)}",
                    format_datetime(end),
                )
            )
        if problems:
            raise field_rules(problems)
        return pcf

    def warnings(self) -> list[Violation]:
        out = [Violation(f"pcf.{w.path}", w.code, w.message, w.got) for w in self.pcf.warnings()]
        ext = self.pcfx
        if ext is not None:
            value = self.pcf.pcf_excluding_biogenic_uptake
            if ext.uncertainty is not None:
                out += ext.uncertainty.interval_warnings(
                    "pcfx.uncertainty", value, "pcf.pcfExcludingBiogenicUptake"
                )
            if ext.stage_breakdown:
                total = functools.reduce(_ROOMY.add, ext.stage_breakdown.values(), Decimal(0))
                if not _same_at_precision(value, total):
                    out.append(
                        _v(
                            "pcfx.stageBreakdown",
                            "sum_mismatch",
                            f"stages add up to {total}, "
                            f"not pcf.pcfExcludingBiogenicUptake ({value})",
                        )
                    )
        return out

    @property
    def valid_until(self) -> datetime:
        """End of validity: ``validityPeriodEnd``, else ``referencePeriodEnd`` + 3 years."""
        return self.validity_period_end or _add_years(self.pcf.reference_period_end, 3)
