"""The PACT v3 update: the old footprint deprecated, then the new one, paired by product."""

from __future__ import annotations

from pcf_exchange.contracts import ProductFootprint, parse_footprint
from pcf_exchange.producers import Item, footprint_sequence, supersede
from tests.producers.conftest import footprint_json


def _item(data: dict[str, object], ref: str) -> Item:
    return Item.of(parse_footprint(data), ref)


def _fp(item: Item) -> ProductFootprint:
    assert isinstance(item.record, ProductFootprint)
    return item.record


def test_update_deprecates_the_old_then_publishes_the_new() -> None:
    old = _item(footprint_json(1, created="2025-01-01T00:00:00Z"), "old.json#0")
    data = footprint_json(2, created="2025-06-01T00:00:00Z")
    data["productIds"] = footprint_json(1)["productIds"]
    new = _item(data, "new.json#0")
    out = supersede([old], [new])
    assert [i.ref for i in out] == ["old.json#0", "new.json#0"]
    first, second = _fp(out[0]), _fp(out[1])
    assert first.id == _fp(old).id and first.status == "Deprecated"
    assert first.model_copy(update={"status": "Active"}) == _fp(old), "nothing else changed"
    assert second.preceding_pf_ids == (_fp(old).id,)
    assert footprint_sequence(_fp(old)) < footprint_sequence(first) < footprint_sequence(second)
    assert "deprecated" in (out[0].note or "") and "supersedes" in (out[1].note or "")


def test_new_footprints_without_an_old_one_pass_through_and_unpaired_old_ones_are_named() -> None:
    old = _item(footprint_json(1), "old.json#0")
    new = _item(footprint_json(2, created="2026-01-01T00:00:00Z"), "new.json#0")
    out = supersede([old], [new])
    assert out[0] is new
    assert out[1].record is None and out[1].error is not None
    assert out[1].error.violations[0].code == "not_superseded"


def test_an_update_must_have_a_new_id_and_a_later_created() -> None:
    old = _item(footprint_json(1, created="2025-06-01T00:00:00Z"), "old.json#0")
    same_id = footprint_json(1, created="2025-07-01T00:00:00Z")
    earlier = footprint_json(2, created="2025-05-01T00:00:00Z")
    earlier["productIds"] = footprint_json(1)["productIds"]
    for data, code in ((same_id, "same_id"), (earlier, "not_newer")):
        out = supersede([old], [_item(data, "new.json#0")])
        assert out[0].record is None and out[0].error is not None
        assert out[0].error.violations[0].code == code
        assert all(i.record is None for i in out), "the old one is not deprecated either"


def test_existing_preceding_ids_are_kept() -> None:
    old = _item(footprint_json(1), "old.json#0")
    data = footprint_json(2, created="2026-01-01T00:00:00Z")
    data["productIds"] = footprint_json(1)["productIds"]
    data["precedingPfIds"] = ["0b9e3f58-2c4d-4a1b-8e7f-6a5b4c3d2e1f", str(_fp(old).id)]
    out = supersede([old], [_item(data, "new.json#0")])
    assert [str(p) for p in _fp(out[1]).preceding_pf_ids or ()] == data["precedingPfIds"]
