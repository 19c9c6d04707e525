"""The publish step's record, built as its Avro datum without the models
(:func:`streams.adapt.rolled_up_datum`), is byte for byte the record the models build
(:func:`streams.adapt.rolled_up_record`), on varied results: complete chains, withheld
footprints, assumptions, incomplete and blocked products, tiny figures, long lineage, several
tiers. When its compiled rules cannot say yes it returns ``None``, and the models then refuse the
result with the error they always gave, naming the field."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from pcf_exchange.contracts import (
    AvroSerde,
    BillOfMaterials,
    InMemorySchemaRegistry,
    RolledUpFootprint,
    load_factors,
    register_all,
)
from pcf_exchange.contracts._fast import rolled_up_ok
from pcf_exchange.contracts._serde import from_avro_dict, to_avro_dict
from pcf_exchange.contracts.errors import RollupError, SerdeError, ValidationFailed
from pcf_exchange.streams._publish import PROVE_FIRST, RecordEncoder, deprecated_bytes
from pcf_exchange.streams.adapt import deprecated_record, rolled_up_datum, rolled_up_record
from pcf_exchange.streams.rollup import ComponentFootprint, RollupResult
from tests.streams.test_adapt import (
    ELECTROLYTE,
    ROOT,
    _named,
    _scaled,
    roll,
    signed_inputs,
    values,
)

TOPIC = "pcf.products"
PREVIOUS = "6f1e1f4e-3a63-4f0e-9a53-0d0bb5d6f0a1"
NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
MOMENTS = (
    datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
    datetime(2026, 3, 1, 20, 0, 0, tzinfo=timezone(timedelta(hours=8))),
)


@pytest.fixture(scope="module")
def serde() -> AvroSerde:
    registry = InMemorySchemaRegistry()
    register_all(registry)
    return AvroSerde(registry)


Case = list[tuple[RollupResult, BillOfMaterials]]


def _all(boms: list[BillOfMaterials], results: dict[str, RollupResult]) -> Case:
    return [(results[b.product_id], b) for b in boms if b.product_id in results]


def demo_chain() -> Case:
    fps, boms, factors = signed_inputs()
    return _all(boms, roll(boms, fps, factors))


def incomplete() -> Case:
    fps, boms, factors = signed_inputs()
    return _all(boms, roll(boms, [f for f in fps if f.product_id != ELECTROLYTE], factors))


def blocked() -> Case:
    fps, boms, factors = signed_inputs()
    module = _named(boms, "module")
    per_area = module.components[0].model_copy(update={"unit": "square meter"})
    broken = module.model_copy(update={"components": (per_area, *module.components[1:])})
    boms = [broken if b is module else b for b in boms]
    return _all(boms, roll(boms, fps, factors))


def assumptions_and_no_dqi() -> Case:
    docs = [
        f.model_copy(
            update={"fossil_carbon_content": None, "biogenic_carbon_content": None, "dqr": None}
        )
        for f in values(load_factors(ROOT / "producers/data/factors-cn.json"))
    ]
    fps, boms, factors = signed_inputs(docs)
    unrated = [replace(f, dqr={}, content_hash="") for f in fps]  # (no DQRs anywhere)
    return _all(boms, roll(boms, unrated, factors))


def withheld_without_product_info() -> Case:
    fps, boms, factors = signed_inputs()
    bare = [b.model_copy(update={"product_info": None}) for b in boms]
    return _all(bare, roll(bare, fps, factors))


def tiny_figures() -> Case:
    fps, boms, factors = signed_inputs()
    tiny = [replace(_scaled(f, Decimal("1e-13")), declared_unit_amount=Decimal(17)) for f in fps]
    bom = boms[0].model_copy(update={"process_emissions": None})
    return _all([bom], roll([bom], tiny, factors))


def long_lineage() -> Case:
    fps, boms, factors = signed_inputs()
    cell = _named(boms, "cell")
    lines = tuple(
        c.model_copy(update={"quantity": c.quantity * (i + 1) / 7})
        for i in range(60)
        for c in cell.components
    )
    long = cell.model_copy(update={"components": lines})
    boms = [long if b is cell else b for b in boms]
    return _all(boms, roll(boms, fps, factors))


CASES: dict[str, Callable[[], Case]] = {
    "demo-chain": demo_chain,
    "incomplete": incomplete,
    "blocked": blocked,
    "assumptions-no-dqi": assumptions_and_no_dqi,
    "withheld": withheld_without_product_info,
    "tiny-figures": tiny_figures,
    "long-lineage": long_lineage,
}


def _calls(case: Case) -> Iterator[tuple[RollupResult, dict[str, Any]]]:
    """Each result of *case* with the publish step's arguments: without and with a previous
    footprint, at each of :data:`MOMENTS`."""
    for result, bom in case:
        for previous in (None, PREVIOUS):
            for now in MOMENTS:
                yield result, {"sequence": 7, "bom": bom, "previous_pf_id": previous, "now": now}


@pytest.mark.parametrize("name", list(CASES))
def test_the_datum_gives_the_same_bytes_as_the_models(serde: AvroSerde, name: str) -> None:
    case = CASES[name]()
    assert case, "the case has results"
    for result, kwargs in _calls(case):
        record = rolled_up_record(result, **kwargs)
        datum = rolled_up_datum(result, **kwargs)
        assert datum is not None, (name, result.product_id, "the fast rules said no")
        old = serde.encode(TOPIC, record)
        read = from_avro_dict(RolledUpFootprint, copy.deepcopy(datum)).value
        assert read == serde.decode(old, RolledUpFootprint), "the models accept it"
        new = serde.encode_datum(TOPIC, RolledUpFootprint, datum)
        assert new == old, (name, result.product_id)


@pytest.mark.parametrize("name", list(CASES))
def test_the_compiled_encoder_writes_fastavros_bytes(serde: AvroSerde, name: str) -> None:
    """The publish step's :class:`RecordEncoder`, past its proving datums, on every case."""
    encoder = RecordEncoder(serde, TOPIC)
    encoder._unproven = 0  # (no fastavro beside it: its own bytes are compared here)
    for result, kwargs in _calls(CASES[name]()):
        datum = rolled_up_datum(result, **kwargs)
        assert datum is not None
        slow = serde.encode_datum(TOPIC, RolledUpFootprint, copy.deepcopy(datum))
        assert encoder.encode(datum) == slow, (name, result.product_id)
        # (and the Deprecated copy, from a datum read back as fastavro gives it)
        _, back = serde.decode_datum(slow)
        if back["footprint"] is not None:
            back["footprint"]["status"] = "Deprecated"
            expected = serde.encode_datum(TOPIC, RolledUpFootprint, copy.deepcopy(back))
            assert encoder.encode(back) == expected
    assert encoder.compiled > 0


def test_the_compiled_encoder_is_proven_first_and_turned_off_by_a_difference(
    serde: AvroSerde,
) -> None:
    result, bom = demo_chain()[-1]

    def datum() -> dict[str, Any]:
        built = rolled_up_datum(result, sequence=7, bom=bom, previous_pf_id=None, now=NOW)
        assert built is not None
        return built

    expected = serde.encode_datum(TOPIC, RolledUpFootprint, datum())
    encoder = RecordEncoder(serde, TOPIC)
    for _ in range(PROVE_FIRST + 3):
        assert encoder.encode(datum()) == expected
    assert encoder.compiled == PROVE_FIRST + 3
    # a compiled encoder that writes other bytes is caught while it is proven, and not used again
    wrong = RecordEncoder(serde, TOPIC)
    compiled = wrong._compiled
    assert compiled is not None

    def off_by_one(value: Any, out: bytearray) -> None:
        compiled(value, out)
        out += b"\x00"

    wrong._compiled = off_by_one
    assert wrong.encode(datum()) == expected and wrong._compiled is None
    assert wrong.encode(datum()) == expected and wrong.compiled == 0
    # a datum it refuses (a value of another type) is fastavro's, with fastavro's error
    refused = datum()
    refused["sequence"] = "7"
    with pytest.raises(SerdeError):
        RecordEncoder(serde, TOPIC).encode(refused)


def test_the_cases_cover_what_they_are_named_for() -> None:
    # (so that the byte comparison above meets every branch of the builder)
    def records(case: Case) -> list[RolledUpFootprint]:
        return [
            rolled_up_record(r, sequence=1, bom=b, previous_pf_id=None, now=MOMENTS[0])
            for r, b in case
        ]

    chain = records(demo_chain())
    assert all(r.footprint is not None for r in chain)
    assert any(r.uncertainty is not None for r in chain) and any(r.facility for r in chain)
    assert any(r.missing_components and r.footprint is None for r in records(incomplete()))
    reasons = {m.reason for r in records(blocked()) for m in r.missing_components}
    assert {"unit_mismatch", "other"} <= reasons
    flagged = records(assumptions_and_no_dqi())
    assert any(r.assumptions for r in flagged) and any(r.dqi is None for r in flagged)
    assert all(r.footprint_withheld for r in records(withheld_without_product_info()))
    (tiny,) = records(tiny_figures())
    assert tiny.footprint is not None
    assert max(len(i.inputs) for i in records(long_lineage())) >= 300


def _huge() -> tuple[RollupResult, BillOfMaterials]:
    fps, boms, factors = signed_inputs()
    huge = [_scaled(f, Decimal("1e55")) for f in fps]
    cathode = boms[0]
    lines = tuple(c.model_copy(update={"quantity": Decimal("1e10")}) for c in cathode.components)
    bom = cathode.model_copy(update={"components": lines})
    return roll([bom], huge, factors)[bom.product_id], bom


def test_a_figure_too_large_is_left_to_the_models_which_name_it() -> None:
    result, bom = _huge()
    kwargs: dict[str, Any] = {"sequence": 1, "bom": bom, "previous_pf_id": None}
    assert rolled_up_datum(result, now=MOMENTS[0], **kwargs) is None
    with pytest.raises(RollupError, match="more digits before the point") as raised:
        rolled_up_record(result, now=MOMENTS[0], **kwargs)
    assert raised.value.path.startswith("pcf.")


def test_a_naive_time_is_left_to_the_models_which_name_it() -> None:
    result, bom = demo_chain()[0]
    kwargs: dict[str, Any] = {"sequence": 1, "bom": bom, "previous_pf_id": None}
    naive = datetime(2026, 3, 1, 12, 0, 0)
    assert rolled_up_datum(result, now=naive, **kwargs) is None
    with pytest.raises(ValidationFailed, match="'created': must be an RFC 3339 date-time"):
        rolled_up_record(result, now=naive, **kwargs)


def test_a_lineage_id_that_is_no_uuid_is_left_to_the_models_which_name_it() -> None:
    fps, boms, factors = signed_inputs()
    cathode = boms[0]
    renamed: list[ComponentFootprint] = [replace(f, footprint_id="not-a-uuid") for f in fps]
    result = roll([cathode], renamed, factors)[cathode.product_id]
    kwargs: dict[str, Any] = {"sequence": 1, "bom": cathode, "previous_pf_id": None}
    assert rolled_up_datum(result, now=MOMENTS[0], **kwargs) is None
    with pytest.raises(ValidationError, match="footprintId"):
        rolled_up_record(result, now=MOMENTS[0], **kwargs)


def _good_datum() -> dict[str, Any]:
    result, bom = next((r, b) for r, b in demo_chain() if r.uncertainty is not None)
    datum = rolled_up_datum(result, sequence=1, bom=bom, previous_pf_id=None, now=MOMENTS[0])
    assert datum is not None and datum["inputs"] and datum["facility"] is None
    return datum


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(datum: dict[str, Any]) -> None:
        target: Any = datum
        for step in path[:-1]:
            target = target[step]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return apply


_DELETE = object()

MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "productId not a URN": _set(("productId",), "PACK-282"),
    "owner empty": _set(("owner",), ""),
    "negative sequence": _set(("sequence",), -1),
    "sequence a boolean": _set(("sequence",), True),
    "bomRevision missing": _set(("bomRevision",), _DELETE),
    "declared amount zero": _set(("declaredUnit", "amount"), "0"),
    "declared unit unknown": _set(("declaredUnit", "unit"), "furlong"),
    "headline not a decimal": _set(("pcfExcludingBiogenicUptake",), "1e5"),
    "own emissions missing a figure": _set(("ownEmissions", "otherKgCO2e"), _DELETE),
    "lineage hash upper case": _set(("inputs", 0, "contentHash"), "A" * 64),
    "lineage footprint without id": _set(("inputs", 0, "footprintId"), None),
    "lineage quantity negative": _set(("inputs", 0, "quantity"), "-1"),
    "lineage kind unknown": _set(("inputs", 0, "kind"), "guess"),
    "lineage unknown field": _set(("inputs", 0, "note"), "x"),
    "coverage over 100": _set(("completeness", "coveragePercent"), "100.01"),
    "complete as text": _set(("completeness", "complete"), "true"),
    "share over 100": _set(("primaryDataShare",), "101"),
    "dqr over 5": _set(("dqi", "temporalDQR"), "5.01"),
    "interval upside down": _set(("uncertainty", "lower95"), "1" + "0" * 40),
    "interval with one bound": _set(("uncertainty", "upper95"), None),
    "computedAt naive": _set(("computedAt",), datetime(2026, 1, 1)),
    "method empty": _set(("method",), ""),
    "assumption not text": _set(("assumptions",), [1]),
    "missing reason unknown": _set(("missingComponents",), [{"componentIndex": 0}]),
    "unknown field": _set(("colour",), "green"),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_the_compiled_rules_refuse_what_the_model_refuses(name: str) -> None:
    good = _good_datum()
    assert rolled_up_ok(good)
    assert from_avro_dict(RolledUpFootprint, copy.deepcopy(good)).value is not None
    bad = copy.deepcopy(good)
    MUTATIONS[name](bad)
    assert not rolled_up_ok(bad), name
    assert from_avro_dict(RolledUpFootprint, bad).value is None, f"the model accepts {name}"


def test_the_models_datum_passes_the_compiled_rules() -> None:
    # the rules are the models' rules and no stricter on what the models write
    for case in CASES.values():
        for result, bom in case():
            record = rolled_up_record(
                result, sequence=1, bom=bom, previous_pf_id=PREVIOUS, now=MOMENTS[0]
            )
            datum = to_avro_dict(record)
            datum |= {
                k: list(v) for k, v in datum.items() if isinstance(v, tuple)
            }  # (the models give tuples; a datum built for the wire has lists)
            datum["inputs"] = [dict(i) for i in datum["inputs"]]
            assert rolled_up_ok(datum), result.product_id
            assert isinstance(datum["computedAt"], datetime)
            for line in datum["inputs"]:
                assert line["footprintId"] is None or isinstance(line["footprintId"], UUID)


def _copy_by_datum(serde: AvroSerde, stored: bytes) -> bytes:
    _, datum = serde.decode_datum(stored)
    datum["footprint"]["status"] = "Deprecated"
    return serde.encode_datum(TOPIC, RolledUpFootprint, datum)


@pytest.mark.parametrize("name", list(CASES))
def test_the_deprecated_copy_on_the_bytes_is_the_copy_through_the_datum(
    serde: AvroSerde, name: str
) -> None:
    schema_id = serde.schema_id(TOPIC, RolledUpFootprint)
    seen = 0
    for result, bom in CASES[name]():
        for previous in (None, PREVIOUS):
            record = rolled_up_record(result, sequence=3, bom=bom, previous_pf_id=previous, now=NOW)
            stored = serde.encode(TOPIC, record)
            if record.footprint is None:
                assert deprecated_bytes(stored, PREVIOUS, schema_id) is None
                continue
            seen += 1
            copy_ = deprecated_bytes(stored, str(record.footprint.id), schema_id)
            assert copy_ is not None and copy_ == _copy_by_datum(serde, stored)
            retired = deprecated_record(record)
            assert retired is not None and copy_ == serde.encode(TOPIC, retired)
            # anything not exactly as expected is left to the datum path
            assert deprecated_bytes(copy_, str(record.footprint.id), schema_id) is None
            assert deprecated_bytes(stored, str(record.footprint.id), schema_id + 1) is None
            assert deprecated_bytes(stored, PREVIOUS.replace("6", "7"), schema_id) is None
            assert deprecated_bytes(stored[:-40], str(record.footprint.id), schema_id) in (
                None,
                copy_[:-40],
            )
    assert seen or name in ("incomplete", "blocked", "withheld")


def test_a_truncated_record_is_left_to_the_datum_path(serde: AvroSerde) -> None:
    result, bom = demo_chain()[0]
    record = rolled_up_record(result, sequence=3, bom=bom, previous_pf_id=PREVIOUS, now=NOW)
    assert record.footprint is not None
    stored = serde.encode(TOPIC, record)
    schema_id = serde.schema_id(TOPIC, RolledUpFootprint)
    fid = str(record.footprint.id)
    cut = stored.find(fid.encode()) + 36 + 6  # (the marker and nothing after it)
    assert deprecated_bytes(stored[:cut], fid, schema_id) is None
