"""The in-process steps bench (``bench.bench_streams --steps``) runs the roll-up agent's real
steps: every leaf update reaches each product of its chain, which publishes once, after the
Deprecated copy of its previous footprint. The latency probes' plans (no broker): batch-signed,
one signature per supplier per tick, sent at the tick's end and timed from when each update was
due; singly signed, each update alone when due. The rate a probe's worker got through: the
offered one when every update takes about as long, whatever the jitter; less when a backlog
grows."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench.bench_streams import Bench, Chains, steps, throughput_of, ticks
from pcf_exchange.contracts import (
    AvroSerde,
    InMemorySchemaRegistry,
    SignedFootprint,
    register_all,
)
from tests.harness import Participants


def test_each_update_republishes_every_product_of_its_chain_once() -> None:
    figures = steps(Chains(2, [3], 0), 3, updates=4, repeats=2)
    assert figures["records_per_update"] == 6  # 3 products: a Deprecated copy and a new record
    assert len(figures["us_per_update_runs"]) == 2
    assert figures["us_per_update"] == min(figures["us_per_update_runs"]) > 0


def _offline_bench(tmp_path: Path) -> Bench:
    """A :class:`Bench` with its keys, chains and an in-memory registry, no broker (only what
    :meth:`Bench.latency_plan` uses)."""
    bench = object.__new__(Bench)
    bench.chains = Chains(16, [6], 0)
    bench.prefix = "plan."
    bench.versions = {}
    bench.people = Participants(tmp_path / "keys")
    registry = InMemorySchemaRegistry()
    register_all(registry, bench.prefix)
    bench.serde = AvroSerde(registry)
    return bench


def test_ticks_group_the_updates_falling_due_within_each_tick() -> None:
    # 1 000/s in 10 ms ticks: ten updates each, sent at each tick's end
    assert ticks(25, 1_000.0, 0.010) == [
        (range(0, 10), 0.01),
        (range(10, 20), 0.02),
        (range(20, 25), 0.03),
    ]
    # 130/s: due at 0, 7.7, 15.4, 23.1 ms; ticks with nothing due are skipped, none is empty
    assert ticks(4, 130.0, 0.010) == [(range(0, 2), 0.01), (range(2, 3), 0.02), (range(3, 4), 0.03)]
    assert ticks(3, 50.0, 0.010) == [(range(0, 1), 0.01), (range(1, 2), 0.03), (range(2, 3), 0.05)]
    # singly: each update alone, sent when due
    assert ticks(3, 1_000.0, 0.0) == [
        (range(0, 1), 0.0),
        (range(1, 2), 0.001),
        (range(2, 3), 0.002),
    ]


def test_a_batch_signed_probe_signs_once_per_supplier_per_tick(tmp_path: Path) -> None:
    bench = _offline_bench(tmp_path)
    leaves = bench.chains.leaves[6]
    order = [leaves[i % len(leaves)] for i in range(40)]
    plan, signatures = bench.latency_plan(order, 1_000.0, 0.010)
    assert [len(t.updates) for t in plan] == [10, 10, 10, 10]
    roots: set[bytes] = set()
    for k, tick in enumerate(plan):
        assert tick.send_s == pytest.approx((k + 1) * 0.010)  # sent at the tick's end ...
        suppliers: dict[str, set[bytes]] = {}
        for n, (leaf, version, due_s, value) in enumerate(tick.updates):
            assert due_s == (10 * k + n) / 1_000.0  # ... each counted from when it was due
            i = 10 * k + n
            assert leaf == order[i] and version == order[: i + 1].count(leaf)  # (versions 1, 2..)
            signed = bench.serde.decode(value, SignedFootprint)
            assert signed.batch_proof is not None and not signed.signature
            suppliers.setdefault(signed.supplier_id, set()).add(signed.batch_proof.root_signature)
        assert all(len(sigs) == 1 for sigs in suppliers.values())  # one batch per supplier
        roots.update(s for sigs in suppliers.values() for s in sigs)
    assert (
        signatures
        == len(roots)
        == sum(
            len({bench.chains.parts[leaf] for leaf in order[10 * k : 10 * k + 10]})
            for k in range(4)
        )
    )


def test_a_singly_signed_probe_sends_each_update_when_due(tmp_path: Path) -> None:
    bench = _offline_bench(tmp_path)
    order = bench.chains.leaves[6][:5]
    plan, signatures = bench.latency_plan(order, 1_000.0, None)
    assert signatures == 5 and [len(t.updates) for t in plan] == [1] * 5
    for i, tick in enumerate(plan):
        ((leaf, version, due_s, value),) = tick.updates
        assert tick.send_s == due_s == i / 1_000.0 and leaf == order[i] and version == 1
        signed = bench.serde.decode(value, SignedFootprint)
        assert signed.batch_proof is None and signed.signature


def test_a_worker_that_keeps_up_got_through_the_offered_rate_whatever_its_jitter() -> None:
    rng = random.Random(7)
    due = [i / 1000 for i in range(10_000)]  # 1 000/s for 10 s
    # each result lands 200-800 ms after its update was due: the first-to-last figure adds the
    # spread (~0.6 s) to the run's 10 s, and takes the worker for a slower one
    landed = [t + rng.uniform(0.2, 0.8) for t in due]
    got = throughput_of(due, landed)
    assert got["capacity_per_s"] == pytest.approx(1000, rel=0.01)
    assert got["first_to_last_per_s"] < 960


def test_a_worker_that_falls_behind_got_through_its_own_rate() -> None:
    due = [i / 1000 for i in range(10_000)]  # offered 1 000/s, done at 800/s
    landed = [0.3 + i / 800 for i in range(10_000)]
    got = throughput_of(due, landed)
    assert got["capacity_per_s"] == pytest.approx(800, rel=0.001)
    assert got["landed_per_due_s"] == pytest.approx(1.25, rel=0.001)
    assert throughput_of(due[:1], landed[:1])["capacity_per_s"] is None
