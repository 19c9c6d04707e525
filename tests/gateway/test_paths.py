"""Field paths and patterns: leaves, shapes, wildcards, related-field binding."""

from __future__ import annotations

from typing import Any

import pytest

from pcf_exchange.gateway.policy._paths import (
    FLOAT_SHAPE,
    NON_STRING_SHAPE,
    Pattern,
    bind_indices,
    get_path,
    iter_leaves,
)


def test_leaves_paths_and_shapes() -> None:
    record = {
        "id": "x",
        "pcf": {"dqi": {"t": "1"}},
        "ids": ["a", "b"],
        "empty": None,
        "ext": [{"data": {"in": [{"s": "1"}, {"s": "2", "n": None}]}}],
        "odd.key": "v",
    }
    assert iter_leaves(record) == [
        ("id", "id", "x"),
        ("pcf.dqi.t", "pcf.dqi.t", "1"),
        ("ids[0]", "ids[*]", "a"),
        ("ids[1]", "ids[*]", "b"),
        ("ext[0].data.in[0].s", "ext[*].data.in[*].s", "1"),
        ("ext[0].data.in[1].s", "ext[*].data.in[*].s", "2"),
        ('["odd.key"]', '["odd.key"]', "v"),
    ]


def test_floats_and_odd_keys_get_shapes_no_pattern_matches() -> None:
    leaves = iter_leaves({"a": 1.5, "b": {2: "x"}, "c": [0.5]})
    assert [shape for _, shape, _ in leaves] == [FLOAT_SHAPE, NON_STRING_SHAPE, FLOAT_SHAPE]
    assert not Pattern("**").matches(FLOAT_SHAPE)
    assert not Pattern("**").matches(NON_STRING_SHAPE)


@pytest.mark.parametrize(
    ("pattern", "shape", "expected"),
    [
        ("pcf.geographyCountry", "pcf.geographyCountry", True),
        ("pcf.*", "pcf.geographyCountry", True),
        ("pcf.*", "pcf.dqi.temporalDQR", False),
        ("pcf.**", "pcf.dqi.temporalDQR", True),
        ("companyIds[*]", "companyIds[*]", True),
        ("companyIds", "companyIds[*]", False),
        ("a.**.supplierId", "a.supplierId", True),
        ("a.**.supplierId", "a.inputs[*].inputs[*].supplierId", True),
        ("x.**.inputs[*].pfId", "x.inputs[*].pfId", True),
        ("x.**.inputs[*].pfId", "x.inputs[*].inputs[*].pfId", True),
        ("x.**.inputs[*].pfId", "x.facility.pfId", False),
        ("*", '["odd.key"]', True),
        ("a", '["odd.key"]', False),
    ],
)
def test_pattern_matching(pattern: str, shape: str, expected: bool) -> None:
    assert Pattern(pattern).matches(shape) is expected


@pytest.mark.parametrize("bad", ["pcf..x", "pcf.[*]", "a[0]", "a.b[", "", "a b"])
def test_bad_patterns_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="must be dotted keys"):
        Pattern(bad)


def test_bind_indices_and_get_path() -> None:
    record = {"f": {"volume": {"q": "10"}, "energy": [{"q": "5"}]}, "in": [{"m": "1"}, {"m": "2"}]}
    assert bind_indices("f.volume.q", "f.energy[0].q") == "f.volume.q"
    assert bind_indices("in[*].m", "in[1].x") == "in[1].m"
    assert bind_indices("a[*].b[*]", "a[0].c") is None
    assert get_path(record, "in[1].m") == "2"
    assert get_path(record, "in[5].m") is None
    assert get_path(record, "f.missing") is None


# ----------------------------------------------------------------------------------------------
# compiled layout extractors: values exactly when the leaf paths are the layout's


def _mutations(record: dict[str, Any]) -> list[Any]:
    """Records near *record*: each differs from it in one way a layout can differ (or not)."""
    import copy as _copy

    out: list[Any] = [_copy.deepcopy(record)]
    changed = _copy.deepcopy(record)
    changed["id"] = "another id"  # same layout, another value
    out.append(changed)
    for key in list(record):
        dropped = _copy.deepcopy(record)
        del dropped[key]
        out.append(dropped)
        nulled = _copy.deepcopy(record)
        nulled[key] = None
        out.append(nulled)
        retyped = _copy.deepcopy(record)
        retyped[key] = 1.5
        out.append(retyped)
        nested = _copy.deepcopy(record)
        nested[key] = {"x": "y"}
        out.append(nested)
    extra = _copy.deepcopy(record)
    extra["zzz"] = "new"
    out.append(extra)
    reordered = dict(reversed(list(_copy.deepcopy(record).items())))
    out.append(reordered)
    pcf = _copy.deepcopy(record)
    if isinstance(pcf.get("pcf"), dict):
        pcf["pcf"]["declaredUnitAmount"] = 1  # an int leaf: same path
        out.append(pcf)
    lists = _copy.deepcopy(record)
    for value in lists.values():
        if isinstance(value, list):
            value.append("one more")
    out.append(lists)
    tupled = _copy.deepcopy(record)
    for k, value in list(tupled.items()):
        if isinstance(value, list):
            tupled[k] = tuple(value)
    out.append(tupled)
    out.append([record])
    return out


def test_an_extractor_returns_the_walk_values_exactly_for_its_layout() -> None:
    from pcf_exchange.gateway.examples import example_record
    from pcf_exchange.gateway.policy._paths import compile_extractor, leaf_paths

    base = example_record()
    extract = compile_extractor(base)
    assert extract is not None
    walked = leaf_paths(base)
    assert walked is not None and extract(base) == walked[1]
    hits = 0
    for other in _mutations(base):
        got = extract(other)
        other_walk = leaf_paths(other) if isinstance(other, dict) else None
        if got is not None:
            hits += 1
            assert other_walk is not None and other_walk == (walked[0], got)
    assert hits >= 3  # itself, a changed value, an int leaf


def test_no_extractor_for_what_the_walk_does_not_cache() -> None:
    from pcf_exchange.gateway.policy._paths import compile_extractor

    assert compile_extractor({"a": 1.5}) is None
    assert compile_extractor({1: "x"}) is None
    assert compile_extractor(["a"]) is None
