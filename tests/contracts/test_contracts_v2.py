"""The PACT v2.3 projection validates against the v2 OpenAPI and names what it loses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pcf_exchange.contracts import (
    V2_LOSSES,
    ProductFootprint,
    ValidationFailed,
    parse_footprint,
    to_pact_v2_json,
)
from pcf_exchange.contracts._jsonio import dumps

from .test_contracts_pact_examples import openapi_validator


def test_projection_validates_against_v2_openapi(
    pact_dir: Path, footprint: ProductFootprint
) -> None:
    v2, losses = to_pact_v2_json(footprint)
    assert v2["specVersion"] == "2.3.0" and v2["version"] == 1
    assert v2["productCategoryCpc"] == "46410"
    assert v2["pcf"]["declaredUnit"] == "kilowatt hour" and v2["pcf"]["unitaryProductAmount"] == "1"
    assert v2["pcf"]["crossSectoralStandardsUsed"] == [
        "GHG Protocol Product standard",
        "ISO Standard 14067",
    ]
    assert v2["pcf"]["primaryDataShare"] == 63.0
    errors = [
        e.message for e in openapi_validator(pact_dir, "v2").iter_errors(json.loads(dumps(v2)))
    ]
    assert errors == []
    assert any(loss.startswith("pcf.dqi:") for loss in losses)
    assert any(loss.startswith("pcf.assurance:") for loss in losses)
    assert all(
        loss.split(":")[0] in V2_LOSSES or loss.split(":")[0].startswith("pcf.") for loss in losses
    )


def test_every_v3_only_field_is_listed() -> None:
    from pcf_exchange.contracts import CarbonFootprint

    v3_fields = {f"pcf.{info.alias}" for info in CarbonFootprint.model_fields.values()}
    kept = {
        "pcf.declaredUnitOfMeasurement",
        "pcf.declaredUnitAmount",
        "pcf.productMassPerDeclaredUnit",
        "pcf.referencePeriodStart",
        "pcf.referencePeriodEnd",
        "pcf.geographyRegionOrSubregion",
        "pcf.geographyCountry",
        "pcf.geographyCountrySubdivision",
        "pcf.pcfExcludingBiogenicUptake",
        "pcf.pcfIncludingBiogenicUptake",
        "pcf.fossilGhgEmissions",
        "pcf.fossilCarbonContent",
        "pcf.landUseChangeGhgEmissions",
        "pcf.biogenicCO2Uptake",
        "pcf.aircraftGhgEmissions",
        "pcf.packagingGhgEmissions",
        "pcf.ipccCharacterizationFactors",
        "pcf.productOrSectorSpecificRules",
        "pcf.allocationRulesDescription",
        "pcf.secondaryEmissionFactorSources",
        "pcf.verification",
    }
    assert v3_fields - kept - set(V2_LOSSES) == set()


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (
            lambda d: d["pcf"].update(declaredUnitOfMeasurement="piece"),
            "pcf.declaredUnitOfMeasurement",
        ),
        (lambda d: d.update(productClassifications=["urn:x:1"]), "productCategoryCpc"),
        (lambda d: d["pcf"].update(crossSectoralStandards=["PEF"]), "pcf.crossSectoralStandards"),
        (lambda d: d["pcf"].pop("biogenicCarbonContent"), "pcf.biogenicCarbonContent"),
    ],
)
def test_projection_refuses_what_v2_cannot_hold(
    footprint_json: dict[str, Any], change: Any, path: str
) -> None:
    change(footprint_json)
    with pytest.raises(ValidationFailed) as info:
        to_pact_v2_json(parse_footprint(footprint_json))
    assert path in {v.path for v in info.value.violations}
    assert (
        to_pact_v2_json(parse_footprint(footprint_json), product_category_cpc="1")
        if path == "productCategoryCpc"
        else True
    )
