"""Cost of one supplier-footprint update through the roll-up core vs a Brightway re-solve, and of
a grid-factor revision reaching every product vs loading the same graph from a backlog.

For 1k, 10k and 100k products (``python -m bench.bench_rollup``; ``--sizes 1000`` for one size,
``--grid-sizes`` for the grid benchmark) a synthetic supply chain is built once: 8 tiers, each
tier twice as wide as the one above, every product consuming 3 distinct products of the tier below
(about 1.5 parents per component, so diamonds everywhere), purchased parts with supplier
footprints at the bottom, own direct emissions everywhere and grid electricity (20 regional grid
factors) on 30 % of the products.

**Ours** -- the core kept as an in-memory :class:`~streams.rollup.Network` (both sides' states,
the same transitions the faust agents run): one new footprint version of a random purchased part
(built before the clock starts: its content hash is the producer's and ingestion's business),
then :meth:`Network.run` with ``coalesce=True``, which takes it on the network's *flat* mirror
(``streams/rollup/_flat.py``, loaded once after the graph, untimed: ``ours_flat_mirror_load_s``):
every ancestor's numbers -- scaled integers, all keys but the variance packed in one int per
node -- moved along the part's *influence row* (session 17): its ancestors in order, each with
the exact integer ``C1`` (the sum over the paths of the product of the lines' scalings: a column
of the Leontief inverse), so the update is ``packed[X] += Δ · C1`` per ancestor, no line walked.
The rows are built once after the mirror, untimed like Brightway's factorisation
(``influence_rows_preload_s``, ``influence_rows_rss_mb``; kept up to ``influence_row_limit``
entries, least recently used out: at 100k not every part's row fits, and an update whose row
is not kept builds it on the way -- ``ours_first_touch_*`` against ``ours_steady_median_ms``
in the details). No object is
built while the update propagates: the states, values and messages the engine would have made,
and the full result of every republished product (lineage, content hash, id), are the edge's
cost, paid when read and reported separately (``edge_build_results_ms``). The details give the
same network's **engine** on updates of the same kind in the same run (``engine_*``:
``Network.flat`` off, i.e. the object :class:`~streams.rollup.Engine` every update ran on before
the flat path -- copies of each ancestor's state, values and messages as objects), and the same
update delivered one message at a time (FIFO, as a faust agent with concurrency 1 would;
diamonds then recompute a node once per path that reaches it).

**Baseline** -- Brightway (bw2calc 3.1.0) on the same graph: an ``LCA`` built once from a
float64 ``bw_processing`` datapackage (demand = one unit of every finished product), its
technosphere factorised once; per update, change the part's biosphere value in place, then
``lci_calculation()`` + ``lcia_calculation()``: one re-solve that yields *one* score.

The factorisation is SuperLU in natural order with diagonal pivots, injected as ``lca.solver``.
bw2calc's own choice without pypardiso/UMFPACK (``bw2calc.utils.lu_solver``: SuperLU, COLAMD,
partial pivoting) pivots off the diagonal of a BOM matrix whose quantities exceed 1 and fills
in explosively -- measured 3.7 s at 10k products, 29 s at 20k, 290 s at 40k (83 M nonzeros in
L+U) -- so it cannot run at 100k here; its figures are in the details where it can. The details
also give a transposed re-solve that yields every product's footprint (what ours maintains) and
a refactorise-and-solve (what a BOM quantity change costs Brightway).

**Grid-factor revision** (``rollup_grid_revision_<n>k``) -- the same shape where *every* product
has metered electricity, so every product uses a grid factor directly or through its inputs: one
new version of all 20 grid factors, timed until every product's new value has propagated and the
result of each republished product is built once (each product must be republished exactly once:
its sequence goes up by one).
Baseline: loading the same graph from a backlog (footprints, factors, then every BOM) in the same
run. Memory is the process's peak resident set after the run (the grid benchmarks run first,
smallest first, so that figure is theirs).

One result per size, value = median milliseconds per update (lower is better), via
:func:`bench.report.write_result`. The details also give ``calls_per_update`` and
``calls_per_ancestor`` (cProfile's counts over 50 more updates, untimed): a count does not move
with the load of the shared machine, so it compares two versions of the code exactly; and
``--before DIR`` copies the same result of the old code (its results directory, run just before
in the same window) into the details as ``before_this_change``.

Where an update's time went on the engine (session 14, SIGPROF sampling of 600 updates at 10k
products): it scales with the ancestors republished (46-60 at 10k), 133 µs of CPU each; the
arithmetic (scaling the changed line's 8 keys, applying its difference) was a sixth of it, the
rest per-node objects rebuilt at every ancestor (frozen-dataclass inits 14 %, the new value and
its pending identity 14.5 %, copies 7 %, ``Ref`` hash/eq 8 %, the component side 8 %, the
queue 7 %). The ≥ 10x target at 10k asks for 3-4 µs per ancestor: no rearrangement of those
objects gets there, hence the flat path (session 15). Measured in one window at load 8
(``propagate`` timed inside the run): **4.4-5.0 µs per ancestor** of
propagation at 10k (a changed line is two big-int multiplications, two subtractions, two
additions; the rest is the height buckets and the parents' dirty lists), plus a fixed
~230 µs per update that is the leaf's own object step (``component_step`` on the footprint:
its value, subscribers and ChildValue messages, which the edge needs) and the check that the new
value keeps its shape and bounds. The edge (states, values, messages, then the results) is
paid per republished product when read. Session 17 replaced the walk over the changed lines
with the influence rows: two big-integer operations per ancestor (``ours_per_ancestor_us``
still divides the whole update, its fixed part included, by the ancestors republished).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.report import Baseline, BenchResult, write_result
from pcf_exchange.streams.rollup import (
    Bom,
    BomDeclared,
    BomLine,
    ComponentFootprint,
    Factor,
    FactorPublished,
    FootprintDeclared,
    Message,
    Network,
    OwnProcess,
    ProductRolledUp,
    children_first,
)

TIERS = 8
LINES = 3
GRIDS = 20
ELECTRICITY_SHARE = 0.3
E, INC, F = "pcfExcludingBiogenicUptake", "pcfIncludingBiogenicUptake", "fossilGhgEmissions"


def _figures(value: Decimal) -> dict[str, Decimal]:
    return {E: value, INC: value, F: value}


@dataclass
class Graph:
    boms: list[Bom]
    footprints: list[ComponentFootprint]
    factors: list[Factor]
    finished: list[str]

    @property
    def parts(self) -> list[str]:
        return [fp.product_id for fp in self.footprints]


def build_graph(
    n_products: int, seed: int = 7, electricity_share: float = ELECTRICITY_SHARE
) -> Graph:
    rng = random.Random(seed)
    top = max(1, round(n_products / (2**TIERS - 1)))
    tiers = [[f"p{t}_{i}" for i in range(top * 2**t)] for t in range(TIERS)]
    parts = [f"part{i}" for i in range(top * 2**TIERS)]
    boms = []
    for t, names in enumerate(tiers):
        below = tiers[t + 1] if t + 1 < TIERS else parts
        for pid in names:
            lines = tuple(
                BomLine(child, Decimal(rng.randint(1, 500)).scaleb(-2), "piece")
                for child in rng.sample(below, LINES)
            )
            kwh = Decimal(rng.randint(1, 1000)).scaleb(-1)
            own = (
                OwnProcess(
                    Decimal(rng.randint(1, 10_000)).scaleb(-3), kwh, f"grid{rng.randrange(GRIDS)}"
                )
                if rng.random() < electricity_share
                else OwnProcess(Decimal(rng.randint(1, 10_000)).scaleb(-3))
            )
            boms.append(Bom(pid, 1, lines, own))
    footprints = [
        ComponentFootprint(
            part,
            f"fp-{part}-1",
            1,
            "piece",
            Decimal(1),
            _figures(Decimal(rng.randint(1, 99_999)).scaleb(-3)),
        )
        for part in parts
    ]
    factors = [
        Factor(f"grid{g}", 1, "kilowatt hour", _figures(Decimal(rng.randint(100, 900)).scaleb(-3)))
        for g in range(GRIDS)
    ]
    return Graph(boms, footprints, factors, tiers[0])


# --------------------------------------------------------------------------- ours


@dataclass
class Rows:
    """The flat mirror's influence rows built at load (``FlatRollup.preload``, untimed)."""

    seconds: float = 0.0
    kept: int = 0
    entries: int = 0
    limit: int = 0
    rss_mb: float = 0.0
    """The process's resident set before and after the rows were built (GC off: the rows)."""


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def preload_rows(net: Network) -> Rows:
    """Load *net*'s flat mirror if needed and build its influence rows, as many as its limit
    keeps (like Brightway's factorisation: once, outside the updates)."""
    mirror = net.flatten()
    if mirror is None:
        return Rows()
    before, start = _rss_mb(), time.perf_counter()
    kept = mirror.preload()
    return Rows(
        time.perf_counter() - start,
        kept,
        mirror.row_entries,
        mirror.row_limit,
        _rss_mb() - before,
    )


def load_core(graph: Graph, *, flatten: bool = False) -> tuple[Network, float, float]:
    """The graph loaded from a backlog into a :class:`Network`: (network, seconds, seconds to
    load its flat mirror after, with *flatten*; 0 without)."""
    gc.collect()
    gc.disable()  # millions of long-lived objects: generational GC passes would dominate
    start = time.perf_counter()
    net = Network()
    net.submit(*(FootprintDeclared(fp) for fp in graph.footprints))
    net.submit(*(FactorPublished(f) for f in graph.factors))
    net.run(coalesce=True)
    for bom in children_first(graph.boms):
        net.submit(BomDeclared(bom))
        net.run(coalesce=True)
    elapsed = time.perf_counter() - start
    mirror = 0.0
    if flatten:
        start = time.perf_counter()
        net.flatten()
        mirror = time.perf_counter() - start
    gc.enable()
    gc.freeze()
    return net, elapsed, mirror


def _footprints(updates: list[tuple[str, Decimal]], seq: dict[str, int]) -> list[FootprintDeclared]:
    """The updates as new footprint versions (their content hashes computed here, untimed)."""
    out = []
    for part, value in updates:
        seq[part] = seq.get(part, 1) + 1
        fp = ComponentFootprint(
            part, f"fp-{part}-{seq[part]}", seq[part], "piece", Decimal(1), _figures(value)
        )
        out.append(FootprintDeclared(fp))
    return out


def time_core_updates(
    net: Network,
    updates: list[FootprintDeclared],
    *,
    coalesce: bool = True,
    cpu: list[float] | None = None,
    first_touch: list[bool] | None = None,
    edge: bool = True,
) -> tuple[list[float], list[int], list[float]]:
    """Time each update until quiescence (coalesced, or per message), then, separately, the
    edge: the full result of every republished product, built once. Returns (propagation
    times, products republished, edge times); *cpu* gets the propagation's process CPU times
    (what the load of other processes on the machine inflates least); *first_touch*, per
    update, whether the flat path built an influence row during it (not preloaded, or
    evicted: the update paid for the walk up from its leaf). Without *edge* the updates run
    back to back, as Brightway's re-solves are timed: no result is read between them (nothing
    evicts the core's data from the caches), and no republished count or edge time is kept."""
    times, touched, edges = [], [], []
    for message in updates:
        mirror = net.mirror
        built = -1 if mirror is None else mirror.rows_built
        seen: dict[str, ProductRolledUp] = {}

        def observe(_message: Message, step: Any, seen: dict[str, Any] = seen) -> None:
            for out in step.outputs:
                if isinstance(out, ProductRolledUp):
                    seen[out.product_id] = out

        start, cpu_start = time.perf_counter(), time.process_time()
        net.submit(message)
        if coalesce:  # the engine reports each product's last new value itself
            net.run(coalesce=True)
        else:
            net.run(observe=observe)
        times.append(time.perf_counter() - start)
        if cpu is not None:
            cpu.append(time.process_time() - cpu_start)
        if first_touch is not None:
            after = net.mirror
            first_touch.append(after is None or after is not mirror or after.rows_built > built)
        if not edge:
            continue
        start = time.perf_counter()  # (the edge: reading net.last builds the flat path's states)
        published = net.last.published if coalesce and net.last is not None else seen
        for rolled in published.values():
            rolled.result  # noqa: B018 - builds (and caches) the full result
        edges.append(time.perf_counter() - start)
        touched.append(len(published))
    return times, touched, edges


def count_calls(net: Network, updates: list[FootprintDeclared]) -> tuple[float, float]:
    """Python function calls (and C calls the profiler sees) per update and per republished
    ancestor, counted by cProfile over *updates* (untimed): unlike a time, a count does not move
    with the load of the shared machine, so it compares two versions of the code exactly. A cost
    per update that does not shrink with the graph is plumbing, not arithmetic."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    republished = 0
    for message in updates:
        net.submit(message)
        profile.enable()
        net.run(coalesce=True)
        profile.disable()
        last = net.last  # (outside the count: on the flat path, reading it builds the edge)
        republished += len(last.published) if last is not None else 0
    calls = sum(row[1] for row in pstats.Stats(profile).stats.values())  # type: ignore[attr-defined]
    return calls / max(1, len(updates)), calls / max(1, republished)


# --------------------------------------------------------------------------- Brightway


def build_brightway(graph: Graph) -> tuple[Any, dict[str, int], float]:
    import bw2calc as bc
    import bw_processing as bwp
    import numpy as np

    start = time.perf_counter()
    codes = [b.product_id for b in graph.boms] + graph.parts + [f.factor_id for f in graph.factors]
    ids = {code: i for i, code in enumerate(codes)}
    flow = len(ids)
    rows: list[tuple[int, int]] = []
    data: list[float] = []
    flip: list[bool] = []
    bio_rows: list[tuple[int, int]] = []
    bio_data: list[float] = []
    for code in codes:
        rows.append((ids[code], ids[code]))
        data.append(1.0)
        flip.append(False)
    for bom in graph.boms:
        col = ids[bom.product_id]
        for line in bom.components:
            rows.append((ids[line.component_id], col))
            data.append(float(line.quantity))
            flip.append(True)
        if bom.own.grid_factor_id is not None:
            rows.append((ids[bom.own.grid_factor_id], col))
            data.append(float(bom.own.electricity_kwh))
            flip.append(True)
        bio_rows.append((flow, col))
        bio_data.append(float(bom.own.direct_kgco2e))
    for fp in graph.footprints:
        bio_rows.append((flow, ids[fp.product_id]))
        bio_data.append(float(fp.figures[E]))
    for f in graph.factors:
        bio_rows.append((flow, ids[f.factor_id]))
        bio_data.append(float(f.figures[E]))
    dp = bwp.create_datapackage()
    dp.add_persistent_vector(
        matrix="technosphere_matrix",
        indices_array=np.array(rows, dtype=bwp.INDICES_DTYPE),
        data_array=np.array(data, dtype=np.float64),
        flip_array=np.array(flip, dtype=bool),
        name="technosphere",
    )
    dp.add_persistent_vector(
        matrix="biosphere_matrix",
        indices_array=np.array(bio_rows, dtype=bwp.INDICES_DTYPE),
        data_array=np.array(bio_data, dtype=np.float64),
        name="biosphere",
    )
    dp.add_persistent_vector(
        matrix="characterization_matrix",
        indices_array=np.array([(flow, flow)], dtype=bwp.INDICES_DTYPE),
        data_array=np.array([1.0]),
        name="gwp",
    )
    demand = {ids[pid]: 1.0 for pid in graph.finished}
    lca = bc.LCA(demand, data_objs=[dp])
    lca.load_lci_data()
    lca.build_demand_array()
    lca.solver = _tuned_solver(lca.technosphere_matrix)
    lca.lci_calculation()
    lca.load_lcia_data()
    lca.lcia_calculation()
    return lca, ids, time.perf_counter() - start


def _tuned_solver(matrix: Any) -> Any:
    """SuperLU of a BOM technosphere in natural order with diagonal pivots (no fill-in)."""
    from scipy.sparse.linalg import splu  # type: ignore[import-untyped]

    lu = splu(matrix.tocsc(), permc_spec="NATURAL", diag_pivot_thresh=0.0)
    return lu.solve


def time_brightway_updates(
    lca: Any, ids: dict[str, int], updates: list[tuple[str, Decimal]], stock: bool
) -> dict[str, list[float]]:
    from bw2calc.utils import lu_solver
    from scipy.sparse.linalg import splu

    biosphere = lca.biosphere_matrix.tocsr()
    lca.biosphere_matrix = biosphere
    col_of = lca.dicts.activity
    matrix = lca.technosphere_matrix.tocsc()
    lu = splu(matrix, permc_spec="NATURAL", diag_pivot_thresh=0.0)
    out: dict[str, list[float]] = {
        "resolve": [],
        "resolve_cpu": [],
        "all_products": [],
        "refactorize": [],
        "stock_factorize": [],
        "stock_resolve": [],
    }
    for i, (part, value) in enumerate(updates):
        col = col_of[ids[part]]
        start, cpu_start = time.perf_counter(), time.process_time()
        biosphere[0, col] = float(value)
        lca.lci_calculation()
        lca.lcia_calculation()
        _ = lca.score
        out["resolve"].append(time.perf_counter() - start)
        out["resolve_cpu"].append(time.process_time() - cpu_start)
        start = time.perf_counter()  # every product's footprint: solve A^T x = (C B)^T
        lu.solve((lca.characterization_matrix @ biosphere).toarray().ravel(), trans="T")
        out["all_products"].append(time.perf_counter() - start)
        if i < 3:
            start = time.perf_counter()
            splu(matrix, permc_spec="NATURAL", diag_pivot_thresh=0.0).solve(lca.demand_array)
            out["refactorize"].append(time.perf_counter() - start)
    if stock:  # bw2calc's own factorisation, where it is feasible
        start = time.perf_counter()
        solve = lu_solver(lca.technosphere_matrix)
        out["stock_factorize"].append(time.perf_counter() - start)
        for _ in range(5):
            start = time.perf_counter()
            solve(lca.demand_array)
            out["stock_resolve"].append(time.perf_counter() - start)
    return out


# --------------------------------------------------------------------------- main


def run(size: int, n_updates: int, seed: int = 11) -> BenchResult:
    graph = build_graph(size)
    rng = random.Random(seed)
    parts = graph.parts
    updates = [
        (rng.choice(parts), Decimal(rng.randint(1, 99_999)).scaleb(-3)) for _ in range(n_updates)
    ]
    gc.collect()
    net, load_s, mirror_s = load_core(graph, flatten=True)
    gc.disable()
    rows = preload_rows(net)
    gc.enable()
    seq: dict[str, int] = {}
    messages = _footprints(updates, seq)
    again = random.Random(seed + 1)  # (new values: a replay of the same ones would change less)
    back_to_back = _footprints(
        [(again.choice(parts), Decimal(again.randint(1, 99_999)).scaleb(-3)) for _ in updates],
        seq,
    )
    engine_messages = _footprints(updates[: len(updates) // 2], seq)
    fifo_messages = _footprints(updates[: len(updates) // 4], seq)
    counted_messages = _footprints(updates[: min(50, len(updates))], seq)
    core_cpu: list[float] = []
    engine_cpu: list[float] = []
    first: list[bool] = []
    gc.disable()
    try:
        core_times, touched, edge = time_core_updates(
            net, messages, cpu=core_cpu, first_touch=first
        )
        results = net.results()  # (before the engine's and FIFO's updates: Brightway's state)
        ours_total = sum(float(results[p].pcf or 0) for p in graph.finished)
        warm, _, _ = time_core_updates(net, back_to_back, edge=False)
        flat_runs = net.flat_runs
        net.flat = False  # the same network on the object engine: the code before the flat path
        engine, engine_touched, engine_edge = time_core_updates(
            net, engine_messages, cpu=engine_cpu
        )
        net.flat = True
        fifo, fifo_touched, _ = time_core_updates(net, fifo_messages, coalesce=False)
        preload_rows(net)  # (the engine's runs dropped the mirror: loaded again, untimed)
        calls_per_update, calls_per_ancestor = count_calls(net, counted_messages)
    finally:
        gc.enable()
    lca, ids, bw_build_s = build_brightway(graph)
    bw = time_brightway_updates(lca, ids, updates, stock=size <= 10_000)
    # same answer for the finished goods after the same updates (float64 vs exact Decimal)
    assert abs(ours_total - float(lca.score)) <= 1e-6 * abs(ours_total), (ours_total, lca.score)

    ms = [t * 1000 for t in core_times]
    warm_ms = [t * 1000 for t in warm]
    bw_ms = [t * 1000 for t in bw["resolve"]]
    bw_median = statistics.median(bw_ms)
    label = f"{size // 1000}k"
    return BenchResult(
        name=f"rollup_update_{label}",
        unit="ms",
        value=round(statistics.median(warm_ms), 3),
        higher_is_better=False,
        description=(
            f"one supplier-footprint update through the roll-up core, {len(graph.boms):,} "
            f"products, 8 tiers, until every ancestor's state has its new value (running sums, "
            f"coalesced, no result built; median of {n_updates} timed back to back, as "
            f"Brightway's re-solves are; with each update's results built between them: "
            f"ours_edge_between_median_ms)"
        ),
        baseline=Baseline("brightway_resolve", round(bw_median, 3), "ms"),
        target=round(bw_median / 10, 3) if size >= 10_000 else None,
        details={
            "products": len(graph.boms),
            "purchased_parts": len(graph.parts),
            "updates": n_updates,
            "ours_back_to_back_mean_ms": round(statistics.fmean(warm_ms), 3),
            "ours_edge_between_median_ms": round(statistics.median(ms), 3),
            "ours_edge_between_ratio": round(bw_median / statistics.median(ms), 2),
            "ours_edge_between_note": (
                "the same kind of updates, each followed (untimed) by building the full result "
                "of every product it republished, as a worker publishes them: that work evicts "
                "the core's data from the CPU caches, and the next update pays for it"
            ),
            "ours_mean_ms": round(statistics.fmean(ms), 3),
            "ours_cpu_median_ms": _ms(core_cpu),
            "brightway_resolve_cpu_median_ms": _ms(bw["resolve_cpu"]),
            "ours_p95_ms": round(sorted(ms)[int(0.95 * (len(ms) - 1))], 3),
            "ancestors_republished_mean": round(statistics.fmean(touched), 1),
            "ours_per_ancestor_us": round(1000 * sum(ms) / max(1, sum(touched)), 1),
            "ours_flat_path_updates": flat_runs,
            "ours_flat_mirror_load_s": round(mirror_s, 2),
            "influence_rows_preload_s": round(rows.seconds, 2),
            "influence_rows_kept": rows.kept,
            "influence_row_entries": rows.entries,
            "influence_row_limit": rows.limit,
            "influence_rows_rss_mb": round(rows.rss_mb, 1),
            "ours_first_touch_updates": sum(first),
            "ours_first_touch_median_ms": _ms(
                [t for t, f in zip(core_times, first, strict=True) if f]
            ),
            "ours_steady_median_ms": _ms(
                [t for t, f in zip(core_times, first, strict=True) if not f]
            ),
            "influence_note": (
                "each purchased part's influence row (its ancestors with the exact integer "
                "C1 = sum over paths of the product of the lines' scalings) is built at load, "
                "untimed, up to the row limit (entries kept, least recently used out); an "
                "update whose row was not kept builds it on the way (first touch: the walk up "
                "from the leaf); steady = the row was there"
            ),
            "engine_median_ms": _ms(engine),
            "engine_cpu_median_ms": _ms(engine_cpu),
            "engine_per_ancestor_us": round(1e6 * sum(engine) / max(1, sum(engine_touched)), 1),
            "engine_ancestors_republished_mean": round(statistics.fmean(engine_touched), 1),
            "engine_edge_build_results_median_ms": _ms(engine_edge),
            "engine_note": (
                "the same network and updates of the same kind through the object Engine "
                "(Network(flat=False) path): the code before the flat engine, same run"
            ),
            "edge_build_results_median_ms": _ms(edge),
            "edge_build_results_per_product_us": round(1e6 * sum(edge) / max(1, sum(touched)), 1),
            "ours_plus_edge_median_ms": _ms([a + b for a, b in zip(core_times, edge, strict=True)]),
            "ours_fifo_per_message_median_ms": _ms(fifo),
            "ours_fifo_republished_mean": round(statistics.fmean(fifo_touched), 1),
            "ours_initial_load_s": round(load_s, 2),
            "calls_per_update": round(calls_per_update),
            "calls_per_ancestor": round(calls_per_ancestor, 1),
            "brightway_resolve_mean_ms": round(statistics.fmean(bw_ms), 3),
            "brightway_all_products_transposed_solve_ms": _ms(bw["all_products"]),
            "brightway_refactorize_and_solve_ms": _ms(bw["refactorize"]),
            "brightway_build_and_factorize_s": round(bw_build_s, 2),
            "bw2calc_stock_lu_solver_factorize_s": (
                round(bw["stock_factorize"][0], 2) if bw["stock_factorize"] else None
            ),
            "bw2calc_stock_lu_solver_resolve_ms": _ms(bw["stock_resolve"]),
            "brightway_note": (
                "float64 datapackage; SuperLU natural order + diagonal pivots injected as "
                "lca.solver (bw2calc's stock lu_solver is infeasible at 100k, see module "
                "docstring); one re-solve yields one demand's score, ours updates every "
                "ancestor's exact value (its full result is the edge's, in the details)"
            ),
        },
    )


def run_grid(size: int) -> BenchResult:
    """One new version of every grid factor on a graph where every product uses one."""
    graph = build_graph(size, electricity_share=1.0)
    gc.collect()
    net, load_s, _ = load_core(graph)
    revision = [
        FactorPublished(
            Factor(f.factor_id, f.sequence + 1, f.unit, _figures(f.figures[E] * Decimal("0.9")))
        )
        for f in graph.factors
    ]
    before = {pid: state.sequence for pid, state in net.products.items()}
    gc.disable()
    try:
        start, cpu_start = time.perf_counter(), time.process_time()
        net.submit(*revision)
        net.run(coalesce=True)
        propagated = time.perf_counter() - start
        assert net.last is not None
        published = net.last.published
        for rolled in published.values():
            rolled.result  # noqa: B018 - builds (and caches) the full result, once
        total = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
    finally:
        gc.enable()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert len(published) == len(graph.boms), (len(published), len(graph.boms))
    once = sum(1 for pid in published if net.products[pid].sequence == before[pid] + 1)
    label = f"{size // 1000}k"
    return BenchResult(
        name=f"rollup_grid_revision_{label}",
        unit="s",
        value=round(total, 3),
        higher_is_better=False,
        description=(
            f"a new version of the 20 grid factors reaching all {len(graph.boms):,} products "
            "(every product metered), until every product's new value has propagated and each "
            "republished product's result is built once"
        ),
        baseline=Baseline("load_same_graph_from_backlog", round(load_s, 3), "s"),
        target=5.0 if size <= 10_000 else 60.0,
        details={
            "products": len(graph.boms),
            "republished": len(published),
            "republished_exactly_once": once,
            "propagation_s": round(propagated, 3),
            "edge_build_results_s": round(total - propagated, 3),
            "process_cpu_s": round(cpu, 3),
            "peak_rss_mb": round(rss_mb),
        },
    )


def _before(directory: Path | None, result: BenchResult) -> BenchResult:
    """*result* with the same benchmark's figures of the code before a change (``--before DIR``:
    the results directory of a worktree of the old code, run in the same window) in its
    details, so that the file says what the change did under the same load."""
    path = None if directory is None else directory / f"{result.name}.json"
    if path is None or not path.exists():
        return result
    data = json.loads(path.read_text())
    details = data.get("details", {})
    keep = (
        "ours_cpu_median_ms",
        "brightway_resolve_cpu_median_ms",
        "ancestors_republished_mean",
        "ours_per_ancestor_us",
        "ours_steady_median_ms",
        "ours_first_touch_median_ms",
        "calls_per_update",
        "calls_per_ancestor",
        "propagation_s",
        "process_cpu_s",
    )
    before = {
        "value": data.get("value"),
        "baseline": (data.get("baseline") or {}).get("value"),
        "ratio": data.get("ratio"),
        "measured_at": data.get("measured_at"),
        "load_average": (data.get("machine") or {}).get("load_average"),
        **{k: details[k] for k in keep if k in details},
    }
    return replace(result, details={**result.details, "before_this_change": before})


def _ms(samples: list[float]) -> float | None:
    return round(1000 * statistics.median(samples), 3) if samples else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000, 100_000])
    parser.add_argument("--grid-sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="results directory of the code before a change, run in the same window "
        "(its figures go into each result's details as before_this_change)",
    )
    args = parser.parse_args(argv)
    if "BRIGHTWAY2_DIR" not in os.environ:  # bw2calc imports bw2data, which creates a project dir
        scratch = tempfile.mkdtemp(prefix="pcfx-bench-bw-")
        atexit.register(shutil.rmtree, scratch, True)
        os.environ["BRIGHTWAY2_DIR"] = scratch
    warnings.simplefilter("ignore")
    # the grid first: its peak RSS is then its own (the process's peak only grows)
    for size in args.grid_sizes:
        result = _before(args.before, run_grid(size))
        path = write_result(result)
        d = result.details
        baseline = result.baseline.value if result.baseline else None
        print(
            f"{result.name}: {result.value} s ({d['propagation_s']} s propagation, "
            f"{d['edge_build_results_s']} s results; {d['republished_exactly_once']}/"
            f"{d['products']} republished once; peak RSS {d['peak_rss_mb']} MB)"
            " vs load from a "
            f"backlog {baseline} s -> {path}",
            file=sys.stderr,
        )
    for size in args.sizes:
        started = time.perf_counter()
        result = run(size, args.updates if size < 100_000 else max(50, args.updates // 2))
        result = _before(args.before, result)
        path = write_result(result)
        d = result.details
        baseline = result.baseline.value if result.baseline else None
        print(
            f"{result.name}: ours {result.value} ms/update back to back ("
            f"{d['ours_edge_between_median_ms']} with results built between; "
            f"{d['ancestors_republished_mean']} ancestors; edge {d['edge_build_results_median_ms']}"
            f" ms; engine {d['engine_median_ms']} ms) vs Brightway re-solve {baseline} ms; "
            f"load {d['ours_initial_load_s']} s + mirror {d['ours_flat_mirror_load_s']} s + "
            f"rows {d['influence_rows_preload_s']} s ({d['influence_rows_kept']} rows, "
            f"{d['influence_row_entries']} entries, +{d['influence_rows_rss_mb']} MB RSS; "
            f"first touch {d['ours_first_touch_updates']} updates, median "
            f"{d['ours_first_touch_median_ms']} ms, steady {d['ours_steady_median_ms']} ms); "
            f"{time.perf_counter() - started:.0f} s -> {path}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
