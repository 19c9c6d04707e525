"""The broker the tests run on is a real Kafka: partitions, acks=all, consumer groups, committed
offsets and transactions behave as Apache Kafka's do."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = pytest.mark.broker


def _drain(consumer: KafkaConsumer, expected: int, rounds: int = 40) -> list[tuple[int, bytes]]:
    seen: list[tuple[int, bytes]] = []
    for _ in range(rounds):
        for records in consumer.poll(timeout_ms=500).values():
            seen.extend((r.partition, r.value) for r in records)
        if len(seen) >= expected:
            break
    return seen


def test_topic_has_three_partitions_and_acks_all_round_trips(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=3)
    described = kafka_admin.describe_topics([topic])
    assert len(described[0]["partitions"]) == 3

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    metas = [
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode()).get(timeout=30)
        for i in range(30)
    ]
    producer.close()
    assert {m.partition for m in metas} == {0, 1, 2}, "keys spread over all three partitions"

    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    seen = _drain(consumer, 30)
    assert sorted(v for _, v in seen) == sorted(f"v{i}".encode() for i in range(30))
    consumer.commit()
    committed = {p: consumer.committed(TopicPartition(topic, p)) for p in range(3)}
    consumer.close()

    per_partition = {p: sum(1 for m in metas if m.partition == p) for p in range(3)}
    assert committed == per_partition, "committed offset = records consumed per partition"
    offsets = kafka_admin.list_group_offsets(group)[group]
    assert {tp.partition: om.offset for tp, om in offsets.items()} == per_partition


def test_aborted_transaction_is_invisible_to_read_committed(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=1)
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        transactional_id=f"tx-{uuid.uuid4().hex[:8]}",
        acks="all",
    )
    producer.init_transactions()
    producer.begin_transaction()
    producer.send(topic, value=b"aborted-1")
    producer.send(topic, value=b"aborted-2")
    producer.flush()
    producer.abort_transaction()
    producer.begin_transaction()
    producer.send(topic, value=b"committed")
    producer.commit_transaction()
    producer.close()

    def read(isolation: str) -> list[bytes]:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level=isolation,
        )
        values = [v for _, v in _drain(consumer, 3, rounds=12)]
        consumer.close()
        return values

    assert read("read_committed") == [b"committed"]
    assert sorted(read("read_uncommitted")) == [b"aborted-1", b"aborted-2", b"committed"]
