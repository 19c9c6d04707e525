"""Thin confluent-kafka helpers: configs, partition counts, reading partitions to their end.

Topics are created and checked from the one table, :mod:`contracts.topics`.

Every librdkafka failure leaves this module as :class:`BrokerError` (``from`` the original).
Readers are ``read_committed``: an aborted transaction's records are never seen, and a reader
stops at the last stable offset, so an open transaction is never half-read.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from contracts.errors import BrokerError
from contracts.kafka_client import librdkafka_config

__all__ = [
    "consumer_config",
    "coords",
    "fetch_one",
    "partition_count",
    "producer_config",
    "read_to_end",
]


def coords(message: Message) -> tuple[str, int, int]:
    """``(topic, partition, offset)`` of a consumed data message (never ``None`` there)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def consumer_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        **librdkafka_config(),
        "bootstrap.servers": bootstrap,
        "group.id": f"pcfx-reader-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    config.update(extra)
    return config


def producer_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        **librdkafka_config(),
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
    }
    config.update(extra)
    return config


def partition_count(bootstrap: str, topic: str, *, timeout_s: float = 15.0) -> int:
    """How many partitions *topic* has (0 when it does not exist)."""
    admin = AdminClient(librdkafka_config(**{"bootstrap.servers": bootstrap}))
    try:
        meta = admin.list_topics(topic=topic, timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerError(f"cannot read metadata of '{topic}': {exc}") from exc
    found = meta.topics.get(topic)
    if found is None or found.error is not None:
        return 0
    return len(found.partitions)


def read_to_end(
    bootstrap: str,
    partitions: Sequence[tuple[str, int]],
    *,
    start: Mapping[tuple[str, int], int] | None = None,
    timeout_s: float = 60.0,
    batch: int = 2000,
) -> Iterator[Message]:
    """Every committed record of *partitions* from their start (or *start*) to their current end.

    Ends when each partition reported end-of-partition (the last stable offset). A partition
    that cannot be read to its end within *timeout_s* raises :class:`BrokerError`.
    """
    if not partitions:
        return
    consumer = Consumer(
        consumer_config(
            bootstrap,
            **{
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,
                "fetch.queue.backoff.ms": 10,
            },
        )
    )
    try:
        offsets = start or {}
        consumer.assign(
            [
                TopicPartition(t, p, offsets.get((t, p), -2))  # -2: OFFSET_BEGINNING
                for t, p in partitions
            ]
        )
        waiting = set(partitions)
        deadline = time.monotonic() + timeout_s
        while waiting:
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"could not read {sorted(waiting)} to the end within {timeout_s:.0f} s"
                )
            for message in consumer.consume(num_messages=batch, timeout=0.05):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        waiting.discard((message.topic(), message.partition()))
                        continue
                    if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        waiting.discard((message.topic(), message.partition()))
                        continue
                    raise BrokerError(f"reading {message.topic()}: {error.str()}")
                yield message
    except KafkaException as exc:
        raise BrokerError(f"reading {sorted(set(partitions))}: {exc}") from exc
    finally:
        consumer.close()


def fetch_one(
    bootstrap: str, topic: str, partition: int, offset: int, *, timeout_s: float = 20.0
) -> Message | None:
    """The committed record at (*topic*, *partition*, *offset*), or ``None`` if it is gone."""
    for message in read_to_end(
        bootstrap, [(topic, partition)], start={(topic, partition): offset}, timeout_s=timeout_s
    ):
        found = coords(message)[2]
        if found == offset:
            return message
        if found > offset:
            return None
    return None
