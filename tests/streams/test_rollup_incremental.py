"""The incrementally kept roll-up equals a from-scratch ``compute_result`` after any history.

A product applies each new input value by the difference it makes to its running sums
(``streams/rollup/_running.py``). Whatever sequence of updates, duplicates, stale replays,
reorderings, BOM revisions (lines added and removed), missing inputs, blocked inputs, cycles and
unit errors it sees, its value must be exactly -- same digits, same exponents, same content hash
-- what ``compute_result`` gives from the BOM and the latest value of every input.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcf_exchange.streams.rollup import (
    DQR_RATINGS,
    Bom,
    BomDeclared,
    BomLine,
    ChildValue,
    ComponentFootprint,
    Factor,
    OwnProcess,
    ProductMessage,
    ProductState,
    Ref,
    RollupResult,
    SourceValue,
    Status,
    Totals,
    compute_result,
    product_step,
    product_step_many,
    source_from_factor,
    source_from_footprint,
    source_from_result,
)

P = "p"
CHILDREN = ("c0", "c1", "c2", "c3")
FALLBACKS = ("f0", "f1")
GRID = "g"
E, INC, F = "pcfExcludingBiogenicUptake", "pcfIncludingBiogenicUptake", "fossilGhgEmissions"
OPTIONAL = ("biogenicCO2Uptake", "landUseChangeGhgEmissions", "fossilCarbonContent")

# decimals with varied exponents, so that running sums must be put back to the from-scratch
# exponent ("1.50" - "1.50" + "2" is "2.00" unless written again)
_DIGITS = st.builds(lambda n, e: Decimal(n).scaleb(e), st.integers(0, 10**6), st.integers(-6, 3))
_SIGNED = st.builds(lambda d, neg: -d if neg else d, _DIGITS, st.booleans())


@st.composite
def _totals_parts(draw: Any) -> dict[str, Any]:
    head = draw(_DIGITS)
    figures = {E: head, INC: draw(_SIGNED), F: draw(_DIGITS)}
    for name in OPTIONAL:
        if draw(st.booleans()):
            figures[name] = draw(_SIGNED)
    dqr = {
        name: Decimal(draw(st.integers(10, 50))).scaleb(-1)
        for name in DQR_RATINGS[:3]
        if draw(st.booleans())
    }
    return {"figures": figures, "dqr": dqr}


@st.composite
def footprint_values(draw: Any, child: str) -> SourceValue:
    parts = draw(_totals_parts())
    head = parts["figures"][E]
    stages: dict[str, Decimal] = {}
    if draw(st.booleans()) and head > 0:
        cut = head.quantize(Decimal(1)) if head >= 1 else Decimal(0)
        stages = {"production": head - cut, "transport": cut}
    unit = draw(st.sampled_from(["piece", "piece", "kilogram", "gram", "kilowatt hour"]))
    fp = ComponentFootprint(
        child,
        f"fp-{child}",
        draw(st.integers(1, 5)),
        unit,
        draw(st.sampled_from([Decimal(1), Decimal(2), Decimal("0.5"), Decimal(3)])),
        parts["figures"],
        product_mass_per_declared_unit=draw(st.sampled_from([None, Decimal("0.25"), Decimal(4)])),
        primary_data_share=draw(st.sampled_from([None, Decimal(0), Decimal("37.5"), Decimal(100)])),
        dqr=parts["dqr"],
        std_dev=draw(st.sampled_from([None, Decimal("0.1"), Decimal("1.25")])),
        stages=stages,
        secondary_sources=tuple(draw(st.sets(st.sampled_from(["ecoinvent", "gabi"])))),
    )
    return source_from_footprint(fp)


@st.composite
def rolled_values(draw: Any, child: str) -> SourceValue:
    """Another product's rolled-up value: incomplete (with missing refs), blocked, or error."""
    status = draw(st.sampled_from([Status.INCOMPLETE, Status.BLOCKED, Status.ERROR]))
    totals = None
    if status is Status.INCOMPLETE:
        parts = draw(_totals_parts())
        head = parts["figures"][E]
        totals = Totals(
            figures=parts["figures"],
            primary=head,
            variance=Decimal("0.04"),
            unassessed=Decimal(0),
            dqr={name: (head * rating, head) for name, rating in parts["dqr"].items()},
            stages={"unspecified": head},
        )
    missing = tuple(sorted(draw(st.sets(st.sampled_from(["product:x", "product:y"]), min_size=1))))
    result = RollupResult(
        product_id=child,
        bom_revision=draw(st.integers(1, 3)),
        status=status,
        declared_unit="piece",
        declared_unit_amount=Decimal(1),
        mass_per_declared_unit=None,
        totals=totals,
        missing=missing,
        blocked_by=("product:z",) if status is Status.BLOCKED else (),
        factor_sources=("ecoinvent",),
        exact=draw(st.booleans()),
    )
    return source_from_result(result)


def cycle_value(child: str) -> SourceValue:
    cycle = tuple(sorted((P, child)))
    result = RollupResult(
        product_id=child,
        bom_revision=1,
        status=Status.CYCLE,
        declared_unit="piece",
        declared_unit_amount=Decimal(1),
        mass_per_declared_unit=None,
        totals=None,
        cycle=(*cycle, cycle[0]),
    )
    return source_from_result(result)


@st.composite
def factor_values(draw: Any, factor_id: str) -> SourceValue:
    parts = draw(_totals_parts())
    unit = draw(st.sampled_from(["kilowatt hour", "megajoule", "piece", "kilogram"]))
    factor = Factor(
        factor_id,
        draw(st.integers(1, 5)),
        unit,
        parts["figures"],
        std_dev=draw(st.sampled_from([None, Decimal("0.02")])),
        dqr=parts["dqr"],
        stage=draw(st.sampled_from([None, "production", "energy"])),
        source=draw(st.sampled_from(["", "ecoinvent 3.10"])),
        mass_per_unit=draw(st.sampled_from([None, Decimal("0.5")])),
    )
    return source_from_factor(factor)


@st.composite
def boms(draw: Any, revision: int) -> Bom:
    children = draw(st.lists(st.sampled_from(CHILDREN), min_size=0, max_size=5))
    lines = tuple(
        BomLine(
            child,
            draw(st.sampled_from([Decimal(1), Decimal("0.5"), Decimal("2.25"), Decimal(12)])),
            draw(st.sampled_from(["piece", "piece", "kilogram", "gram"])),
            draw(st.sampled_from([None, *FALLBACKS])),
        )
        for child in children
    )
    kwh = draw(st.sampled_from([Decimal(0), Decimal("1.5"), Decimal(10)]))
    own = OwnProcess(
        direct_kgco2e=draw(st.sampled_from([Decimal(0), Decimal("0.40"), Decimal(3)])),
        electricity_kwh=kwh,
        grid_factor_id=GRID if kwh > 0 else None,
        direct_std_dev=draw(st.sampled_from([None, Decimal("0.1")])),
        dqr=draw(st.sampled_from([{}, {"technologicalDQR": Decimal(2)}])),
    )
    return Bom(P, revision, lines, own, owner="maker")


@st.composite
def histories(draw: Any) -> list[ProductMessage]:
    """BOM revisions and input values, with duplicates, stale replays and reorderings."""
    revision = 1
    messages: list[ProductMessage] = [BomDeclared(draw(boms(revision)))]
    versions: dict[Ref, int] = {}
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["child", "child", "child", "factor", "bom", "replay"]))
        if kind == "bom":
            revision += 1
            messages.append(BomDeclared(draw(boms(revision))))
        elif kind == "replay" and len(messages) > 1:
            messages.append(messages[draw(st.integers(0, len(messages) - 1))])
        elif kind == "factor":
            factor_id = draw(st.sampled_from([*FALLBACKS, GRID]))
            ref = Ref.factor(factor_id)
            versions[ref] = versions.get(ref, 0) + 1
            value = draw(factor_values(factor_id))
            messages.append(ChildValue(P, ref, versions[ref], value))
        else:
            child = draw(st.sampled_from(CHILDREN))
            ref = Ref.product(child)
            versions[ref] = versions.get(ref, 0) + 1
            how = draw(st.sampled_from(["footprint", "footprint", "rolled", "cycle", "trace"]))
            trace: tuple[str, ...] = ()
            if how == "rolled":
                value = draw(rolled_values(child))
            elif how == "cycle":
                value = cycle_value(child)
            else:
                value = draw(footprint_values(child))
                if how == "trace":  # our own value flowed into this input: a cycle
                    trace = (P, "q", child)
            messages.append(ChildValue(P, ref, versions[ref], value, trace))
    # deliver in a somewhat shuffled order: later versions may overtake earlier ones
    order = draw(st.permutations(range(len(messages))))
    swaps = draw(st.integers(0, len(messages)))
    shuffled = list(messages)
    for i in range(min(swaps, len(messages) - 1)):
        a, b = order[i], order[i + 1]
        shuffled[a], shuffled[b] = shuffled[b], shuffled[a]
    return shuffled


def from_scratch(state: ProductState) -> RollupResult:
    assert state.bom is not None
    values = {ref: slot.value for ref, slot in state.children.items()}
    traces = {ref: slot.trace for ref, slot in state.children.items() if slot.trace}
    return compute_result(state.bom, values, traces)


def assert_same_as_from_scratch(state: ProductState) -> None:
    if state.bom is None:
        return
    want = from_scratch(state)
    value = state.value
    assert value is not None
    if want.status is Status.CYCLE:  # (another path through us is no news: see _product._same)
        assert value.status is Status.CYCLE
        return
    expected = source_from_result(want)
    # the thin value, field by field, digits and exponents included ...
    assert value.status is expected.status
    assert value.missing == expected.missing
    assert value.factor_sources == expected.factor_sources
    assert value.exact == expected.exact
    assert repr(value.totals) == repr(expected.totals)
    # ... and the whole value, its identity built from the values its lines used
    assert value == expected
    built = state.result
    assert built == want and built is not None
    assert built.content_hash == want.content_hash
    # (built from the running lines, not by compute_result again: every field, lineage
    # multipliers and contributions included, with the same digits and exponents)
    assert repr(built) == repr(want)


SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(histories())
def test_one_message_at_a_time_equals_compute_result(history: list[ProductMessage]) -> None:
    state: ProductState | None = None
    for message in history:
        before = None if state is None else (state.sequence, state.value, dict(state.children))
        step = product_step(state, message)
        if state is not None:  # the caller's state is never changed
            assert (state.sequence, state.value, dict(state.children)) == before
            assert_same_as_from_scratch(state)
        state = step.state
        assert_same_as_from_scratch(state)


@SETTINGS
@given(histories(), st.data())
def test_batches_equal_compute_result_and_leave_the_old_state_alone(
    history: list[ProductMessage], data: st.DataObject
) -> None:
    state: ProductState | None = None
    i = 0
    while i < len(history):
        n = data.draw(st.integers(1, 6))
        chunk = history[i : i + n]
        i += n
        before = None if state is None else (state.sequence, state.value, dict(state.children))
        step = product_step_many(state, chunk)
        if state is not None:
            assert (state.sequence, state.value, dict(state.children)) == before
        state = step.state
        assert_same_as_from_scratch(state)
