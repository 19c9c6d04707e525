"""Projection of a PACT v3 footprint to PACT v2.3 JSON, for partners still on v2 (until 2026).

v2 cannot hold everything v3 does: :data:`V2_LOSSES` says, field by field, what is dropped or
approximated, and :func:`to_pact_v2_json` returns the losses that apply to one record. When a
field v2 requires cannot be filled honestly the projection refuses with :class:`ValidationFailed`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from pcf_exchange.contracts._footprint import PCFX_EXTENSION_SCHEMA, ProductFootprint
from pcf_exchange.contracts._pact import to_pact_json
from pcf_exchange.contracts.errors import ValidationFailed, Violation

__all__ = ["V2_LOSSES", "V2_SPEC_VERSION", "to_pact_v2_json"]

V2_SPEC_VERSION: Final = "2.3.0"

V2_LOSSES: Final[dict[str, str]] = {
    "version": "v2 requires a version number; v3 footprints are immutable, so it is always 1",
    "productCategoryCpc": "v2 requires a UN CPC code: taken from a "
    "urn:pact:productclassification:un-cpc:<code> classification or the caller; refused if neither",
    "pcf.declaredUnit": "v2 has no piece, hour or megabit second: such footprints are refused",
    "pcf.pCfExcludingBiogenic": "v2 requires >= 0: negative pcfExcludingBiogenicUptake is refused",
    "pcf.characterizationFactors": "deprecated v2 field filled from ipccCharacterizationFactors "
    "(AR6 if listed, else AR5)",
    "pcf.crossSectoralStandardsUsed": "deprecated v2 enum filled from crossSectoralStandards where "
    "a value maps (ISO14067, GHGP-Product, ISO14040-44); refused if none maps",
    "pcf.crossSectoralStandards": "values outside the v2 enum (e.g. PAS2050) are dropped",
    "pcf.biogenicCarbonContent": "required in v2: refused when the v3 record leaves it undefined",
    "pcf.boundaryProcessesDescription": "required in v2: empty string when undefined in v3",
    "pcf.exemptedEmissionsDescription": "required in v2: empty string when undefined in v3",
    "pcf.packagingEmissionsIncluded": "required in v2: refused when undefined in v3",
    "pcf.exemptedEmissionsPercent": "a JSON number in v2 (binary float): "
    "decimal digits beyond ~15 are lost",
    "pcf.primaryDataShare": "a JSON number in v2 (binary float)",
    "pcf.dqi": "dropped: v2 requires coverage/completeness/reliability ratings on a 1..3 scale "
    "that v3 does not have",
    "pcf.assurance": "from verification: kept only with a providerName; "
    "coverage kept only for 'product level'",
    "pcf.landManagementGhgEmissions": "not filled: v3 splits land management into fossil, "
    "biogenic emissions and removals that do not add up to the v2 quantity",
    "pcf.dLucGhgEmissions": "from landUseChangeGhgEmissions",
    "pcf.biogenicCarbonWithdrawal": "from biogenicCO2Uptake",
    "pcf.recycledCarbonContent": "dropped (no v2 field)",
    "pcf.landCarbonLeakage": "dropped (no v2 field)",
    "pcf.landManagementFossilGhgEmissions": "dropped (no v2 field)",
    "pcf.landManagementBiogenicCO2Emissions": "dropped (no v2 field)",
    "pcf.landManagementBiogenicCO2Removals": "dropped (no v2 field)",
    "pcf.biogenicNonCO2Emissions": "dropped (no v2 field)",
    "pcf.landAreaOccupation": "dropped (no v2 field)",
    "pcf.packagingBiogenicCarbonContent": "dropped (no v2 field)",
    "pcf.outboundLogisticsGhgEmissions": "dropped (no v2 field)",
    "pcf.ccsTechnologicalCO2CaptureIncluded": "dropped (no v2 field)",
    "pcf.ccsTechnologicalCO2Capture": "dropped (no v2 field)",
    "pcf.technologicalCO2CaptureOrigin": "dropped (no v2 field)",
    "pcf.technologicalCO2Removals": "dropped (no v2 field)",
    "pcf.ccuCarbonContent": "dropped (no v2 field)",
    "pcf.ccuCalculationApproach": "dropped (no v2 field)",
    "pcf.ccuCreditCertification": "dropped (no v2 field)",
    "extensions": "kept, including the pcf-exchange extension (v2 has Data Model Extensions too)",
}

_V2_UNITS: Final = (
    "liter",
    "kilogram",
    "cubic meter",
    "kilowatt hour",
    "megajoule",
    "ton kilometer",
    "square meter",
)
_V2_STANDARDS: Final = (
    "ISO14067",
    "ISO14083",
    "ISO14040-44",
    "GHGP-Product",
    "PEF",
    "PACT-1.0",
    "PACT-2.0",
    "PACT-3.0",
)
_STANDARDS_USED: Final = {
    "GHGP-Product": "GHG Protocol Product standard",
    "ISO14067": "ISO Standard 14067",
    "ISO14040-44": "ISO Standard 14044",
}
_DROPPED: Final = tuple(
    k[4:] for k, v in V2_LOSSES.items() if v.startswith("dropped (no v2 field)")
)
_CPC_PREFIX: Final = "urn:pact:productclassification:un-cpc:"


def _number(text: str) -> float | int:
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() and "." not in text else float(value)


def to_pact_v2_json(
    footprint: ProductFootprint, *, product_category_cpc: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """PACT v2.3 JSON of *footprint* and the losses (``"path: note"``) that apply to it.

    Raises :class:`ValidationFailed` when v2 requires a field the v3 record cannot fill.
    """
    v3 = to_pact_json(footprint)
    pcf3: dict[str, Any] = v3["pcf"]
    problems: list[Violation] = []
    losses: list[str] = []

    cpc = product_category_cpc
    if cpc is None:
        for urn in footprint.product_classifications or ():
            if urn.lower().startswith(_CPC_PREFIX):
                cpc = urn[len(_CPC_PREFIX) :]
                break
    if not cpc:
        problems.append(
            Violation("productCategoryCpc", "v2_required", V2_LOSSES["productCategoryCpc"])
        )

    unit = pcf3["declaredUnitOfMeasurement"]
    if unit not in _V2_UNITS:
        problems.append(
            Violation(
                "pcf.declaredUnitOfMeasurement", "v2_unit", V2_LOSSES["pcf.declaredUnit"], unit
            )
        )
    if footprint.pcf.pcf_excluding_biogenic_uptake < 0:
        problems.append(
            Violation(
                "pcf.pcfExcludingBiogenicUptake",
                "v2_range",
                V2_LOSSES["pcf.pCfExcludingBiogenic"],
                pcf3["pcfExcludingBiogenicUptake"],
            )
        )
    used = sorted(
        {_STANDARDS_USED[s] for s in footprint.pcf.cross_sectoral_standards if s in _STANDARDS_USED}
    )
    if not used:
        problems.append(
            Violation(
                "pcf.crossSectoralStandards",
                "v2_required",
                V2_LOSSES["pcf.crossSectoralStandardsUsed"],
            )
        )
    standards = [s for s in footprint.pcf.cross_sectoral_standards if s in _V2_STANDARDS]
    if len(standards) != len(footprint.pcf.cross_sectoral_standards):
        losses.append("pcf.crossSectoralStandards: " + V2_LOSSES["pcf.crossSectoralStandards"])
    if not standards:
        problems.append(
            Violation("pcf.crossSectoralStandards", "v2_required", "no value is in the v2 enum")
        )
    for field in ("biogenicCarbonContent", "packagingEmissionsIncluded"):
        if field not in pcf3:
            problems.append(Violation(f"pcf.{field}", "v2_required", V2_LOSSES[f"pcf.{field}"]))
    if problems:
        raise ValidationFailed(problems, subject=f"v2 projection of footprint {footprint.id}")

    factors = list(footprint.pcf.ipcc_characterization_factors)
    pcf2: dict[str, Any] = {
        "declaredUnit": unit,
        "unitaryProductAmount": pcf3["declaredUnitAmount"],
        "productMassPerDeclaredUnit": pcf3["productMassPerDeclaredUnit"],
        "pCfExcludingBiogenic": pcf3["pcfExcludingBiogenicUptake"],
        "pCfIncludingBiogenic": pcf3["pcfIncludingBiogenicUptake"],
        "fossilGhgEmissions": pcf3["fossilGhgEmissions"],
        "fossilCarbonContent": pcf3["fossilCarbonContent"],
        "biogenicCarbonContent": pcf3["biogenicCarbonContent"],
        "characterizationFactors": "AR6" if "AR6" in factors or "AR5" not in factors else "AR5",
        "ipccCharacterizationFactorsSources": factors,
        "crossSectoralStandardsUsed": used,
        "crossSectoralStandards": standards,
        "boundaryProcessesDescription": pcf3.get("boundaryProcessesDescription", ""),
        "referencePeriodStart": pcf3["referencePeriodStart"],
        "referencePeriodEnd": pcf3["referencePeriodEnd"],
        "exemptedEmissionsPercent": _number(pcf3["exemptedEmissionsPercent"]),
        "exemptedEmissionsDescription": pcf3.get("exemptedEmissionsDescription", ""),
        "packagingEmissionsIncluded": pcf3["packagingEmissionsIncluded"],
    }
    copied = {
        "landUseChangeGhgEmissions": "dLucGhgEmissions",
        "biogenicCO2Uptake": "biogenicCarbonWithdrawal",
        "aircraftGhgEmissions": "aircraftGhgEmissions",
        "packagingGhgEmissions": "packagingGhgEmissions",
        "productOrSectorSpecificRules": "productOrSectorSpecificRules",
        "geographyRegionOrSubregion": "geographyRegionOrSubregion",
        "geographyCountry": "geographyCountry",
        "geographyCountrySubdivision": "geographyCountrySubdivision",
        "secondaryEmissionFactorSources": "secondaryEmissionFactorSources",
        "allocationRulesDescription": "allocationRulesDescription",
    }
    for src, dst in copied.items():
        if src in pcf3:
            pcf2[dst] = pcf3[src]
    if "primaryDataShare" in pcf3:
        pcf2["primaryDataShare"] = _number(pcf3["primaryDataShare"])
    for name in ("dqi",):
        if name in pcf3:
            losses.append(f"pcf.{name}: {V2_LOSSES['pcf.dqi']}")
    verification = pcf3.get("verification")
    if verification is not None:
        if verification.get("providerName"):
            assurance: dict[str, Any] = {
                "assurance": True,
                "providerName": verification["providerName"],
            }
            if verification.get("coverage") == "product level":
                assurance["coverage"] = "product level"
            for key in ("completedAt", "standardName", "comments"):
                if key in verification:
                    assurance[key] = verification[key]
            pcf2["assurance"] = assurance
        losses.append(f"pcf.assurance: {V2_LOSSES['pcf.assurance']}")
    for name in _DROPPED:
        if name in pcf3:
            losses.append(f"pcf.{name}: dropped (no v2 field)")
    for name in ("boundaryProcessesDescription", "exemptedEmissionsDescription"):
        if name not in pcf3:
            losses.append(f"pcf.{name}: {V2_LOSSES['pcf.' + name]}")

    v2: dict[str, Any] = {
        "id": v3["id"],
        "specVersion": V2_SPEC_VERSION,
        "version": 1,
        "created": v3["created"],
        "status": v3["status"],
        "companyName": v3["companyName"],
        "companyIds": v3["companyIds"],
        "productDescription": v3["productDescription"],
        "productIds": v3["productIds"],
        "productCategoryCpc": cpc,
        "productNameCompany": v3["productNameCompany"],
        "comment": v3.get("comment", ""),
        "pcf": pcf2,
    }
    for key in (
        "precedingPfIds",
        "validityPeriodStart",
        "validityPeriodEnd",
        "productClassifications",
        "extensions",
    ):
        if key in v3:
            v2[key] = v3[key]
    if any(e.get("dataSchema") == PCFX_EXTENSION_SCHEMA for e in v2.get("extensions", ())):
        losses.append("extensions: " + V2_LOSSES["extensions"])
    return v2, losses
