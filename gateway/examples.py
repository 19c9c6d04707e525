"""An example of what the gateway decides on: a rolled-up battery footprint with lineage.

A PACT v3 footprint with the lineage extension (facility, contacts, two tiers of inputs): the
kind of record ``prepare_transfer`` decides on. The gateway tests and benchmarks start from it, so
it lives in one place. The function returns a fresh deep copy: change it freely.

>>> from pcf_exchange.gateway.examples import example_record
>>> example_record()["extensions"][0]["data"]["lineage"]["facility"]["facilityId"]
'FAC-SZ-03'
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["example_record"]


def example_record() -> dict[str, Any]:
    """A rolled-up LFP cell footprint (per kWh) with its lineage extension."""
    return copy.deepcopy(_RECORD)


_RECORD: dict[str, Any] = {
    "id": "3f1b6c9e-6a57-4b0e-9d53-1f2f3a4b5c6d",
    "specVersion": "3.0.0",
    "created": "2026-04-30T00:00:00Z",
    "status": "Active",
    "companyName": "Example Cell Manufacturing Co., Ltd.",
    "companyIds": ["urn:pact:company:uscc:91440300MA5EXAMPLE"],
    "productDescription": "LFP prismatic cell 280 Ah for energy storage",
    "productIds": ["urn:pact:example.cn:cell:LFP-280"],
    "productNameCompany": "LFP-280",
    "comment": "Line 3 runs the 2025 recipe with dry-room at -45 C dew point",
    "pcf": {
        "declaredUnitOfMeasurement": "kilowatt hour",
        "declaredUnitAmount": "1",
        "productMassPerDeclaredUnit": "5.9",
        "referencePeriodStart": "2025-01-01T00:00:00Z",
        "referencePeriodEnd": "2026-01-01T00:00:00Z",
        "geographyCountrySubdivision": "CN-GD",
        "pcfExcludingBiogenicUptake": "61.27",
        "pcfIncludingBiogenicUptake": "61.27",
        "fossilGhgEmissions": "60.9",
        "fossilCarbonContent": "0",
        "ipccCharacterizationFactors": ["AR6"],
        "crossSectoralStandards": ["ISO14067", "PACT-3.0"],
        "exemptedEmissionsPercent": "0.4",
        "allocationRulesDescription": "Mass allocation between cell grades A and B",
        "primaryDataShare": "63.5",
        "dqi": {"technologicalDQR": "1.6", "geographicalDQR": "1.2", "temporalDQR": "1.4"},
        "packagingEmissionsIncluded": True,
    },
    "extensions": [
        {
            "specVersion": "2.0.0",
            "dataSchema": "https://pcf-exchange.example/schemas/lineage/v1.json",
            "data": {
                "lineage": {
                    "method": "mass",
                    "calcEngineVersion": "0.1.0",
                    "computedAt": "2026-04-30T00:00:00Z",
                    "facility": {
                        "facilityId": "FAC-SZ-03",
                        "country": "CN",
                        "subdivision": "CN-GD",
                        "city": "Shenzhen",
                        "address": "88 Example Road, Longgang District",
                        "latitude": "22.7213",
                        "longitude": "114.2468",
                        "unLocode": "CNSZX",
                        "productionVolume": {"quantity": "1200000", "unit": "kilowatt hour"},
                        "energy": [
                            {"carrier": "electricity", "quantity": "54000000", "unit": "kWh"},
                            {"carrier": "natural gas", "quantity": "3100000", "unit": "MJ"},
                        ],
                        "electricitySource": "GRID",
                        "electricityEmissionFactor": "0.5703",
                        "processParameters": {"dryRoomDewPointC": "-45", "formationCycles": 3},
                    },
                    "contacts": [
                        {
                            "name": "Li Wei",
                            "email": "li.wei@example.cn",
                            "phone": "+86 755 0000 0001",
                            "role": "PCF owner",
                        },
                    ],
                    "inputs": [
                        {
                            "pfId": "8a0e1f4c-1111-4a5b-9c9d-000000000001",
                            "sha256": "aa" * 32,
                            "productId": "urn:pact:cathode.example.cn:lfp:C-900",
                            "supplierId": "urn:pact:company:uscc:91430100CATHODE01",
                            "supplierName": "Example Cathode Materials Co.",
                            "tier": 1,
                            "quantity": "2.15",
                            "unit": "kilogram",
                            "massShare": "0.364",
                            "contribution": "21.40",
                            "dataSource": "primary",
                            "inputs": [
                                {
                                    "pfId": "8a0e1f4c-2222-4a5b-9c9d-000000000002",
                                    "supplierId": "urn:pact:company:uscc:91360000LITHIUM02",
                                    "supplierName": "Example Lithium Salt Refinery",
                                    "tier": 2,
                                    "quantity": "0.55",
                                    "unit": "kilogram",
                                    "backgroundDataset": {
                                        "name": "ecoinvent",
                                        "version": "3.10",
                                        "value": "11.73",
                                    },
                                }
                            ],
                        },
                        {
                            "pfId": "8a0e1f4c-3333-4a5b-9c9d-000000000003",
                            "productId": "urn:pact:foil.example.cn:cu:F-8",
                            "supplierId": "urn:pact:company:uscc:91320500COPPERF3",
                            "supplierName": "Example Copper Foil Ltd.",
                            "tier": 1,
                            "quantity": "0.41",
                            "unit": "kilogram",
                            "massShare": "0.069",
                            "contribution": "3.05",
                            "dataSource": "secondary",
                        },
                    ],
                }
            },
        }
    ],
}
