"""The worker's plain steps without a broker: batching, ingest bookkeeping, the roll-up step with
local delivery, and the publish step (each product's last result of a batch built once, its
predecessor deprecated once, the same Deprecated record whichever worker makes it)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcf_exchange.contracts import (
    AvroSerde,
    BillOfMaterials,
    InMemorySchemaRegistry,
    RolledUpFootprint,
    register_all,
)
from pcf_exchange.contracts.errors import ContractError, RollupError, TrustError
from pcf_exchange.contracts.handoff import HEADER_ROOT_SIGNATURE, HandoffSigner
from pcf_exchange.streams import _publish, adapt
from pcf_exchange.streams._batching import BUSY_BATCH, LINGER_SLICE_S, Batcher
from pcf_exchange.streams._ingest_step import Held, TableLedger, check_batch, forward, settle
from pcf_exchange.streams._packs import keyed
from pcf_exchange.streams._publish import Publisher
from pcf_exchange.streams._rollup_step import SPILL, NodeRecord, RollupBatch, Work, roll_up
from pcf_exchange.streams.adapt import core_bom
from pcf_exchange.streams.ingest import Ingested, IngestOutcome, KeyRegistry, ParkingLot, SourceRef
from pcf_exchange.streams.rollup import (
    BomDeclared,
    FactorPublished,
    FootprintDeclared,
    Message,
    ProductRolledUp,
    RollupResult,
    run_batch,
)
from tests.streams.test_adapt import signed_inputs

AT = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
PARTITIONS = 6
PRODUCTS = "t.pcf.products"


# --- batching ----------------------------------------------------------------------------------


class _Stream:
    """A stream as a :class:`Batcher` sees it: records what was acknowledged."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.stopping = False

    @property
    def should_stop(self) -> bool:
        return self.stopping

    async def wait(self, *events: asyncio.Event, timeout: float | None = None) -> None:
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        await asyncio.wait(waits, timeout=timeout)
        for w in waits:
            w.cancel()

    async def ack(self, event: int) -> None:
        self.acked.append(event)


def test_batches_take_what_arrived_and_are_acknowledged_after_their_work() -> None:
    async def run() -> tuple[list[list[int]], list[list[int]], list[int]]:
        stream = _Stream()
        batcher: Batcher[int] = Batcher(stream, most=4, held=lambda e: e == 5)
        batches: list[list[int]] = []
        acked_before: list[list[int]] = []

        async def deliver() -> None:
            for event in range(10):
                await batcher.offer(event)  # (waits while a full batch is not taken)
            await asyncio.sleep(0.05)
            stream.stopping = True
            batcher.arrived.set()

        delivery = asyncio.ensure_future(deliver())
        async for batch in batcher.batches():
            acked_before.append(list(stream.acked))
            batches.append(batch)
        await delivery
        return batches, acked_before, stream.acked

    batches, acked_before, acked = asyncio.run(run())
    assert [e for b in batches for e in b] == list(range(10)), "every event, in order, once"
    assert all(len(b) <= 4 for b in batches)
    for i, batch in enumerate(batches):  # a batch is acknowledged only once the next is asked
        assert not set(batch) & set(acked_before[i])
    assert 5 not in acked, "a held event is left for its holder"
    assert sorted(acked) == [e for e in range(10) if e != 5]


def test_a_batch_whose_work_failed_is_not_acknowledged() -> None:
    async def run() -> list[int]:
        stream = _Stream()
        batcher: Batcher[int] = Batcher(stream, most=10)
        for event in range(3):
            await batcher.offer(event)
        with pytest.raises(RuntimeError):
            async for _batch in batcher.batches():
                raise RuntimeError("the work failed")
        return stream.acked

    assert asyncio.run(run()) == []


async def _second_batch_after_a_busy_one(meanwhile: Any) -> tuple[list[int], float]:
    """A batch of :data:`BUSY_BATCH` events whose work takes 0.2 s, then one more event and
    *meanwhile* running (given the batcher): the next batch, and how long it took to come."""
    stream = _Stream()
    batcher: Batcher[int] = Batcher(stream, most=100)
    for event in range(BUSY_BATCH):
        await batcher.offer(event)
    began, task = 0.0, None
    async for batch in batcher.batches():
        if task is not None:
            waited = time.perf_counter() - began
            await task
            return batch, waited
        await asyncio.sleep(0.2)  # the work: the next batch may gather up to this long
        await batcher.offer(BUSY_BATCH)
        began = time.perf_counter()
        task = asyncio.ensure_future(meanwhile(batcher))
    raise AssertionError("the stream stopped")


def test_after_a_busy_batch_the_next_gathers_while_the_worker_works_on_what_comes_next() -> None:
    async def ingest(batcher: Batcher[int]) -> None:  # another agent, busy for ~120 ms
        until = time.perf_counter() + 0.12
        while time.perf_counter() < until:
            spin = time.perf_counter() + 0.01
            while time.perf_counter() < spin:
                pass
            await asyncio.sleep(0)
        await batcher.offer(99)  # what its work gave

    batch, _ = asyncio.run(_second_batch_after_a_busy_one(ingest))
    assert batch == [BUSY_BATCH, 99], "the batch waited for what the busy worker was making"


def test_after_a_busy_batch_an_idle_worker_does_not_keep_the_next_one_waiting() -> None:
    async def nothing(batcher: Batcher[int]) -> None:
        return None

    batch, waited = asyncio.run(_second_batch_after_a_busy_one(nothing))
    assert batch == [BUSY_BATCH]
    assert waited < 0.2 - LINGER_SLICE_S, "an idle slice ends the gathering (not the last's 0.2 s)"


# --- ingest ------------------------------------------------------------------------------------


def _source(offset: int, partition: int = 0) -> SourceRef:
    return SourceRef("t.pcf.declared", partition, offset, AT, b"k")


def test_a_checked_batch_splits_into_checked_rejected_and_parked() -> None:
    outcomes = {
        b"ok": IngestOutcome.ACCEPTED,
        b"dup": IngestOutcome.DUPLICATE,
        b"bad": IngestOutcome.REJECTED,
        b"later": IngestOutcome.PENDING_KEY,
    }
    seen: list[tuple[str, int]] = []
    rows = TableLedger({})

    def check(data: bytes, source: SourceRef) -> Ingested:
        seen.append(rows.partition)
        error = ContractError("bad") if outcomes[data] is IngestOutcome.REJECTED else None
        return Ingested(outcomes[data], source, subject=data.decode(), error=error)

    records = [(i, _source(i, i % 3), data) for i, data in enumerate(outcomes)]
    batch = check_batch(records, check, rows)
    assert [r.subject for r in batch.checked] == ["ok", "dup"]
    assert [(r.subject, data) for r, data in batch.rejected] == [("bad", b"bad")]
    assert [(item, r.subject) for item, r in batch.parked] == [(3, "later")]
    assert seen == [("t.pcf.declared", i % 3) for i in range(4)], "ledger rows: their partition"


def test_nothing_checked_forwards_nothing() -> None:
    assert forward("pcf.declared", []).sends == []


def test_a_parked_record_is_rejected_at_its_deadline_as_unknown_key() -> None:
    parking: ParkingLot[Held] = ParkingLot(timedelta(seconds=10))

    class _Event:
        value = b"record"

    held = Held("pcf.declared", None, _Event(), _source(7))
    parking.park(("urn:supplier", "k1"), AT, held)
    registry = KeyRegistry(operator_keys={})

    def never(_: Held) -> Ingested:
        raise AssertionError("no key came into force: nothing is checked again")

    early = settle(parking, registry, never, TableLedger({}), AT + timedelta(seconds=5), 10)
    assert early.resolved == [] and len(parking) == 1
    late = settle(parking, registry, never, TableLedger({}), AT + timedelta(seconds=11), 10)
    assert late.resolved == [held]
    ((rejection, original),) = late.rejected
    assert original == b"record"
    assert isinstance(rejection.error, TrustError) and rejection.error.reason == "unknown_key"
    assert len(parking) == 0


# --- the roll-up step and the publish step -------------------------------------------------------


@pytest.fixture(scope="module")
def chain() -> tuple[list[Message], dict[str, BillOfMaterials], dict[str, RollupResult]]:
    """The demo chain's messages (footprints, factors, BOMs), its BOM documents and its
    results in batch mode."""
    footprints, boms, factors = signed_inputs()
    messages: list[Message] = [FootprintDeclared(fp) for fp in footprints]
    messages += [FactorPublished(f) for f in factors]
    messages += [BomDeclared(core_bom(b)) for b in boms]
    expected = run_batch(footprints, [core_bom(b) for b in boms], factors)
    return messages, {b.product_id: b for b in boms}, expected


class _Node:
    """A worker as the steps see it: its stored rows and the messages on the topic."""

    def __init__(self, local: set[int], spill: int = SPILL) -> None:
        self.local = local
        self.spill = spill
        self.rows: dict[bytes, NodeRecord] = {}
        self.topic: list[tuple[bytes, Message]] = []

    def batch(self, messages: Iterable[tuple[bytes, Message]], docs: dict[str, str]) -> RollupBatch:
        work: Work = {}
        for key, message in messages:
            bom = None
            if isinstance(message, BomDeclared):
                bom = docs[message.bom.product_id].encode()
            work.setdefault(key, []).append((bom, message))
        batch = roll_up(work, self.rows.get, self.local, PARTITIONS, self.spill)
        self.rows.update(batch.rows)
        self.topic.extend(batch.others)
        return batch


def _docs(boms: dict[str, BillOfMaterials]) -> dict[str, str]:
    return {pid: b.model_dump_json(by_alias=True) for pid, b in boms.items()}


def test_one_batch_with_every_node_local_gives_the_batch_results_once_per_product(
    chain: tuple[list[Message], dict[str, BillOfMaterials], dict[str, RollupResult]],
) -> None:
    messages, boms, expected = chain
    node = _Node(set(range(PARTITIONS)))
    batch = node.batch(keyed(messages), _docs(boms))
    assert node.topic == [], "every message was for a local node"
    results = {r.product_id: r.result for r in batch.results.values()}
    assert results == expected
    assert len(batch.results) == len(expected), "one result per product"
    # every product's last result is the one its row holds
    for key, rolled in batch.results.items():
        row = batch.rows[key]
        assert row.product is not None and row.component is not None
        assert row.product.bom == _docs(boms)[rolled.product_id]


@pytest.mark.parametrize("local", [set(), set(range(PARTITIONS))], ids=["no-local", "spill-0"])
def test_without_local_delivery_the_messages_go_round_the_topic_to_the_same_results(
    chain: tuple[list[Message], dict[str, BillOfMaterials], dict[str, RollupResult]],
    local: set[int],
) -> None:
    # no partition of this worker's (only the batch's own nodes are), or all of them with a
    # spill limit of 0: every message a batch makes goes round the topic
    messages, boms, expected = chain
    node = _Node(local, spill=0 if local else SPILL)
    pending = keyed(messages)
    latest: dict[str, RollupResult] = {}
    for _ in range(50):
        node.topic = []
        batch = node.batch(pending, _docs(boms))
        if local:
            assert batch.applied == [], "past the spill limit, nothing is applied locally"
        else:  # (only the batch's own nodes are this worker's)
            assert {k for k, _ in batch.applied} <= {k for k, _ in pending}
        latest.update({r.product_id: r.result for r in batch.results.values()})
        pending = node.topic
        if not pending:
            break
    assert latest == expected


@pytest.fixture(scope="module")
def serde() -> AvroSerde:
    registry = InMemorySchemaRegistry()
    register_all(registry, "t.")
    return AvroSerde(registry)


SIGNER = HandoffSigner(Ed25519PrivateKey.generate(), "urn:pcfx:streams", "streams-k1")


def _published(
    serde: AvroSerde, publisher: Publisher, node: _Node, batch: RollupBatch
) -> list[tuple[bytes, RolledUpFootprint]]:
    publication = publisher.publish(batch.results, batch.rows, lambda: NOW)
    assert publication.unwritable == []
    node.rows.update(publication.rows)
    assert len(publication.headers) == len(publication.records)
    roots = {dict(h)[HEADER_ROOT_SIGNATURE] for h in publication.headers}
    assert len(roots) <= 1, "one signature for the whole batch"
    return [(k, serde.decode(v, RolledUpFootprint)) for k, v in publication.records]


def _update(message: Message, sequence: int) -> FootprintDeclared:
    assert isinstance(message, FootprintDeclared)
    fp = message.footprint
    figures = {k: v * 2 for k, v in fp.figures.items()}
    return FootprintDeclared(dataclasses.replace(fp, sequence=sequence, figures=figures))


def test_a_product_publishes_once_per_batch_and_deprecates_its_predecessor_once(
    chain: tuple[list[Message], dict[str, BillOfMaterials], dict[str, RollupResult]],
    serde: AvroSerde,
) -> None:
    messages, boms, _ = chain
    node = _Node(set(range(PARTITIONS)))
    publisher = Publisher(serde, PRODUCTS, SIGNER)
    first = _published(serde, publisher, node, node.batch(keyed(messages), _docs(boms)))
    assert len(first) == len({k for k, _ in first}) == len(boms), "one record per product"
    assert all(r.footprint is not None and r.footprint.status == "Active" for _, r in first)
    issued = {k: r.footprint.id for k, r in first if r.footprint is not None}

    # a leaf updated twice in one batch: each product above it publishes once, after the
    # Deprecated copy of its previous footprint, and only the last update counts
    leaf = next(m for m in messages if isinstance(m, FootprintDeclared))
    updates = [_update(leaf, 2), _update(_update(leaf, 3), 3)]
    batch = node.batch(keyed(updates), _docs(boms))
    assert batch.results, "the update reached some products"
    second = _published(serde, publisher, node, batch)
    by_product: dict[bytes, list[RolledUpFootprint]] = {}
    for key, record in second:
        by_product.setdefault(key, []).append(record)
    for key, records in by_product.items():
        deprecated, new = records
        assert deprecated.footprint is not None and new.footprint is not None
        assert deprecated.footprint.status == "Deprecated"
        assert deprecated.footprint.id == issued[key]
        assert new.footprint.status == "Active"
        assert list(new.footprint.preceding_pf_ids or ()) == [issued[key]]
        earlier = dict(first)[key]
        assert earlier.footprint is not None
        assert deprecated == earlier.model_copy(
            update={"footprint": earlier.footprint.model_copy(update={"status": "Deprecated"})}
        ), "nothing but the status changed"
    rolled: list[ProductRolledUp] = list(batch.results.values())
    assert {r.product_id.encode() for r in rolled} == set(by_product)


def test_the_deprecated_copy_is_the_same_whichever_publisher_makes_it(
    chain: tuple[list[Message], dict[str, BillOfMaterials], dict[str, RollupResult]],
    serde: AvroSerde,
) -> None:
    # a successor worker (a fresh publisher, only the stored rows) sends the same records
    messages, boms, _ = chain
    fresh = _Node(set(range(PARTITIONS)))
    initial = fresh.batch(keyed(messages), _docs(boms))
    warm = Publisher(serde, PRODUCTS, SIGNER)
    fresh.rows.update(warm.publish(initial.results, initial.rows, lambda: NOW).rows)
    again = fresh.batch(keyed(messages), _docs(boms))
    assert again.results == {}, "a redelivered batch changes nothing, so publishes nothing"
    leaf = next(m for m in messages if isinstance(m, FootprintDeclared))
    batch = fresh.batch(keyed([_update(leaf, 2)]), _docs(boms))
    from_memory = warm.publish(batch.results, batch.rows, lambda: NOW)
    cold = Publisher(serde, PRODUCTS, SIGNER)
    from_row = cold.publish(batch.results, batch.rows, lambda: NOW)
    assert from_memory.records and from_memory.records == from_row.records


def test_a_result_no_record_can_hold_goes_to_the_dlq_and_the_others_are_published(
    chain: tuple[list[Message], dict[str, BillOfMaterials], dict[str, RollupResult]],
    serde: AvroSerde,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (which figures no record can hold is streams.adapt's to say, tested there)
    messages, boms, _ = chain
    node = _Node(set(range(PARTITIONS)))
    batch = node.batch(keyed(messages), _docs(boms))
    (key, huge), *rest = batch.results.items()
    build, fast = adapt.rolled_up_record, adapt.rolled_up_datum

    def rolled_up_datum(result: RollupResult, **kwargs: Any) -> dict[str, Any] | None:
        # (the compiled rules cannot say yes: the publisher asks the models)
        return None if result.product_id == huge.product_id else fast(result, **kwargs)

    def rolled_up_record(result: RollupResult, **kwargs: Any) -> RolledUpFootprint:
        if result.product_id == huge.product_id:
            raise RollupError(f"'pcf.x' of the roll-up of {result.product_id} is too large")
        return build(result, **kwargs)

    monkeypatch.setattr(_publish, "rolled_up_datum", rolled_up_datum)
    monkeypatch.setattr(_publish, "rolled_up_record", rolled_up_record)
    publication = Publisher(serde, PRODUCTS, SIGNER).publish(batch.results, batch.rows, lambda: NOW)
    (unwritable,) = publication.unwritable
    assert unwritable.result is huge and isinstance(unwritable.error, RollupError)
    published = {k for k, _ in publication.records}
    assert published == {r.product_id.encode() for _, r in rest}
    assert key not in publication.rows, "nothing was issued for it: its predecessor stands"


# --- the worker process's garbage collector ------------------------------------------------------


def test_a_worker_collects_less_often_and_still_frees_cyclic_garbage() -> None:
    """``collect_less`` (what ``run_worker`` does before the worker starts) freezes what is alive
    at start-up and raises the thresholds; a reference cycle dropped afterwards is still freed by
    the collector on its own, once enough allocations have happened."""
    import gc
    import weakref

    from pcf_exchange.streams._memory import GC_THRESHOLDS, collect_less

    class Node:
        other: Any = None

    before = gc.get_threshold()
    gc.collect()
    try:
        collect_less()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > before[0]
        assert gc.get_freeze_count() > 1000  # (the modules and classes loaded so far)
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # (a cycle: reference counting alone does not free it)
        kept: list[list[int]] = []
        for _ in range(GC_THRESHOLDS[0] * 2):  # allocations past the young threshold
            kept.append([])
            if gone() is None:
                break
        assert gone() is None, "the collector never freed the cycle"
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
