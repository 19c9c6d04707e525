"""The two sides' state transitions, message by message, as the faust agents will drive them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcf_exchange.streams.rollup import (
    BomDeclared,
    ChildValue,
    ComponentMessage,
    ComponentState,
    FactorPublished,
    FootprintDeclared,
    Message,
    Network,
    Outcome,
    ProductMessage,
    ProductRolledUp,
    ProductState,
    Ref,
    Status,
    Subscribe,
    Unsubscribe,
    component_step,
    component_step_many,
    node_of,
    offered,
    product_step,
)
from tests.streams._rollup_helpers import D, bom, factor, fp, line

CELL = Ref.product("cell")

# --------------------------------------------------------------------------- component side


def subscribed(*parents: str) -> ComponentState:
    state = None
    for parent in parents:
        state = component_step(state, Subscribe(CELL, parent, 1)).state
    assert state is not None
    return state


def test_footprint_fans_out_absolute_values_to_every_subscriber() -> None:
    step = component_step(subscribed("module-a", "module-b"), FootprintDeclared(fp("cell", "2")))
    assert step.outcome is Outcome.APPLIED
    sent = [m for m in step.outputs if isinstance(m, ChildValue)]
    assert len(sent) == len(step.outputs)
    assert [(m.parent, m.version, m.key) for m in sent] == [
        ("module-a", 1, "module-a"),
        ("module-b", 1, "module-b"),
    ]
    value = sent[0].value
    assert value.totals is not None
    assert value.totals.headline == 2 and value.sequence == 1


def test_stale_footprint_sequence_is_a_named_no_op() -> None:
    state = component_step(subscribed("m"), FootprintDeclared(fp("cell", "3", seq=5))).state
    step = component_step(state, FootprintDeclared(fp("cell", "2", seq=4)))
    assert step.outcome is Outcome.STALE
    assert step.outputs == () and step.state is state


def test_duplicate_footprint_is_a_no_op_and_a_conflict_is_named() -> None:
    record = fp("cell", "3", seq=5)
    state = component_step(subscribed("m"), FootprintDeclared(record)).state
    duplicate = component_step(state, FootprintDeclared(record))
    assert (duplicate.outcome, duplicate.outputs) == (Outcome.DUPLICATE, ())
    conflict = component_step(state, FootprintDeclared(fp("cell", "4", seq=5)))
    assert (conflict.outcome, conflict.outputs) == (Outcome.CONFLICT, ())
    assert conflict.state.declared == record


def test_stale_factor_version_is_a_no_op() -> None:
    state = component_step(None, FactorPublished(factor("alu", "8", seq=2))).state
    assert component_step(state, FactorPublished(factor("alu", "9", seq=1))).outcome is (
        Outcome.STALE
    )


def test_new_subscriber_gets_the_current_value_at_once() -> None:
    state = component_step(None, FootprintDeclared(fp("cell", "2"))).state
    step = component_step(state, Subscribe(CELL, "module", 3))
    [message] = step.outputs
    assert isinstance(message, ChildValue)
    assert (message.parent, message.version) == ("module", state.version)


def test_subscription_replays_are_no_ops_and_unsubscribe_stops_the_fan_out() -> None:
    state = component_step(None, FootprintDeclared(fp("cell", "2"))).state
    state = component_step(state, Subscribe(CELL, "module", 3)).state
    assert component_step(state, Subscribe(CELL, "module", 3)).outcome is Outcome.DUPLICATE
    state = component_step(state, Unsubscribe(CELL, "module", 4)).state
    assert state.parents == ()
    # a replayed older subscription does not resurrect the parent
    assert component_step(state, Subscribe(CELL, "module", 3)).outcome is Outcome.STALE
    step = component_step(state, FootprintDeclared(fp("cell", "5", seq=2)))
    assert step.outcome is Outcome.APPLIED and step.outputs == ()


def test_rolled_up_value_of_a_declared_product_changes_nothing_downstream() -> None:
    state = component_step(subscribed("pack"), FootprintDeclared(fp("cell", "2"))).state
    results = Network()
    results.submit(BomDeclared(bom("cell", direct=7)))
    results.run()
    rolled = results.result("cell")
    assert rolled is not None
    step = component_step(state, ProductRolledUp("cell", 1, rolled, ("cell",)))
    assert (step.outcome, step.outputs) == (Outcome.UNCHANGED, ())


def test_the_component_side_takes_a_result_or_what_it_offers_alike() -> None:
    """Adapters send :func:`offered` (the value, without lineage) on the component topic; the
    component side treats it exactly as the whole result, redeliveries included."""
    results = Network()
    results.submit(FootprintDeclared(fp("cell", "2")), BomDeclared(bom("module", line("cell", 3))))
    results.run()
    module = results.result("module")
    assert module is not None
    rolled = ProductRolledUp("module", 1, module, ("module",))
    state = component_step(None, Subscribe(Ref.product("module"), "pack", 1)).state
    whole, slim = component_step(state, rolled), component_step(state, offered(rolled))
    assert whole == slim and whole.outcome is Outcome.APPLIED
    [value] = [m for m in slim.outputs if isinstance(m, ChildValue)]
    assert (value.parent, value.value.totals, value.trace) == ("pack", module.totals, ("module",))
    again = component_step(slim.state, offered(rolled))
    assert (again.outcome, again.outputs) == (Outcome.DUPLICATE, ())


def test_messages_routed_to_the_wrong_key_are_refused() -> None:
    with pytest.raises(ValueError, match="routed"):
        component_step(subscribed("m"), FootprintDeclared(fp("other", "2")))
    with pytest.raises(ValueError, match="routed"):
        product_step(ProductState("p"), BomDeclared(bom("q")))


# --------------------------------------------------------------------------- product side


def test_bom_subscribes_to_every_input_and_publishes_a_first_result() -> None:
    step = product_step(
        None,
        BomDeclared(bom("m", line("cell", 2), line("tray", 1, fallback="alu"), kwh=1, grid="g")),
    )
    subs = [m for m in step.outputs if isinstance(m, Subscribe)]
    assert [(str(m.ref), m.parent) for m in subs] == [
        ("factor:alu", "m"),
        ("factor:g", "m"),
        ("product:cell", "m"),
        ("product:tray", "m"),
    ]
    [published] = [m for m in step.outputs if isinstance(m, ProductRolledUp)]
    assert (str(published.ref), published.key, published.sequence) == ("product:m", "m", 1)
    assert published.result.status is Status.INCOMPLETE


def test_stale_and_duplicate_bom_revisions_are_no_ops() -> None:
    state = product_step(None, BomDeclared(bom("m", line("cell", 2), rev=4))).state
    assert product_step(state, BomDeclared(bom("m", line("cell", 9), rev=3))).outcome is (
        Outcome.STALE
    )
    assert product_step(state, BomDeclared(bom("m", line("cell", 2), rev=4))).outcome is (
        Outcome.DUPLICATE
    )
    assert product_step(state, BomDeclared(bom("m", line("cell", 3), rev=4))).outcome is (
        Outcome.CONFLICT
    )


def child_value(parent: str, version: int, e: str, child: str = "cell") -> ChildValue:
    value = component_step(None, FootprintDeclared(fp(child, e, seq=version))).state.value
    assert value is not None
    return ChildValue(parent, Ref.product(child), version, value)


def test_stale_and_duplicate_child_values_are_no_ops() -> None:
    state = product_step(None, BomDeclared(bom("m", line("cell", 2)))).state
    state = product_step(state, child_value("m", 2, "3")).state
    assert state.result is not None and state.result.pcf == 6
    assert product_step(state, child_value("m", 1, "100")).outcome is Outcome.STALE
    assert product_step(state, child_value("m", 2, "3")).outcome is Outcome.DUPLICATE


def test_value_that_does_not_change_the_result_emits_nothing() -> None:
    state = product_step(None, BomDeclared(bom("m", line("tray", 1, fallback="alu")))).state
    state = product_step(state, child_value("m", 1, "3", child="tray")).state
    # the fallback factor changes, but the line uses the supplier's footprint
    alu = component_step(None, FactorPublished(factor("alu", "8", unit="piece"))).state.value
    assert alu is not None
    step = product_step(state, ChildValue("m", Ref.factor("alu"), 1, alu))
    assert (step.outcome, step.outputs) == (Outcome.UNCHANGED, ())
    assert step.state.sequence == state.sequence


def test_bom_revision_dropping_a_line_retracts_its_contribution() -> None:
    net = Network()
    net.submit(
        FootprintDeclared(fp("cell", "2")),
        FootprintDeclared(fp("fan", "5")),
        BomDeclared(bom("m", line("cell", 10), line("fan", 1), rev=1)),
    )
    net.run()
    assert net.result("m").pcf == 25  # type: ignore[union-attr]
    step = net.apply(BomDeclared(bom("m", line("cell", 10), rev=2)))
    assert [type(m).__name__ for m in step.outputs] == ["Unsubscribe", "ProductRolledUp"]
    assert step.state.result.pcf == 20 and Ref.product("fan") not in step.state.children
    net.submit(*step.outputs)
    net.run()
    assert net.components[Ref.product("fan")].parents == ()
    # a value of the dropped line still in flight is ignored by name
    late = product_step(step.state, child_value("m", 9, "50", child="fan"))
    assert (late.outcome, late.outputs) == (Outcome.UNSUBSCRIBED, ())
    # and a new fan footprint no longer reaches m at all
    net.submit(FootprintDeclared(fp("fan", "50", seq=2)))
    net.run()
    assert net.result("m").pcf == 20  # type: ignore[union-attr]


def test_an_update_propagates_through_every_tier_and_touches_only_ancestors() -> None:
    net = Network()
    net.submit(
        FootprintDeclared(fp("cell", "2.5")),
        FootprintDeclared(fp("seat", "40")),
        BomDeclared(bom("module", line("cell", 12), direct=4)),
        BomDeclared(bom("pack", line("module", 8), direct=30)),
        BomDeclared(bom("vehicle", line("pack", 1), line("seat", 2), direct=5000)),
        BomDeclared(bom("chair", line("seat", 1))),
    )
    net.run()
    before = net.results()
    assert before["vehicle"].pcf == D("5382.0")
    delivered = net.delivered
    net.submit(FootprintDeclared(fp("cell", "2", seq=2)))
    net.run()
    after = net.results()
    assert after["vehicle"].pcf == D("5334")  # 5000 + 80 + 30 + 8 x (4 + 24)
    assert after["chair"] is before["chair"]  # not an ancestor: not even recomputed
    # one hop per tier on each side: footprint, 3 x (ChildValue + ProductRolledUp)
    assert net.delivered - delivered == 7


def test_network_fuse_raises_instead_of_spinning() -> None:
    from pcf_exchange.contracts.errors import RollupError

    net = Network()
    net.submit(FootprintDeclared(fp("cell")), BomDeclared(bom("m", line("cell", 1))))
    with pytest.raises(RollupError, match="did not settle within 2 messages"):
        net.run(max_messages=2)


def test_a_batch_for_one_product_recomputes_once_and_matches_one_by_one() -> None:
    from pcf_exchange.streams.rollup import product_step_many

    messages: list[ProductMessage] = [
        BomDeclared(bom("m", line("cell", 2), line("fan", 1))),
        child_value("m", 1, "3"),
        child_value("m", 1, "5", child="fan"),
        child_value("m", 1, "3"),  # duplicate inside the batch
    ]
    one_by_one = None
    for message in messages:
        one_by_one = product_step(one_by_one.state if one_by_one else None, message)
    assert one_by_one is not None
    batch = product_step_many(None, messages)
    assert batch.outcome is Outcome.APPLIED
    assert batch.state.result is not None
    assert batch.state.result == one_by_one.state.result and batch.state.result.pcf == 11
    published = [m for m in batch.outputs if isinstance(m, ProductRolledUp)]
    assert len(published) == 1 and published[0].sequence == 1  # intermediate results not sent
    assert sum(isinstance(m, Subscribe) for m in batch.outputs) == 2
    assert batch.each == (Outcome.APPLIED,) * 3 + (Outcome.DUPLICATE,)
    stale = product_step_many(batch.state, [child_value("m", 1, "3")])
    assert (stale.outcome, stale.outputs) == (Outcome.DUPLICATE, ())
    with pytest.raises(ValueError, match="in a batch for"):
        product_step_many(None, [messages[0], child_value("other", 1, "1")])
    with pytest.raises(ValueError, match="at least one"):
        product_step_many(None, [])


_INPUT_MESSAGES = st.lists(
    st.one_of(
        st.builds(
            lambda e, seq: FootprintDeclared(fp("cell", e, seq=seq)),
            st.sampled_from(["1", "2", "2.5"]),
            st.integers(1, 4),
        ),
        st.builds(
            lambda active, parent, revision: (Subscribe if active else Unsubscribe)(
                CELL, parent, revision
            ),
            st.booleans(),
            st.sampled_from(["a", "b", "c"]),
            st.integers(1, 3),
        ),
    ),
    min_size=1,
    max_size=12,
)


@given(_INPUT_MESSAGES)
def test_a_batch_for_one_input_sends_each_parent_only_its_last_value(
    messages: list[ComponentMessage],
) -> None:
    state: ComponentState | None = None
    last: dict[str, ChildValue] = {}
    outcomes = []
    for message in messages:
        step = component_step(state, message)
        state = step.state
        outcomes.append(step.outcome)
        last.update((out.parent, out) for out in step.outputs if isinstance(out, ChildValue))
    batch = component_step_many(None, messages)
    assert batch.state == state
    assert batch.each == tuple(outcomes)
    assert {out.parent: out for out in batch.outputs if isinstance(out, ChildValue)} == last
    assert len(batch.outputs) == len(last)
    stored = Outcome.APPLIED in outcomes or Outcome.UNCHANGED in outcomes
    assert (batch.outcome in (Outcome.APPLIED, Outcome.UNCHANGED)) is stored


def test_a_batch_for_one_input_needs_a_message() -> None:
    with pytest.raises(ValueError, match="at least one"):
        component_step_many(None, [])


def test_every_message_for_a_product_goes_to_its_node_whichever_role_it_is_for() -> None:
    declared = BomDeclared(
        bom("m", line("cell", 2), line("tray", 1, fallback="alu"), kwh=1, grid="g")
    )
    step = product_step(None, declared)
    [rolled] = [m for m in step.outputs if isinstance(m, ProductRolledUp)]
    subs = [m for m in step.outputs if isinstance(m, Subscribe)]
    fan_out = component_step(subscribed("m"), FootprintDeclared(fp("cell", "2"))).outputs
    m = Ref.product("m")
    assert [node_of(x) for x in (declared, rolled, offered(rolled), *fan_out)] == [m] * 4
    assert [str(node_of(x)) for x in subs] == [
        "factor:alu",
        "factor:g",
        "product:cell",
        "product:tray",
    ]
    assert node_of(FactorPublished(factor("g"))) == Ref.factor("g")


def test_coalesced_waves_reach_the_same_state_with_fewer_recomputations() -> None:
    inputs: list[Message] = [
        FootprintDeclared(fp("cell", "2.5")),
        BomDeclared(bom("module", line("cell", 12), direct=4)),
        BomDeclared(bom("pack", line("module", 8), line("cell", 1), direct=30)),
        BomDeclared(bom("vehicle", line("pack", 1), line("module", 2), direct=5000)),
    ]
    plain, waves = Network(), Network()
    plain.submit(*inputs)
    waves.submit(*inputs)
    plain.run()
    waves.run(coalesce=True)
    assert plain.results() == waves.results()
    assert waves.products["vehicle"].sequence < plain.products["vehicle"].sequence
