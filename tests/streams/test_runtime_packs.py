"""The roll-up topic's packs: every message reaches its node's partition, in order, and no
record outgrows what the broker takes; a batch applies the ones for its own partitions itself,
and says so."""

from __future__ import annotations

import itertools

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from streams import codec
from streams._packs import PACK_MAX_BYTES
from streams._packs import echo_stamp as _echo_stamp
from streams._packs import keyed as _keyed
from streams._packs import node_key as _node_key
from streams._packs import packs as _packs
from streams._packs import partition as _partition
from streams._rollup_step import RollupBatch, _route
from streams.rollup import Message, Ref, Subscribe


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
    # three messages (each without its layout byte), the pack's layout byte, "[", two commas
    # and "]"
    last = PACK_MAX_BYTES - 2 - 2 * each
    exact = _packs(_keyed([sized(each), sized(each), sized(last)]), 1)
    assert [len(data) for _, data in exact] == [PACK_MAX_BYTES]
    over = _packs(_keyed([sized(each), sized(each), sized(last + 1)]), 1)
    assert [len(data) for _, data in over] == [2 * each + 2, last + 1 + 2]


@given(
    st.lists(st.lists(st.sampled_from("abcdefgh"), max_size=12), min_size=1, max_size=4),
    st.sets(st.integers(0, 5)),
)
def test_local_delivery_applies_what_it_says_and_sends_every_message(
    rounds: list[list[str]], local: set[int]
) -> None:
    outputs = RollupBatch()
    sent: list[tuple[int, bytes, Message]] = []  # (round, key, message)
    for r, children in enumerate(rounds):
        new = _keyed([_subscribe(c, f"urn:parent-{r}") for c in children])
        last = r == len(rounds) - 1
        work = _route(outputs, new, local, 6, last_round=last)
        # the next round gets the messages for this worker's nodes, per node in order
        mine: dict[bytes, list[Message]] = {}
        for key, message in new:
            if _partition(key, 6) in local and not last:
                mine.setdefault(key, []).append(message)
        assert {k: [m for _, m in items] for k, items in work.items()} == mine
        assert all(event is None for items in work.values() for event, _ in items)
        sent.extend((r, k, m) for k, m in new)

    # applied: those for this worker's nodes, except the last round's (nothing applies them in
    # this batch); every other message is sent as is
    def applied(r: int, key: bytes) -> bool:
        return _partition(key, 6) in local and r < len(rounds) - 1

    assert outputs.applied == [(k, m) for r, k, m in sent if applied(r, k)]
    assert outputs.others == [(k, m) for r, k, m in sent if not applied(r, k)]
    # sending the applied ones first keeps every node's messages in order
    for node in {k for _, k, _ in sent}:
        in_order = [m for k, m in outputs.applied + outputs.others if k == node]
        assert in_order == [m for _, k, m in sent if k == node]


def test_an_echo_stamp_names_the_app_and_its_consumer_generation() -> None:
    a, b = b"A" * 8, b"B" * 8
    assert _echo_stamp(a, 3) == _echo_stamp(a, 3)
    assert len({_echo_stamp(a, 3), _echo_stamp(b, 3), _echo_stamp(a, 4), _echo_stamp(a, -1)}) == 4
