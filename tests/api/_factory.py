"""Builders for the API tests: schema-valid PACT v3 footprints with chosen ids, dates and scope."""

from __future__ import annotations

import uuid
from typing import Any


def make_footprint(
    *,
    pf_id: str | None = None,
    created: str = "2025-01-15T08:00:00Z",
    status: str = "Active",
    product_ids: tuple[str, ...] = ("urn:pact:example.com:product-id:p-1",),
    company_ids: tuple[str, ...] = ("urn:pact:example.com:company-id:supplier-1",),
    classifications: tuple[str, ...] | None = ("urn:pact:productclassification:un-cpc:4122",),
    geography: dict[str, str] | None = None,
    reference_end: str = "2024-12-31T00:00:00Z",
    validity: tuple[str | None, str | None] | None = None,
    emissions: str = "12.5",
) -> dict[str, Any]:
    """A minimal but complete v3 ``ProductFootprint`` (decimals as strings)."""
    pcf: dict[str, Any] = {
        "declaredUnitOfMeasurement": "kilogram",
        "declaredUnitAmount": "1",
        "productMassPerDeclaredUnit": "1",
        "referencePeriodStart": "2024-01-01T00:00:00Z",
        "referencePeriodEnd": reference_end,
        "pcfExcludingBiogenicUptake": emissions,
        "pcfIncludingBiogenicUptake": emissions,
        "fossilGhgEmissions": emissions,
        "fossilCarbonContent": "0",
        "ipccCharacterizationFactors": ["AR6"],
        "crossSectoralStandards": ["ISO14067", "PACT-3.0"],
        "exemptedEmissionsPercent": "0",
        **(geography or {}),
    }
    footprint: dict[str, Any] = {
        "id": pf_id or str(uuid.uuid4()),
        "specVersion": "3.0.0",
        "created": created,
        "status": status,
        "companyName": "Supplier One",
        "companyIds": list(company_ids),
        "productDescription": "Cold-rolled steel coil",
        "productIds": list(product_ids),
        "productNameCompany": "Coil CR-1",
        "pcf": pcf,
    }
    if classifications:
        footprint["productClassifications"] = list(classifications)
    if validity is not None:
        start, end = validity
        if start is not None:
            footprint["validityPeriodStart"] = start
        if end is not None:
            footprint["validityPeriodEnd"] = end
    return footprint


def many_footprints(count: int, *, prefix: str = "p") -> list[dict[str, Any]]:
    """*count* footprints with distinct ids and products; several share a ``created`` instant
    (so ordering must fall back to the id) and dates are written in different offsets."""
    footprints = []
    for i in range(count):
        day = 1 + (i // 3) % 28
        created = f"2025-02-{day:02d}T10:00:00Z" if i % 2 else f"2025-02-{day:02d}T11:00:00+01:00"
        footprints.append(
            make_footprint(
                created=created,
                product_ids=(f"urn:pact:example.com:product-id:{prefix}-{i}",),
                geography={"geographyCountry": ["DE", "FR", "CN"][i % 3]},
                status="Deprecated" if i % 5 == 0 else "Active",
            )
        )
    return footprints
