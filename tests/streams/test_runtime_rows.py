"""The nodes table's changelog, one record per partition per batch (streams._rollup_step
RowGroups, streams._faust.RowTable): whatever prefix of it survives a crash, and whatever
compaction keeps of it, reading it back gives each node's latest row written in that prefix;
dead groups are tombstoned, so the compacted changelog does not grow with the number of batches;
rows of workers before groups still read."""

from __future__ import annotations

from collections.abc import Callable

import faust
import pytest
from faust.stores import memory
from hypothesis import given, settings
from hypothesis import strategies as st

from pcf_exchange.streams import _faust, codec
from pcf_exchange.streams._rollup_step import GROUP_BYTES, GROUP_PREFIX, Changelog, RowGroups

Log = list[tuple[int, bytes, bytes | None]]  # (partition, key, value) in offset order

KEYS = [f"product:p{i}".encode() for i in range(12)]


def _home(key: bytes) -> int:
    return int(key.decode().removeprefix("product:p")) % 3


def _compacted(log: Log) -> Log:
    """What log compaction may leave: the last record of each key, tombstones dropped."""
    last = {(p, k): i for i, (p, k, _) in enumerate(log)}
    return [r for i, r in enumerate(log) if last[(r[0], r[1])] == i and r[2] is not None]


def _replay(log: Log, home: Callable[[bytes], int] = _home) -> dict[bytes, bytes]:
    groups = RowGroups(b"reader")
    rows: dict[bytes, bytes] = {}
    of_partition: dict[bytes, int] = {}
    for partition, key, value in log:
        groups.apply(key, value, partition, rows, of_partition)
    assert all(of_partition[k] == home(k) for k in rows)
    return rows


def _write(groups: RowGroups, batch: dict[bytes, bytes], log: Log) -> None:
    by_partition: dict[int, dict[bytes, bytes]] = {}
    for key, value in batch.items():
        by_partition.setdefault(_home(key), {})[key] = value
    for partition, rows in by_partition.items():
        records: Changelog = groups.write(partition, rows)
        log.extend((partition, k, v) for k, v in records)


batches = st.lists(
    st.dictionaries(st.sampled_from(KEYS), st.binary(min_size=1, max_size=8), min_size=1),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(batches, st.data())
def test_any_prefix_of_the_changelog_and_its_compaction_read_back_the_latest_rows(
    written: list[dict[bytes, bytes]], data: st.DataObject
) -> None:
    groups = RowGroups(b"writer1")
    log: Log = []
    ends: list[int] = []  # where each batch's records end
    for batch in written:
        _write(groups, batch, log)
        ends.append(len(log))
    # a crash may lose the end of the log: any prefix (a whole batch, or part of one)
    cut = data.draw(st.integers(0, len(log)), label="cut")
    prefix = log[:cut]
    expected: dict[bytes, bytes] = {}
    for partition, key, value in prefix:
        if value is not None:
            for k, row in codec.decode_rows(value):
                assert key.startswith(GROUP_PREFIX) and _home(k) == partition
                expected[k] = row
    assert _replay(prefix) == expected
    assert _replay(_compacted(prefix)) == expected


@settings(max_examples=30, deadline=None)
@given(batches)
def test_dead_groups_are_tombstoned_so_the_compacted_log_stays_small(
    written: list[dict[bytes, bytes]],
) -> None:
    groups = RowGroups(b"writer1")
    log: Log = []
    for batch in written:
        _write(groups, batch, log)
    _write(groups, dict.fromkeys(KEYS, b"last"), log)  # every partition written once more
    kept = _compacted(log)
    assert len(kept) <= 3  # one live group per partition: every earlier one is dead
    assert _replay(kept) == dict.fromkeys(KEYS, b"last")


def test_a_worker_restarted_after_a_crash_tombstones_what_its_predecessor_left_dead() -> None:
    first = RowGroups(b"writer1")
    log: Log = []
    _write(first, {KEYS[0]: b"a", KEYS[3]: b"b"}, log)  # partition 0: one group
    _write(first, {KEYS[0]: b"c", KEYS[3]: b"d"}, log)  # its successor, then the tombstone
    assert [(k.startswith(GROUP_PREFIX), v is None) for _, k, v in log] == [
        (True, False),
        (True, False),
        (True, True),
    ]
    crashed = log[:2]  # the tombstone was lost
    second = RowGroups(b"writer2")
    rows: dict[bytes, bytes] = {}
    for partition, key, value in crashed:
        second.apply(key, value, partition, rows, {})
    crashed_log = list(crashed)
    _write(second, {KEYS[6]: b"e"}, crashed_log)
    assert crashed_log[-1] == (0, log[0][1], None)  # the dead group's tombstone, now
    assert _replay(_compacted(crashed_log)) == {KEYS[0]: b"c", KEYS[3]: b"d", KEYS[6]: b"e"}


def test_plain_records_of_workers_before_groups_still_read_and_are_superseded() -> None:
    log: Log = [(0, KEYS[0], b"old0"), (0, KEYS[3], b"old3"), (1, KEYS[1], b"old1")]
    groups = RowGroups(b"writer1")
    _write(groups, {KEYS[0]: b"new0"}, log)
    assert _replay(log) == {KEYS[0]: b"new0", KEYS[3]: b"old3", KEYS[1]: b"old1"}
    assert _replay(_compacted(log)) == _replay(log)
    # a plain record after a group (a worker of the old version, mid-upgrade) wins as well
    log.append((0, KEYS[0], b"plain"))
    _write(groups, {KEYS[3]: b"new3"}, log)
    assert _replay(_compacted(log)) == {KEYS[0]: b"plain", KEYS[3]: b"new3", KEYS[1]: b"old1"}


def test_a_partition_with_more_rows_than_a_record_holds_writes_several() -> None:
    groups = RowGroups(b"writer1")
    big = {KEYS[i]: bytes(GROUP_BYTES // 3) for i in (0, 3, 6, 9)}
    records = groups.write(0, big)
    assert len(records) == 2
    assert all(len(v or b"") <= GROUP_BYTES + 64 for _, v in records)
    assert _replay([(0, k, v) for k, v in records]) == big


def test_rows_round_trip_and_bad_group_bytes_name_where_they_break() -> None:
    rows = [(b"product:a", b"\x01[1]"), (b"factor:b", b"")]
    assert codec.decode_rows(codec.encode_rows(rows)) == rows
    assert codec.decode_rows(codec.encode_rows([])) == []
    data = codec.encode_rows(rows)
    with pytest.raises(codec.CodecError, match=r"'\$\[1\]\.value' is cut off"):
        codec.decode_rows(data[:-4])
    with pytest.raises(codec.CodecError, match=r"'\$\[0\]\.value' must be 4 bytes long \(got 1"):
        codec.decode_rows(data[:19])
    with pytest.raises(codec.CodecError, match=r"must start with 0x02 \(got b'\\x01'\)"):
        codec.decode_rows(b"\x01[]")


def test_the_faust_table_reads_groups_and_plain_records_back() -> None:
    app = faust.App("test-rowtable", store="memory://")
    table = _faust.row_table(app, "nodes", 3, b"\x00" * 8)
    records = table.store_rows(0, {KEYS[0]: b"x", KEYS[3]: b"y"})
    assert table[KEYS[0]] == b"x"
    assert isinstance(table.data, memory.Store)

    class _Message:
        def __init__(self, partition: int, value: bytes | None) -> None:
            self.partition, self.value = partition, value

    class _Event:
        def __init__(self, partition: int, key: bytes, value: bytes | None) -> None:
            self.key, self.value, self.message = key, value, _Message(partition, value)

    fresh = _faust.row_table(faust.App("test-rowtable-2", store="memory://"), "nodes", 3, b"1" * 8)
    events = [_Event(0, KEYS[6], b"plain"), *(_Event(0, k, v) for k, v in records)]
    fresh.apply_changelog_batch(events)
    assert dict(fresh.items()) == {KEYS[6]: b"plain", KEYS[0]: b"x", KEYS[3]: b"y"}
    fresh.apply_changelog_batch([_Event(0, KEYS[6], None)])
    assert KEYS[6] not in fresh


def test_a_changelog_from_before_the_upgrade_restores_the_same_rows() -> None:
    """Layout-0 rows, one plain changelog record each (what workers wrote before), recovered
    into the table and read by the roll-up as the rows they were; the next batch's group
    supersedes them."""
    from pcf_exchange.streams._rollup_step import NodeRecord, ProductRecord, Rows
    from pcf_exchange.streams.rollup import Network, Ref
    from tests.streams.test_codec import scenarios_example

    network = Network()
    network.submit(*scenarios_example())
    network.run()
    nodes = {
        f"product:{pid}".encode(): NodeRecord(
            network.components.get(Ref.product(pid)),
            ProductRecord(state, bom='{"bom": 1}', issued="fp-x", issued_record=b"\x00\x02avro"),
        )
        for pid, state in network.products.items()
    }
    old = [(0, key, codec.encode_layout0(node)) for key, node in nodes.items()]
    groups = RowGroups(b"new")
    table: dict[bytes, bytes] = {}
    for partition, key, value in old:
        groups.apply(key, value, partition, table, {})
    rows = Rows(NodeRecord)
    assert {key: rows.get(key, table[key]) for key in nodes} == nodes
    key = next(iter(nodes))
    records = groups.write(0, {key: codec.encode(nodes[key])})
    log: Log = [*old, *((0, k, v) for k, v in records)]
    restored = _replay(_compacted(log), lambda _: 0)
    assert {k: Rows(NodeRecord).get(k, restored[k]) for k in nodes} == nodes
    assert restored[key][:1] == b"\x01" and all(restored[k][:1] == b"{" for k in nodes if k != key)
