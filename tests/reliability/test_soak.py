"""The soak's parts that need no broker (the graph, the growth measure, the verdict), and a short
soak on the shared broker (``PCFX_RELIABILITY=full``: even a 30-second soak on a 60-product graph
takes about two minutes with the set-up, the initial load and the checks, too long for
``make test``). The real run is ``make soak``; its figures are in RELIABILITY.md."""

from __future__ import annotations

import itertools
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from bench.bench_streams import SUPPLIERS
from bench.report import RESULTS_DIR
from tests.reliability import soak
from tests.reliability._exchange import FACTORS_FILE

CLEAN = soak.SoakVerdict(
    rss_slopes={"worker-1": 0.4, "worker-2": -0.2, "gateway-1": 1.0},
    max_rss_slope=5.0,
    drained=True,
    drain_s=12.0,
    mismatched=(),
    products=10,
    rejected=0,
    recipients={
        rid: {
            "outbound": 4,
            "transfers": 4,
            "outbound_without_audit": 0,
            "audit_without_outbound": 0,
            "outbound_twice": 0,
        }
        for rid, _ in soak.RECIPIENTS
    },
    load_error=None,
    exited=(),
)


def test_the_graph_has_three_tiers_each_product_made_of_the_tier_below() -> None:
    graph = soak.build_graph(1000)
    assert [len(t) for t in graph.tiers] == [50, 250, 700]
    assert len(graph.products) == len(set(graph.products)) == 1000
    assert len(graph.parts) == 500
    for t, tier in enumerate(graph.tiers):
        below = set(graph.tiers[t + 1]) if t + 1 < len(graph.tiers) else set(graph.parts)
        for product in tier:
            components = [c for c, _ in graph.lines[product]]
            assert len(components) == soak.LINES == len(set(components))
            assert set(components) <= below, (product, components)
            assert all(Decimal(q) > 0 for _, q in graph.lines[product])
            assert graph.grid[product] in soak.GRIDS
    assert set(graph.parts.values()) <= set(SUPPLIERS)
    assert soak.build_graph(1000) == graph, "the graph is a function of its size and seed"
    assert soak.build_graph(1000, seed=23) != graph


def test_a_tiny_graph_still_has_one_product_per_tier_and_a_bom_for_each() -> None:
    graph = soak.build_graph(3)
    assert [len(t) for t in graph.tiers] == [1, 1, 1]
    bom = soak.soak_bom(graph.finished[0], graph.lines[graph.finished[0]], soak.GRIDS[0], 2)
    assert bom.revision == 2 and bom.product_id == graph.finished[0]
    with pytest.raises(ValueError, match="--products must be at least 3"):
        soak.build_graph(2)


def test_versions_and_factor_revisions_are_exact() -> None:
    part = "urn:pact:bench.example:product-id:SOAK-PART-1"
    assert soak.part_value(part, 5) - soak.part_value(part, 1) == Decimal("0.04")
    from pcf_exchange.contracts import load_factors

    grid = next(
        f for f in (r.value for r in load_factors(FACTORS_FILE)) if f and f.factor_id in soak.GRIDS
    )
    assert soak.revised_factor(grid, 3).value == grid.value * Decimal("1.03")
    assert soak.revised_factor(grid, 7).value == grid.value


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([], 0.0),
        ([(0.0, 100.0)], 0.0),
        ([(0.0, 100.0), (60.0, 100.0), (120.0, 100.0)], 0.0),
        ([(0.0, 100.0), (30.0, 101.0), (60.0, 102.0)], 2.0),
        ([(0.0, 100.0), (60.0, 97.0)], -3.0),
        ([(5.0, 1.0), (5.0, 9.0)], 0.0),
    ],
)
def test_the_slope_is_per_minute(points: list[tuple[float, float]], expected: float) -> None:
    assert soak.slope_per_minute(points) == pytest.approx(expected)


def test_growth_is_judged_on_the_second_half_only() -> None:
    # a warm-up climb in the first half, then flat: bounded; then a steady climb: unbounded
    samples = [
        soak.Sample(
            t_s=t,
            rss_mb={"worker-1": min(t, 300.0) + 100, "gateway-1": 100 + t / 6},
            lag={"streams": 0},
            updates=0,
            results=0,
            outbound=0,
        )
        for t in range(0, 601, 5)
    ]
    slopes = soak.second_half_slopes(samples, soak_s=600)
    assert slopes["worker-1"] == pytest.approx(0.0)
    assert slopes["gateway-1"] == pytest.approx(10.0)
    assert not replace(CLEAN, rss_slopes=slopes).growth_ok


@pytest.mark.parametrize(
    "change",
    [
        {"rss_slopes": {"worker-1": 5.5}},
        {"drained": False},
        {"mismatched": ("p: 1 != 2",)},
        {"rejected": 1},
        {"load_error": "TimeoutError()"},
        {"exited": ("worker-1 (-9)",)},
        {"check_error": "not checked: the groups had not drained"},
        {"products": 0},
        {"recipients": {}},
        {
            "recipients": {
                "uk-customer-gb": {
                    "outbound": 4,
                    "transfers": 3,
                    "outbound_without_audit": 1,
                    "audit_without_outbound": 0,
                    "outbound_twice": 0,
                }
            }
        },
        {
            "recipients": {
                "uk-customer-gb": {
                    "outbound": 5,
                    "transfers": 4,
                    "outbound_without_audit": 0,
                    "audit_without_outbound": 0,
                    "outbound_twice": 1,
                }
            }
        },
    ],
)
def test_the_verdict_fails_on_any_single_problem(change: dict[str, object]) -> None:
    assert CLEAN.ok, CLEAN.summary()
    bad = replace(CLEAN, **change)  # type: ignore[arg-type]
    assert not bad.ok
    assert "products equal the oracle" in bad.summary()


def test_the_record_and_its_plot_are_written(tmp_path: Path) -> None:
    samples = tuple(
        soak.Sample(
            t_s=float(t),
            rss_mb={"worker-1": 150.0, "worker-2": 151.0, "gateway-1": 120.0},
            lag={"streams": 10 * (t % 3), "gateway": 5},
            updates=20 * t,
            results=30 * t,
            outbound=3 * t,
        )
        for t in range(0, 70, 5)
    )
    result = soak.SoakResult(
        minutes=1,
        products=10,
        parts=5,
        initial_load_s=3.0,
        updates=1200,
        bom_changes=12,
        factor_revisions=1,
        soak_s=60.0,
        results_written=1800,
        outbound_written=180,
        samples=samples,
        verdict=CLEAN,
    )
    json_path, png = soak.record(result, tmp_path, name="soak-test")
    import json

    data = json.loads(json_path.read_text())
    assert data["value"] == 20.0 and data["unit"] == "updates/s"
    assert data["details"]["verdict"]["ok"] is True
    assert len(data["details"]["samples"]) == len(samples)
    assert "load_average" in data["machine"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (Path(RESULTS_DIR) / "soak-test.json").exists()


@pytest.mark.reliability
@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_short_soak_on_a_small_graph_ends_clean(kafka_bootstrap: str, tmp_path: Path) -> None:
    result = soak.run(
        kafka_bootstrap, tmp_path, minutes=0.5, products=60, interval_s=2.0, max_rss_slope=1e9
    )
    summary = result.verdict.summary()
    print(summary)
    assert result.updates > 0 and result.bom_changes > 0
    # (a 30-second soak is all warm-up: its memory slope is reported, not judged)
    assert replace(result.verdict, rss_slopes={}).ok, summary
    assert all(c["outbound"] > 0 for c in result.verdict.recipients.values()), summary
    assert len(result.samples) >= 10
    lags = {g for s in result.samples for g in s.lag}
    assert lags == {"streams", "streams-rollup", "gateway"}
    assert not any(result.samples[-1].lag.values())
    assert all(a.updates <= b.updates for a, b in itertools.pairwise(result.samples))
