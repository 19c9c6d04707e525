"""Example records: one realistic record of each input type, as JSON a supplier or manufacturer
would send (PACT v3 field names, decimals as strings).

They are the documentation's examples and the fixtures the tests and benchmarks start from, so
they live in one place. Each function returns a fresh deep copy: change it freely.

>>> from pcf_exchange.contracts import parse_footprint
>>> parse_footprint(example_footprint()).pcf.declared_unit_of_measurement
'kilowatt hour'
"""

from __future__ import annotations

import copy
from typing import Any

from pcf_exchange.contracts._footprint import PCFX_EXTENSION_SCHEMA

__all__ = ["example_bom", "example_factor", "example_footprint"]


def example_footprint() -> dict[str, Any]:
    """A lithium-iron-phosphate cell's PACT v3 footprint (per kWh): every mandatory field, the
    usual optional ones, and the pcfx extension (life-cycle stages, uncertainty, field labels)."""
    return copy.deepcopy(_FOOTPRINT)


def example_bom() -> dict[str, Any]:
    """A 48 V pack's bill of materials (per kWh): a supplier footprint, a background factor, a
    component with both (the factor is the secondary-data fallback) and own process emissions."""
    return copy.deepcopy(_BOM)


def example_factor() -> dict[str, Any]:
    """China's 2022 national-average grid factor (MEE), with its data quality and uncertainty."""
    return copy.deepcopy(_FACTOR)


_FOOTPRINT: dict[str, Any] = {
    "id": "3f7a9c1e-5b2d-4e8f-9a6b-0c1d2e3f4a5b",
    "specVersion": "3.0.0",
    "precedingPfIds": ["0b9e3f58-2c4d-4a1b-8e7f-6a5b4c3d2e1f"],
    "created": "2025-03-01T08:00:00Z",
    "status": "Active",
    "validityPeriodStart": "2025-01-01T00:00:00Z",
    "validityPeriodEnd": "2027-12-31T00:00:00Z",
    "companyName": "宁德示例电池有限公司 (Example Cells Co.)",
    "companyIds": ["urn:pact:company:customcode:vendor-assigned:uscc-91350900MA2YXXXX0X"],
    "productDescription": "LFP prismatic cell 280 Ah, 3.2 V, cradle-to-gate",
    "productIds": ["urn:pact:example-cells.cn:product-id:LFP280", "urn:gtin:06901234567892"],
    "productClassifications": ["urn:pact:productclassification:un-cpc:46410"],
    "productNameCompany": "LFP280",
    "comment": "Primary data from the Ningde plant, 2024",
    "pcf": {
        "declaredUnitOfMeasurement": "kilowatt hour",
        "declaredUnitAmount": "1",
        "productMassPerDeclaredUnit": "5.50",
        "referencePeriodStart": "2024-01-01T00:00:00Z",
        "referencePeriodEnd": "2025-01-01T00:00:00Z",
        "geographyCountrySubdivision": "CN-FJ",
        "boundaryProcessesDescription": "Cathode, anode, electrolyte, cell assembly, formation",
        "pcfExcludingBiogenicUptake": "61.40",
        "pcfIncludingBiogenicUptake": "61.40",
        "fossilGhgEmissions": "61.10",
        "fossilCarbonContent": "0.80",
        "biogenicCarbonContent": "0",
        "biogenicCO2Uptake": "0",
        "landUseChangeGhgEmissions": "0.30",
        "aircraftGhgEmissions": "0",
        "packagingEmissionsIncluded": True,
        "packagingGhgEmissions": "0.42",
        "ccsTechnologicalCO2CaptureIncluded": False,
        "ipccCharacterizationFactors": ["AR6"],
        "crossSectoralStandards": ["ISO14067", "GHGP-Product"],
        "productOrSectorSpecificRules": [
            {
                "operator": "Other",
                "ruleNames": ["CBAM battery rules v1"],
                "otherOperatorName": "MIIT",
            }
        ],
        "exemptedEmissionsPercent": "0.5",
        "exemptedEmissionsDescription": "Office lighting",
        "allocationRulesDescription": "Mass allocation at the formation step",
        "secondaryEmissionFactorSources": [{"name": "CLCD", "version": "0.9"}],
        "primaryDataShare": "63.0",
        "dqi": {"technologicalDQR": "1.8", "geographicalDQR": "1.5", "temporalDQR": "1.2"},
        "verification": {
            "coverage": "product level",
            "providerName": "CQC",
            "completedAt": "2025-02-15T00:00:00Z",
            "standardName": "GB/T 24067-2024",
        },
    },
    "extensions": [
        {
            "specVersion": "2.0.0",
            "dataSchema": PCFX_EXTENSION_SCHEMA,
            "data": {
                "pilotCategory": "LITHIUM_BATTERY",
                "standards": ["GB/T 24067-2024", "ISO14067"],
                "stageBreakdown": {"raw_material_acquisition": "48.20", "production": "13.20"},
                "uncertainty": {
                    "relativeStandardUncertaintyPercent": "7.5",
                    "lower95": "52.1",
                    "upper95": "70.9",
                },
                "fieldLabels": {
                    "pcf.boundaryProcessesDescription": {"grade": "GENERAL", "tradeSecret": True},
                    "productIds[*]": {"grade": "GENERAL"},
                },
            },
        }
    ],
}

_BOM: dict[str, Any] = {
    "productId": "urn:pact:example-pack.cn:product-id:PACK-48V",
    "productName": "48 V battery pack",
    "owner": "example-pack",
    "declaredUnit": {"amount": "1", "unit": "kilowatt hour"},
    "productMassPerDeclaredUnit": "7.2",
    "components": [
        {
            "productId": "urn:pact:example-cells.cn:product-id:LFP280",
            "quantity": "1.05",
            "unit": "kilowatt hour",
        },
        {"factorId": "bg:cn-aluminium-ingot", "quantity": "0.8", "unit": "kilogram"},
        {
            "productId": "urn:pact:example-bms.cn:product-id:BMS-1",
            "factorId": "bg:electronics-pcb",
            "quantity": "12",
            "unit": "gram",
        },
    ],
    "processEmissions": {
        "directKgCO2e": "0.3",
        "electricityKWh": "12.5",
        "electricityFactorId": "bg:cn-grid-2022",
    },
    "allocationNote": "per kWh of rated capacity",
    "revision": 3,
}

_FACTOR: dict[str, Any] = {
    "factorId": "bg:cn-grid-2022",
    "name": "China national grid average electricity",
    "unit": "kilowatt hour",
    "value": "0.5366",
    "geography": "CN",
    "source": "MEE national grid emission factor",
    "version": "2022",
    "dqr": {"technologicalDQR": "2", "geographicalDQR": "1", "temporalDQR": "2"},
    "uncertainty": {"relativeStandardUncertaintyPercent": "5"},
}
