"""The runner's hot path builds the policy's input record from the Avro datum, without pydantic:
it must be the record the model way builds (``gateway_record``), key order included."""

from __future__ import annotations

import copy
import io
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer

from pcf_exchange.contracts import RolledUpFootprint, Uncertainty, parse_footprint
from pcf_exchange.contracts._schemas import parsed
from pcf_exchange.contracts._serde import from_avro_dict, to_avro_dict
from pcf_exchange.gateway._adapter import (
    gateway_record,
    pilot_category_of,
    record_from_datum,
)
from tests.gateway._rollups import FOOTPRINT, rolled_footprint
from tests.gateway.test_rollup_reader import same_both_ways


def _datum(rolled: RolledUpFootprint) -> dict[str, Any]:
    """The datum as the runner gets it: written to Avro bytes and read back by fastavro."""
    schema = parsed("RolledUpFootprint")
    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, to_avro_dict(rolled), disable_tuple_notation=True)
    buffer.seek(0)
    datum = schemaless_reader(buffer, schema, None)
    assert isinstance(datum, dict)
    return datum


def _same(rolled: RolledUpFootprint) -> None:
    datum = _datum(rolled)
    record, category = record_from_datum(datum)
    model = from_avro_dict(RolledUpFootprint, copy.deepcopy(datum)).value
    assert model is not None
    expected = gateway_record(model)
    # key order matters: the policy's layouts are keyed by the leaf paths in document order
    assert json.dumps(record, default=repr) == json.dumps(expected, default=repr)
    assert category == pilot_category_of(model)
    # and the runner's generated reader gives it too, from the bytes (test_rollup_reader.py)
    assert same_both_ways(rolled) == (record, category)


def _variant(**changes: Any) -> RolledUpFootprint:
    rolled = rolled_footprint()
    footprint_changes = changes.pop("footprint_changes", None)
    if footprint_changes is not None:
        assert rolled.footprint is not None
        changes["footprint"] = rolled.footprint.model_copy(update=footprint_changes)
    return rolled.model_copy(update=changes)


def test_the_factory_roll_up_gives_the_model_way_record() -> None:
    _same(rolled_footprint())


@pytest.mark.parametrize("category", [None, "STEEL"])
def test_with_and_without_the_pcfx_extension(category: str | None) -> None:
    _same(rolled_footprint(category=category))


def test_no_facility_no_owner_no_missing_components_no_inputs() -> None:
    _same(_variant(facility=None, owner=None, missing_components=(), inputs=()))


def test_instants_with_microseconds_and_a_detail() -> None:
    rolled = _variant(computed_at=datetime(2026, 5, 1, 7, 8, 9, 123456, tzinfo=UTC))
    _same(rolled)
    missing = rolled.missing_components[0].model_copy(update={"detail": "no footprint yet"})
    _same(rolled.model_copy(update={"missing_components": (missing,)}))


def test_pcfx_stage_breakdown_and_uncertainty() -> None:
    rolled = rolled_footprint()
    assert rolled.footprint is not None and rolled.footprint.pcfx is not None
    pcfx = rolled.footprint.pcfx.model_copy(
        update={
            "stage_breakdown": {
                "raw_material_acquisition": Decimal("70.5000"),
                "production": Decimal("0.5220"),
            },
            "uncertainty": Uncertainty(relative_standard_uncertainty_percent=Decimal("12.5")),
        }
    )
    _same(_variant(footprint_changes={"pcfx": pcfx}))


def test_optional_footprint_fields_and_preceding_ids() -> None:
    _same(
        _variant(
            footprint_changes={
                "preceding_pf_ids": (uuid.UUID(int=7),),
                "validity_period_start": datetime(2026, 1, 1, tzinfo=UTC),
                "product_classifications": ("urn:pact:productclassification:un-cpc:46410",),
            }
        )
    )


def test_no_footprint_gives_no_record() -> None:
    datum = _datum(_variant(footprint=None))
    assert record_from_datum(datum) == (None, None)


def test_a_foreign_extension_keeps_its_data_exact() -> None:
    data = copy.deepcopy(FOOTPRINT)
    data["extensions"].insert(
        0,
        {
            "specVersion": "2.0.0",
            "dataSchema": "https://example.com/schemas/extra/v1.json",
            "documentation": "https://example.com/docs/extra",
            "data": {"share": Decimal("0.125"), "count": 3, "tags": ["a", None, "b"], "x": None},
        },
    )
    rolled = _variant(footprint=parse_footprint(data))
    _same(rolled)
    record, _ = record_from_datum(_datum(rolled))
    assert record is not None
    assert record["extensions"][0]["data"]["share"] == Decimal("0.125")


def test_field_labels_take_the_model_way() -> None:
    from pcf_exchange.contracts._footprint import DataGrade, FieldLabel

    rolled = rolled_footprint()
    assert rolled.footprint is not None and rolled.footprint.pcfx is not None
    labels = {"pcf.pcfExcludingBiogenicUptake": FieldLabel(grade=DataGrade.IMPORTANT)}
    pcfx = rolled.footprint.pcfx.model_copy(update={"field_labels": labels})
    _same(_variant(footprint_changes={"pcfx": pcfx}))  # (the generated reader gives None)
