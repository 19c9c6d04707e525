"""Factories for the gateway runtime tests: a roll-up as streams would publish it, policies."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pcf_exchange.contracts import (
    PCFX_EXTENSION_SCHEMA,
    Completeness,
    DeclaredUnit,
    Facility,
    LineageInput,
    MissingComponent,
    OwnEmissions,
    RolledUpFootprint,
    parse_footprint,
)
from pcf_exchange.gateway import default_policy_path
from pcf_exchange.gateway._keys import policy_with_recipient_keys

PRODUCT_ID = "urn:pact:example-pack.cn:product-id:PACK-48V"
CELL_SUPPLIER = "example-cells-ningde"
CELL_PRODUCT = "urn:pact:example-cells.cn:product-id:LFP280"
BMS_PRODUCT = "urn:pact:example-bms.cn:product-id:BMS-1"
SECRET_ADDRESS = "88 Secret Dry-Room Road, Building 7"
SECRET_CITY = "Ningde"
SECRET_COMMENT = "Line 3 runs recipe R-2025-07 at -45 C dew point"

FOOTPRINT: dict[str, Any] = {
    "id": "3f7a9c1e-5b2d-4e8f-9a6b-0c1d2e3f4a5b",
    "specVersion": "3.0.0",
    "created": "2026-03-01T08:00:00Z",
    "status": "Active",
    "companyName": "Example Pack Co.",
    "companyIds": ["urn:pact:company:customcode:vendor-assigned:uscc-91350900MA2PACK00X"],
    "productDescription": "48 V LFP battery pack",
    "productIds": [PRODUCT_ID],
    "productNameCompany": "PACK-48V",
    "comment": SECRET_COMMENT,
    "pcf": {
        "declaredUnitOfMeasurement": "kilowatt hour",
        "declaredUnitAmount": "1",
        "productMassPerDeclaredUnit": "7.2",
        "referencePeriodStart": "2025-01-01T00:00:00Z",
        "referencePeriodEnd": "2026-01-01T00:00:00Z",
        "geographyCountrySubdivision": "CN-FJ",
        "pcfExcludingBiogenicUptake": "71.0220",
        "pcfIncludingBiogenicUptake": "71.0220",
        "fossilGhgEmissions": "70.9",
        "fossilCarbonContent": "0.8",
        "ipccCharacterizationFactors": ["AR6"],
        "crossSectoralStandards": ["ISO14067"],
        "exemptedEmissionsPercent": "0.5",
        "primaryDataShare": "63.0",
        "packagingEmissionsIncluded": False,
    },
    "extensions": [
        {
            "specVersion": "2.0.0",
            "dataSchema": PCFX_EXTENSION_SCHEMA,
            "data": {"pilotCategory": "LITHIUM_BATTERY", "standards": ["GB/T 24067-2024"]},
        }
    ],
}


def rolled_footprint(
    *,
    product_id: str = PRODUCT_ID,
    sequence: int = 1,
    category: str | None = "LITHIUM_BATTERY",
    pf_id: str | None = None,
) -> RolledUpFootprint:
    """A two-input roll-up (a supplier cell, a background factor) with facility and lineage."""
    data = copy.deepcopy(FOOTPRINT)
    data["id"] = pf_id or str(uuid.uuid4())
    data["productIds"] = [product_id]
    if category is None:
        data.pop("extensions")
    else:
        data["extensions"][0]["data"]["pilotCategory"] = category
    footprint = parse_footprint(data)
    return RolledUpFootprint(
        product_id=product_id,
        owner="example-pack",
        bom_revision=3,
        sequence=sequence,
        declared_unit=DeclaredUnit(amount=Decimal("1"), unit="kilowatt hour"),
        pcf_excluding_biogenic_uptake=Decimal("71.0220"),
        own_emissions=OwnEmissions(
            direct_kg_co2e=Decimal("0.3"),
            electricity_kg_co2e=Decimal("6.70750"),
            other_kg_co2e=Decimal("0"),
        ),
        inputs=(
            LineageInput(
                component_index=0,
                kind="footprint",
                product_id=CELL_PRODUCT,
                footprint_id=uuid.UUID("0b9e3f58-2c4d-4a1b-8e7f-6a5b4c3d2e1f"),
                supplier_id=CELL_SUPPLIER,
                sequence=7,
                content_hash="ab" * 32,
                quantity=Decimal("1.05"),
                unit="kilowatt hour",
                contribution_kg_co2e=Decimal("64.470"),
            ),
            LineageInput(
                component_index=1,
                kind="factor",
                factor_id="bg:cn-aluminium-ingot",
                factor_version="2022",
                content_hash="cd" * 32,
                quantity=Decimal("0.8"),
                unit="kilogram",
                contribution_kg_co2e=Decimal("0.2520"),
            ),
        ),
        completeness=Completeness(
            components_total=3,
            components_resolved=2,
            coverage_percent=Decimal("66.7"),
            complete=False,
        ),
        missing_components=(
            MissingComponent(component_index=2, product_id=BMS_PRODUCT, reason="no_footprint"),
        ),
        footprint=footprint,
        facility=Facility(
            name="Ningde pack plant 2",
            address=SECRET_ADDRESS,
            city=SECRET_CITY,
            country_subdivision="CN-FJ",
            annual_production_volume=Decimal("1200000"),
            annual_energy_use_kwh=Decimal("54000000"),
        ),
        method="pcfx-rollup/attributional",
        engine_version="0.1.0",
        computed_at=datetime(2026, 5, 1, tzinfo=UTC),
    )


def policy_with_keys(
    keys: dict[str, X25519PrivateKey], out: Path, *, hold_city_for_eu: bool = False
) -> Path:
    """The shipped policy with recipients' keys replaced by ours (and optionally a hold rule)."""
    text = policy_with_recipient_keys(
        Path(default_policy_path()).read_text(),
        {rid: key.public_key() for rid, key in keys.items()},
    )
    if hold_city_for_eu:
        old = "      eu: {action: generalise, to: province}\n      other: {action: generalise"
        assert text.count(old) == 1
        text = text.replace(
            old, "      eu: {action: hold, then: allow}\n      other: {action: generalise"
        )
    out.write_text(text)
    return out
