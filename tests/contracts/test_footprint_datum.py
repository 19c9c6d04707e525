"""PACT v3 JSON that the fast rules accept becomes, without the model, the Avro datum the model
gives (:func:`contracts._fast.footprint_datum`): the same bytes on the wire, every nested kind
(rules, verification, sources, DQI, validity period, timestamps with offsets) included."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from pcf_exchange.contracts import (
    AvroSerde,
    InMemorySchemaRegistry,
    ProductFootprint,
    parse_footprint,
)
from pcf_exchange.contracts._fast import footprint_datum, footprint_ok
from pcf_exchange.contracts.examples import example_footprint

TOPIC = "t.footprints"


@pytest.fixture(scope="module")
def serde() -> AvroSerde:
    return AvroSerde(InMemorySchemaRegistry(), auto_register=True)


def _plain() -> dict[str, Any]:
    doc = example_footprint()
    del doc["extensions"]
    return doc


def _edit(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = _plain()
    change(doc)
    return doc


def _minimal(doc: dict[str, Any]) -> None:
    for key in ("precedingPfIds", "validityPeriodStart", "validityPeriodEnd", "comment"):
        doc.pop(key)
    doc.pop("productClassifications")
    for key in ("verification", "productOrSectorSpecificRules", "dqi", "packagingGhgEmissions"):
        doc["pcf"].pop(key)


def _region(doc: dict[str, Any]) -> None:
    del doc["pcf"]["geographyCountrySubdivision"]
    doc["pcf"]["geographyRegionOrSubregion"] = "Eastern Asia"


VARIANTS: dict[str, dict[str, Any]] = {
    "example": _plain(),
    "minimal": _edit(_minimal),
    "offsets and fractions": _edit(
        lambda d: d.update(
            created="2025-03-01T16:00:00.123456+08:00", validityPeriodStart="2025-01-01T00:00:00z"
        )
    ),
    "deprecated, two predecessors": _edit(
        lambda d: d.update(
            status="Deprecated",
            precedingPfIds=[
                "0b9e3f58-2c4d-4a1b-8e7f-6a5b4c3d2e1f",
                "1c9e3f58-2c4d-4a1b-8e7f-6a5b4c3d2e1f",
            ],
        )
    ),
    "region": _edit(_region),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_datum_gives_the_models_bytes(serde: AvroSerde, name: str) -> None:
    doc = VARIANTS[name]
    assert footprint_ok(doc), "the fast rules accept it"
    model = parse_footprint(copy.deepcopy(doc))
    datum = footprint_datum(copy.deepcopy(doc))
    assert datum is not None
    assert serde.encode_datum(TOPIC, ProductFootprint, datum) == serde.encode(TOPIC, model)


def test_a_footprint_with_extensions_is_left_to_the_model() -> None:
    doc = example_footprint()
    assert footprint_ok(doc)
    assert footprint_datum(doc) is None
