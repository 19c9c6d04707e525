"""The committed Avro schemas: one named type per file, history BACKWARD_TRANSITIVE compatible,
today's schema equal to the newest history entry, and records and schemas in step."""

from __future__ import annotations

import json
from typing import Any

import avro.schema
import pytest
from fastavro import parse_schema
from pydantic import BaseModel

from pcf_exchange.contracts import (
    CompatibilityLevel,
    IncompatibleSchemaError,
    InMemorySchemaRegistry,
    check_compatibility,
)
from pcf_exchange.contracts._avrogen import _lookup_types, all_schemas
from pcf_exchange.contracts._avrogen import main as avrogen_main
from pcf_exchange.contracts._schemas import (
    NAMESPACE,
    SCHEMA_DIR,
    expanded,
    history,
    normalized,
    schema_json,
    schema_names,
)

NAMES = schema_names()


def test_there_is_a_schema_for_every_record_type() -> None:
    assert set(NAMES) == set(all_schemas())
    assert {
        "SignedFootprint",
        "SignedBillOfMaterials",
        "SignedEmissionFactor",
        "SignedSupplierKey",
    } <= set(NAMES)


def _nested_named(node: Any, top: bool = True) -> list[str]:
    if isinstance(node, list):
        return [n for item in node for n in _nested_named(item, False)]
    if not isinstance(node, dict):
        return []
    found = [] if top or node.get("type") not in ("record", "enum", "fixed") else [node["name"]]
    for key in ("fields", "items", "values", "type"):
        if key in node and key != "type":
            found += _nested_named(node[key], False)
    for field in node.get("fields", []):
        found += _nested_named(field["type"], False)
    if isinstance(node.get("type"), dict | list):
        found += _nested_named(node["type"], False)
    return found


@pytest.mark.parametrize("name", NAMES)
def test_one_named_type_per_file(name: str) -> None:
    raw = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())
    assert raw["name"] == name and raw["namespace"] == NAMESPACE
    assert _nested_named(raw) == [], (
        "nested types must be referenced by full name, defined in their own file"
    )
    parse_schema(expanded(name), named_schemas={})
    avro.schema.parse(schema_json(name))


@pytest.mark.parametrize("name", NAMES)
def test_history_is_backward_transitive_and_current(name: str) -> None:
    versions = history(name)
    assert versions, f"contracts/history/{name}/v1.avsc is missing"
    assert [v for v, _ in versions] == list(range(1, len(versions) + 1)), (
        "history versions must be v1..vN"
    )
    for index, (version, schema) in enumerate(versions):
        previous = [json.dumps(s) for _, s in versions[:index]]
        problems = check_compatibility(
            json.dumps(schema), previous, CompatibilityLevel.BACKWARD_TRANSITIVE
        )
        assert problems == [], f"{name} v{version}: {problems}"
    assert normalized(versions[-1][1]) == normalized(expanded(name)), (
        f"schemas/{name}.avsc changed without a history entry: run "
        "python -c 'from pcf_exchange.contracts._schemas import write_history_version as w; "
        f'w("{name}")\' and commit it'
    )


def test_models_and_schema_files_are_in_step() -> None:
    assert avrogen_main(["--check"]) == 0


def test_record_fields_match_model_aliases() -> None:
    types = _lookup_types()
    for name in NAMES:
        raw = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())
        cls = types[name]
        if raw["type"] == "record":
            assert issubclass(cls, BaseModel)
            aliases = [info.alias or field for field, info in cls.model_fields.items()]
            assert [f["name"] for f in raw["fields"]] == aliases, name
        else:
            assert raw["symbols"] == [m.value for m in cls]


def test_security_enums_fall_back_to_the_strictest_symbol() -> None:
    defaults = {n: json.loads((SCHEMA_DIR / f"{n}.avsc").read_text()).get("default") for n in NAMES}
    assert defaults["DataGrade"] == "CORE"
    assert defaults["PersonalInfo"] == "SENSITIVE_PI"
    assert defaults["FieldActionKind"] == "BLK"
    assert defaults["TransferOutcome"] == "DENY"


# -- what the history test protects against -----------------------------------------------


def _with_field(name: str, field: dict[str, Any]) -> str:
    schema = expanded(name)
    schema["fields"].append(field)
    return json.dumps(schema)


def test_new_optional_field_is_compatible() -> None:
    new = _with_field(
        "EmissionFactor", {"name": "region", "type": ["null", "string"], "default": None}
    )
    assert check_compatibility(new, [schema_json("EmissionFactor")]) == []


def test_new_required_field_is_refused_naming_the_problem() -> None:
    registry = InMemorySchemaRegistry()
    registry.register("pcf.factors-value", schema_json("EmissionFactor"))
    new = _with_field("EmissionFactor", {"name": "region", "type": "string"})
    with pytest.raises(IncompatibleSchemaError) as info:
        registry.register("pcf.factors-value", new)
    assert "reader_field_missing_default_value" in str(info.value)
    assert "region" in str(info.value)
    assert info.value.subject == "pcf.factors-value"


def test_transitive_check_catches_an_old_writer() -> None:
    v1 = schema_json("EmissionFactor")
    v2 = json.loads(v1)
    v2["fields"] = [f for f in v2["fields"] if f["name"] != "geography"]  # dropping a field: fine
    v3 = json.loads(json.dumps(v2))
    v3["fields"].append(
        {"name": "geography", "type": "long", "default": 0}
    )  # retyped: breaks v1 data
    assert (
        check_compatibility(json.dumps(v3), [v1, json.dumps(v2)], CompatibilityLevel.BACKWARD) == []
    )
    problems = check_compatibility(
        json.dumps(v3), [v1, json.dumps(v2)], CompatibilityLevel.BACKWARD_TRANSITIVE
    )
    assert len(problems) == 1 and "version 1" in problems[0] and "type_mismatch" in problems[0]
