"""The ingest agents' batch bookkeeping: the ledger rows a batch writes reach the table once per
subject, on the partition of the record that wrote them, and only each subject's last checked
record is forwarded to the roll-up."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from faust.streams import _current_event
from hypothesis import given
from hypothesis import strategies as st

from pcf_exchange.streams import codec
from pcf_exchange.streams._ingest_step import TableLedger as _TableLedger
from pcf_exchange.streams._ingest_step import latest as _latest
from pcf_exchange.streams.ingest import Ingested, IngestOutcome, SequenceLedger, SourceRef

AT = datetime(2026, 1, 1, tzinfo=UTC)


class _Table(dict[bytes, bytes]):
    """A faust table as the ledger uses it, noting the changelog partition of each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[bytes, tuple[int, str], int]] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        event: Any = _current_event.get()()  # type: ignore[misc]
        self.writes.append((key, codec.decode(tuple[int, str], value), event.message.partition))
        super().__setitem__(key, value)


def _checked(subject: str, offset: int) -> Ingested:
    source = SourceRef("pcf.declared", 0, offset, AT, subject.encode())
    return Ingested(IngestOutcome.ACCEPTED, source, subject=subject)


@given(st.lists(st.sampled_from("abcdef"), max_size=40))
def test_only_each_subjects_last_record_is_forwarded_in_order(subjects: list[str]) -> None:
    checked = [_checked(s, offset) for offset, s in enumerate(subjects)]
    forwarded = _latest(checked)
    last = {s: offset for offset, s in enumerate(subjects)}
    assert [r.source.offset for r in forwarded] == sorted(last.values())
    assert {r.subject for r in forwarded} == set(subjects)
    if len(set(subjects)) == len(subjects):
        assert forwarded == checked


def test_ledger_rows_are_held_until_the_batch_is_flushed_then_written_once() -> None:
    table = _Table()
    dict.__setitem__(table, b"old", codec.encode((3, "h3")))  # stored by an earlier batch
    rows = _TableLedger(table)
    ledger = SequenceLedger(rows)
    for partition, (subject, sequence) in [(1, ("a", 1)), (2, ("b", 1)), (1, ("a", 2))]:
        rows.at("pcf.declared", partition)
        ledger.record(subject, sequence, f"h{sequence}")
    ledger.record("old", 4, "h4")
    # the batch sees its own writes; the table has none of them yet
    assert ledger.judge("a", 2, "h2") is IngestOutcome.DUPLICATE
    assert ledger.judge("a", 1, "h1") is not IngestOutcome.ACCEPTED
    assert table.writes == []
    assert sorted(rows) == ["a", "b", "old"] and len(rows) == 3
    rows.flush()
    # one write per subject, its last value, on the partition of the record that wrote it
    # ("old" was written while partition 1 was current)
    assert sorted(table.writes) == [
        (b"a", (2, "h2"), 1),
        (b"b", (1, "h1"), 2),
        (b"old", (4, "h4"), 1),
    ]
    assert rows.held == {}
    assert rows["a"] == (2, "h2") and rows["old"] == (4, "h4")


def test_a_held_row_can_be_deleted_before_and_after_it_is_written() -> None:
    table = _Table()
    rows = _TableLedger(table)
    rows.at("pcf.declared", 0)
    rows["a"] = (1, "h1")
    del rows["a"]
    assert "a" not in rows and table == {}
    rows["a"] = (1, "h1")
    rows.flush()
    del rows["a"]
    assert "a" not in rows and table == {}
