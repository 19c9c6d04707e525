"""Background factors as roll-up inputs (streams.adapt): a value-only factor counts as fossil by a
flagged assumption, so products above it -- at any depth -- get a PACT footprint that says so; a
split factor gives its own fossil / land-use figures; lineage names factor id *and* version; a new
version supersedes the old; a product that still gets no footprint says why."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from pcf_exchange.contracts import BillOfMaterials, EmissionFactor, RolledUpFootprint, parse
from pcf_exchange.pcfx.cli import app
from pcf_exchange.streams.adapt import (
    ASSUMED,
    CARBON_CONTENT_AS_ZERO,
    VALUE_ONLY_AS_FOSSIL,
    core_bom,
    core_factor,
    factor_assumptions,
    payload_hash,
    rolled_up_record,
)
from pcf_exchange.streams.rollup import RollupResult, run_batch

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FOOTPRINTS = Path(__file__).resolve().parents[2] / "demo/lfp/suppliers-footprints.json"
OWNER = "urn:pact:company:customcode:vendor-assigned:acme"


def factor(factor_id: str = "bg:steel", value: str = "1.91", **extra: Any) -> EmissionFactor:
    return parse(
        EmissionFactor,
        {
            "factorId": factor_id,
            "name": factor_id,
            "unit": "kilogram",
            "value": value,
            "source": f"source of {factor_id}",
            "version": "2022",
            **extra,
        },
    )


def bom(product: str, components: list[dict[str, Any]], *, info: bool = True) -> BillOfMaterials:
    doc: dict[str, Any] = {
        "productId": f"urn:pact:acme.cn:product-id:{product}",
        "productName": product,
        "owner": OWNER,
        "declaredUnit": {"amount": "1", "unit": "kilogram"},
        "productMassPerDeclaredUnit": "1",
        "components": components,
        "revision": 1,
    }
    if info:
        doc["productInfo"] = {
            "companyName": "Acme",
            "companyIds": [OWNER],
            "productDescription": product,
            "productNameCompany": product,
            "geographyCountry": "CN",
            "referencePeriodStart": "2024-01-01T00:00:00Z",
            "referencePeriodEnd": "2025-01-01T00:00:00Z",
        }
    return parse(BillOfMaterials, doc)


def pid(product: str) -> str:
    return f"urn:pact:acme.cn:product-id:{product}"


def roll(
    boms: list[BillOfMaterials], factors: list[EmissionFactor], sequences: list[int] | None = None
) -> dict[str, RollupResult]:
    core = [
        core_factor(f, sequence=(sequences or [1] * len(factors))[i], content_hash=payload_hash(f))
        for i, f in enumerate(factors)
    ]
    return run_batch([], [core_bom(b) for b in boms], core)


def record(result: RollupResult, b: BillOfMaterials) -> RolledUpFootprint:
    return rolled_up_record(result, sequence=1, bom=b, previous_pf_id=None, now=NOW)


PART = bom("PART", [{"factorId": "bg:steel", "quantity": "2", "unit": "kilogram"}])
MACHINE = bom("MACHINE", [{"productId": pid("PART"), "quantity": "3", "unit": "kilogram"}])
TOP = bom("TOP", [{"productId": pid("MACHINE"), "quantity": "1", "unit": "kilogram"}])


def test_value_only_factor_gives_every_product_above_it_a_flagged_footprint() -> None:
    results = roll([PART, MACHINE, TOP], [factor()])
    for b, expected in ((PART, "3.82"), (MACHINE, "11.46"), (TOP, "11.46")):
        rec = record(results[b.product_id], b)
        assert rec.footprint is not None, rec.footprint_withheld
        assert rec.footprint_withheld is None
        pcf = rec.footprint.pcf
        assert pcf.pcf_excluding_biogenic_uptake == Decimal(expected)
        # excl = incl = fossil = value: the assumption
        assert pcf.pcf_including_biogenic_uptake == pcf.fossil_ghg_emissions == Decimal(expected)
        assert pcf.fossil_carbon_content == 0
        # the flag reaches every tier, in the record and in the PACT footprint
        (assumed,) = rec.assumptions
        assert VALUE_ONLY_AS_FOSSIL in assumed and CARBON_CONTENT_AS_ZERO in assumed
        assert assumed.startswith("source of bg:steel (2022)")
        names = [s.name for s in pcf.secondary_emission_factor_sources or ()]
        assert names == [assumed]


def test_a_split_factor_gives_its_own_figures_and_no_value_only_flag() -> None:
    split = factor(
        value="2.5",
        fossilGhgEmissions="2.0",
        biogenicNonCO2Emissions="0.1",
        landUseChangeGhgEmissions="0.4",
        fossilCarbonContent="0",
    )
    assert factor_assumptions(split) == ()
    rec = record(roll([PART], [split])[PART.product_id], PART)
    assert rec.footprint is not None and rec.assumptions == ()
    pcf = rec.footprint.pcf
    assert (pcf.pcf_excluding_biogenic_uptake, pcf.fossil_ghg_emissions) == (
        Decimal("5.0"),
        Decimal("4.0"),
    )
    assert pcf.land_use_change_ghg_emissions == Decimal("0.8")
    assert ASSUMED not in "".join(s.name for s in pcf.secondary_emission_factor_sources or ())


def test_a_stated_carbon_content_is_used_and_only_the_value_assumption_is_flagged() -> None:
    coal = factor(value="2.58", fossilCarbonContent="0.7")
    assert factor_assumptions(coal) == (VALUE_ONLY_AS_FOSSIL,)
    rec = record(roll([PART], [coal])[PART.product_id], PART)
    assert rec.footprint is not None
    assert rec.footprint.pcf.fossil_carbon_content == Decimal("1.4")
    (assumed,) = rec.assumptions
    assert CARBON_CONTENT_AS_ZERO not in assumed


def test_lineage_names_factor_id_and_version() -> None:
    rec = record(roll([PART], [factor()])[PART.product_id], PART)
    (line,) = rec.inputs
    assert (line.kind, line.factor_id, line.factor_version) == ("factor", "bg:steel", "2022")


def test_a_new_version_supersedes_the_old_in_the_roll_up() -> None:
    old, new = factor(value="1.91"), factor(value="1.85").model_copy(update={"version": "2023"})
    results = roll([PART], [old, new], sequences=[1, 2])
    rec = record(results[PART.product_id], PART)
    assert rec.footprint is not None
    assert rec.footprint.pcf.pcf_excluding_biogenic_uptake == Decimal("3.70")
    assert rec.inputs[0].factor_version == "2023"


def test_without_product_info_the_record_says_why_there_is_no_footprint() -> None:
    bare = bom("BARE", [{"factorId": "bg:steel", "quantity": "2", "unit": "kilogram"}], info=False)
    rec = record(roll([bare], [factor()])[bare.product_id], bare)
    assert rec.footprint is None
    assert rec.footprint_withheld is not None and "productInfo" in rec.footprint_withheld
    assert rec.pcf_excluding_biogenic_uptake == Decimal("3.82")


def test_an_incomplete_roll_up_says_which_input_is_missing() -> None:
    rec = record(roll([PART, MACHINE], [])[pid("MACHINE")], MACHINE)
    assert rec.footprint is None and not rec.completeness.complete
    reason = rec.footprint_withheld or ""
    assert reason.startswith("the roll-up is incomplete") and "factor:bg:steel" in reason


def test_pcfx_rollup_shows_the_assumption_and_why_no_footprint(tmp_path: Path) -> None:
    bare = bom("BARE", [{"factorId": "bg:steel", "quantity": "2", "unit": "kilogram"}], info=False)
    boms = tmp_path / "boms.json"
    boms.write_text(json.dumps([b.model_dump(mode="json", by_alias=True) for b in (PART, bare)]))
    factors = tmp_path / "factors.json"
    factors.write_text(json.dumps([factor().model_dump(mode="json", by_alias=True)]))
    args = ["rollup", "--footprints", str(FOOTPRINTS), "--boms", str(boms)]
    args += ["--factors", str(factors)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "no PACT footprint BARE: the BOM has no productInfo" in result.output
    assert "[assumed: value only, counted as fossil" in result.output
    as_json = CliRunner().invoke(app, [*args, "--json"])
    rollups = {d["productId"]: d["rollup"] for d in json.loads(as_json.stdout)["results"]}
    assert rollups[PART.product_id]["footprintWithheld"] is None
    assert rollups[bare.product_id]["footprintWithheld"].startswith("the BOM has no productInfo")
    assert rollups[PART.product_id]["inputs"][0]["factorVersion"] == "2022"
    assert VALUE_ONLY_AS_FOSSIL in rollups[PART.product_id]["assumptions"][0]


def test_on_a_random_graph_over_value_only_factors_every_product_gets_a_footprint() -> None:
    # (the 1 700-product graph lost 1 027 footprints silently; this is a small one)
    rng = random.Random(21)
    factors = [factor(f"bg:f{i}", f"{rng.randint(1, 500)}.{rng.randint(0, 99)}") for i in range(12)]
    boms = []
    for i in range(60):
        lines: dict[str, dict[str, Any]] = {}
        for _ in range(rng.randint(1, 4)):
            if i and rng.random() < 0.6:
                ref = pid(f"G{rng.randrange(max(0, i - 15), i)}")
                lines[ref] = {"productId": ref, "quantity": "0.5", "unit": "kilogram"}
            else:
                ref = f"bg:f{rng.randrange(len(factors))}"
                lines[ref] = {"factorId": ref, "quantity": "0.3", "unit": "kilogram"}
        boms.append(bom(f"G{i}", list(lines.values())))
    results = roll(boms, factors)
    records = [record(results[b.product_id], b) for b in boms]
    assert all(r.footprint is not None and r.footprint_withheld is None for r in records)
    assert all(r.assumptions for r in records)
