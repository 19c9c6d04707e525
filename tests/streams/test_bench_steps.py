"""The in-process steps bench (``bench.bench_streams --steps``) runs the roll-up agent's real
steps: every leaf update reaches each product of its chain, which publishes once, after the
Deprecated copy of its previous footprint."""

from __future__ import annotations

from bench.bench_streams import Chains, steps


def test_each_update_republishes_every_product_of_its_chain_once() -> None:
    figures = steps(Chains(2, [3], 0), 3, updates=4, repeats=2)
    assert figures["records_per_update"] == 6  # 3 products: a Deprecated copy and a new record
    assert len(figures["us_per_update_runs"]) == 2
    assert figures["us_per_update"] == min(figures["us_per_update_runs"]) > 0
