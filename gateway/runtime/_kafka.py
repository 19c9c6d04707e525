"""Thin confluent-kafka helpers: configs, partition counts, fetching one record.

Reading partitions to their end is :func:`contracts.kafka_client.read_to_end` (re-exported here,
as the gateway has always named it).

Topics are created and checked from the one table, :mod:`contracts.topics`.

Every librdkafka failure leaves this module as :class:`BrokerError` (``from`` the original).
Readers are ``read_committed``: an aborted transaction's records are never seen, and a reader
stops at the last stable offset, so an open transaction is never half-read.
"""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka import KafkaException, Message
from confluent_kafka.admin import AdminClient

from pcf_exchange.contracts.errors import BrokerError
from pcf_exchange.contracts.kafka_client import librdkafka_config, read_to_end

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
