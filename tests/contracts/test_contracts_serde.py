"""Avro serde with Confluent framing: round trips for every wire record, and every kind of bad
input ends in a typed error (SerdeError / UnknownSchemaError / ValidationFailed), never a crash."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import struct
from decimal import Decimal
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcf_exchange.contracts import (
    TOPICS,
    WIRE_MODELS,
    AvroSerde,
    DataQualityIndicators,
    InMemorySchemaRegistry,
    ProductFootprint,
    Rejection,
    RolledUpFootprint,
    SerdeError,
    SignedFootprint,
    Uncertainty,
    UnknownSchemaError,
    ValidationFailed,
    frame,
    parse_footprint,
    schema_json,
    subject_for,
    to_avro_dict,
    to_pact_json,
    unframe,
)
from pcf_exchange.contracts._schemas import expanded, parsed
from pcf_exchange.contracts._unions import preparer


def all_registered(registry: InMemorySchemaRegistry) -> AvroSerde:
    for model in WIRE_MODELS:
        registry.register(f"test.{model.__name__}-value", schema_json(model.__name__))
    return AvroSerde(registry)


def test_every_wire_record_round_trips(
    registry: InMemorySchemaRegistry, wire_samples: dict[str, Any]
) -> None:
    serde = all_registered(registry)
    assert set(wire_samples) == {m.__name__ for m in WIRE_MODELS}
    for name, record in wire_samples.items():
        data = serde.encode(f"test.{name}", record)
        assert data[0] == 0
        back = serde.decode(data, type(record))
        assert back == record, name
        assert to_avro_dict(back) == to_avro_dict(record)


def test_topics_carry_one_record_type_each(serde: AvroSerde, wire_samples: dict[str, Any]) -> None:
    for topic, model in TOPICS.items():
        record = wire_samples[model.__name__]
        assert type(serde.decode(serde.encode(topic, record), model)) is model
    with pytest.raises(
        SerdeError, match=r"topic 'pcf\.declared' carries SignedFootprint, not RolledUpFootprint"
    ):
        serde.encode("pcf.declared", wire_samples["RolledUpFootprint"])


def _plain_bytes(schema: Any, datum: Any) -> bytes:
    """What fastavro writes when it finds each union branch itself."""
    out = io.BytesIO()
    schemaless_writer(out, schema, datum, disable_tuple_notation=True)
    return out.getvalue()


def _named_bytes(schema: Any, datum: Any) -> bytes:
    prepare = preparer(schema)
    assert prepare is not None
    out = io.BytesIO()
    schemaless_writer(out, schema, prepare(datum))
    return out.getvalue()


def test_named_union_branches_write_the_same_bytes(wire_samples: dict[str, Any]) -> None:
    """encode names union branches for fastavro (contracts._unions): the bytes must be those of
    fastavro's own search, for every wire record, with every optional record present too."""
    rolled: RolledUpFootprint = wire_samples["RolledUpFootprint"]
    full = rolled.model_copy(
        update={
            "dqi": DataQualityIndicators.model_validate(
                {"technologicalDQR": "1.5", "geographicalDQR": "2", "temporalDQR": "2.25"}
            ),
            "uncertainty": Uncertainty(lower95=Decimal("60.1"), upper95=Decimal("80.2")),
        }
    )
    for record in [*wire_samples.values(), full]:
        schema = parsed(type(record).__name__)
        if preparer(schema) is None:
            continue
        datum = to_avro_dict(record)
        assert _named_bytes(schema, to_avro_dict(record)) == _plain_bytes(schema, datum)


def test_union_naming_leaves_what_it_cannot_name_to_fastavro() -> None:
    """Two records in one union, a map, arrays (tuples, which tuple notation would misread) and a
    recursive record: the same bytes as fastavro's own search."""
    schema = parse_schema(
        {
            "type": "record",
            "name": "t.Node",
            "fields": [
                {"name": "label", "type": ["null", "string"]},
                {"name": "next", "type": ["null", "Node"]},
                {
                    "name": "either",
                    "type": [
                        "null",
                        {"type": "record", "name": "A", "fields": [{"name": "a", "type": "long"}]},
                        {"type": "record", "name": "B", "fields": [{"name": "b", "type": "bytes"}]},
                    ],
                },
                {"name": "tags", "type": ["null", {"type": "map", "values": ["null", "Node"]}]},
                {"name": "list", "type": ["null", {"type": "array", "items": ["null", "A"]}]},
            ],
        },
        named_schemas={},
    )
    leaf = {"label": None, "next": None, "either": None, "tags": None, "list": None}
    datum = {
        "label": "root",
        "next": {**leaf, "either": {"b": b"x"}, "list": ({"a": 1}, None, {"a": 2})},
        "either": {"a": 7},
        "tags": {"one": {**leaf, "label": "in a map"}, "none": None},
        "list": (),
    }
    expected = _plain_bytes(schema, copy.deepcopy(datum))  # (naming changes records in place)
    assert _named_bytes(schema, datum) == expected


def test_decimal_digits_survive_avro(serde: AvroSerde, wire_samples: dict[str, Any]) -> None:
    signed: SignedFootprint = wire_samples["SignedFootprint"]
    back = serde.decode(serde.encode("pcf.declared", signed), SignedFootprint)
    assert to_pact_json(back.footprint)["pcf"]["productMassPerDeclaredUnit"] == "5.50"
    assert str(back.footprint.pcf.pcf_excluding_biogenic_uptake) == "61.40"


def test_rejection_keeps_a_bounded_original(wire_samples: dict[str, Any]) -> None:
    rejection: Rejection = wire_samples["Rejection"]
    assert (
        len(rejection.original) == 64 * 1024
        and rejection.truncated
        and rejection.original_size == 70_000
    )
    assert rejection.field_path == "components[2].quantity" and rejection.error_code == "validation"


def test_producers_only_look_ids_up(wire_samples: dict[str, Any]) -> None:
    serde = AvroSerde(InMemorySchemaRegistry())
    with pytest.raises(
        UnknownSchemaError, match=r"not registered under subject 'pcf\.declared-value'"
    ):
        serde.encode("pcf.declared", wire_samples["SignedFootprint"])
    auto = AvroSerde(InMemorySchemaRegistry(), auto_register=True)
    assert auto.decode(
        auto.encode("pcf.declared", wire_samples["SignedFootprint"]), SignedFootprint
    )


# -- bad bytes ------------------------------------------------------------------------------


@pytest.fixture
def good(serde: AvroSerde, wire_samples: dict[str, Any]) -> bytes:
    return serde.encode("pcf.declared", wire_samples["SignedFootprint"])


BAD_FRAMES: list[tuple[str, Any, type[Exception], str]] = [
    ("empty", lambda g: b"", SerdeError, "is 0 bytes; a framed Avro record needs at least 5"),
    ("header_only", lambda g: g[:5], SerdeError, "malformed Avro for schema id 1"),
    (
        "wrong_magic",
        lambda g: b"\x01" + g[1:],
        SerdeError,
        "magic byte must be 0 (Confluent wire format), got 1",
    ),
    ("json_instead_of_avro", lambda g: b'{"id": 1}', SerdeError, "magic byte must be 0"),
    (
        "unknown_schema_id",
        lambda g: frame(99, g[5:]),
        UnknownSchemaError,
        "schema id 99 is not registered",
    ),
    (
        "truncated",
        lambda g: g[: len(g) // 2],
        SerdeError,
        "malformed Avro for schema id 1 (SignedFootprint)",
    ),
    (
        "trailing_bytes",
        lambda g: g + b"\x00\x00",
        SerdeError,
        "2 trailing bytes after the SignedFootprint record",
    ),
    ("not_bytes", lambda g: "text", SerdeError, "message value must be bytes (got str)"),
    (
        "oversized",
        lambda g: g + b"\x00" * (8 * 1024 * 1024),
        SerdeError,
        "at most 8388608 are accepted",
    ),
    ("wrong_record_type", lambda g: frame(2, g[5:]), SerdeError, "SignedBillOfMaterials"),
]


@pytest.mark.parametrize(
    ("mangle", "error", "message"), [c[1:] for c in BAD_FRAMES], ids=[c[0] for c in BAD_FRAMES]
)
def test_bad_frame(
    serde: AvroSerde, good: bytes, mangle: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        serde.decode(mangle(good), SignedFootprint)


def _raw(serde: AvroSerde, datum: dict[str, Any], schema_id: int = 1) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(
        buffer,
        parse_schema(expanded("SignedFootprint"), named_schemas={}),
        datum,
        disable_tuple_notation=True,
    )
    return frame(schema_id, buffer.getvalue())


def test_non_utf8_string_in_avro_is_a_serde_error(serde: AvroSerde, good: bytes) -> None:
    # the supplierId "example-cells" is the first string: replace its bytes with invalid UTF-8
    start = good.index(b"example-cells")
    bad = good[:start] + b"\xff\xfe" + good[start + 2 :]
    with pytest.raises(SerdeError, match="UnicodeDecodeError"):
        serde.decode(bad, SignedFootprint)


def test_rule_breaks_inside_valid_avro_are_validation_failures(
    serde: AvroSerde, wire_samples: dict[str, Any]
) -> None:
    # the v1 form (the typed footprint in Avro; v2 carries it as signed bytes)
    datum = to_avro_dict(wire_samples["SignedFootprint"].model_copy(update={"signed_body": None}))
    datum["footprint"]["pcf"]["pcfExcludingBiogenicUptake"] = "1e5"
    datum["footprint"]["pcf"]["declaredUnitAmount"] = "0"
    datum["signature"] = b"short"
    with pytest.raises(ValidationFailed) as info:
        serde.decode(_raw(serde, datum), SignedFootprint)
    assert {(v.path, v.code) for v in info.value.violations} == {
        ("footprint.pcf.pcfExcludingBiogenicUptake", "decimal_pattern"),
        ("footprint.pcf.declaredUnitAmount", "min_value"),
        ("signature", "signature_length"),
    }
    result = serde.check(_raw(serde, datum), SignedFootprint)
    assert not result.ok and len(result.violations) == 3


def test_payload_type_cannot_be_swapped(serde: AvroSerde, wire_samples: dict[str, Any]) -> None:
    datum = to_avro_dict(wire_samples["SignedFootprint"])
    datum["payloadType"] = "application/vnd.pcfx.bom+json"
    with pytest.raises(ValidationFailed, match="payloadType"):
        serde.decode(_raw(serde, datum), SignedFootprint)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes_only_raise_serde_errors(serde: AvroSerde, payload: bytes) -> None:
    # anything else escaping (IndexError, UnicodeDecodeError, ...) fails the test
    for data in (payload, b"\x00\x00\x00\x00\x01" + payload):
        with pytest.raises(SerdeError):
            serde.decode_datum(data)  # the wire layer: SerdeError and nothing else
        with contextlib.suppress(SerdeError, ValidationFailed):
            serde.decode(data, SignedFootprint)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_fuzz_mutated_records_only_raise_contract_errors(
    serde: AvroSerde, good: bytes, data: st.DataObject
) -> None:
    body = bytearray(good)
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(5, len(body) - 1))
        body[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(5, len(body)))
    with contextlib.suppress(SerdeError, ValidationFailed):
        serde.decode(bytes(body[:cut]), SignedFootprint)


# -- schema evolution on the read path -----------------------------------------------------


def test_reads_data_written_with_an_older_schema(
    registry: InMemorySchemaRegistry, wire_samples: dict[str, Any]
) -> None:
    """A v1 writer without a newer optional field is read by today's reader (resolution)."""
    old = expanded("SignedFootprint")
    old["fields"] = [f for f in old["fields"] if f["name"] != "batchProof"]
    old_id = registry.register("old-writer-value", json.dumps(old))
    buffer = io.BytesIO()
    datum = to_avro_dict(wire_samples["SignedFootprint"])
    del datum["batchProof"]
    schemaless_writer(
        buffer, parse_schema(old, named_schemas={}), datum, disable_tuple_notation=True
    )
    back = AvroSerde(registry).decode(frame(old_id, buffer.getvalue()), SignedFootprint)
    assert back == wire_samples["SignedFootprint"]


def test_unframe_and_frame() -> None:
    assert unframe(frame(513, b"abc")) == (513, memoryview(b"abc"))
    assert frame(1, b"") == b"\x00\x00\x00\x00\x01"
    assert struct.unpack(">bI", frame(2**31, b"")[:5]) == (0, 2**31)


def test_unknown_record_name_in_registry(registry: InMemorySchemaRegistry, good: bytes) -> None:
    other = registry.register(
        "x-value", json.dumps({"type": "record", "name": "Other", "fields": []})
    )
    with pytest.raises(UnknownSchemaError, match="not a record type we read"):
        AvroSerde(registry).decode(frame(other, b""), SignedFootprint)
    assert subject_for("pcf.bom") == "pcf.bom-value"


# -- hypothesis: model -> Avro -> model --------------------------------------------------------

decimals = st.decimals(
    allow_nan=False, allow_infinity=False, places=4, min_value=0, max_value=10**9
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fossil=decimals,
    mass=decimals,
    name=st.text(min_size=1, max_size=60),
    classes=st.lists(
        st.from_regex(r"\Aurn:[a-z]{1,8}:[A-Za-z0-9.-]{1,20}\Z"),
        min_size=1,
        max_size=4,
        unique=True,
    ),
    status=st.sampled_from(["Active", "Deprecated"]),
)
def test_hypothesis_model_avro_model(
    serde: AvroSerde,
    footprint: ProductFootprint,
    fossil: Decimal,
    mass: Decimal,
    name: str,
    classes: list[str],
    status: str,
) -> None:
    pcf = footprint.pcf.model_copy(
        update={"fossil_ghg_emissions": fossil, "product_mass_per_declared_unit": mass}
    )
    changed = footprint.model_copy(
        update={
            "pcf": pcf,
            "product_name_company": name,
            "product_classifications": tuple(classes),
            "status": status,
        }
    )
    record = parse_footprint(to_pact_json(changed))  # re-validated through the front door
    serde2 = AvroSerde(InMemorySchemaRegistry(), auto_register=True)
    back = serde2.decode(serde2.encode("t", record), ProductFootprint)
    assert back == record
    assert to_pact_json(back) == to_pact_json(record)
