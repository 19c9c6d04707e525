"""The roll-up topic's packs: every message reaches its node's partition, in order, and no
record outgrows what the broker takes."""

from __future__ import annotations

import itertools

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from streams import codec
from streams.rollup import Ref, Subscribe
from streams.runtime import PACK_MAX_BYTES, _keyed, _node_key, _packs, _partition


def _subscribe(child: str, parent: str = "urn:parent") -> Subscribe:
    return Subscribe(Ref.product(child), parent, 1)


@given(st.lists(st.text(min_size=1, max_size=40), max_size=60), st.integers(1, 12))
def test_every_message_lands_in_its_nodes_partition_in_order(
    children: list[str], partitions: int
) -> None:
    messages = [_subscribe(c) for c in children]
    packs = _packs(_keyed(messages), partitions)
    kafka = DefaultPartitioner()
    received: dict[int, list[Subscribe]] = {}
    for partition, data in packs:
        for message in codec.decode_pack(data):
            key = _node_key(message)
            # the partition Kafka's own client would pick for the key
            assert partition == _partition(key, partitions)
            assert partition == kafka(key, list(range(partitions)), list(range(partitions)))
            received.setdefault(partition, []).append(message)
    assert sorted(m.child.id for ms in received.values() for m in ms) == sorted(children)
    for partition, got in received.items():  # per partition, in the order they were sent
        assert got == [m for m in messages if _partition(_node_key(m), partitions) == partition]
    assert len(packs) == len(received), "one pack per partition (all small)"


def test_a_big_batch_is_split_into_packs_the_broker_takes() -> None:
    child = "x" * 2_000  # one partition: every message is for the same node
    messages = [_subscribe(child, f"urn:parent-{i}") for i in range(400)]
    packs = _packs(_keyed(messages), 6)
    assert len(packs) > 1
    assert all(len(data) <= PACK_MAX_BYTES for _, data in packs)
    # and full: the next pack's first message would not have fitted in the one before
    for (_, data), (_, after) in itertools.pairwise(packs):
        first = codec.encode_message(codec.decode_pack(after)[0])
        assert len(data) + 1 + len(first) > PACK_MAX_BYTES
    assert [m for _, data in packs for m in codec.decode_pack(data)] == messages


def test_a_message_bigger_than_a_pack_travels_alone() -> None:
    big = _subscribe("y" * (PACK_MAX_BYTES + 10))
    small = _subscribe("y" * (PACK_MAX_BYTES + 10), "urn:other")
    packs = _packs(_keyed([big, small]), 1)
    assert [codec.decode_pack(data) for _, data in packs] == [[big], [small]]


def test_a_pack_fills_up_to_the_limit_exactly() -> None:
    bare = len(codec.encode_message(_subscribe("")))

    def sized(n: int) -> Subscribe:  # a message whose encoding is n bytes long
        return _subscribe("z" * (n - bare))

    each = 80_000
    last = PACK_MAX_BYTES - 4 - 2 * each  # three messages, "[", two commas and "]"
    exact = _packs(_keyed([sized(each), sized(each), sized(last)]), 1)
    assert [len(data) for _, data in exact] == [PACK_MAX_BYTES]
    over = _packs(_keyed([sized(each), sized(each), sized(last + 1)]), 1)
    assert [len(data) for _, data in over] == [2 * each + 3, last + 3]
