"""The runner's generated reader (``gateway.runtime._rollup_reader``) gives, from the bytes, the
record the fastavro path gives (``decode_datum`` + ``record_from_datum``), field for field and
key order included, for every roll-up shape the tests and the bench produce; bytes it cannot
read (truncated, garbage, another schema) leave it to the fastavro path, which raises as before.
``test_adapter_datum.py`` runs every one of its variants through :func:`same_both_ways`."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader

from pcf_exchange.contracts import AvroSerde, InMemorySchemaRegistry, RolledUpFootprint
from pcf_exchange.contracts._schemas import schema_json
from pcf_exchange.contracts._serde import subject_for
from pcf_exchange.contracts.errors import ContractError
from pcf_exchange.gateway._adapter import record_from_datum
from pcf_exchange.gateway.runtime._rollup_reader import RollupReader, Unsupported, compile_reader
from tests.gateway._rollups import rolled_footprint

TOPIC = "pcf.products"


def _registry() -> InMemorySchemaRegistry:
    registry = InMemorySchemaRegistry()
    registry.register(subject_for(TOPIC), schema_json("RolledUpFootprint"))
    return registry


def _old_way(serde: AvroSerde, value: bytes) -> Any:
    model, datum = serde.decode_datum(value)
    assert model is RolledUpFootprint
    record, category = record_from_datum(datum)
    return record, category, datum["productId"]


def _text(found: Any) -> str:
    return json.dumps(found, default=repr)  # key order and Decimal text both count


def same_both_ways(rolled: RolledUpFootprint) -> tuple[Any, Any]:
    """(record, category) of *rolled*'s bytes, asserted equal both ways; the generated reader
    must have read it unless ``pcfx.fieldLabels`` is set (that one takes the model's way)."""
    registry = _registry()
    serde = AvroSerde(registry)
    value = serde.encode(TOPIC, rolled)
    old = _old_way(serde, value)
    fast = RollupReader(registry).read(value)
    labels = rolled.footprint is not None and rolled.footprint.pcfx is not None
    labels = labels and rolled.footprint.pcfx.field_labels is not None  # type: ignore[union-attr]
    if labels:
        assert fast is None
    else:
        assert fast is not None
        assert _text(fast) == _text(old)
        assert fast == old
    return old[0], old[1]


def test_the_factory_shapes() -> None:
    for category in (None, "STEEL", "LITHIUM_BATTERY"):
        same_both_ways(rolled_footprint(category=category))


def test_every_bench_record() -> None:
    from bench.bench_gateway import rollup

    for i in range(50):
        same_both_ways(rollup(i))


def _value() -> tuple[InMemorySchemaRegistry, bytes]:
    registry = _registry()
    return registry, AvroSerde(registry).encode(TOPIC, rolled_footprint())


def _outcome(serde: AvroSerde, value: bytes) -> Any:
    try:
        return _old_way(serde, value)
    except ContractError as exc:
        return type(exc), str(exc)


def test_truncated_and_garbage_bytes_end_as_on_the_fastavro_path() -> None:
    registry, value = _value()
    serde, reader = AvroSerde(registry), RollupReader(registry)
    rng = random.Random(19)
    cases = [value[:cut] for cut in range(len(value))]
    cases += [value + b"\x00", value + b"garbage"]
    for _ in range(300):
        damaged = bytearray(value)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(5, len(damaged))] = rng.randrange(256)
        cases.append(bytes(damaged))
    cases += [value[:5] + bytes(rng.randrange(256) for _ in range(n)) for n in (0, 1, 40, 900)]
    read = 0
    for case in cases:
        fast = reader.read(case)
        if fast is None:
            continue  # the runner decodes it the old way: the same error or record as before
        read += 1
        # what the generated reader accepts, fastavro accepts too and gives the same record
        assert _text(fast) == _text(_outcome(serde, case))
    assert read > 0  # some single-byte changes (inside a text) are still a valid roll-up


def test_an_unknown_or_other_schema_id_takes_the_fastavro_path() -> None:
    registry, value = _value()
    reader = RollupReader(registry)
    assert reader.read(value[:1] + (99).to_bytes(4, "big") + value[5:]) is None
    other = registry.register(subject_for("pcf.rejected"), schema_json("Rejection"))
    assert reader.read(value[:1] + other.to_bytes(4, "big") + value[5:]) is None
    assert reader.read(bytearray(value)) is None  # type: ignore[arg-type]
    assert reader.read(value) is not None


def test_what_the_generator_does_not_implement_is_refused_at_compile_time() -> None:
    with pytest.raises(Unsupported):
        compile_reader(
            {"type": "record", "name": "F", "fields": [{"name": "x", "type": "float"}]},
            plain=lambda _: False,
        )
    union = {"name": "u", "type": ["null", "string", "long"]}
    with pytest.raises(Unsupported):
        compile_reader({"type": "record", "name": "U", "fields": [union]}, plain=lambda _: False)


def test_instant_text_is_format_datetime() -> None:
    from pcf_exchange.contracts._types import format_datetime
    from pcf_exchange.gateway.runtime._rollup_reader import _time, _time_text

    rng = random.Random(7)
    micros = [0, 1, -1, 1_767_225_600_000_000, 1_767_225_600_123_456, 253_402_300_799_999_999]
    micros += [rng.randrange(-62_135_596_800_000_000, 253_402_300_800_000_000) for _ in range(5000)]
    for m in micros:
        assert _time_text(m) == format_datetime(_time(m))


def test_a_map_with_a_repeated_key_reads_as_fastavro_reads_it() -> None:
    """The last of a repeated key wins, and a ``None`` there is left out in plain mode."""
    schema = {
        "type": "record",
        "name": "M",
        "fields": [{"name": "m", "type": {"type": "map", "values": ["null", "string"]}}],
    }
    # one block of two entries: "a" -> "x", then "a" -> null; then the end of the map
    value = b"\x04" + b"\x02a" + b"\x02\x02x" + b"\x02a" + b"\x00" + b"\x00"
    plain = compile_reader(schema, plain=lambda _: True)
    datum = compile_reader(schema, plain=lambda _: False)
    assert plain(value, 0) == ({"m": {}}, len(value))
    assert datum(value, 0) == ({"m": {"a": None}}, len(value))
    read = schemaless_reader(io.BytesIO(value), parse_schema(schema), None)
    assert read == {"m": {"a": None}}
