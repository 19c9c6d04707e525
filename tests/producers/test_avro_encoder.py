"""The producer's Avro encoder writes exactly fastavro's bytes, or steps aside."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from pcf_exchange.contracts import (
    AvroSerde,
    BillOfMaterials,
    EmissionFactor,
    InMemorySchemaRegistry,
    SupplierKey,
    parse,
    parse_footprint,
    register_all,
    sign,
    sign_batch,
)
from pcf_exchange.contracts._avro_encoder import Unsupported, WireEncoder, compile_encoder
from tests.producers.conftest import bom_json, factor_json, footprint_json

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.fixture
def serde() -> AvroSerde:
    registry = InMemorySchemaRegistry()
    register_all(registry)
    return AvroSerde(registry)


def _key_record() -> SupplierKey:
    from pcf_exchange.producers.keys import key_id_of, raw_public_key

    public = KEY.public_key()
    return SupplierKey(
        supplier_id="example-cells",
        key_id=key_id_of(public),
        public_key=raw_public_key(public),
        valid_from=datetime(2025, 1, 1, tzinfo=UTC),
        revoked_at=datetime(2026, 1, 1, tzinfo=UTC),
        registered_by="operator",
    )


@pytest.mark.parametrize(
    ("topic", "record"),
    [
        ("pcf.declared", lambda: parse_footprint(footprint_json(1))),
        ("pcf.bom", lambda: parse(BillOfMaterials, bom_json())),
        ("pcf.factors", lambda: parse(EmissionFactor, factor_json())),
        ("pcf.keys", _key_record),
    ],
)
def test_every_signed_type_encodes_byte_identically(
    serde: AvroSerde, topic: str, record: Any
) -> None:
    wire = WireEncoder(serde)
    payload = record()
    single = sign(KEY, payload, supplier_id="s", key_id="k", sequence=7)
    batched = sign_batch(KEY, [payload, payload], supplier_id="s", key_id="k", sequences=[1, 2])
    for signed in (single, *batched.records):
        assert wire.encode(topic, signed) == serde.encode(topic, signed)
    assert any(t.startswith(topic) for t in wire.fast_types), "the fast path was proven and used"


_optional_top = ["comment", "validityPeriodStart", "validityPeriodEnd", "productClassifications"]
_optional_pcf = [
    "geographyCountrySubdivision",
    "boundaryProcessesDescription",
    "biogenicCarbonContent",
    "biogenicCO2Uptake",
    "landUseChangeGhgEmissions",
    "aircraftGhgEmissions",
    "packagingEmissionsIncluded",
    "packagingGhgEmissions",
    "productOrSectorSpecificRules",
    "secondaryEmissionFactorSources",
    "primaryDataShare",
    "dqi",
    "verification",
]


@given(
    drop_top=st.sets(st.sampled_from(_optional_top)),
    drop_pcf=st.sets(st.sampled_from(_optional_pcf)),
    extensions=st.booleans(),
    name=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s and s.isprintable()),
    n=st.integers(0, 3_000),
)
@settings(max_examples=60, deadline=None)
def test_footprints_with_and_without_optional_fields(
    drop_top: set[str], drop_pcf: set[str], extensions: bool, name: str, n: int
) -> None:
    registry = InMemorySchemaRegistry()
    register_all(registry)
    serde = AvroSerde(registry)
    data = footprint_json(n, productNameCompany=name)
    for field in drop_top:
        data.pop(field, None)
    for field in drop_pcf:
        data["pcf"].pop(field, None)
    if "packagingEmissionsIncluded" in drop_pcf:
        data["pcf"].pop("packagingGhgEmissions", None)
    if not extensions:
        data.pop("extensions", None)
    signed = sign(KEY, parse_footprint(data), supplier_id="s", key_id="k", sequence=n)
    assert WireEncoder(serde).encode("pcf.declared", signed) == serde.encode("pcf.declared", signed)


def test_unsupported_schemas_are_refused_at_compile_time() -> None:
    with pytest.raises(Unsupported, match="only \\[null, T\\] unions"):
        compile_encoder(
            {"type": "record", "name": "R", "fields": [{"name": "a", "type": ["int", "string"]}]}
        )
    with pytest.raises(Unsupported, match="'double'"):
        compile_encoder(
            {"type": "record", "name": "R", "fields": [{"name": "a", "type": "double"}]}
        )


def test_a_datum_the_fast_path_cannot_write_falls_back(serde: AvroSerde, monkeypatch: Any) -> None:
    wire = WireEncoder(serde)
    signed = sign(
        KEY, parse(EmissionFactor, factor_json()), supplier_id="s", key_id="k", sequence=1
    )
    wire.encode("pcf.factors", signed)
    from pcf_exchange.contracts import _avro_encoder as _avro

    monkeypatch.setattr(_avro, "to_avro_dict", lambda record: {})  # fast path: KeyError
    assert wire.encode("pcf.factors", signed) == serde.encode("pcf.factors", signed)


@pytest.mark.parametrize(
    ("kind", "value", "fits"),
    [
        ("long", (1 << 63) - 1, True),
        ("long", -(1 << 63), True),
        ("long", 1 << 63, False),
        ("long", -(1 << 63) - 1, False),
        ("int", (1 << 31) - 1, True),
        ("int", -(1 << 31), True),
        ("int", 1 << 31, False),
        ("int", -(1 << 31) - 1, False),
    ],
)
def test_an_integer_outside_its_avro_type_is_refused_by_the_fast_path(
    kind: str, value: int, fits: bool
) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": kind}]}
    encode = compile_encoder(schema)
    out = bytearray()
    parsed = fastavro.parse_schema(schema)
    if fits:
        encode({"a": value}, out)
        expected = io.BytesIO()
        fastavro.schemaless_writer(expected, parsed, {"a": value})
        assert bytes(out) == expected.getvalue()
        return
    with pytest.raises(ValueError, match=f"Avro {kind}"):  # (the caller falls back to fastavro)
        encode({"a": value}, out)
    if kind == "long":  # (fastavro refuses a long past 64 bits; an int past 32 it writes as is)
        with pytest.raises((ValueError, OverflowError)):
            fastavro.schemaless_writer(io.BytesIO(), parsed, {"a": value})
