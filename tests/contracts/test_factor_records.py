"""EmissionFactor v3: the published source, reference year and the fossil / biogenic / land-use
split, with their rules; records written under the older schemas still read; the shipped sourced
set loads and cites a source for every entry."""

from __future__ import annotations

import copy
import io
import json
from decimal import Decimal
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from pcf_exchange.contracts import EmissionFactor, check, from_avro_dict, load_factors, to_avro_dict
from pcf_exchange.contracts._schemas import expanded, history
from pcf_exchange.producers.factors import SOURCED_FACTORS, check_factor_table

from .conftest import FACTOR_JSON

REFERENCE = {
    "publisher": "Ministry of Ecology and Environment; National Bureau of Statistics",
    "title": "Announcement on the 2023 electricity CO2 emission factors",
    "url": "https://www.163.com/dy/article/KIQVBKCG05567I2C.html",
    "published": "2025",
    "asPublished": "0.5306 kgCO2/kWh",
}


PUBLISHED = "reference.published"


def factor(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(FACTOR_JSON)
    doc.update(changes)
    return doc


def codes(doc: dict[str, Any]) -> set[tuple[str, str]]:
    result = check(EmissionFactor, doc)
    return {(v.path, v.code) for v in result.violations}


def test_metadata_reads_and_a_value_alone_is_total_coverage() -> None:
    f = check(EmissionFactor, factor(reference=REFERENCE, referenceYear=2023)).value
    assert f is not None and f.reference is not None
    assert (f.reference.publisher, f.reference_year, f.coverage) == (
        REFERENCE["publisher"],
        2023,
        "total",
    )
    assert f.reference.as_published == "0.5306 kgCO2/kWh"


def test_a_split_that_adds_up_is_split_coverage() -> None:
    doc = factor(
        value="2.5",
        fossilGhgEmissions="2.0",
        biogenicNonCO2Emissions="0.1",
        landUseChangeGhgEmissions="0.4",
    )
    f = check(EmissionFactor, doc).value
    assert f is not None and f.coverage == "split"
    assert f.fossil_ghg_emissions == Decimal("2.0")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"fossilGhgEmissions": "0.5"},
            {("biogenicNonCO2Emissions", "split_incomplete")},
        ),
        (
            {
                "fossilGhgEmissions": "0.5",
                "biogenicNonCO2Emissions": "0",
                "landUseChangeGhgEmissions": "0",
            },
            {("value", "split_sum")},  # 0.5 != 0.5366
        ),
        ({"landUseChangeGhgEmissions": "-1"}, {("landUseChangeGhgEmissions", "min_value")}),
        ({"referenceYear": 1800}, {("referenceYear", "range")}),
        ({"referenceYear": "2023"}, {("referenceYear", "type")}),
        ({"reference": {**REFERENCE, "url": "ftp://x.org/a"}}, {("reference.url", "url")}),
        ({"reference": {**REFERENCE, "published": "2024-02-30"}}, {(PUBLISHED, "date")}),
        ({"reference": {**REFERENCE, "published": "last year"}}, {(PUBLISHED, "date")}),
        (
            {"reference": {k: v for k, v in REFERENCE.items() if k != "title"}},
            {("reference.title", "required")},
        ),
    ],
    ids=[
        "split_incomplete",
        "split_not_adding_up",
        "negative_land_use",
        "year_too_early",
        "year_as_text",
        "url_not_http",
        "no_such_date",
        "date_not_a_date",
        "reference_without_title",
    ],
)
def test_bad_metadata_names_the_field(changes: dict[str, Any], expected: set[Any]) -> None:
    found = codes(factor(**changes))
    assert expected <= found, found


def test_split_sum_message_says_expected_and_got() -> None:
    doc = factor(
        fossilGhgEmissions="0.5", biogenicNonCO2Emissions="0", landUseChangeGhgEmissions="0"
    )
    (violation,) = check(EmissionFactor, doc).violations
    assert "(0.5)" in violation.message and violation.got == "'0.5366'"


@pytest.mark.parametrize("version", [1, 2])
def test_records_written_under_older_schemas_still_read(version: int) -> None:
    """An EmissionFactor written under schema v1/v2 (no reference, no split) reads with today's
    schema, as a value-only factor without a reference."""
    (writer,) = [schema for number, schema in history("EmissionFactor") if number == version]
    named: dict[str, Any] = {}
    if version == 1:  # v1 names its nested types; they are in their own history files
        for name in ("DataQualityIndicators", "Uncertainty"):
            parse_schema(history(name)[0][1], named_schemas=named)
    old = {k: v for k, v in FACTOR_JSON.items()}
    datum = to_avro_dict(check(EmissionFactor, old).value)  # type: ignore[arg-type]
    fields = {f["name"] for f in writer["fields"]}
    datum = {k: v for k, v in datum.items() if k in fields}
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(writer, named_schemas=named), datum)
    buffer.seek(0)
    read = schemaless_reader(
        buffer,
        parse_schema(copy.deepcopy(writer), named_schemas=dict(named)),
        parse_schema(expanded("EmissionFactor"), named_schemas={}),
    )
    result = from_avro_dict(EmissionFactor, read)
    assert result.ok, result.violations
    f = result.value
    assert f is not None
    assert (f.factor_id, f.value, f.reference, f.coverage) == (
        FACTOR_JSON["factorId"],
        Decimal(FACTOR_JSON["value"]),
        None,
        "total",
    )


def test_the_shipped_set_loads_and_every_entry_cites_its_source() -> None:
    loaded = load_factors(SOURCED_FACTORS)
    table = check_factor_table(loaded, file=str(SOURCED_FACTORS))
    assert table.ok, table.problems
    assert len(table.factors) == len(json.loads(SOURCED_FACTORS.read_text("utf-8")))
    for f in table.factors:
        ref = f.reference
        assert ref is not None, f.factor_id
        assert ref.url.startswith(("https://", "http://")) and ref.publisher and ref.title
        assert ref.as_published, f"{f.factor_id}: the figure as printed is recorded"
        assert f.reference_year is not None and f.geography
    ids = {f.factor_id for f in table.factors}
    # the pilots' main inputs that could be confirmed from a citable source (see the README)
    assert {
        "cn:mee:grid:national",
        "cn:mee:grid:east",
        "glo:cru:aluminium-primary",
        "glo:worldsteel:crude-steel",
        "glo:roskill:lithium-lce-spodumene",
        "nz:mfe:diesel-stationary-industry",
    } <= ids
    national = [f for f in table.factors if f.factor_id == "cn:mee:grid:national"]
    assert [(f.version, f.value) for f in national] == [
        ("2021", Decimal("0.5568")),
        ("2022", Decimal("0.5366")),
        ("2023", Decimal("0.5306")),
    ]
