"""Files users hand us: per-record results, and JSON Schemas that agree with the loaders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from pcf_exchange.contracts import (
    PCFX_EXTENSION_SCHEMA,
    BillOfMaterials,
    json_schema,
    load_boms,
    load_factors,
    load_footprints,
    read_boms,
    read_factors_csv,
    read_factors_json,
    read_footprints,
)

from .conftest import BOM_JSON, FACTOR_JSON, FOOTPRINT_JSON


def validator(kind: str) -> Draft202012Validator:
    ext = json_schema("pcfx-extension")
    registry: Registry[Any] = Registry().with_resource(
        PCFX_EXTENSION_SCHEMA, Resource.from_contents(ext)
    )
    schema = json_schema(kind)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry)


# -- footprints ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["object", "list", "data_list", "data_object"])
def test_footprint_file_shapes(tmp_path: Path, shape: str) -> None:
    doc: Any = {
        "object": FOOTPRINT_JSON,
        "list": [FOOTPRINT_JSON, FOOTPRINT_JSON],
        "data_list": {"data": [FOOTPRINT_JSON]},
        "data_object": {"data": FOOTPRINT_JSON},
    }[shape]
    path = tmp_path / "pcfs.json"
    path.write_text(json.dumps(doc, ensure_ascii=False))
    results = load_footprints(path)
    assert all(r.ok and r.value is not None for r in results)
    assert [r.index for r in results] == list(range(len(results)))
    assert results[0].file == str(path)
    assert list(validator("footprints").iter_errors(doc)) == []


def test_one_bad_footprint_does_not_hide_the_good_ones() -> None:
    bad = json.loads(json.dumps(FOOTPRINT_JSON))
    bad["pcf"]["fossilGhgEmissions"] = 61.1
    results = read_footprints(json.dumps([FOOTPRINT_JSON, bad, FOOTPRINT_JSON]), name="up.json")
    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error is not None and error.subject == "up.json footprint [1]"
    assert [(v.path, v.code) for v in error.violations] == [
        ("pcf.fossilGhgEmissions", "decimal_type")
    ]
    assert list(validator("footprints").iter_errors(bad))  # the JSON Schema refuses it too


UNREADABLE: list[tuple[str, bytes, str]] = [
    ("not_utf8", b'{"id": "\xff"}', "not_utf8"),
    ("syntax", b'{"id": ', "json_syntax"),
    ("nan", b'[{"id": NaN}]', "json_constant"),
    ("infinity", b'{"x": -Infinity}', "json_constant"),
    ("duplicate_key", b'{"id": "a", "id": "b"}', "duplicate_key"),
    ("deep", b"[" * 100_000 + b"]" * 100_000, "json_depth"),
    ("huge_int", b'{"x": ' + b"9" * 5000 + b"}", "json_number"),
]


@pytest.mark.parametrize(
    ("data", "code"), [c[1:] for c in UNREADABLE], ids=[c[0] for c in UNREADABLE]
)
def test_unreadable_documents_give_one_file_level_result(data: bytes, code: str) -> None:
    (result,) = read_footprints(data, name="x.json")
    assert result.index is None and result.error is not None
    assert [v.code for v in result.error.violations] == [code]


def test_missing_file(tmp_path: Path) -> None:
    (result,) = load_footprints(tmp_path / "nope.json")
    assert result.error is not None and result.error.violations[0].code == "unreadable"


# -- bills of materials ----------------------------------------------------------------------


def test_bom_file_from_the_issue(tmp_path: Path) -> None:
    path = tmp_path / "boms.json"
    path.write_text(json.dumps([BOM_JSON]))
    (result,) = load_boms(path)
    assert result.ok
    bom = result.value
    assert isinstance(bom, BillOfMaterials)
    assert str(bom.components[0].quantity) == "1.05" and bom.components[2].unit == "gram"
    assert (
        bom.process_emissions is not None and str(bom.process_emissions.electricity_k_wh) == "12.5"
    )
    assert list(validator("boms").iter_errors([BOM_JSON])) == []


def _bom(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(BOM_JSON))
    doc.update(changes)
    return doc


def _components(*lines: dict[str, Any]) -> dict[str, Any]:
    return _bom(components=list(lines))


LINE = {"productId": "urn:x:1", "quantity": "1", "unit": "kilogram"}

BOM_CASES: list[tuple[str, dict[str, Any], set[tuple[str, str]]]] = [
    (
        "quantity_zero",
        _components({**LINE, "quantity": "0"}),
        {("components[0].quantity", "min_value")},
    ),
    (
        "quantity_number",
        _components({**LINE, "quantity": 2}),
        {("components[0].quantity", "decimal_type")},
    ),
    ("unknown_unit", _components({**LINE, "unit": "pound"}), {("components[0].unit", "unit")}),
    (
        "no_reference",
        _components({"quantity": "1", "unit": "kilogram"}),
        {("components[0]", "required_one_of")},
    ),
    (
        "duplicate_product",
        _components(
            LINE,
            {"factorId": "bg:x", "quantity": "2", "unit": "kilogram"},
            {**LINE, "quantity": "3"},
        ),
        {("components[2]", "duplicate_component")},
    ),
    (
        "duplicate_factor",
        _components(
            {"factorId": "bg:x", "quantity": "2", "unit": "gram"},
            {"factorId": "bg:x", "quantity": "1", "unit": "ton"},
        ),
        {("components[1]", "duplicate_component")},
    ),
    (
        "self_reference",
        _components({**LINE, "productId": BOM_JSON["productId"]}),
        {("components[0].productId", "self_reference")},
    ),
    (
        "declared_unit",
        _bom(declaredUnit={"amount": "0", "unit": "kwh"}),
        {("declaredUnit.amount", "min_value"), ("declaredUnit.unit", "unit")},
    ),
    (
        "electricity_without_factor",
        _bom(processEmissions={"electricityKWh": "12.5"}),
        {("processEmissions.electricityFactorId", "required_if")},
    ),
    ("empty", _bom(components=[], processEmissions=None), {("components", "min_items")}),
    ("negative_revision", _bom(revision=-1), {("revision", "range")}),
    ("revision_as_text", _bom(revision="3"), {("revision", "type")}),
    (
        "factor_id_chars",
        _components({"factorId": "bg cn grid", "quantity": "1", "unit": "gram"}),
        {("components[0].factorId", "factor_id")},
    ),
    ("unknown_key", _bom(quantity="1"), {("quantity", "unknown_field")}),
]


@pytest.mark.parametrize(
    ("doc", "expected"), [c[1:] for c in BOM_CASES], ids=[c[0] for c in BOM_CASES]
)
def test_bom_rules(doc: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    doc = {k: v for k, v in doc.items() if v is not None}
    (result,) = read_boms(json.dumps(doc))
    assert result.error is not None
    assert {(v.path, v.code) for v in result.error.violations} == expected


@pytest.mark.parametrize(
    "case",
    ["quantity_zero", "quantity_number", "unknown_unit", "no_reference", "declared_unit", "empty"],
)
def test_bom_json_schema_agrees(case: str) -> None:
    doc = next(c[1] for c in BOM_CASES if c[0] == case)
    doc = {k: v for k, v in doc.items() if v is not None}
    assert list(validator("boms").iter_errors(doc)), case


# -- emission factors ------------------------------------------------------------------------


def test_factors_json(tmp_path: Path) -> None:
    path = tmp_path / "factors.json"
    path.write_text(json.dumps([FACTOR_JSON, {**FACTOR_JSON, "factorId": "bg:x", "value": "abc"}]))
    good, bad = load_factors(path)
    assert good.ok and good.value is not None and str(good.value.value) == "0.5366"
    assert bad.error is not None and [(v.path, v.code) for v in bad.error.violations] == [
        ("value", "decimal_pattern")
    ]
    assert list(validator("factors").iter_errors([FACTOR_JSON])) == []
    assert read_factors_json(json.dumps(FACTOR_JSON))[0].ok


CSV = (
    "factorId,name,unit,value,source,version,geography,technologicalDQR,geographicalDQR,temporalDQR,lower95,upper95\n"
    "bg:cn-grid-2022,China grid,kilowatt hour,0.5366,MEE,2022,CN,2,1,2,0.50,0.58\n"
    "\n"
    'bg:cn-aluminium-ingot,"Aluminium ingot, primary",kilogram,16.5,CLCD,0.9,CN,,,,,\n'
    "bg:bad,Bad,pound,1e3,X,1,,2,,,0.7,\n"
    "bg:short,too,few\n"
)


def test_factors_csv(tmp_path: Path) -> None:
    path = tmp_path / "factors.csv"
    path.write_bytes(b"\xef\xbb\xbf" + CSV.encode())
    grid, ingot, bad, short = load_factors(path)
    assert grid.ok and grid.value is not None and grid.value.dqr is not None and grid.line == 2
    assert grid.value.uncertainty is not None and str(grid.value.uncertainty.upper95) == "0.58"
    assert (
        ingot.ok
        and ingot.value is not None
        and ingot.value.name == "Aluminium ingot, primary"
        and ingot.line == 4
    )
    assert bad.error is not None and bad.line == 5 and bad.index == 2
    assert {(v.path, v.code) for v in bad.error.violations} == {
        ("unit", "unit"),
        ("value", "decimal_pattern"),
        ("geographicalDQR", "required"),
        ("temporalDQR", "required"),
        ("upper95", "required_if"),
    }
    assert "line 5" in bad.error.subject
    assert short.error is not None and short.error.violations[0].code == "column_count"


def test_factors_csv_semicolons_and_header_problems() -> None:
    text = (
        CSV.splitlines()[0].replace(",", ";") + "\n" + CSV.splitlines()[1].replace(",", ";") + "\n"
    )
    assert [r.ok for r in read_factors_csv(text)] == [True]
    (result,) = read_factors_csv("factorId,name,unit,value,source,colour\n")
    assert result.index is None and result.error is not None
    assert {(v.path, v.code) for v in result.error.violations} == {
        ("colour", "unknown_column"),
        ("version", "required"),
    }
    (result,) = read_factors_csv(b"factorId,name\n\xff\n")
    assert result.error is not None and result.error.violations[0].code == "not_utf8"
    (result,) = read_factors_csv("")
    assert result.error is not None and result.error.violations[0].code == "empty"


def test_mass_of_a_mass_declared_unit_is_checked() -> None:
    doc = _bom(declaredUnit={"amount": "1", "unit": "ton"}, productMassPerDeclaredUnit="999")
    (result,) = read_boms(json.dumps(doc))
    assert result.ok
    assert [(w.path, w.code) for w in result.warnings] == [
        ("productMassPerDeclaredUnit", "mass_mismatch")
    ]
    assert "should be 1000 kg" in result.warnings[0].message
