"""The roll-up topic's packs: every message reaches its node's partition, in order, and no
record outgrows what the broker takes; a batch applies the ones for its own partitions itself
(up to its spill limit), says so, and the topic carries the rest to the same results."""

from __future__ import annotations

import itertools
import random

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcf_exchange.streams import codec
from pcf_exchange.streams._packs import PACK_MAX_BYTES
from pcf_exchange.streams._packs import echo_stamp as _echo_stamp
from pcf_exchange.streams._packs import keyed as _keyed
from pcf_exchange.streams._packs import node_key as _node_key
from pcf_exchange.streams._packs import packs as _packs
from pcf_exchange.streams._packs import partition as _partition
from pcf_exchange.streams._rollup_step import NodeRecord, Work, roll_up
from pcf_exchange.streams.rollup import ChildValue, Ref, RollupResult, Subscribe, run_batch
from tests.streams._rollup_scenarios import Scenario, scenarios


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


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenarios(max_tiers=4),
    st.sets(st.integers(0, 5)),
    st.integers(0, 12),
    st.integers(0, 2**32 - 1),
)
def test_local_delivery_applies_what_it_says_and_the_topic_gets_the_rest(
    scenario: Scenario, local: set[int], spill: int, seed: int
) -> None:
    # one worker's batches (its rows, the partitions it holds, a small spill limit), the topic
    # between them: what a batch applied itself comes back only to another app (here, at
    # random, as after a restart: DUPLICATE no-ops), the rest is the next batches' work
    rng = random.Random(seed)
    rows: dict[bytes, NodeRecord] = {}
    topic = _keyed(scenario.messages())
    latest: dict[str, RollupResult] = {}
    for _ in range(400):
        if not topic:
            break
        n = rng.randint(1, len(topic))
        taken, topic = topic[:n], topic[n:]
        work: Work = {}
        for key, message in taken:
            work.setdefault(key, []).append((None, message))
        batch = roll_up(work, rows.get, local, 6, spill)
        rows.update(batch.rows)
        latest.update({r.product_id: r.result for r in batch.results.values()})
        # applied: only for this worker's nodes (its partitions, or the batch's own), at most
        # the spill limit of them
        for key, _ in batch.applied:
            assert _partition(key, 6) in local or key in work
        assert len(batch.applied) <= spill
        # each input's last value per parent only
        values = [(m.parent, m.child) for _, m in batch.others if isinstance(m, ChildValue)]
        assert len(values) == len(set(values))
        echoed = batch.applied if rng.random() < 0.3 else []
        topic.extend(echoed + batch.others)
    else:
        raise AssertionError("the batches did not settle")
    assert {p: r.content_hash for p, r in latest.items()} == {
        p: r.content_hash for p, r in run_batch(*scenario.latest()).items()
    }


def test_an_echo_stamp_names_the_app_and_its_consumer_generation() -> None:
    a, b = b"A" * 8, b"B" * 8
    assert _echo_stamp(a, 3) == _echo_stamp(a, 3)
    assert len({_echo_stamp(a, 3), _echo_stamp(b, 3), _echo_stamp(a, 4), _echo_stamp(a, -1)}) == 4
