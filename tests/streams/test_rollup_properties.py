"""Property tests: whatever the delivery order, duplicates or replays, the roll-up converges to
exactly what an independent exact evaluation of the final inputs gives -- same digits."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcf_exchange.streams.rollup import (
    ChildValue,
    Network,
    ProductRolledUp,
    RollupResult,
    Status,
    exact_context,
    rollup_context,
    run_batch,
)
from tests.streams._rollup_oracle import OValue, evaluate
from tests.streams._rollup_scenarios import (
    Scenario,
    bom_depth,
    deliver_chaotically,
    diamonds,
    scenarios,
)

TOL = Fraction(1, 10**40)


def close(got: Decimal, want: Fraction) -> bool:
    return abs(Fraction(got) - want) <= TOL * max(Fraction(1), abs(want))


def assert_matches_oracle(results: dict[str, RollupResult], oracle: dict[str, OValue]) -> None:
    assert set(results) == set(oracle)
    for pid, want in oracle.items():
        got = results[pid]
        assert got.status.value == want.status, (pid, got.status, want.status, got.errors)
        if want.status not in ("complete", "incomplete"):
            assert got.totals is None
            continue
        assert got.missing == tuple(sorted(want.missing)), pid
        totals = got.totals
        assert totals is not None
        assert set(totals.figures) == set(want.figures), pid
        for name, value in totals.figures.items():
            if got.exact:  # no division rounded: the digits must be exactly the rational value
                assert Fraction(value) == want.figures[name], (pid, name, value)
            else:
                assert close(value, want.figures[name]), (pid, name, value)
        assert close(totals.primary, want.primary), pid
        assert close(totals.variance, want.variance), pid
        assert close(totals.unassessed, want.unassessed), pid
        assert set(totals.dqr) == set(want.dqr), pid
        for name, (ws, w) in totals.dqr.items():
            assert close(ws, want.dqr[name][0]) and close(w, want.dqr[name][1]), (pid, name)
        assert set(totals.stages) == set(want.stages), pid
        for stage, value in totals.stages.items():
            assert close(value, want.stages[stage]), (pid, stage)
        with rollup_context():
            assert close(sum(totals.stages.values(), Decimal(0)), want.pcf), pid


def check_scenario(scenario: Scenario, seed: int, *, chaotic: bool = True) -> None:
    """Batch mode and streaming both give what the exact oracle gives, with the same hashes.

    Streaming is every version of every input, duplicates, random interleaving, replays and
    rollbacks (*chaotic*, :func:`deliver_chaotically`), or the same inputs with duplicates in a
    random order applied in waves, as a loaded worker's batches apply them."""
    footprints, boms, factors = scenario.latest()
    oracle = evaluate(footprints, boms, factors)
    # (a) batch mode over the final inputs only
    batch = run_batch(footprints, boms, factors)
    assert_matches_oracle(batch, oracle)
    # (b) streaming
    if chaotic:
        streamed = deliver_chaotically(scenario.messages(), seed).results()
    else:
        rng = random.Random(seed)
        messages = scenario.messages()
        messages += [m for m in messages if rng.random() < 0.2]
        rng.shuffle(messages)
        network = Network()
        network.submit(*messages)
        network.run(coalesce=True)
        streamed = network.results()
    assert_matches_oracle(streamed, oracle)
    # (c) identical records, digit for digit, hash for hash
    assert {p: r.content_hash for p, r in streamed.items()} == {
        p: r.content_hash for p, r in batch.items()
    }


SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(scenarios(), st.integers(0, 2**32 - 1))
def test_any_order_converges_to_exact_oracle(scenario: Scenario, seed: int) -> None:
    check_scenario(scenario, seed)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios(min_tiers=10, max_tiers=14, max_width=3, spine=True), st.integers(0, 2**32 - 1))
def test_ten_plus_tiers_with_diamonds(scenario: Scenario, seed: int) -> None:
    boms = scenario.latest()[1]
    assert bom_depth(boms) >= 10 and diamonds(boms) >= 8, "the shape this test is about"
    # in waves: one message at a time, each partial update runs up every path of the diamonds
    # (a minute per example at 14 tiers); chaotic per-message delivery is tested up to 8 tiers
    check_scenario(scenario, seed, chaotic=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_tiers=6), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_two_delivery_orders_give_the_same_digits(scenario: Scenario, s1: int, s2: int) -> None:
    a = deliver_chaotically(scenario.messages(), s1).results()
    b = deliver_chaotically(scenario.messages(), s2).results()
    assert a == b
    assert {p: r.content_hash for p, r in a.items()} == {p: r.content_hash for p, r in b.items()}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_tiers=6))
def test_emits_only_on_change(scenario: Scenario) -> None:
    """Along the FIFO run, no side ever sends the same value twice in a row to the same place."""
    network = Network()
    network.submit(*scenario.messages())
    last_result: dict[str, str] = {}
    last_value: dict[object, tuple[int, object]] = {}
    sequences: dict[str, list[int]] = defaultdict(list)
    queue = list(scenario.messages())
    while queue:
        step = network.apply(queue.pop(0))
        for out in step.outputs:
            if isinstance(out, ProductRolledUp):
                assert last_result.get(out.product_id) != out.result.content_hash
                last_result[out.product_id] = out.result.content_hash
                sequences[out.product_id].append(out.sequence)
            elif isinstance(out, ChildValue):
                # a new version is only minted when the offered value really changed
                previous = last_value.get(out.child)
                if previous is not None and out.version > previous[0]:
                    assert out.version == previous[0] + 1
                    assert out.value != previous[1]
                last_value[out.child] = (out.version, out.value)
        queue.extend(step.outputs)
    for seqs in sequences.values():
        assert seqs == list(range(1, len(seqs) + 1))
    assert network.results() == run_batch(*scenario.latest())


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_tiers=5, complete=True))
def test_complete_inputs_give_complete_results(scenario: Scenario) -> None:
    results = run_batch(*scenario.latest())
    for result in results.values():
        assert result.status is Status.COMPLETE, (result.product_id, result.missing)
        assert result.pcf is not None
        # the lineage is enough to recompute the figure: sum of contributions, same digits
        # (sums are exact, see streams/rollup/_numbers.py)
        with exact_context():
            total = sum(
                (e.contribution for e in result.lineage if e.contribution is not None), Decimal(0)
            )
        assert total == result.pcf
