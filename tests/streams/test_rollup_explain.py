"""Hotspots and the contribution tree, read back from lineage."""

from __future__ import annotations

import pytest

from pcf_exchange.streams.rollup import (
    SourceKind,
    contribution_tree,
    hotspots,
    rollup_context,
    run_batch,
)
from tests.streams._rollup_helpers import D, bom, factor, fp, line


@pytest.fixture
def results():
    # a diamond: the cell reaches the pack through two modules
    return run_batch(
        [fp("cell", "2"), fp("frame", "5")],
        [
            bom("left", line("cell", 10), direct=1),
            bom("right", line("cell", 5), line("frame", 1)),
            bom("pack", line("left", 1), line("right", 2), kwh=10, grid="grid", direct=3),
        ],
        [factor("grid", "0.5", unit="kilowatt hour")],
    )


def test_hotspots_sum_a_leaf_over_every_path(results) -> None:
    spots = hotspots(results, "pack", top=None)
    assert [(h.ref, h.contribution, h.paths) for h in spots] == [
        ("product:cell", D(40), 2),  # 10 x 2 + 2 x 5 x 2
        ("product:frame", D(10), 1),
        ("factor:grid", D(5), 1),
        ("own:pack", D(3), 1),
        ("own:left", D(1), 1),
    ]
    assert spots[0].kind is SourceKind.SUPPLIER and spots[2].kind is SourceKind.OWN_ELECTRICITY
    assert results["pack"].pcf == sum(h.contribution for h in spots) == 59
    with rollup_context():
        assert sum(h.share for h in spots if h.share is not None) == 100
    assert len(hotspots(results, "pack", top=2)) == 2


def test_contribution_tree_scales_each_tier_to_the_root(results) -> None:
    tree = contribution_tree(results, "pack")
    assert (tree.contribution, tree.share) == (D(59), D(100))
    right, left = tree.children[0], tree.children[1]
    assert (right.ref, right.contribution, right.multiplier) == ("product:right", D(30), D(2))
    assert [(c.ref, c.contribution, c.multiplier) for c in right.children] == [
        ("product:cell", D(20), D(10)),  # 5 cells per right x 2 rights
        ("product:frame", D(10), D(2)),
    ]
    assert left.ref == "product:left" and len(left.children) == 2
    shallow = contribution_tree(results, "pack", max_depth=1)
    assert all(child.children == () for child in shallow.children)


def test_unknown_product_is_a_key_error(results) -> None:
    with pytest.raises(KeyError):
        hotspots(results, "nope")
    with pytest.raises(KeyError):
        contribution_tree(results, "nope")
