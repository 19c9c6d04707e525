"""The flat roll-up (``streams.rollup._flat``) against the object engine, state for state.

A :class:`Network` runs the coalesced updates its flat mirror models as integers and builds the
object states only when they are read; ``Network(flat=False)`` runs everything on the engine.
Both are fed the same messages and must agree on every product and input state, on what the
last run did (published values with their sequences and traces, the messages it made, counts
and outcomes), and on every result's content hash -- for the updates the mirror takes and for
the ones it hands back to the engine (another exponent, a value past its bound, a new input,
a unit that changes, a product whose input role offers a declared footprint, an inexact
multiplier, a cycle). No timing here: speed is ``bench/bench_rollup.py``'s business.
"""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcf_exchange.streams.rollup import (
    BomDeclared,
    ComponentFootprint,
    FactorPublished,
    FootprintDeclared,
    Message,
    Network,
    children_first,
    compute_result,
    source_from_footprint,
)
from pcf_exchange.streams.rollup._flat import FlatRollup

from ._rollup_helpers import bom, factor, figs, fp, line
from ._rollup_scenarios import scenarios


def _pair() -> tuple[Network, Network]:
    return Network(), Network(flat=False)


def _load(nets: tuple[Network, Network], messages: list[Message]) -> None:
    inputs = [m for m in messages if not isinstance(m, BomDeclared)]
    boms = [m.bom for m in messages if isinstance(m, BomDeclared)]
    for net in nets:
        net.submit(*inputs)
        net.run(coalesce=True)
        for b in children_first(boms):
            net.submit(BomDeclared(b))
            net.run(coalesce=True)


def _step(nets: tuple[Network, Network], batch: list[Message]) -> bool:
    """Run *batch* on both; whether the flat one ran it on its mirror."""
    flat, engine = nets
    flat.submit(*batch)
    engine.submit(*batch)
    before = flat.flat_runs
    counts = flat.run(coalesce=True), engine.run(coalesce=True)
    took = flat.flat_runs > before
    assert engine.flat_runs == 0
    assert counts[0] == counts[1]
    a, b = flat.last, engine.last
    assert a is not None and b is not None
    assert list(a.published) == list(b.published)
    for pid, rolled in a.published.items():
        other = b.published[pid]
        assert (rolled.sequence, rolled.trace) == (other.sequence, other.trace), pid
        assert rolled.value == other.value, pid
        assert rolled.result is not None and other.result is not None
        assert rolled.result.content_hash == other.result.content_hash, pid
        assert rolled.result.result_id == other.result.result_id, pid
    assert a.products == b.products
    assert a.components == b.components
    assert a.applied == b.applied
    assert a.remote == b.remote == []
    assert a.noops == b.noops
    assert a.outcomes == b.outcomes
    assert (a.count, a.delivered) == (b.count, b.delivered)
    return took


def _same_everywhere(nets: tuple[Network, Network]) -> None:
    flat, engine = nets
    assert flat.products == engine.products
    assert flat.components == engine.components
    assert flat.outcomes == engine.outcomes
    assert flat.delivered == engine.delivered
    ours = {pid: r.content_hash for pid, r in flat.results().items()}
    assert ours == {pid: r.content_hash for pid, r in engine.results().items()}
    for pid, state in flat.products.items():  # (and the sums are compute_result's, digit for digit)
        if state.bom is not None and state.value is not None and state.value.totals is not None:
            values = {ref: slot.value for ref, slot in state.children.items()}
            totals = compute_result(state.bom, values).totals
            assert totals is not None
            assert _digits(state.value.totals) == _digits(totals), pid


def _digits(totals: object) -> object:
    from pcf_exchange.streams.rollup._flat import flat_keys

    return {key: value.as_tuple() for key, value in flat_keys(totals).items()}  # type: ignore[arg-type]


def _new_version(old: ComponentFootprint, rng: random.Random, *, shape: bool) -> FootprintDeclared:
    """The next version of *old*: its figures and stages times a whole number (new digits at
    the same exponents: the mirror's case), or, without *shape*, times 1.1 (one digit more)."""
    m = Decimal(rng.randint(2, 9)) if shape else Decimal("1.1")
    seq = old.sequence + 1
    return FootprintDeclared(
        replace(
            old,
            sequence=seq,
            footprint_id=f"{old.product_id}-v{seq}",
            figures={name: value * m for name, value in old.figures.items()},
            stages={name: value * m for name, value in old.stages.items()},
        )
    )


# --------------------------------------------------------------------------- the common case


def _cell(n: int, seq: int, std: str = "0.1") -> FootprintDeclared:
    """A version of the chain's cell with the same figures, exponents, DQR and stages."""
    return FootprintDeclared(
        fp(
            "cell",
            f"{n + 1}.50",
            seq=seq,
            dqr={"technologicalDQR": "2"},
            stages={"A1": f"{n}.5", "A3": "1.00"},
            std=std,
        )
    )


def _chain() -> list[Message]:
    """Two tiers with a diamond: a and b both use cell; module uses a and b; direct emissions,
    DQR, stages and a standard deviation on the way."""
    return [
        FootprintDeclared(
            fp(
                "cell",
                "2.50",
                dqr={"technologicalDQR": "2"},
                stages={"A1": "1.5", "A3": "1.00"},
                std="0.1",
            )
        ),
        FootprintDeclared(
            fp("foil", "0.125", dqr={"technologicalDQR": "3"}, stages={"A1": "0.125"})
        ),
        FactorPublished(factor("grid0", "0.4", unit="kilowatt hour")),
        BomDeclared(bom("a", line("cell", "3"), line("foil", "0.5"), direct="1.25")),
        BomDeclared(bom("b", line("cell", "2"), line("foil", "1.5"), kwh="2", grid="grid0")),
        BomDeclared(bom("module", line("a", "1"), line("b", "4"), direct="0.5")),
    ]


def test_a_new_footprint_version_runs_on_the_mirror_and_gives_the_engines_states() -> None:
    nets = _pair()
    _load(nets, _chain())
    updates = [
        FootprintDeclared(
            fp(
                "cell",
                "3.75",
                seq=2,
                dqr={"technologicalDQR": "4"},
                stages={"A1": "2.5", "A3": "1.25"},
                std="0.3",
            )
        ),
        FootprintDeclared(
            fp("foil", "0.250", seq=2, dqr={"technologicalDQR": "1"}, stages={"A1": "0.250"})
        ),
    ]
    assert _step(nets, [updates[0]])
    assert nets[0].last is not None and list(nets[0].last.published) == ["a", "b", "module"]
    assert nets[0].last.published["module"].trace == ("b", "module")
    assert _step(nets, [updates[1]])
    _same_everywhere(nets)


def test_several_updates_between_reads_are_built_once_with_every_version_counted() -> None:
    nets = _pair()
    _load(nets, _chain())
    before = nets[0].products["module"].sequence
    for seq in range(2, 6):  # (nothing read in between: the flat states stay pending)
        for net in nets:
            net.submit(FootprintDeclared(fp("cell", f"{seq}.25", seq=seq)))
            net.run(coalesce=True)
    _same_everywhere(nets)
    assert nets[0].products["module"].sequence == nets[1].products["module"].sequence == before + 4
    module = nets[0].components[FootprintDeclared(fp("module")).ref]
    assert module.version == nets[1].components[module.ref].version


def test_a_batch_with_the_same_input_twice_and_a_duplicate_is_coalesced_like_the_engine() -> None:
    nets = _pair()
    _load(nets, _chain())
    v2, v3 = _cell(3, 2), _cell(7, 3)
    foil = fp("foil", "0.500", seq=2, dqr={"technologicalDQR": "3"}, stages={"A1": "0.500"})
    assert _step(nets, [v2, FootprintDeclared(foil), v3, v2])
    assert nets[0].last is not None
    assert [o.name for _, o in nets[0].last.noops] == ["STALE"]
    _same_everywhere(nets)


# --------------------------------------------------------------------------- what it hands back


def test_a_value_at_another_exponent_goes_to_the_engine_and_the_mirror_is_loaded_again() -> None:
    nets = _pair()
    _load(nets, _chain())
    longer = fp(
        "cell",
        "2.500",  # (one digit more than before: the sums' exponents move)
        seq=2,
        dqr={"technologicalDQR": "2"},
        stages={"A1": "1.5", "A3": "1.000"},
        std="0.1",
    )
    assert not _step(nets, [FootprintDeclared(longer)])
    assert nets[0]._mirror is None
    again = replace(
        longer,
        sequence=3,
        footprint_id="fp-cell-3",
        figures=figs("3.500"),
        stages={"A1": Decimal("2.5"), "A3": Decimal("1.000")},
    )
    assert _step(nets, [FootprintDeclared(again)])  # (the new shape, on a mirror loaded again)
    _same_everywhere(nets)


def test_a_value_past_its_bound_goes_to_the_engine() -> None:
    nets = _pair()
    _load(nets, _chain())
    mirror = FlatRollup.load(nets[0].products, nets[0].components)
    huge = _cell(10**20, 2)  # (far past the leaf's bound, which keeps products under 50 digits)
    assert mirror.accepts(source_from_footprint(_cell(3, 2).footprint)) is not None
    assert mirror.accepts(source_from_footprint(huge.footprint)) is None
    assert not _step(nets, [huge])
    _same_everywhere(nets)


def test_new_inputs_units_and_subscriptions_go_to_the_engine() -> None:
    nets = _pair()
    _load(nets, [*_chain(), BomDeclared(bom("c", line("late", "2"), line("cell", "1")))])
    assert nets[0].products["c"].value is not None
    assert not _step(nets, [FootprintDeclared(fp("late", "1.5"))])  # (a first value)
    assert not _step(nets, [FootprintDeclared(fp("late", "1.5", seq=2, unit="kilogram"))])
    assert not _step(nets, [BomDeclared(bom("a", line("cell", "4"), rev=2))])
    assert not _step(nets, [_cell(5, 2)])  # (c uses it, and c's line to late is in error now)
    foil = fp("foil", "0.250", seq=2, dqr={"technologicalDQR": "3"}, stages={"A1": "0.250"})
    assert _step(nets, [FootprintDeclared(foil)])
    _same_everywhere(nets)


def test_an_inexact_multiplier_and_a_declared_product_are_left_to_the_engine() -> None:
    nets = _pair()
    _load(
        nets,
        [
            *_chain(),
            BomDeclared(bom("third", line("cell", "1"), amount="3")),
            BomDeclared(bom("top", line("third", "1"))),  # (k = 1/3: 50 digits, rounded)
            FootprintDeclared(fp("module", "100")),  # (the module's input role offers this)
            FootprintDeclared(fp("wire", "0.75")),
            BomDeclared(bom("solo", line("wire", "2"))),
        ],
    )
    mirror = FlatRollup.load(nets[0].products, nets[0].components)
    third, top, module = (
        mirror.index[FootprintDeclared(fp(p)).ref] for p in ("third", "top", "module")
    )
    assert not mirror.bad[third] and mirror.bad[top] and mirror.bad[module]
    assert not _step(nets, [_cell(2, 2)])
    foil = fp("foil", "0.250", seq=2, dqr={"technologicalDQR": "3"}, stages={"A1": "0.250"})
    assert not _step(nets, [FootprintDeclared(foil)])  # (b's parent is the module)
    assert _step(nets, [FootprintDeclared(fp("wire", "0.25", seq=2))])
    _same_everywhere(nets)


def test_a_cycle_is_left_to_the_engine_and_what_is_off_it_still_runs_flat() -> None:
    nets = _pair()
    _load(
        nets,
        [
            FootprintDeclared(fp("cell", "1.5")),
            FootprintDeclared(fp("other", "2.5")),
            BomDeclared(bom("x", line("y", "1"), line("cell", "2"))),
            BomDeclared(bom("y", line("x", "1"))),
            BomDeclared(bom("z", line("other", "3"))),
        ],
    )
    assert not _step(nets, [FootprintDeclared(fp("cell", "1.7", seq=2))])
    assert _step(nets, [FootprintDeclared(fp("other", "2.7", seq=2))])
    _same_everywhere(nets)


# --------------------------------------------------------------------------- random chains


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_random_chains_and_updates_give_the_engines_states(data: st.DataObject, seed: int) -> None:
    scenario = data.draw(scenarios(max_tiers=5))
    nets = _pair()
    _load(nets, scenario.messages())
    rng = random.Random(seed)
    latest = {f.product_id: f for f in scenario.latest()[0]}
    if not latest:
        return
    for _ in range(rng.randint(1, 6)):
        batch: list[Message] = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            old = latest[rng.choice(sorted(latest))]
            update = _new_version(old, rng, shape=rng.random() < 0.85)
            latest[old.product_id] = update.footprint
            batch.append(update)
        _step(nets, batch)
    _same_everywhere(nets)


def test_a_grid_revision_runs_on_the_engine_without_loading_the_mirror() -> None:
    nets = _pair()
    _load(nets, _chain())
    revision = FactorPublished(factor("grid0", "0.5", seq=2, unit="kilowatt hour"))
    assert not _step(nets, [revision])
    assert nets[0]._mirror is None  # (a grid factor's part is not modelled: no pass over nodes)
    _same_everywhere(nets)


def test_a_value_past_its_bound_that_still_fits_widens_the_bounds_and_runs_flat() -> None:
    nets = _pair()
    _load(nets, _chain())
    mirror = FlatRollup.load(nets[0].products, nets[0].components)
    cell = mirror.index[FootprintDeclared(fp("cell")).ref]
    before = mirror.bound[cell]
    larger = _cell(10**6, 2)  # (4 000 times the leaf's bound; its ancestors still fit)
    assert mirror.accepts(source_from_footprint(larger.footprint)) is not None
    assert mirror.bound[cell] > before
    assert _step(nets, [larger])
    _same_everywhere(nets)


# --------------------------------------------------------------------------- influence rows


def _mirror(net: Network) -> FlatRollup:
    net.flatten()
    mirror = net._mirror
    assert mirror is not None
    return mirror


def _paths(mirror: FlatRollup, leaf: int, which: int = 0) -> dict[int, int]:
    """``C[leaf→X]`` for every ancestor ``X`` by enumerating every path (no walk, no order):
    the sum over the paths of the product of each line's ``a1`` (*which* 0) or ``a2`` (1)."""
    out: dict[int, int] = {}

    def up(node: int, weight: int) -> None:
        for parent in mirror.parents[node]:
            for record in mirror.lines[parent][node]:
                step = weight * record[which]
                out[parent] = out.get(parent, 0) + step
                up(parent, step)

    up(leaf, 1)
    return out


def _diamonds() -> list[Message]:
    """A cell reaching the top through many paths: two lines to it in one BOM, a diamond,
    a skip-level line, then a chain of ten tiers, each using the one below twice over."""
    messages: list[Message] = [
        _cell(1, 1),
        FootprintDeclared(fp("foil", "0.125", stages={"A1": "0.125"})),
        BomDeclared(bom("a", line("cell", "3"), line("cell", "0.25"), line("foil", "2"))),
        BomDeclared(bom("b", line("cell", "2"), direct="0.5")),
        BomDeclared(bom("module", line("a", "1.5"), line("b", "4"))),
        BomDeclared(bom("top", line("module", "2"), line("a", "7"), line("cell", "0.01"))),
    ]
    below = "top"
    for tier in range(10):
        name = f"t{tier}"
        messages.append(BomDeclared(bom(name, line(below, "1.1"), line(below, "2"))))
        below = name
    return messages


def test_an_influence_row_is_every_path_summed_and_in_the_engines_order() -> None:
    nets = _pair()
    _load(nets, _diamonds())
    mirror = _mirror(nets[0])
    cell = mirror.index[FootprintDeclared(fp("cell")).ref]
    row = mirror.influence(cell)
    names = [mirror.refs[node].id for node in row.nodes]
    assert names == ["a", "b", "module", "top", *(f"t{t}" for t in range(10))]
    assert dict(zip(row.nodes, row.c1, strict=True)) == _paths(mirror, cell)
    assert row.c2 is None  # (built on the first change of the variance)
    assert [mirror.refs[node].id for node in row.lasts][:4] == ["cell", "cell", "b", "module"]
    assert row.fanout == sum(len(mirror.parents[node]) for node in row.nodes)
    assert _step(nets, [_cell(4, 2)])  # (the same standard deviation: no C2 yet)
    assert row.c2 is None
    assert _step(nets, [_cell(6, 3, std="0.3")])
    assert row.c2 is not None
    assert dict(zip(row.nodes, row.c2, strict=True)) == _paths(mirror, cell, 1)
    assert nets[0].last is not None and nets[0].last.published["t9"].trace[-1] == "t9"
    _same_everywhere(nets)


def test_a_deep_chain_of_influence_runs_flat_state_for_state() -> None:
    nets = _pair()
    messages: list[Message] = [FootprintDeclared(fp("ore", "1.25"))]
    below = "ore"
    for tier in range(25):
        messages.append(BomDeclared(bom(f"c{tier}", line(below, "1.5"), direct="0.001")))
        below = f"c{tier}"
    _load(nets, messages)
    for seq in range(2, 6):
        assert _step(nets, [FootprintDeclared(fp("ore", f"{seq}.75", seq=seq))])
    assert nets[0].last is not None and len(nets[0].last.published) == 25
    _same_everywhere(nets)


def test_a_bom_change_after_influence_rows_exist_drops_them_with_the_mirror() -> None:
    nets = _pair()
    _load(nets, _diamonds())
    assert _step(nets, [_cell(3, 2)])
    mirror = nets[0]._mirror
    assert mirror is not None and mirror.rows_built == 1
    cell = mirror.index[FootprintDeclared(fp("cell")).ref]
    module = FootprintDeclared(fp("module")).ref
    before = mirror.influence(cell)
    old = before.c1[before.nodes.index(mirror.index[module])]
    assert not _step(nets, [BomDeclared(bom("module", line("a", "2.5"), line("b", "4"), rev=2))])
    assert nets[0]._mirror is None  # (the rows went with it: none is stale)
    assert _step(nets, [_cell(5, 3)])
    again = nets[0]._mirror
    assert again is not None and again is not mirror
    row = again.influence(cell)
    assert row.c1[row.nodes.index(again.index[module])] != old
    assert dict(zip(row.nodes, row.c1, strict=True)) == _paths(again, cell)
    _same_everywhere(nets)


def test_a_value_past_its_bound_after_influence_rows_exist() -> None:
    nets = _pair()
    _load(nets, _chain())
    assert _step(nets, [_cell(3, 2)])
    mirror = nets[0]._mirror
    assert mirror is not None
    cell = mirror.index[FootprintDeclared(fp("cell")).ref]
    bound, row = mirror.bound[cell], mirror.influence(cell)
    assert _step(nets, [_cell(10**6, 3)])  # (widened: the rows do not depend on the bounds)
    assert nets[0]._mirror is mirror and mirror.bound[cell] > bound
    assert mirror.influence(cell) is row
    _same_everywhere(nets)
    assert not _step(nets, [_cell(10**20, 4)])  # (past what 50 digits hold: the engine's)
    assert nets[0]._mirror is None
    assert _step(nets, [_cell(7, 5)])
    _same_everywhere(nets)


def test_rows_past_the_limit_go_least_recently_used_first_and_are_built_again() -> None:
    nets = _pair()
    _load(nets, _diamonds())
    mirror = _mirror(nets[0])
    cell, foil = (mirror.index[FootprintDeclared(fp(p)).ref] for p in ("cell", "foil"))
    mirror.row_limit = len(mirror.influence(cell).nodes)  # (room for one row)
    foil_fp = fp("foil", "0.250", seq=2, stages={"A1": "0.250"})
    assert _step(nets, [FootprintDeclared(foil_fp)])
    assert list(mirror._rows) == [foil] and mirror.row_entries <= mirror.row_limit
    assert _step(
        nets, [_cell(2, 2), FootprintDeclared(replace(foil_fp, sequence=3, footprint_id="f3"))]
    )
    assert mirror.rows_built == 4 and mirror.row_entries <= mirror.row_limit
    assert _step(nets, [_cell(6, 3)])
    _same_everywhere(nets)
    assert mirror.preload() == 1  # (the limit keeps one)


# --------------------------------------------------------------------------- random DAGs


@st.composite
def _dags(draw: st.DrawFn) -> tuple[list[Message], list[str]]:
    """A random DAG the mirror models: purchased parts (some with a standard deviation, DQR,
    stages) under up to six tiers of products, each with one to four lines to anything below
    (skip-level lines, one child on several lines, diamonds), piece units."""
    n_leaves = draw(st.integers(1, 5))
    leaves = [f"leaf{i}" for i in range(n_leaves)]
    messages: list[Message] = []
    for name in leaves:
        e = draw(st.integers(1, 9_999))
        std = draw(st.sampled_from([None, "0.1", "0.25"]))
        stages = draw(st.sampled_from([{}, {"A1": f"{e}.5"}]))
        messages.append(
            FootprintDeclared(
                fp(name, f"{e}.5", std=std, stages=stages, dqr={"technologicalDQR": "2"})
            )
        )
    below = list(leaves)
    for tier in range(draw(st.integers(1, 6))):
        names = [f"p{tier}_{i}" for i in range(draw(st.integers(1, 3)))]
        for name in names:
            children = draw(st.lists(st.sampled_from(below), min_size=1, max_size=4))
            quantities = draw(
                st.lists(
                    st.sampled_from(["1", "2", "0.5", "1.25", "3", "0.01", "12"]),
                    min_size=len(children),
                    max_size=len(children),
                )
            )
            direct = draw(st.sampled_from(["0", "0.5", "1.125"]))
            messages.append(
                BomDeclared(
                    bom(
                        name,
                        *(line(c, q) for c, q in zip(children, quantities, strict=True)),
                        direct=direct,
                    )
                )
            )
        below.extend(names)
    return messages, leaves


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(dag=_dags(), seed=st.integers(0, 2**32 - 1), limit=st.sampled_from([None, 1, 8]))
def test_influence_rows_on_random_dags_and_update_orders_give_the_engines_states(
    dag: tuple[list[Message], list[str]], seed: int, limit: int | None
) -> None:
    """Random updates -- batches of one to three, the same input twice in a batch, duplicates
    re-sent, an older version after a newer one (stale), now and then a value the mirror
    refuses (one digit more) -- on the flat path with influence rows (kept, or evicted past a
    small limit) and on the engine: the same states after every batch, and every row built
    is the sum over every path."""
    messages, leaves = dag
    nets = _pair()
    _load(nets, messages)
    rng = random.Random(seed)
    latest = {
        m.footprint.product_id: m.footprint for m in messages if isinstance(m, FootprintDeclared)
    }
    sent: list[FootprintDeclared] = []
    for _ in range(rng.randint(2, 8)):
        batch: list[Message] = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            roll = rng.random()
            if sent and roll < 0.15:
                batch.append(rng.choice(sent))  # (a duplicate, or an older version: stale)
                continue
            old = latest[rng.choice(leaves)]
            update = _new_version(old, rng, shape=roll < 0.9)
            if rng.random() < 0.3 and old.std_dev is not None:  # (a new standard deviation)
                update = FootprintDeclared(replace(update.footprint, std_dev=old.std_dev * 2))
            latest[old.product_id] = update.footprint
            sent.append(update)
            batch.append(update)
        rng.shuffle(batch)
        if limit is not None and nets[0]._mirror is not None:
            nets[0]._mirror.row_limit = limit
        _step(nets, batch)
        mirror = nets[0]._mirror
        if mirror is not None:
            for leaf, row in mirror._rows.items():
                assert dict(zip(row.nodes, row.c1, strict=True)) == _paths(mirror, leaf)
                if row.c2 is not None:
                    assert dict(zip(row.nodes, row.c2, strict=True)) == _paths(mirror, leaf, 1)
    _same_everywhere(nets)
