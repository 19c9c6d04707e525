"""Product category rule packs: the shipped packs, the loader's errors, and the check, rule by
rule (a bad case each), with the good cases of a few categories and a property: a footprint
inside its pack's rules is never refused."""

from __future__ import annotations

import copy
import os
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcf_exchange.contracts import PilotCategory, parse_footprint
from pcf_exchange.contracts.errors import PcrOutOfRange, PcrPackError, PcrViolation
from pcf_exchange.contracts.examples import example_bom, example_footprint
from pcf_exchange.contracts.pcr import (
    STAGES,
    Boundary,
    PcrOutcome,
    RulePack,
    check_bom,
    check_footprint,
    check_footprint_model,
    default_packs,
    load_pack,
    load_packs,
    verify_footprint,
)
from pcf_exchange.contracts.units import PACT_DECLARED_UNITS, convert, dimension_of

PACKS = default_packs()
PACK_DIR = Path(__file__).resolve().parents[2] / "contracts" / "pcr" / "packs"


def footprint(category: str | None = "LITHIUM_BATTERY", **pcf: Any) -> dict[str, Any]:
    doc = example_footprint()
    doc["extensions"][0]["data"]["pilotCategory"] = category
    if category is None:
        del doc["extensions"][0]["data"]["pilotCategory"]
    doc["pcf"].update(pcf)
    return doc


def stages(doc: dict[str, Any], *names: str) -> dict[str, Any]:
    doc["extensions"][0]["data"]["stageBreakdown"] = {n: "1" for n in names}
    return doc


def named(doc: dict[str, Any], pack_id: str) -> dict[str, Any]:
    doc["pcf"]["productOrSectorSpecificRules"] = [
        {"operator": "Other", "ruleNames": [pack_id], "otherOperatorName": "SAMR"}
    ]
    return doc


def cement(unit: str = "kilogram", value: str = "0.72", *names: str) -> dict[str, Any]:
    doc = footprint("CEMENT", declaredUnitOfMeasurement=unit, pcfExcludingBiogenicUptake=value)
    if names:
        return stages(doc, *names)
    del doc["extensions"][0]["data"]["stageBreakdown"]  # no stages at all
    return doc


# --- the shipped packs -------------------------------------------------------------------------


def test_one_pack_per_catalogue_entry_each_sourced() -> None:
    assert len(PACKS) == 17
    assert len({p.catalogue_entry for p in PACKS}) == 17
    assert {p.pilot_category for p in PACKS} == set(PilotCategory) - {
        PilotCategory.UREA,
        PilotCategory.PHOSPHATE_FERTILISER,
        PilotCategory.OTHER,
    }
    counts = {c: len(PACKS.of_category(c.value)) for c in PilotCategory}
    assert counts[PilotCategory.LITHIUM_BATTERY] == 4
    assert counts[PilotCategory.STEEL] == 3
    assert counts[PilotCategory.ELECTRONICS] == 4
    for pack in PACKS:
        assert pack.ref == f"{pack.id}@1.0.0"
        assert pack.source.title and pack.source.issuer and pack.source.date
        assert pack.source.public_text or pack.source.note  # says what the rules rest on
        for rule in (*pack.declared_units, *pack.supply_chain):
            assert dimension_of(rule.unit) is rule.dimension
            assert rule.range.source and rule.range.low < rule.range.high
        if pack.boundary is Boundary.CRADLE_TO_GRAVE:
            assert set(pack.mandatory_stages) == set(STAGES)


def test_units_of_the_regulation() -> None:
    dims = {p.id: {r.unit for r in p.declared_units} for p in PACKS}
    assert dims["CN-CCL-PCR-LIB-TRACTION"] == {"kilowatt hour"}
    assert dims["CN-CCL-PCR-LIB-STORAGE"] == {"kilowatt hour"}
    assert "square meter" in dims["CN-CCL-PCR-PV-MODULE"]
    for steel_or_more in ("STEEL-BF-BOF", "STEEL-EAF", "ELECTROLYTIC-AL", "CEMENT"):
        assert dims[f"CN-CCL-PCR-{steel_or_more}"] == {"ton"}


# --- the loader's errors: file and key named ---------------------------------------------------


def _cement_yaml() -> str:
    return (PACK_DIR / "cement.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("edit", "key", "expected"),
    [
        (lambda t: t.replace("boundary: cradle-to-gate\n", ""), "boundary", "a value"),
        (lambda t: t.replace("low: '250'", "low: 250.0"), "declared_units[0].range.low", "string"),
        (
            lambda t: t.replace("dimension: mass", "dimension: volume"),
            "declared_units[0].dimension",
            "mass",
        ),
        (lambda t: t.replace("unit: ton", "unit: tonne"), "declared_units[0].unit", "a unit"),
        (lambda t: t.replace("- production", "- prodution"), "mandatory_stages[1]", "one of"),
        (lambda t: t.replace("- production", "- use"), "mandatory_stages", "cradle-to-gate"),
        (
            lambda t: t.replace("title: cement", "title: cement\ntitel: typo"),
            "titel",
            "only the keys",
        ),
        (lambda t: t.replace("low: '250'", "low: '2000'"), "declared_units[0].range.high", "above"),
        (
            lambda t: t.replace("public_text: false", "public_text: 'no'"),
            "source.public_text",
            "true or false",
        ),
        (
            lambda t: t.replace("pilot_category: CEMENT", "pilot_category: CONCRETE"),
            "pilot_category",
            "one of",
        ),
        (lambda t: t + "broken: [\n", "(document)", "well-formed YAML"),
    ],
)
def test_a_malformed_pack_names_the_file_and_key(edit: Any, key: str, expected: str) -> None:
    with pytest.raises(PcrPackError) as caught:
        load_pack(edit(_cement_yaml()), "cement.yaml")
    err = caught.value
    assert (err.file, err.key) == ("cement.yaml", key)
    assert expected in err.expected
    assert err.message.startswith(f"rule pack cement.yaml: '{key}' must be")


def test_duplicate_pack_ids_in_a_directory_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(_cement_yaml(), encoding="utf-8")
    (tmp_path / "b.yaml").write_text(_cement_yaml(), encoding="utf-8")
    with pytest.raises(PcrPackError, match="used once"):
        load_packs(tmp_path)


def test_the_shipped_packs_load_from_a_directory_too() -> None:
    assert [p.id for p in load_packs(PACK_DIR)] == [p.id for p in PACKS]


# --- good cases ----------------------------------------------------------------------------------


def test_the_example_battery_passes_under_its_category() -> None:
    result = check_footprint(example_footprint())
    assert result.outcome is PcrOutcome.PASSED and result.accepted
    assert result.role == "product" and result.figure == Decimal("61.40")
    assert result.error() is None


@pytest.mark.parametrize(
    ("category", "unit", "value", "pack"),
    [
        ("CEMENT", "kilogram", "0.72", "CN-CCL-PCR-CEMENT"),  # 720 kg per t
        ("STEEL", "kilogram", "2.1", "CN-CCL-PCR-STEEL-BF-BOF"),
        ("ELECTROLYTIC_ALUMINIUM", "kilogram", "16.5", "CN-CCL-PCR-ELECTROLYTIC-AL"),
        ("PHOTOVOLTAIC", "square meter", "80", "CN-CCL-PCR-PV-MODULE"),
        ("WOOD_PRODUCTS", "cubic meter", "300", "CN-CCL-PCR-WOOD-PANELS"),
    ],
)
def test_good_footprints_of_several_categories(
    category: str, unit: str, value: str, pack: str
) -> None:
    doc = stages(
        footprint(category, declaredUnitOfMeasurement=unit, pcfExcludingBiogenicUptake=value),
        "raw_material_acquisition",
        "production",
    )
    if len(PACKS.of_category(category)) > 1:  # steel: the entry named, else any of three
        named(doc, pack)
    result = check_footprint(doc)
    assert result.outcome is PcrOutcome.PASSED, result.findings
    assert result.pack is not None and result.pack.id == pack


def test_an_unnamed_entry_passes_if_one_entry_of_its_category_accepts_it() -> None:
    # 0.3 t/t is scrap-EAF steel, not BF-BOF: named BF-BOF it is held; unnamed, EAF takes it
    doc = stages(
        footprint("STEEL", declaredUnitOfMeasurement="kilogram", pcfExcludingBiogenicUptake="0.3"),
        "raw_material_acquisition",
        "production",
    )
    unnamed = check_footprint(doc)
    assert unnamed.outcome is PcrOutcome.PASSED
    assert unnamed.pack.id == "CN-CCL-PCR-STEEL-EAF"  # type: ignore[union-attr]
    held = check_footprint(named(doc, "CN-CCL-PCR-STEEL-BF-BOF"))
    assert held.outcome is PcrOutcome.OUT_OF_RANGE


def test_a_supply_chain_record_is_held_to_its_range_only() -> None:
    doc = footprint(declaredUnitOfMeasurement="kilogram", pcfExcludingBiogenicUptake="7.85")
    del doc["extensions"][0]["data"]["stageBreakdown"]  # a material supplier's: no stages
    result = check_footprint(doc)
    assert result.outcome is PcrOutcome.PASSED and result.role == "supply chain"


def test_categories_without_a_pack_are_not_applicable_and_say_so() -> None:
    assert "UREA" in check_footprint(footprint("UREA")).note
    none = check_footprint(footprint(None))
    assert none.outcome is PcrOutcome.NOT_APPLICABLE and "no pilot category" in none.note


# --- bad cases: one per rule kind ---------------------------------------------------------------


def test_cement_in_litres_without_stages_is_refused_naming_each_rule() -> None:
    result = check_footprint(cement("liter", "0.5"))
    assert result.outcome is PcrOutcome.VIOLATED
    assert [(f.rule, f.path) for f in result.findings] == [
        ("declared-unit", "pcf.declaredUnitOfMeasurement"),
        (
            "stage.raw_material_acquisition",
            "extensions[0].data.stageBreakdown.raw_material_acquisition",
        ),
        ("stage.production", "extensions[0].data.stageBreakdown.production"),
    ]
    error = result.error("cement")
    assert isinstance(error, PcrViolation)
    assert error.violations[0].code == "pcr.declared-unit"
    assert "pack CN-CCL-PCR-CEMENT@1.0.0" in error.message
    assert "must be a unit of mass (e.g. ton)" in error.message and "(got 'liter')" in error.message


def test_a_missing_mandatory_stage() -> None:
    result = check_footprint(cement("kilogram", "0.72", "production"))
    assert [f.rule for f in result.findings] == ["stage.raw_material_acquisition"]
    assert "mandatory stages of this cradle-to-gate pack" in result.findings[0].expected


def test_a_stage_beyond_the_gate_breaks_the_boundary() -> None:
    doc = cement("kilogram", "0.72", "raw_material_acquisition", "production", "use")
    (finding,) = check_footprint(doc).findings
    assert (finding.rule, finding.got) == ("boundary", "use")


def test_a_missing_required_figure() -> None:
    doc = cement("kilogram", "0.72", "raw_material_acquisition", "production")
    del doc["pcf"]["dqi"]
    (finding,) = check_footprint(doc).findings
    assert (finding.rule, finding.path, finding.got) == ("figure.dqi", "pcf.dqi", None)


def test_data_quality_below_the_packs_minimum() -> None:
    doc = named(footprint(), "CN-CCL-PCR-LIB-TRACTION")
    doc["pcf"]["dqi"]["temporalDQR"] = "3.4"
    (finding,) = check_footprint(doc).findings
    assert (finding.rule, finding.path, finding.got) == (
        "data-quality.temporalDQR",
        "pcf.dqi.temporalDQR",
        "3.4",
    )
    assert finding.expected.startswith("at most 3.0")


def test_a_named_pack_is_the_one_applied_and_an_unknown_or_foreign_one_refused() -> None:
    doc = named(footprint(), "CN-CCL-PCR-LIB-STORAGE")
    assert check_footprint(doc).pack.id == "CN-CCL-PCR-LIB-STORAGE"  # type: ignore[union-attr]
    unknown = check_footprint(named(footprint(), "CN-CCL-PCR-LIB-SPACESHIP"))
    assert unknown.outcome is PcrOutcome.VIOLATED and unknown.findings[0].rule == "pack"
    foreign = check_footprint(named(footprint("CEMENT"), "CN-CCL-PCR-LIB-TRACTION"))
    assert foreign.findings[0].rule == "category" and foreign.findings[0].got == "CEMENT"


def test_the_999_kg_per_kg_cathode_is_held_not_accepted_not_dropped() -> None:
    doc = footprint(declaredUnitOfMeasurement="kilogram", pcfExcludingBiogenicUptake="999")
    result = check_footprint(doc)
    assert result.outcome is PcrOutcome.OUT_OF_RANGE and not result.accepted
    (finding,) = result.findings
    assert finding.rule == "plausible-range" and finding.path == "pcf.pcfExcludingBiogenicUptake"
    assert "within 0.1..60 kgCO2e per kilogram" in finding.expected
    assert isinstance(result.error(), PcrOutOfRange)
    with pytest.raises(PcrOutOfRange, match="999 kgCO2e per kilogram"):
        verify_footprint(doc)
    # an officer released it: every other rule still holds, the range no longer does
    assert check_footprint(doc, waive_range=True).outcome is PcrOutcome.PASSED


def test_the_range_is_per_one_unit_of_the_rule_exactly_converted() -> None:
    # 720 kgCO2e per 1 000 kg is 720 per t: in range; 1 500 per t is not
    in_range = cement("kilogram", "720", "raw_material_acquisition", "production")
    in_range["pcf"]["declaredUnitAmount"] = "1000"
    assert check_footprint(in_range).figure == Decimal(720)
    in_range["pcf"]["pcfExcludingBiogenicUptake"] = "1500"
    assert check_footprint(in_range).outcome is PcrOutcome.OUT_OF_RANGE


def test_a_bom_is_held_to_its_categorys_units() -> None:
    bom = example_bom()
    assert check_bom(bom).outcome is PcrOutcome.NOT_APPLICABLE  # names no category
    bom["productInfo"] = {"pilotCategory": "LITHIUM_BATTERY"}
    assert check_bom(bom).outcome is PcrOutcome.PASSED
    bom["declaredUnit"]["unit"] = "liter"
    result = check_bom(bom)
    assert result.outcome is PcrOutcome.VIOLATED
    assert [(f.rule, f.path) for f in result.findings] == [("declared-unit", "declaredUnit.unit")]


# --- property: inside the rules, never refused --------------------------------------------------


def _inside(pack: RulePack, data: st.DataObject) -> dict[str, Any]:
    rule = data.draw(st.sampled_from(pack.declared_units))
    units = [u for u in PACT_DECLARED_UNITS if dimension_of(u) is rule.dimension]
    unit = data.draw(st.sampled_from(units))
    amount = Decimal(data.draw(st.integers(1, 10_000))) / 100
    step = data.draw(st.integers(0, 1000))
    per_unit = rule.range.low + (rule.range.high - rule.range.low) * Decimal(step) / 1000
    # a declared figure has a dozen significant digits, rounded towards the inside of the range:
    # at an edge, the 28-digit product of a unit conversion may otherwise lie a last digit out
    inward = Context(prec=12, rounding=ROUND_CEILING if step <= 500 else ROUND_FLOOR)
    value = inward.plus(per_unit * convert(amount, unit, rule.unit))
    doc = footprint(
        pack.pilot_category.value,
        declaredUnitOfMeasurement=unit,
        declaredUnitAmount=str(amount),
        pcfExcludingBiogenicUptake=str(value),
        biogenicCarbonContent="0.1",
    )
    stages(doc, *pack.mandatory_stages)
    if pack.max_dqr is not None:
        dqr = str(Decimal(1) + (pack.max_dqr - 1) * Decimal(data.draw(st.integers(0, 10))) / 10)
        doc["pcf"]["dqi"] = {"technologicalDQR": dqr, "geographicalDQR": dqr, "temporalDQR": dqr}
    if data.draw(st.booleans()):
        named(doc, pack.id)
    return doc


@settings(max_examples=int(os.environ.get("PCFX_PCR_EXAMPLES", "60")), deadline=None)
@given(st.sampled_from(PACKS.packs), st.data())
def test_a_footprint_inside_its_packs_rules_is_never_refused(
    pack: RulePack, data: st.DataObject
) -> None:
    doc = _inside(pack, data)
    result = check_footprint(copy.deepcopy(doc))
    assert result.outcome is PcrOutcome.PASSED, (pack.id, result.findings)
    assert check_footprint_model(parse_footprint(doc)) == result  # publish time: the model


BAD_CASES = {
    "cement in litres": lambda: cement("liter", "0.5"),
    "missing stage": lambda: cement("kilogram", "0.72", "production"),
    "boundary": lambda: cement("kilogram", "0.72", "raw_material_acquisition", "production", "use"),
    "dqr": lambda: _dqr(named(footprint(), "CN-CCL-PCR-LIB-TRACTION"), "3.4"),
    "cathode": lambda: footprint(declaredUnitOfMeasurement="kilogram",
                                 pcfExcludingBiogenicUptake="999"),
    "unknown pack": lambda: named(footprint(), "CN-CCL-PCR-LIB-SPACESHIP"),
    "no category": lambda: footprint(None),
}  # fmt: skip


def _dqr(doc: dict[str, Any], value: str) -> dict[str, Any]:
    doc["pcf"]["dqi"]["temporalDQR"] = value
    return doc


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_the_model_check_at_publish_time_agrees_with_the_json_check(case: str) -> None:
    doc = BAD_CASES[case]()
    assert check_footprint_model(parse_footprint(copy.deepcopy(doc))) == check_footprint(doc)
