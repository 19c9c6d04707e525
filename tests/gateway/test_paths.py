"""Field paths and patterns: leaves, shapes, wildcards, related-field binding."""

from __future__ import annotations

import pytest

from gateway.policy._paths import (
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
