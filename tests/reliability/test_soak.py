"""The soak's parts that need no broker (the graph, the growth measure, the verdict), and a short
soak on the shared broker (``PCFX_RELIABILITY=full``: even a 30-second soak on a 60-product graph
takes about two minutes with the set-up, the initial load and the checks, too long for
``make test``). The real run is ``make soak``; its figures are in RELIABILITY.md."""

from __future__ import annotations

import itertools
import threading
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaException

from bench.bench_streams import SUPPLIERS, bom, pid
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
        {"stalled": "stalled: lag {'streams-rollup': 488} unchanged for 180 s"},
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


def at(t: float, lag: int, results: int = 100, outbound: int = 30) -> soak.Sample:
    return soak.Sample(
        t_s=t,
        rss_mb={"worker-1": 900.0},
        lag={"streams": 0, "streams-rollup": lag, "gateway": 0},
        updates=500,
        results=results,
        outbound=outbound,
    )


def test_a_drain_where_nothing_moves_is_a_stall_once_it_lasts() -> None:
    # the lag stuck at 488 from t+600 (session 14's drain), samples every 5 s
    samples = [at(t, 900 - t // 2 if t < 600 else 488) for t in range(0, 781, 5)]
    assert soak.stall(samples[: 600 // 5 + 30], 750, 180) is None, "145 s: not yet"
    found = soak.stall(samples, 781, 180)
    assert found is not None
    assert "488" in found and "unchanged for 180 s" in found and "t+600s" in found


@pytest.mark.parametrize(
    "moving",
    [
        lambda t: at(t, 488 - t // 20),  # the lag goes down, slowly
        lambda t: at(t, 488, results=100 + t // 20),  # results still written
        lambda t: at(t, 488, outbound=30 + t // 20),  # the gateway still sends
        lambda t: at(t, 488 + (t // 5) % 2),  # the lag moves at all
    ],
)
def test_a_slow_drain_is_not_a_stall(moving: object) -> None:
    samples = [moving(t) for t in range(0, 1001, 5)]  # type: ignore[operator]
    assert soak.stall(samples, 1001, 180) is None


def test_a_drained_exchange_is_not_a_stall_and_no_samples_at_all_is_one() -> None:
    assert soak.stall([at(t, 0) for t in range(0, 1001, 5)], 1001, 180) is None
    assert soak.stall([], 10, 180) is None
    found = soak.stall([at(0, 5), at(5, 5)], 200, 180)
    assert found is not None and "no sample for 195 s" in found


class FlakySampler(soak.Sampler):
    """A sampler whose look-ups fail twice, then answer (no broker: sample() is scripted)."""

    def __init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.interval_s, self.samples, self.failures, self.error = 0.0, [], 0, None
        self.halt, self.lags, self.calls = threading.Event(), {}, 0

    def sample(self) -> soak.Sample:
        self.calls += 1
        if self.calls <= 2:
            raise KafkaException("committed timed out")
        if self.calls >= 5:
            self.halt.set()
        return at(self.calls, 0)


def test_the_sampler_goes_on_after_a_failed_look_up_and_the_progress_line_says_so() -> None:
    sampler = FlakySampler()
    sampler.start()
    sampler.join(30)
    assert not sampler.is_alive()
    assert [s.t_s for s in sampler.samples] == [3, 4, 5]
    assert sampler.failures == 2 and "committed timed out" in (sampler.error or "")
    line = soak.progress(sampler, 120.0, "draining")
    assert line.startswith("soak: t+120s draining (last sample 115 s ago)")
    assert "2 samples failed" in line and "committed timed out" in line
    assert soak.progress(FlakySampler(), 3.0) == "soak: t+3s no sample yet"


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


def test_a_check_is_bounded_its_result_and_its_error_come_back() -> None:
    assert soak.bounded(lambda: 42, 30, "answer") == 42
    with pytest.raises(AssertionError, match="partitions"):
        soak.bounded(lambda: (_ for _ in ()).throw(AssertionError("partitions")), 30, "x")
    never = threading.Event()
    try:
        with pytest.raises(TimeoutError, match="outbound and audit: not done in 0 s"):
            soak.bounded(never.wait, 0.05, "outbound and audit")
    finally:
        never.set()


def test_the_audit_check_reads_the_runs_own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    # the registry topic follows the prefix: read through the shared one, every audit entry
    # missed its schema (a second of retries each) and the soak hung in its check
    opened: list[tuple[tuple[object, ...], dict[str, object]]] = []

    class Opened(Exception):
        pass

    def registry(*args: object, **kwargs: object) -> None:
        opened.append((args, kwargs))
        raise Opened

    monkeypatch.setattr(soak, "KafkaSchemaRegistry", registry)
    run = SimpleNamespace(bootstrap="127.0.0.1:1", prefix="t1234.")
    with pytest.raises(Opened):
        soak.Soak.outbound_against_audit(run)  # type: ignore[arg-type]
    assert opened == [(("127.0.0.1:1",), {"prefix": "t1234."})]


def test_the_soak_bom_is_the_bench_bom_under_the_soak_company() -> None:
    product, lines = pid("SOAK-T0-7"), [(pid("SOAK-T1-1"), "0.5"), (pid("SOAK-T1-2"), "2")]
    got = soak.soak_bom(product, lines, "bg:cn-grid-2022", 3).model_dump(mode="json")
    assert got["revision"] == 3
    assert got["processEmissions"]["electricityFactorId"] == "bg:cn-grid-2022"
    assert got["productInfo"]["companyName"] == "Soak Manufacturing Co."
    assert [(c["productId"], c["quantity"]) for c in got["components"]] == lines
    bench_bom = bom(product, lines).model_dump(mode="json")
    assert bench_bom["productInfo"]["companyName"] == "Bench Manufacturing Co."
    assert bench_bom["revision"] == 1
    for field in ("revision", "processEmissions", "productInfo"):
        got.pop(field), bench_bom.pop(field)
    assert got == bench_bom, "the rest is the bench's"
