"""One test (or a named table) per roll-up rule, good and bad cases, with hand-checked digits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pcf_exchange.contracts.errors import RollupError
from pcf_exchange.streams.rollup import (
    HEADLINE_METRIC,
    PRECISION,
    Bom,
    BomDeclared,
    BomLine,
    ComponentFootprint,
    FactorPublished,
    FootprintDeclared,
    Network,
    OwnProcess,
    SourceKind,
    Status,
    run_batch,
)
from tests.streams._rollup_helpers import D, E, F, I, bom, factor, figs, fp, line


def rollup(*inputs, product: str):
    footprints = [x for x in inputs if isinstance(x, ComponentFootprint)]
    boms = [x for x in inputs if isinstance(x, Bom)]
    factors = [x for x in inputs if not isinstance(x, ComponentFootprint | Bom)]
    return run_batch(footprints, boms, factors)[product]


# --------------------------------------------------------------------------- arithmetic


def test_own_process_plus_components_per_declared_unit() -> None:
    """module = 4 direct + 10 kWh x 0.5 + 12 cells x 2.5 + 0.8 kg steel x 1.9 = 40.52"""
    result = rollup(
        fp("cell", "2.5"),
        factor("grid", "0.5", unit="kilowatt hour"),
        factor("steel", "1.9", unit="kilogram"),
        bom(
            "module",
            line("cell", "12"),
            line("housing", "0.8", "kilogram", fallback="steel"),
            direct="4",
            kwh="10",
            grid="grid",
        ),
        product="module",
    )
    assert result.status is Status.COMPLETE
    assert result.pcf == D("40.52")
    assert result.figures == {E: D("40.52"), I: D("40.52"), F: D("40.52")}
    assert result.exact


def test_multi_tier_vehicle_matches_hand_calculation() -> None:
    """vehicle = 5000 + 1 x (30 + 8 x (4 + 12 x 2.5)) = 5302 (reference/streaming.md section 5)."""
    results = run_batch(
        [fp("cell", "2.5")],
        [
            bom("module", line("cell", 12), direct=4),
            bom("pack", line("module", 8), direct=30),
            bom("vehicle", line("pack", 1), direct=5000),
        ],
        [],
    )
    assert {p: r.pcf for p, r in results.items()} == {
        "module": D("34.0"),
        "pack": D("302.0"),
        "vehicle": D("5302.0"),
    }


@pytest.mark.parametrize(
    ("line_qty", "line_unit", "declared", "amount", "multiplier"),
    [
        ("500", "gram", "kilogram", "1", "0.5"),
        ("2", "ton", "kilogram", "1", "2000"),
        ("5", "kilogram", "kilogram", "10", "0.5"),  # footprint per 10 kg
        ("10", "kilowatt hour", "megajoule", "1", "36.0"),  # 1 kWh = 3.6 MJ, exact
        ("250", "liter", "cubic meter", "1", "0.25"),
        ("3", "piece", "piece", "2", "1.5"),
    ],
)
def test_units_convert_exactly_within_a_dimension(
    line_qty: str, line_unit: str, declared: str, amount: str, multiplier: str
) -> None:
    result = rollup(
        fp("x", "2", unit=declared, amount=amount),
        bom("p", line("x", line_qty, line_unit)),
        product="p",
    )
    assert result.lineage[0].multiplier == D(multiplier)
    assert result.pcf == D(multiplier) * 2
    assert result.exact


def test_mass_line_crosses_into_a_piece_component_through_its_mass() -> None:
    # 1.5 kg of screws declared per piece of 0.25 kg -> 6 pieces x 0.1 kgCO2e
    result = rollup(
        fp("screw", "0.1", unit="piece", mass="0.25"),
        bom("p", line("screw", "1.5", "kilogram")),
        product="p",
    )
    assert result.lineage[0].multiplier == 6
    assert result.pcf == D("0.6")


def test_rounding_division_is_flagged_inexact_with_50_digits() -> None:
    result = rollup(
        fp("x", "1", unit="piece", amount="3"),
        bom("p", line("x", "1", "piece")),
        product="p",
    )
    assert not result.exact
    assert result.pcf == D("0." + "3" * PRECISION)


def test_a_sum_that_needs_more_than_50_digits_stays_exact() -> None:
    """Sums run in the exact context (``_numbers``): only products and divisions round, so a
    running sum and a from-scratch sum cannot disagree in their last digits."""
    result = rollup(
        fp("big", "1" + "0" * 30),
        fp("tiny", "0." + "0" * 24 + "1"),
        bom("p", line("big", 1), line("tiny", 1)),
        product="p",
    )
    assert result.exact
    assert result.pcf == D("1" + "0" * 30 + "." + "0" * 24 + "1")  # 56 digits, none lost
    # a parent multiplies it in the 50-digit context: that rounds, and says so
    parent = rollup(
        fp("big", "1" + "0" * 30),
        fp("tiny", "0." + "0" * 24 + "1"),
        bom("p", line("big", 1), line("tiny", 1)),
        bom("q", line("p", 3)),
        product="q",
    )
    assert not parent.exact


# --------------------------------------------------------------------------- unit errors

BAD_UNITS = [
    # name, component footprint, line, expected path, words in the message
    (
        "count line on a mass component",
        fp("steel", "2", unit="kilogram"),
        line("steel", "3", "piece"),
        "components[0].unit",
        "may cross dimensions only",
    ),
    (
        "mass line on a piece component without mass",
        fp("chip", "2", unit="piece"),
        line("chip", "3", "kilogram"),
        "components[0].unit",
        "productMassPerDeclaredUnit",
    ),
    (
        "mass line on an energy component with mass 0",
        fp("power", "2", unit="kilowatt hour", mass="0"),
        line("power", "3", "kilogram"),
        "components[0].unit",
        "got 0",
    ),
    (
        "area line on a volume component",
        fp("glue", "2", unit="liter", mass="1.2"),
        line("glue", "3", "square meter"),
        "components[0].unit",
        "square meter",
    ),
]


@pytest.mark.parametrize(
    ("component", "bad_line", "path", "words"),
    [case[1:] for case in BAD_UNITS],
    ids=[case[0] for case in BAD_UNITS],
)
def test_unit_mismatch_is_an_error_naming_the_line(component, bad_line, path, words) -> None:
    result = rollup(
        fp("ok", "1"),
        component,
        Bom("p", 1, (line("ok", 1), bad_line)),
        product="p",
    )
    assert result.status is Status.ERROR
    assert result.figures is None and result.partial_figures is None
    [error] = result.errors
    assert error.path == path.replace("[0]", "[1]")
    assert error.code == "unit"
    assert words in error.message
    with pytest.raises(RollupError) as info:
        result.verify()
    assert info.value.path == error.path


def test_grid_factor_in_wrong_dimension_is_an_error() -> None:
    result = rollup(
        factor("grid", "0.5", unit="kilogram"),
        bom("p", kwh="10", grid="grid"),
        product="p",
    )
    assert result.status is Status.ERROR
    assert result.errors[0].path == "ownProcess.gridFactorId"


@pytest.mark.parametrize(
    ("make", "path"),
    [
        (lambda: Bom("p", 1, (BomLine("x", D(1), "furlong"),)), "components[0].unit"),
        (lambda: Bom("p", 1, (line("a"), BomLine("x", D(0), "piece"))), "components[1].quantity"),
        (lambda: Bom("p", 1, (BomLine("x", D(-1), "piece"),)), "components[0].quantity"),
        (lambda: Bom("p", 1, (BomLine("x", 0.5, "piece"),)), "components[0].quantity"),  # type: ignore[arg-type]
        (lambda: Bom("p", 1, (BomLine("", D(1), "piece"),)), "components[0].componentId"),
        (lambda: Bom("p", 1, (BomLine("x", D("NaN"), "piece"),)), "components[0].quantity"),
        (lambda: Bom("p", 1, declared_unit="bushel"), "declaredUnitOfMeasurement"),
        (lambda: Bom("p", 1, declared_unit_amount=D(0)), "declaredUnitAmount"),
        (lambda: Bom("p", -1), "revision"),
        (lambda: OwnProcess(D(1), D(5)), "ownProcess.gridFactorId"),
        (lambda: OwnProcess(D(-1)), "ownProcess.directKgCO2e"),
        (lambda: OwnProcess(dqr={"technologicalDQR": D(6)}), "ownProcess.dqi.technologicalDQR"),
        (lambda: fp("x", unit="furlong"), "declaredUnitOfMeasurement"),
        (lambda: fp("x", "-1"), f"pcf.{HEADLINE_METRIC}"),
        (lambda: fp("x", share="101"), "primaryDataShare"),
        (lambda: fp("x", "2", stages={"a": "1"}), "stages"),
        (lambda: fp("x", dqr={"coveragePercent": "2"}), "dqi.coveragePercent"),
        (lambda: fp("x", packagingGhgEmissions="1"), "pcf.packagingGhgEmissions"),
        (
            lambda: ComponentFootprint("x", "id", 1, "piece", D(1), {E: D(1), I: D(1)}),
            "pcf.fossilGhgEmissions",
        ),
        (lambda: factor("f", unit="furlong"), "unit"),
    ],
)
def test_bad_inputs_are_refused_with_the_field_path(make, path: str) -> None:
    with pytest.raises(RollupError) as info:
        make()
    assert info.value.path == path
    assert f"'{path}" in info.value.message


def test_not_rolled_up_figures_say_why() -> None:
    with pytest.raises(RollupError, match="inbound packaging"):
        fp("x", packagingGhgEmissions="1")


# --------------------------------------------------------------------------- completeness


def test_missing_component_makes_the_product_incomplete_with_the_list() -> None:
    results = run_batch(
        [fp("cell", "2.5")],
        [
            bom("module", line("cell", 12), line("bms", 1), line("busbar", 2), direct=4),
            bom("pack", line("module", 8), line("tray", 1, fallback="alu"), direct=30),
        ],
        [],
    )
    module, pack = results["module"], results["pack"]
    assert module.status is Status.INCOMPLETE
    assert module.missing == ("product:bms", "product:busbar")
    assert module.figures is None and module.pcf is None  # never a silent zero
    assert module.partial_figures is not None
    assert module.partial_figures[E] == D("34.0")
    assert pack.status is Status.INCOMPLETE
    # transitive: the pack lists its own gap and the module's
    assert pack.missing == ("factor:alu", "product:bms", "product:busbar", "product:tray")
    with pytest.raises(RollupError, match="missing: product:bms, product:busbar") as info:
        module.verify()
    assert "background factor" in info.value.hint


def test_missing_grid_factor_makes_the_product_incomplete() -> None:
    result = rollup(bom("p", direct=1, kwh=5, grid="grid-cn"), product="p")
    assert result.status is Status.INCOMPLETE
    assert result.missing == ("factor:grid-cn",)


def test_secondary_factor_fallback_is_flagged_and_counts_as_secondary() -> None:
    result = rollup(
        fp("cell", "3", share="100"),
        factor("alu", "8", unit="kilogram", source="ecoinvent 3.10"),
        bom("p", line("cell", 1), line("tray", "0.5", "kilogram", fallback="alu"), direct=1),
        product="p",
    )
    assert result.status is Status.COMPLETE
    assert result.pcf == D("8.0")  # 1 + 3 + 0.5 x 8
    assert result.secondary == ("components[1]",)
    tray = result.lineage[-1]
    assert tray.secondary and tray.kind is SourceKind.FACTOR and tray.ref == "factor:alu"
    assert result.factor_sources == ("ecoinvent 3.10",)
    # primary = own 1 + cell 3 x 100 %; the factor's 4 is secondary
    assert result.primary_data_share == D(50)


def test_supplier_footprint_replaces_the_factor_once_published() -> None:
    net = Network()
    net.submit(FactorPublished(factor("alu", "8")))
    net.submit(BomDeclared(bom("p", line("tray", 1, "kilogram", fallback="alu"))))
    net.run()
    before = net.result("p")
    assert before is not None and before.secondary == ("components[0]",)
    net.submit(FootprintDeclared(fp("tray", "5", unit="kilogram", share="40")))
    net.run()
    after = net.result("p")
    assert after is not None
    assert after.pcf == 5 and after.secondary == () and not after.lineage[0].secondary
    assert after.primary_data_share == 40


# --------------------------------------------------------------------------- figures


def test_optional_figures_roll_up_only_when_every_line_reports_them() -> None:
    result = rollup(
        fp("a", "10", aircraftGhgEmissions="1", biogenicCO2Uptake="-2", i="8"),
        fp("b", "10", biogenicCO2Uptake="-1", i="9"),
        bom("p", line("a", 2), line("b", 3), direct=5),
        product="p",
    )
    assert result.figures is not None
    assert result.figures["biogenicCO2Uptake"] == D(-7)  # 2 x -2 + 3 x -1, own adds none
    assert result.figures[I] == D(48)  # 5 + 16 + 27
    assert "aircraftGhgEmissions" not in result.figures  # b did not report it
    assert result.metric_gaps == {"aircraftGhgEmissions": ("product:b",)}


def test_carbon_content_is_a_mass_balance_of_the_inputs() -> None:
    result = rollup(
        fp("a", "10", fossilCarbonContent="0.5"),
        fp("b", "10", fossilCarbonContent="0.25"),
        bom("p", line("a", 2), line("b", 4), direct=100),
        product="p",
    )
    assert result.figures is not None
    assert result.figures["fossilCarbonContent"] == D(2)  # own process adds no carbon


def test_primary_share_dqr_stages_and_uncertainty() -> None:
    result = rollup(
        fp(
            "a",
            "10",
            share="50",
            std="1",
            dqr={"technologicalDQR": "2", "temporalDQR": "1"},
            stages={"raw material": "6", "production": "4"},
        ),
        fp("b", "20", dqr={"technologicalDQR": "4"}),
        bom("p", line("a", 1), line("b", 2)),
        product="p",
    )
    assert result.pcf == 50
    assert result.primary_data_share == 10  # 5 of 50
    # technological: (10 x 2 + 40 x 4) / 50; temporal: only a reported it
    assert result.dqr == {"technologicalDQR": D("3.6"), "temporalDQR": D(1)}
    assert result.stages == {"production": 4, "raw material": 6, "unspecified": 40}
    assert sum(result.stages.values()) == result.pcf
    u = result.uncertainty
    assert u is not None
    assert u.std_dev == 1 and u.unassessed_share == 80  # b's 40 of 50 had no sigma
    assert u.low < 50 < u.high and u.high - 50 == D("1.959963984540054")


def test_uncertainty_adds_in_quadrature() -> None:
    # sigma^2 = (2 x 3)^2 + (1 x 8)^2 = 100
    result = rollup(
        fp("a", "10", std="3"),
        fp("b", "10", std="8"),
        bom("p", line("a", 2), line("b", 1)),
        product="p",
    )
    assert result.uncertainty is not None and result.uncertainty.std_dev == 10


def test_lineage_identifies_every_input_and_recomputes_the_figure() -> None:
    a = fp("a", "2.5", seq=7)
    result = rollup(
        a,
        factor("grid", "0.5", unit="kilowatt hour", seq=3),
        bom("p", line("a", 4), direct=1, kwh=2, grid="grid"),
        product="p",
    )
    by_path = {entry.path: entry for entry in result.lineage}
    assert set(by_path) == {"ownProcess.direct", "ownProcess.electricity", "components[0]"}
    entry = by_path["components[0]"]
    assert (entry.footprint_id, entry.sequence, entry.content_hash) == (
        "fp-a-7",
        7,
        a.content_hash,
    )
    assert (entry.quantity, entry.unit, entry.multiplier, entry.contribution) == (
        D(4),
        "piece",
        D(4),
        D("10.0"),
    )
    grid = by_path["ownProcess.electricity"]
    assert (grid.sequence, grid.kind) == (3, SourceKind.OWN_ELECTRICITY)
    assert sum(e.contribution for e in result.lineage) == result.pcf == D("12.0")


def test_result_identity_is_deterministic_and_content_addressed() -> None:
    inputs = [fp("a", "2"), bom("p", line("a", 3))]
    first, second = rollup(*inputs, product="p"), rollup(*reversed(inputs), product="p")
    assert first == second
    assert first.content_hash == second.content_hash and first.result_id == second.result_id
    other = rollup(fp("a", "2.5"), bom("p", line("a", 3)), product="p")
    assert other.result_id != first.result_id


def test_declared_footprint_of_a_product_takes_precedence_over_its_roll_up() -> None:
    results = run_batch(
        [fp("cell", "2"), fp("module", "100", fid="declared-module")],
        [bom("module", line("cell", 10)), bom("pack", line("module", 2))],
        [],
    )
    assert results["module"].pcf == 20  # its own roll-up is still computed
    assert results["pack"].pcf == 200  # but parents use what the supplier declared
    assert results["pack"].lineage[0].kind is SourceKind.SUPPLIER
    assert results["pack"].lineage[0].footprint_id == "declared-module"


def test_figures_helper_is_decimal_only() -> None:
    assert all(isinstance(v, Decimal) for v in figs("1.5").values())
