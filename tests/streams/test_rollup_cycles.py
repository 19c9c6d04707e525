"""Cycles in the BOM graph: detected without any worker seeing the graph, reported, never looped."""

from __future__ import annotations

import itertools
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcf_exchange.streams.rollup import (
    BomDeclared,
    FootprintDeclared,
    Message,
    Network,
    Status,
    run_batch,
)
from tests.streams._rollup_helpers import bom, fp, line
from tests.streams._rollup_oracle import cycle_members, evaluate
from tests.streams._rollup_scenarios import deliver_chaotically

FUSE = 10_000


def test_cycle_of_two_is_reported_with_its_path_and_blocks_downstream() -> None:
    results = run_batch(
        [fp("x", "1")],
        [
            bom("a", line("b", 1), line("x", 1), direct=1),
            bom("b", line("a", 2), direct=1),
            bom("car", line("a", 1), direct=1),
        ],
        [],
        max_messages=FUSE,
    )
    assert results["a"].status is results["b"].status is Status.CYCLE
    assert results["a"].cycle == results["b"].cycle == ("a", "b", "a")
    assert results["a"].figures is None and results["a"].totals is None
    assert results["car"].status is Status.BLOCKED
    assert results["car"].blocked_by == ("product:a",)


def test_cycle_of_three_reports_the_path_in_bom_direction() -> None:
    results = run_batch(
        [],
        [
            bom("a", line("b", 1), direct=1),
            bom("b", line("c", 1), direct=1),
            bom("c", line("a", 1), direct=1),
        ],
        [],
        max_messages=FUSE,
    )
    for pid in "abc":
        assert results[pid].status is Status.CYCLE
        assert results[pid].cycle == ("a", "b", "c", "a")  # a contains b contains c contains a


def test_self_loop_is_a_cycle() -> None:
    result = run_batch([], [bom("s", line("s", 1), direct=1)], [], max_messages=FUSE)["s"]
    assert (result.status, result.cycle) == (Status.CYCLE, ("s", "s"))


def test_overlapping_cycles_settle() -> None:
    """n3 <-> n4 inside n1 -> n3 -> n4 -> n1: once made products flip between the two paths."""
    boms = [
        bom("n0", line("n2", 4), line("n4", 2), direct=4),
        bom("n1", line("n3", 2), line("n2", 4), direct=5),
        bom("n2", direct=4),
        bom("n3", line("n2", 1), line("n4", 5), line("n4", 1), direct=1),
        bom("n4", line("n1", 3), line("n3", 3), direct=8),
    ]
    results = run_batch([], boms, [], max_messages=FUSE)
    assert results["n2"].pcf == 4
    assert results["n0"].status is Status.BLOCKED
    for pid in ("n1", "n3", "n4"):
        assert results[pid].status in (Status.CYCLE, Status.BLOCKED)
    assert results["n3"].status is results["n4"].status is Status.CYCLE
    assert {results["n3"].cycle, results["n4"].cycle} <= {
        ("n3", "n4", "n3"),
        ("n1", "n3", "n4", "n1"),
    }


def test_declared_footprint_cuts_the_cycle() -> None:
    # b is sold with a signed footprint: a consumes that, not b's own roll-up
    results = run_batch(
        [fp("b", "10")],
        [bom("a", line("b", 1), direct=1), bom("b", line("a", 2), direct=1)],
        [],
        max_messages=FUSE,
    )
    assert results["a"].status is Status.COMPLETE and results["a"].pcf == 11
    assert results["b"].pcf == 23


def test_a_reported_cycle_is_taken_only_from_the_next_product_on_it() -> None:
    # n1 -> n4 -> n5 -> n1 is a cycle; n1 also uses n2, whose supplier footprint cuts any path
    # through n2's own BOM (n2 -> n4). In this order of delivery (seed 10066) the footprint
    # arrives after a path n1 -> n2 -> n4 -> n5 -> n1 was reported; n2 is on no cycle, and took
    # that stale path from n5, an input that is not the product after n2 on it.
    graph = {"n0": [], "n1": ["n0", "n2", "n4"], "n2": ["n4", "n5", "n8"], "n3": []}
    graph |= {"n4": ["n0", "n5"], "n5": ["n1", "n4"], "n6": ["n0"], "n7": ["n0"], "n8": ["n0"]}
    boms = [bom(p, *(line(c, 1) for c in children), direct=1) for p, children in graph.items()]
    footprints = [fp("n2", "0"), fp("n3", "0"), fp("n8", "0"), fp("leaf0", "3"), fp("leaf1", "0.5")]
    messages: list[Message] = [
        *(FootprintDeclared(f) for f in footprints),
        *(BomDeclared(b) for b in boms),
    ]
    results = deliver_chaotically(messages, 10066, max_steps=200_000).results()
    assert results["n2"].status is Status.BLOCKED, results["n2"].cycle
    assert run_batch(footprints, boms, [], max_messages=FUSE)["n2"].status is Status.BLOCKED


def test_a_reported_cycle_path_is_dropped_once_no_input_shows_it_any_more() -> None:
    # n2 -> {n0, n5, n6}, n5 -> n2, n6 -> n2 (hypothesis, seed 262143). n2 first reports the path
    # through n6; then n6's supplier footprint arrives and stands for n6 (n6 is on no cycle any
    # more), while n2 stays on the real cycle n2 <-> n5: its path must follow, not stay stale.
    net = Network()
    net.submit(
        BomDeclared(bom("n2", line("n0", 1), line("n5", 1), line("n6", 1), direct=1)),
        BomDeclared(bom("n6", line("n2", 1), direct=1)),
        BomDeclared(bom("n0", direct=1)),
    )
    net.run(FUSE)
    assert net.result("n2").cycle == ("n2", "n6", "n2")  # type: ignore[union-attr]
    net.submit(BomDeclared(bom("n5", line("n2", 1), direct=1)))
    net.run(FUSE)
    net.submit(FootprintDeclared(fp("n6", "1")))
    net.run(FUSE)
    results = net.results()
    for pid in ("n2", "n5"):
        assert (results[pid].status, results[pid].cycle) == (Status.CYCLE, ("n2", "n5", "n2"))
    assert results["n6"].status is Status.BLOCKED  # (its own BOM still uses n2, on a cycle)
    assert results["n0"].pcf == 1


def test_cycle_closed_and_broken_by_bom_revisions_in_streaming() -> None:
    net = Network()
    net.submit(
        FootprintDeclared(fp("x", "2")),
        BomDeclared(bom("a", line("b", 1), direct=1)),
        BomDeclared(bom("b", line("c", 1), direct=1)),
        BomDeclared(bom("c", line("x", 1), direct=1)),
        BomDeclared(bom("top", line("a", 1))),
    )
    net.run(FUSE)
    assert net.result("top").pcf == 5  # type: ignore[union-attr]
    net.submit(BomDeclared(bom("c", line("x", 1), line("a", 1), rev=2, direct=1)))  # closes it
    net.run(FUSE)
    assert {p: r.status for p, r in net.results().items()} == {
        "a": Status.CYCLE,
        "b": Status.CYCLE,
        "c": Status.CYCLE,
        "top": Status.BLOCKED,
    }
    assert net.result("top").blocked_by == ("product:a",)  # type: ignore[union-attr]
    net.submit(BomDeclared(bom("c", line("x", 1), rev=3, direct=1)))  # breaks it again
    net.run(FUSE)
    assert {p: r.pcf for p, r in net.results().items()} == {"a": 5, "b": 4, "c": 3, "top": 5}


@st.composite
def cyclic_graphs(draw):
    n = draw(st.integers(2, 10))
    names = [f"n{i}" for i in range(n)]
    boms, footprints = [], []
    for pid in names:
        children = draw(st.lists(st.sampled_from([*names, "leaf0", "leaf1"]), max_size=3))
        lines = [line(c, draw(st.integers(1, 5))) for c in children]
        boms.append(bom(pid, *lines, direct=draw(st.integers(0, 9))))
        if draw(st.integers(0, 5)) == 0:
            footprints.append(fp(pid, str(draw(st.integers(0, 9)))))
    footprints += [fp("leaf0", "3"), fp("leaf1", "0.5")]
    return footprints, boms


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cyclic_graphs(), st.integers(0, 2**32 - 1))
def test_random_graphs_with_cycles_settle_and_everything_else_is_exact(graph, seed) -> None:
    footprints, boms = graph
    declared = {f.product_id for f in footprints}
    on_cycle = cycle_members({b.product_id: b for b in boms}, declared)
    uses = {b.product_id: {ln.component_id for ln in b.components} for b in boms}
    oracle = evaluate(footprints, boms, [])
    messages: list[Message] = [
        *(FootprintDeclared(f) for f in footprints),
        *(BomDeclared(b) for b in boms),
    ]
    for results in (
        run_batch(footprints, boms, [], max_messages=50_000),
        deliver_chaotically(messages, seed, max_steps=200_000).results(),
    ):
        for pid, result in results.items():
            if pid in on_cycle:
                assert result.status in (Status.CYCLE, Status.BLOCKED), pid
                if result.status is Status.CYCLE:  # a real cycle of the graph, through pid
                    path = result.cycle
                    assert pid in path and path[0] == path[-1]
                    for parent, child in itertools.pairwise(path):
                        assert child in uses[parent] and child not in declared
            elif oracle[pid].status == "blocked":
                assert result.status is Status.BLOCKED, pid
            else:
                assert result.status.value == oracle[pid].status, pid
                assert result.totals is not None
                assert Fraction(result.totals.headline) == oracle[pid].pcf, pid
