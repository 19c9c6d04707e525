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

from pcf_exchange.contracts import (
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
from pcf_exchange.contracts._jsonio import dumps
from pcf_exchange.contracts.errors import RollupError
from pcf_exchange.streams.adapt import (
    CARBON_CONTENT_AS_ZERO,
    core_bom,
    core_factor,
    core_footprint,
    deprecated_record,
    rolled_up_record,
)
from pcf_exchange.streams.rollup import ComponentFootprint, Factor, RollupResult, run_batch
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


def _named(boms: list[BillOfMaterials], word: str) -> BillOfMaterials:
    return next(b for b in boms if b.product_name and word in b.product_name)


def _record(result: RollupResult, bom: BillOfMaterials, sequence: int = 1) -> RolledUpFootprint:
    """The first record of a product (no predecessor)."""
    return rolled_up_record(result, sequence=sequence, bom=bom, previous_pf_id=None, now=NOW)


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


def test_a_superseded_record_is_the_same_record_with_its_footprint_deprecated(
    pact_dir: Path,
) -> None:
    # PACT v3: a footprint is immutable; the one a new footprint supersedes MUST become
    # Deprecated, and that status is the only change allowed
    fps, boms, factors = signed_inputs()
    pack = _named(boms, "pack")
    record = _record(roll(boms, fps, factors)[pack.product_id], pack, sequence=3)
    retired = deprecated_record(record)
    assert retired is not None and retired.footprint is not None and record.footprint is not None
    assert (record.footprint.status, retired.footprint.status) == ("Active", "Deprecated")
    unchanged = {"footprint": {"status"}}
    assert retired.model_dump(exclude=unchanged) == record.model_dump(exclude=unchanged)
    doc = json.loads(dumps(to_pact_json(retired.footprint)))
    assert [e.message for e in openapi_validator(pact_dir).iter_errors(doc)] == []
    registry = InMemorySchemaRegistry()
    register_all(registry)
    serde = AvroSerde(registry)
    assert serde.decode(serde.encode("pcf.products", retired), RolledUpFootprint) == retired
    # a result that issued no footprint has nothing to deprecate
    assert deprecated_record(record.model_copy(update={"footprint": None})) is None


ELECTROLYTE = "urn:pact:js-electrolyte.cn:product-id:LIPF6-EC"


def test_a_missing_input_is_named_at_every_tier_above_it() -> None:
    fps, boms, factors = signed_inputs()
    results = roll(boms, [f for f in fps if f.product_id != ELECTROLYTE], factors)
    cell, module = _named(boms, "cell"), _named(boms, "module")
    on_cell = _record(results[cell.product_id], cell)
    assert [(m.component_index, m.product_id, m.reason) for m in on_cell.missing_components] == [
        (2, ELECTROLYTE, "no_footprint")
    ]
    assert (on_cell.completeness.components_resolved, on_cell.completeness.complete) == (5, False)
    # the module has every input it names, but one of them is incomplete: it says which, and why
    on_module = _record(results[module.product_id], module)
    (gap,) = on_module.missing_components
    assert (gap.component_index, gap.product_id, gap.reason) == (0, cell.product_id, "other")
    assert gap.detail == f"its input is incomplete; missing further up: product:{ELECTROLYTE}"
    assert on_module.completeness.components_resolved == 2  # the cell's part still counts
    assert not on_module.completeness.complete and on_module.footprint is None


def test_units_that_do_not_convert_are_named_and_block_the_products_above() -> None:
    fps, boms, factors = signed_inputs()
    module, pack = _named(boms, "module"), _named(boms, "pack")
    per_area = module.components[0].model_copy(update={"unit": "square meter"})
    broken = module.model_copy(update={"components": (per_area, *module.components[1:])})
    boms = [broken if b is module else b for b in boms]
    results = roll(boms, fps, factors)
    on_module = _record(results[module.product_id], broken)
    (gap,) = on_module.missing_components
    assert (gap.component_index, gap.product_id, gap.reason) == (
        0,
        module.components[0].product_id,
        "unit_mismatch",
    )
    assert gap.detail is not None and gap.detail.startswith("components[0]")
    assert "square meter" in gap.detail
    assert on_module.completeness.components_resolved == 1
    on_pack = _record(results[pack.product_id], pack)
    (blocked,) = on_pack.missing_components
    assert (blocked.component_index, blocked.product_id) == (0, module.product_id)
    assert blocked.detail is not None and "no usable roll-up" in blocked.detail
    assert not on_pack.completeness.complete


def _scaled(fp: ComponentFootprint, k: Decimal) -> ComponentFootprint:
    return replace(
        fp,
        sequence=fp.sequence + 1,
        figures={name: v * k for name, v in fp.figures.items()},
        stages={},
        content_hash="",
    )


def test_unstated_carbon_content_counts_as_zero_and_is_flagged() -> None:
    # (Until issue #21 an unstated fossilCarbonContent was a metric gap, and every product above
    # such a factor silently lost its PACT footprint. Now it counts as 0 by a flagged assumption.)
    docs = [
        f.model_copy(update={"fossil_carbon_content": None, "biogenic_carbon_content": None})
        for f in values(load_factors(ROOT / "producers/data/factors-cn.json"))
    ]
    fps, boms, factors = signed_inputs(docs)
    cell = next(b for b in boms if b.product_name and "cell" in b.product_name)
    result = roll(boms, fps, factors)[cell.product_id]
    assert "fossilCarbonContent" not in result.metric_gaps
    record = rolled_up_record(result, sequence=1, bom=cell, previous_pf_id=None, now=NOW)
    assert record.footprint is not None and record.footprint_withheld is None
    assert record.pcf_excluding_biogenic_uptake == result.pcf
    assert record.assumptions and all(CARBON_CONTENT_AS_ZERO in a for a in record.assumptions)


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
