"""Redelivery is not replay (#22): a worker killed mid-stream, restarted, reads again every record
after its last committed offset, with the ledger rows it flushed for them already stored. None
of those legitimate records may reach the DLQ, and the subject's newest record stays in force.

The crash model is the ingest agent's (:meth:`streams.runtime.App.ingest`): per batch, check
(:func:`~streams._ingest_step.check_batch`), flush the ledger rows, forward, commit the offsets;
a kill can land after any of those steps, and the successor starts from the last committed
offset with the rows that reached the changelog (the held ones are lost with the process).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from pcf_exchange.contracts import parse_footprint, sign
from pcf_exchange.streams._ingest_step import TableLedger, check_batch, latest
from pcf_exchange.streams.ingest import IngestOutcome, SequenceLedger, SourceRef, check_record
from tests.contracts.conftest import FOOTPRINT_JSON
from tests.streams.test_ingest import SUPPLIER, T0, World

PRODUCTS = [f"urn:pact:example-cells.cn:product-id:P{i}" for i in range(3)]
SEQUENCES = (2, 4, 6, 8)


def _records(world: World) -> list[tuple[str, int, bytes]]:
    """(product, sequence, bytes) of a supplier's legitimate records, each product's in rising
    order, the products interleaved as a publisher would send them."""
    out = []
    for seq in SEQUENCES:
        for product in PRODUCTS:
            doc = copy.deepcopy(FOOTPRINT_JSON)
            doc["productIds"] = [product]
            doc["comment"] = f"{product} at {seq}"  # each sequence its own content
            signed = sign(
                world.supplier,
                parse_footprint(doc),
                supplier_id=SUPPLIER,
                key_id="s-1",
                sequence=seq,
            )
            out.append((product, seq, world.serde.encode("pcf.declared", signed)))
    return out


WORLD = World()
assert WORLD.register(SUPPLIER, WORLD.supplier, "s-1").outcome is IngestOutcome.ACCEPTED
RECORDS = _records(WORLD)


@dataclass
class Worker:
    """One incarnation of an ingest agent over the durable table (the changelog)."""

    table: dict[bytes, bytes]

    def __post_init__(self) -> None:
        self.rows = TableLedger(self.table)
        self.ledger = SequenceLedger(self.rows)

    def check(self, data: bytes, source: SourceRef):
        return check_record(data, source, serde=WORLD.serde, keys=WORLD.keys, ledger=self.ledger)


# where a kill lands in a batch: before the rows are flushed, after the flush, after the
# forward (all before the offsets are committed), or not at all
STEPS = st.sampled_from(["checked", "flushed", "forwarded", "committed"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 7), STEPS), min_size=1, max_size=12))
def test_any_interleaving_of_redeliveries_rejects_no_legitimate_record(
    schedule: list[tuple[int, str]],
) -> None:
    table: dict[bytes, bytes] = {}
    worker = Worker(table)
    committed = 0
    forwarded: dict[str, int] = {}
    superseded = duplicates = 0
    read_again = False  # a kill after the rows were stored: the successor reads them again
    plan = iter(schedule)
    while committed < len(RECORDS):
        size, stop = next(plan, (len(RECORDS), "committed"))
        batch_records = [
            (i, SourceRef("pcf.declared", 0, i, T0, product.encode()), data)
            for i, (product, _, data) in enumerate(RECORDS[committed : committed + size], committed)
        ]
        batch = check_batch(batch_records, worker.check, worker.rows)
        assert batch.rejected == [], [r.error for r, _ in batch.rejected]
        assert batch.parked == [] and batch.held == []
        # every record of the batch is exactly one of checked or superseded
        assert len(batch.checked) + len(batch.superseded) == len(batch_records)
        superseded += len(batch.superseded)
        duplicates += sum(r.outcome is IngestOutcome.DUPLICATE for r in batch.checked)
        if stop == "checked":  # killed: the held rows die with the process
            worker = Worker(table)
            continue
        worker.rows.flush()
        for result in latest(batch.checked):
            assert result.record is not None
            forwarded[result.subject] = max(
                forwarded.get(result.subject, 0), result.record.sequence
            )
        if stop != "committed":  # killed before the commit: read again from `committed`
            worker = Worker(table)
            read_again = True
            continue
        committed += len(batch_records)
    # each subject's newest record was forwarded and is the one in force
    newest = {f"footprint:{SUPPLIER}/{p}": SEQUENCES[-1] for p in PRODUCTS}
    assert forwarded == newest
    assert {s: worker.ledger.seen[s][0] for s in newest} == newest
    # what was read again is counted (and only that: a first reading is never counted)
    assert (superseded + duplicates > 0) == read_again


def test_a_restarted_worker_counts_a_redelivered_batch_and_rejects_nothing() -> None:
    table: dict[bytes, bytes] = {}
    first = Worker(table)
    records = [
        (i, SourceRef("pcf.declared", 0, i, T0, p.encode()), data)
        for i, (p, _, data) in enumerate(RECORDS)
    ]
    assert len(check_batch(records, first.check, first.rows).checked) == len(RECORDS)
    first.rows.flush()  # killed here: the rows are stored, the offsets are not committed
    second = Worker(table)
    again = check_batch(records, second.check, second.rows)
    assert again.rejected == []
    # each product's newest record is a duplicate, forwarded again; its older ones superseded
    assert [r.outcome for r in again.checked] == [IngestOutcome.DUPLICATE] * len(PRODUCTS)
    assert {r.record.sequence for r in again.checked if r.record} == {SEQUENCES[-1]}
    assert len(again.superseded) == len(RECORDS) - len(PRODUCTS)
    assert second.ledger.counts == {
        IngestOutcome.DUPLICATE: len(PRODUCTS),
        IngestOutcome.SUPERSEDED: len(RECORDS) - len(PRODUCTS),
    }


def test_an_attack_still_goes_to_the_dlq_after_a_restart() -> None:
    # a forged record and a sequence reused for other content are refused, restart or not
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    table: dict[bytes, bytes] = {}
    worker = Worker(table)
    product, seq, data = RECORDS[-1]
    src = SourceRef("pcf.declared", 0, 0, T0, product.encode())
    assert check_batch([(0, src, data)], worker.check, worker.rows).checked
    worker.rows.flush()
    worker = Worker(table)
    doc = copy.deepcopy(FOOTPRINT_JSON)
    doc["productIds"] = [product]
    forged = WORLD.serde.encode(
        "pcf.declared",
        sign(
            Ed25519PrivateKey.generate(),
            parse_footprint(doc),
            supplier_id=SUPPLIER,
            key_id="s-1",
            sequence=seq + 2,
        ),
    )
    doc["comment"] = "other content under a sequence already used"
    reused = WORLD.serde.encode(
        "pcf.declared",
        sign(
            WORLD.supplier, parse_footprint(doc), supplier_id=SUPPLIER, key_id="s-1", sequence=seq
        ),
    )
    batch = check_batch([(1, src, forged), (2, src, reused)], worker.check, worker.rows)
    reasons = [r.error.reason for r, _ in batch.rejected if r.error is not None]  # type: ignore[attr-defined]
    assert reasons == ["bad_signature", "sequence_reused"]
    assert batch.checked == [] and batch.superseded == []
