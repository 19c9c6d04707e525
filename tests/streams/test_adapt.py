"""From signed contracts records to the core and back: the demo supply chain rolls up into valid
PACT v3 footprints with lineage, and nothing unknown is read as zero."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TypeVar, cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from contracts import (
    AvroSerde,
    BillOfMaterials,
    EmissionFactor,
    InMemorySchemaRegistry,
    LoadedRecord,
    RolledUpFootprint,
    SignedEmissionFactor,
    SignedFootprint,
    content_hash,
    load_boms,
    load_factors,
    load_footprints,
    register_all,
    sign,
    to_pact_json,
)
from contracts._jsonio import dumps
from contracts.errors import RollupError
from streams.adapt import core_bom, core_factor, core_footprint, rolled_up_record
from streams.rollup import ComponentFootprint, Factor, RollupResult, run_batch
from tests.contracts.test_contracts_pact_examples import openapi_validator

T = TypeVar("T", bound=BaseModel)
ROOT = Path(__file__).resolve().parents[2]
KEY = Ed25519PrivateKey.generate()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def values(loaded: Sequence[LoadedRecord[T]]) -> list[T]:
    out = [r.value for r in loaded]
    assert all(v is not None for v in out), [r.error for r in loaded]
    return [v for v in out if v is not None]


def signed_inputs(
    factor_docs: list[EmissionFactor] | None = None,
) -> tuple[list[ComponentFootprint], list[BillOfMaterials], list[Factor]]:
    footprints = []
    for fp in values(load_footprints(ROOT / "demo/lfp/suppliers-footprints.json")):
        signed = cast(
            SignedFootprint, sign(KEY, fp, supplier_id=fp.company_ids[0], key_id="k", sequence=1)
        )
        footprints.append(
            core_footprint(fp, sequence=signed.sequence, content_hash=content_hash(signed))
        )
    boms = values(load_boms(ROOT / "demo/lfp/manufacturers-boms.json"))
    factors = []
    docs = factor_docs or values(load_factors(ROOT / "producers/data/factors-cn.json"))
    for factor in docs:
        signed_factor = cast(
            SignedEmissionFactor,
            sign(KEY, factor, supplier_id="operator", key_id="op", sequence=1),
        )
        factors.append(core_factor(factor, sequence=1, content_hash=content_hash(signed_factor)))
    return footprints, boms, factors


def roll(boms: list[BillOfMaterials], fps: list[ComponentFootprint], factors: list[Factor]):
    return run_batch(fps, [core_bom(b) for b in boms], factors)


def test_the_demo_chain_rolls_up_into_valid_pact_v3(pact_dir: Path) -> None:
    fps, boms, factors = signed_inputs()
    results = roll(boms, fps, factors)
    validator = openapi_validator(pact_dir)
    for bom in boms:
        result = results.get(bom.product_id)
        assert result is not None and result.is_complete, bom.product_name
        record = rolled_up_record(result, sequence=1, bom=bom, previous_pf_id=None, now=NOW)
        assert record.footprint is not None
        doc = json.loads(dumps(to_pact_json(record.footprint)))
        assert [e.message for e in validator.iter_errors(doc)] == []
        assert doc["id"] == result.result_id
        assert Decimal(doc["pcf"]["pcfExcludingBiogenicUptake"]) == result.pcf
        own = record.own_emissions
        total = (
            own.direct_kg_co2e
            + own.electricity_kg_co2e
            + sum((i.contribution_kg_co2e for i in record.inputs), Decimal(0))
        )
        assert total == record.pcf_excluding_biogenic_uptake, "lineage recomputes the figure"


def test_cell_uses_the_copper_factor_as_flagged_secondary_data() -> None:
    fps, boms, factors = signed_inputs()
    cell = next(b for b in boms if b.product_name and "cell" in b.product_name)
    record = rolled_up_record(
        roll(boms, fps, factors)[cell.product_id],
        sequence=1,
        bom=cell,
        previous_pf_id=None,
        now=NOW,
    )
    copper = next(i for i in record.inputs if i.component_index == 3)
    assert copper.kind == "factor" and copper.factor_id == "bg:glo-copper-cathode-2023"
    assert record.completeness.components_on_fallback == 2  # copper foil + aluminium foil
    assert record.facility is not None and record.facility.city == "Ningde"


def test_a_new_result_names_its_predecessor() -> None:
    fps, boms, factors = signed_inputs()
    pack = next(b for b in boms if b.product_name and "pack" in b.product_name)
    first: RollupResult = roll(boms, fps, factors)[pack.product_id]
    cheaper = [f if "lithium" not in f.product_id else _scaled(f, Decimal("0.5")) for f in fps]
    second = roll(boms, cheaper, factors)[pack.product_id]
    assert second.pcf is not None and first.pcf is not None and second.pcf < first.pcf
    record = rolled_up_record(second, sequence=2, bom=pack, previous_pf_id=first.result_id, now=NOW)
    assert record.footprint is not None
    assert [str(u) for u in record.footprint.preceding_pf_ids or ()] == [first.result_id]


def _scaled(fp: ComponentFootprint, k: Decimal) -> ComponentFootprint:
    return replace(
        fp,
        sequence=fp.sequence + 1,
        figures={name: v * k for name, v in fp.figures.items()},
        stages={},
        content_hash="",
    )


def test_unstated_carbon_content_is_not_read_as_zero() -> None:
    docs = [
        f.model_copy(update={"fossil_carbon_content": None, "biogenic_carbon_content": None})
        for f in values(load_factors(ROOT / "producers/data/factors-cn.json"))
    ]
    fps, boms, factors = signed_inputs(docs)
    cell = next(b for b in boms if b.product_name and "cell" in b.product_name)
    result = roll(boms, fps, factors)[cell.product_id]
    assert "fossilCarbonContent" in result.metric_gaps
    record = rolled_up_record(result, sequence=1, bom=cell, previous_pf_id=None, now=NOW)
    assert record.footprint is None, "PACT needs fossilCarbonContent: no footprint is issued"
    assert record.pcf_excluding_biogenic_uptake == result.pcf


def test_a_tiny_footprint_with_many_digits_still_gives_a_readable_record() -> None:
    # A supplier states a tiny footprint per 17 units: the division gives 50 significant digits
    # below 1e-13, more than the 64 characters every reader accepts. This used to raise in
    # rolled_up_record (and stop the streams worker on every restart).
    fps, boms, factors = signed_inputs()
    cathode = boms[0]
    tiny = [replace(_scaled(f, Decimal("1e-13")), declared_unit_amount=Decimal(17)) for f in fps]
    bom = cathode.model_copy(update={"process_emissions": None})
    result = roll([bom], tiny, factors)[bom.product_id]
    assert result.pcf is not None and len(format(result.pcf, "f")) > 64
    record = rolled_up_record(result, sequence=1, bom=bom, previous_pf_id=None, now=NOW)
    assert record.footprint is not None
    issued = record.footprint.pcf.pcf_excluding_biogenic_uptake
    assert abs(issued - result.pcf) <= Decimal("1e-62")
    registry = InMemorySchemaRegistry()
    register_all(registry)
    serde = AvroSerde(registry)
    back = serde.decode(serde.encode("pcf.products", record), RolledUpFootprint)
    assert back.footprint == record.footprint
    assert abs(back.pcf_excluding_biogenic_uptake - result.pcf) <= Decimal("1e-62")


def test_a_figure_too_large_for_any_record_is_an_error_naming_it() -> None:
    fps, boms, factors = signed_inputs()
    huge = [_scaled(f, Decimal("1e55")) for f in fps]
    cathode = boms[0]
    lines = tuple(c.model_copy(update={"quantity": Decimal("1e10")}) for c in cathode.components)
    bom = cathode.model_copy(update={"components": lines})
    result = roll([bom], huge, factors)[bom.product_id]
    with pytest.raises(RollupError, match="more digits before the point") as raised:
        rolled_up_record(result, sequence=1, bom=bom, previous_pf_id=None, now=NOW)
    assert raised.value.path.startswith("pcf.")


@pytest.fixture
def pact_dir() -> Path:
    path = ROOT.parent / "shared" / "pact"
    if not (path / "v3" / "openapi.yaml").exists():
        pytest.skip(f"PACT spec files not found at {path}")
    return path
