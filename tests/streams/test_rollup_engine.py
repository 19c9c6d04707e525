"""The engine's local delivery reaches exactly what one message at a time reaches.

:class:`~streams.rollup.Engine` applies a batch in place (each product copied once, lowest first,
values straight to local parents). Whatever the graph (diamonds, cycles, missing, blocked and
error inputs, unit errors, several BOM revisions and input versions) and however the inputs are
cut into batches, duplicated and reordered, every product's value must equal -- digits, exponents,
content hash -- a from-scratch ``compute_result`` over the values it holds, and the results must
be those of per-message delivery and of the exact oracle. Split over two engines that own half
the nodes each (as two workers do), with the messages for the other's nodes handed over, the
results are the same again.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcf_exchange.contracts.errors import RollupError
from pcf_exchange.streams.rollup import (
    Bom,
    BomDeclared,
    BomLine,
    ChildValue,
    ComponentFootprint,
    ComponentState,
    Engine,
    FootprintDeclared,
    Message,
    Network,
    Outcome,
    ProductState,
    Ref,
    RollupResult,
    Subscribe,
    node_of,
    run_batch,
)
from tests.streams._rollup_oracle import evaluate
from tests.streams._rollup_scenarios import Scenario, scenarios
from tests.streams.test_rollup_incremental import assert_same_as_from_scratch
from tests.streams.test_rollup_properties import assert_matches_oracle

E, INC, F = "pcfExcludingBiogenicUptake", "pcfIncludingBiogenicUptake", "fossilGhgEmissions"

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _shuffled_batches(messages: list[Message], seed: int) -> list[list[Message]]:
    """*messages* with duplicates, in a random order, cut into random batches."""
    rng = random.Random(seed)
    inputs = list(messages) + [m for m in messages if rng.random() < 0.3]
    rng.shuffle(inputs)
    batches: list[list[Message]] = []
    while inputs:
        n = rng.randint(1, max(1, len(inputs) // 2))
        batches.append(inputs[:n])
        inputs = inputs[n:]
    return batches


def _hashes(results: dict[str, RollupResult]) -> dict[str, str]:
    return {pid: result.content_hash for pid, result in results.items()}


@SETTINGS
@given(scenarios(max_tiers=6), st.integers(0, 2**32 - 1))
def test_batches_through_the_engine_equal_compute_result_and_per_message_delivery(
    scenario: Scenario, seed: int
) -> None:
    per_message = Network()
    per_message.submit(*scenario.messages())
    per_message.run()
    engine = Engine()
    for batch in _shuffled_batches(scenario.messages(), seed):
        held = {pid: (s.sequence, s.value, dict(s.children)) for pid, s in engine.products.items()}
        before = dict(engine.products)
        delivery = engine.deliver(batch)
        # a state held before the batch never changes under its holder
        for pid, state in before.items():
            assert (state.sequence, state.value, dict(state.children)) == held[pid]
        # what the batch reports changed is what the engine now holds
        for pid, state in delivery.products.items():
            assert engine.products[pid] is state
        for pid, rolled in delivery.published.items():
            assert engine.products[pid].value is rolled.value
        assert not delivery.remote
    for state in engine.products.values():
        assert_same_as_from_scratch(state)
    results = {p: s.result for p, s in engine.products.items() if s.result is not None}
    assert _hashes(results) == _hashes(per_message.results())
    footprints, boms, factors = scenario.latest()
    assert_matches_oracle(results, evaluate(footprints, boms, factors))


@SETTINGS
@given(scenarios(max_tiers=5), st.integers(0, 2**32 - 1))
def test_two_engines_owning_half_the_nodes_each_equal_one(scenario: Scenario, seed: int) -> None:
    one = Network()
    one.submit(*scenario.messages())
    one.run(coalesce=True)
    owner = random.Random(seed)
    nodes: dict[Ref, int] = {}

    def worker_of(ref: Ref) -> int:
        return nodes.setdefault(ref, owner.randrange(2))

    engines = [Engine(local=lambda ref, i=i: worker_of(ref) == i) for i in range(2)]  # type: ignore[misc]
    inbox: list[list[Message]] = [[], []]
    for message in scenario.messages():
        inbox[worker_of(node_of(message))].append(message)
    rounds = 0
    while inbox[0] or inbox[1]:
        rounds += 1
        assert rounds < 10_000
        i = rounds % 2
        batch, inbox[i] = inbox[i], []
        for message in engines[i].deliver(batch).remote:
            inbox[1 - i].append(message)
    results: dict[str, RollupResult] = {}
    for engine in engines:
        for pid, state in engine.products.items():
            if state.result is not None:
                assert worker_of(Ref.product(pid)) == engines.index(engine)
                results[pid] = state.result
    assert _hashes(results) == _hashes(one.results())


def _fp(pid: str, value: str, sequence: int = 1) -> ComponentFootprint:
    figures = dict.fromkeys((E, INC, F), Decimal(value))
    return ComponentFootprint(pid, f"fp-{pid}-{sequence}", sequence, "piece", Decimal(1), figures)


def _chain() -> list[Message]:
    """cell -> module (12 cells) -> pack (8 modules + 1 cell): a diamond."""
    return [
        FootprintDeclared(_fp("cell", "2.5")),
        BomDeclared(Bom("module", 1, (BomLine("cell", Decimal(12), "piece"),))),
        BomDeclared(
            Bom(
                "pack",
                1,
                (BomLine("module", Decimal(8), "piece"), BomLine("cell", Decimal(1), "piece")),
            )
        ),
    ]


def test_a_diamond_is_recomputed_and_published_once_per_batch() -> None:
    engine = Engine()
    engine.deliver(_chain())
    loaded = engine.products["pack"].sequence
    delivery = engine.deliver([FootprintDeclared(_fp("cell", "3", 2))])
    assert list(delivery.published) == ["module", "pack"]
    assert delivery.published["pack"].result.pcf == Decimal("291")  # 8 x 12 x 3 + 3
    assert engine.products["pack"].sequence == loaded + 1  # reached by two paths, once
    assert set(delivery.products) == {"module", "pack"}
    # what it made for its own nodes and applied itself: cell's value to both parents, then
    # module's to pack (a worker still sends them)
    assert [(type(m), m.key, str(m.child)) for m in delivery.applied] == [  # type: ignore[union-attr]
        (ChildValue, "module", "product:cell"),
        (ChildValue, "pack", "product:cell"),
        (ChildValue, "pack", "product:module"),
    ]


def test_the_same_batch_again_is_a_named_no_op_and_a_conflict_is_reported() -> None:
    engine = Engine()
    engine.deliver(_chain())
    again = engine.deliver(_chain())
    assert not again.published and not again.products
    assert {outcome for _, outcome in again.noops} == {Outcome.DUPLICATE}
    rewritten = Bom("module", 1, (BomLine("cell", Decimal(13), "piece"),))
    conflict = engine.deliver([BomDeclared(rewritten)])
    assert conflict.noops == [(BomDeclared(rewritten), Outcome.CONFLICT)]
    assert engine.products["module"].bom != rewritten


def test_states_come_from_the_loader_once_and_only_changed_ones_go_back() -> None:
    source = Engine()
    source.deliver(_chain())
    loads: list[Ref] = []

    def load(ref: Ref) -> tuple[ComponentState | None, ProductState | None]:
        loads.append(ref)
        return source.components.get(ref), source.products.get(ref.id)

    engine = Engine(load=load)
    delivery = engine.deliver([FootprintDeclared(_fp("cell", "3", 2))])
    assert len(loads) == len(set(loads))
    assert delivery.published["pack"].result.pcf == Decimal("291")
    assert source.products["pack"].result is not None
    assert source.products["pack"].result.pcf == Decimal("242.5")  # (the loaded state untouched)
    assert set(delivery.components) == {Ref.product(p) for p in ("cell", "module", "pack")}


def test_values_for_nodes_of_another_worker_leave_as_messages() -> None:
    mine = {Ref.product("cell"), Ref.product("module")}
    engine = Engine(local=lambda ref: ref in mine)
    delivery = engine.deliver(_chain()[:2])
    assert delivery.published["module"].result.pcf == Decimal("30.0")
    pack = BomDeclared(Bom("pack", 1, (BomLine("module", Decimal(8), "piece"),)))
    assert engine.deliver([pack]).remote == [pack]  # (pack is another worker's)
    # pack's worker subscribes to module: module's value goes back to it as a message
    sub = engine.deliver([Subscribe(Ref.product("module"), "pack", 1)])
    assert [type(m) for m in sub.remote] == [ChildValue]
    value = sub.remote[0]
    assert isinstance(value, ChildValue) and value.parent == "pack"


def test_a_fuse_stops_a_batch_that_does_not_settle() -> None:
    with pytest.raises(RollupError, match="did not settle within 3 messages"):
        Engine().deliver(_chain(), max_messages=3)


def test_run_batch_uses_the_engine_and_agrees_with_per_message_delivery() -> None:
    boms = [m.bom for m in _chain() if isinstance(m, BomDeclared)]
    results = run_batch([_fp("cell", "2.5")], boms, [])
    net = Network()
    net.submit(*_chain())
    net.run()
    assert _hashes(results) == _hashes(net.results())
    assert results["pack"].pcf == Decimal("242.5")


def test_past_the_spill_limit_what_a_batch_makes_leaves_as_messages() -> None:
    # the diamond's update makes 3 messages for its own nodes; with room for 1, the rest leave
    # (module, which took that one, still updates once and its value leaves too); delivered
    # later, they reach the same result
    engine = Engine()
    engine.deliver(_chain())
    delivery = engine.deliver([FootprintDeclared(_fp("cell", "3", 2))], spill=1)
    assert [(m.key, str(m.child)) for m in delivery.applied] == [  # type: ignore[union-attr]
        ("module", "product:cell")
    ]
    assert [(m.key, str(m.child)) for m in delivery.remote] == [  # type: ignore[union-attr]
        ("pack", "product:cell"),
        ("pack", "product:module"),
    ]
    assert "pack" not in delivery.published
    later = engine.deliver(delivery.remote)
    assert later.published["pack"].result.pcf == Decimal("291")
    # no spill limit: all of it in the one batch
    fresh = Engine()
    fresh.deliver(_chain())
    whole = fresh.deliver([FootprintDeclared(_fp("cell", "3", 2))])
    assert whole.remote == [] and whole.published["pack"].result.pcf == Decimal("291")


def test_past_the_deadline_what_a_batch_makes_leaves_as_past_a_spill_limit() -> None:
    # a deadline already passed: the batch applies its own inputs and nothing it makes, as
    # with spill=0; the topic (here: a second delivery) takes the rest to the same result
    def run(**bound: Any) -> tuple[list[tuple[str, str]], Decimal | None]:
        engine = Engine()
        engine.deliver(_chain())
        first = engine.deliver([FootprintDeclared(_fp("cell", "3", 2))], **bound)
        left = [(m.key, str(m.child)) for m in first.remote]  # type: ignore[union-attr]
        return left, engine.deliver(first.remote).published["pack"].result.pcf

    assert run(past_deadline=lambda: True) == run(spill=0)
    left, pcf = run(past_deadline=lambda: True)
    assert left and pcf == Decimal("291")
    # a deadline not reached changes nothing
    engine = Engine()
    engine.deliver(_chain())
    whole = engine.deliver([FootprintDeclared(_fp("cell", "3", 2))], past_deadline=lambda: False)
    assert whole.remote == [] and whole.published["pack"].result.pcf == Decimal("291")


def test_only_the_last_value_of_an_input_for_a_remote_parent_leaves() -> None:
    mine = {Ref.product("cell")}
    engine = Engine(local=lambda ref: ref in mine)
    engine.deliver([FootprintDeclared(_fp("cell", "2.5"))])
    sub = Subscribe(Ref.product("cell"), "module", 1)
    updates = [FootprintDeclared(_fp("cell", v, s)) for s, v in ((2, "3"), (3, "4"), (4, "5"))]
    delivery = engine.deliver([sub, *updates])
    assert [(m.key, m.version) for m in delivery.remote] == [("module", 4)]  # type: ignore[union-attr]
    (last,) = delivery.remote
    assert isinstance(last, ChildValue) and last.value.sequence == 4  # (the footprint's)


def test_an_input_is_changed_in_place_once_per_batch() -> None:
    # a thousand parents subscribing to one factor in one batch: one state out, built once,
    # holding every subscription (and the state held before the batch unchanged)
    engine = Engine()
    ref = Ref.product("cell")
    engine.deliver([FootprintDeclared(_fp("cell", "2.5"))])
    before = engine.components[ref]
    subs = [Subscribe(ref, f"p{i}", 1) for i in range(1000)]
    delivery = engine.deliver(subs, spill=0)
    after = delivery.components[ref]
    assert after is engine.components[ref] and after is not before
    assert len(after.subscribers) == 1000 and before.subscribers == {}
    assert len(delivery.remote) == 1000  # (each parent gets the current value once)
    assert delivery.outcomes[Outcome.APPLIED] == 1000
    again = engine.deliver(subs)
    assert again.components == {} and again.outcomes[Outcome.DUPLICATE] == 1000
