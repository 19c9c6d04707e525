"""Each published footprint version has an id of its own (#22 item 5's root cause): a product
whose result returns to an earlier content (A, then B, then A again) publishes three distinct
ids, the third ``Active`` after the second's ``Deprecated`` copy, each naming its predecessor;
and the ids are a function of the stored rows, so another worker (or the same one after a
crash) publishes the same records."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcf_exchange.contracts import (
    AvroSerde,
    InMemorySchemaRegistry,
    RolledUpFootprint,
    register_all,
)
from pcf_exchange.contracts.handoff import HandoffSigner
from pcf_exchange.streams._publish import Publisher
from pcf_exchange.streams._rollup_step import NodeRecord, ProductRecord
from pcf_exchange.streams.adapt import issued_id
from pcf_exchange.streams.rollup import ProductRolledUp, RollupResult
from pcf_exchange.streams.rollup._product import ProductState
from tests.streams.test_adapt import _named, _scaled, roll, signed_inputs

TOPIC = "t.pcf.products"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SIGNER = HandoffSigner(Ed25519PrivateKey.generate(), "urn:pcfx:streams", "streams-k1")


@pytest.fixture(scope="module")
def serde() -> AvroSerde:
    registry = InMemorySchemaRegistry()
    register_all(registry, "t.")
    return AvroSerde(registry)


@pytest.fixture(scope="module")
def pack() -> tuple[str, str, RollupResult, RollupResult]:
    """The pack's BOM document and two results of it: A, and B (cheaper lithium)."""
    fps, boms, factors = signed_inputs()
    bom = _named(boms, "pack")
    a = roll(boms, fps, factors)[bom.product_id]
    cheaper = [f if "lithium" not in f.product_id else _scaled(f, Decimal("0.5")) for f in fps]
    b = roll(boms, cheaper, factors)[bom.product_id]
    assert a.content_hash != b.content_hash and a.is_complete and b.is_complete
    return bom.product_id, bom.model_dump_json(by_alias=True), a, b


def _publish(
    serde: AvroSerde, row: NodeRecord, result: RollupResult, sequence: int
) -> tuple[list[RolledUpFootprint], NodeRecord]:
    """Publish *result* for the product of *row* with a fresh publisher (nothing in memory):
    its records, and the row to store."""
    key = result.product_id.encode()
    rolled = ProductRolledUp(result.product_id, sequence, result)
    out = Publisher(serde, TOPIC, SIGNER).publish({key: rolled}, {key: row}, lambda: NOW)
    assert out.unwritable == []
    return [serde.decode(v, RolledUpFootprint) for _, v in out.records], out.rows.get(key, row)


def test_a_result_returning_to_an_earlier_content_gets_a_new_id(
    serde: AvroSerde, pack: tuple[str, str, RollupResult, RollupResult]
) -> None:
    pid, document, a, b = pack
    row = NodeRecord(product=ProductRecord(ProductState(pid), bom=document))
    published: list[list[RolledUpFootprint]] = []
    for sequence, result in enumerate((a, b, a), start=1):
        records, row = _publish(serde, row, result, sequence)
        published.append(records)
    (first,), (retired_a, second), (retired_b, third) = published
    footprints = [r.footprint for r in (first, second, third)]
    assert all(f is not None and f.status == "Active" for f in footprints)
    ids = [str(f.id) for f in footprints if f is not None]
    assert len(set(ids)) == 3, "each version has an id of its own"
    assert ids[0] == a.result_id, "a product's first footprint keeps its content id"
    assert third.pcf_excluding_biogenic_uptake == first.pcf_excluding_biogenic_uptake
    # each new footprint follows its predecessor's Deprecated copy and names it
    for retired, predecessor, successor in ((retired_a, first, second), (retired_b, second, third)):
        assert retired.footprint is not None and retired.footprint.status == "Deprecated"
        assert predecessor.footprint is not None and successor.footprint is not None
        assert retired.footprint.id == predecessor.footprint.id
        assert retired.model_copy(update={"footprint": None}) == predecessor.model_copy(
            update={"footprint": None}
        ), "nothing but the status changed"
        assert list(successor.footprint.preceding_pf_ids or ()) == [predecessor.footprint.id]
    assert row.product is not None and row.product.issued == ids[2]


def test_the_ids_depend_only_on_the_stored_history(
    serde: AvroSerde, pack: tuple[str, str, RollupResult, RollupResult]
) -> None:
    # the same rows give the same records, whichever publisher (worker) makes them
    pid, document, a, b = pack
    start = NodeRecord(product=ProductRecord(ProductState(pid), bom=document))
    runs = []
    for _ in range(2):
        row, records = start, []
        for sequence, result in enumerate((a, b, a, b), start=1):
            batch, row = _publish(serde, row, result, sequence)
            records += batch
        runs.append(records)
    assert runs[0] == runs[1]
    ids = [str(r.footprint.id) for r in runs[0] if r.footprint and r.footprint.status == "Active"]
    assert len(ids) == len(set(ids)) == 4
    # and a redelivered batch (the row not yet stored) issues the id it issued before
    once, after = _publish(serde, start, a, 1)
    again, _ = _publish(serde, start, a, 1)
    assert once == again and after.product is not None
    assert after.product.issued == issued_id(a, None)


def test_issued_ids_chain_on_the_predecessor(
    pack: tuple[str, str, RollupResult, RollupResult],
) -> None:
    _, _, a, b = pack
    first = issued_id(a, None)
    second = issued_id(b, first)
    third = issued_id(a, second)
    assert len({first, second, third}) == 3
    assert issued_id(a, second) == third, "deterministic"
    assert issued_id(replace(a, product_id=a.product_id + "-other"), second) != third
