"""``ExchangeSession.read`` (the demo's and the broker tests' reads of a topic) reads each
partition up to the end offset it had when the read began, and returns then: it does not wait
for the topic to fall idle (it used to, for 2-3 s on every read, so every poll of
``wait_for`` and every look at the DLQ cost that much)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from kafka import KafkaProducer

from pcf_exchange.contracts.kafka_client import kafka_python_kwargs
from pcf_exchange.pcfx._exchange import ExchangeSession

pytestmark = pytest.mark.broker

IDLE_S = 60.0


class _Bytes:
    """A serde stand-in: a record is its value's bytes."""

    def decode(self, value: bytes, _model: Any) -> bytes:
        return value


@dataclass
class _Session(ExchangeSession):
    read_idle_s: ClassVar[float] = IDLE_S  # a read that waited for idleness would take 60 s

    bootstrap: str
    prefix: str = ""
    serde: Any = field(default_factory=_Bytes)


def test_a_read_returns_every_record_up_to_the_end_at_once(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=6)
    sent = [f"record {n}".encode() for n in range(300)]
    producer = KafkaProducer(**kafka_python_kwargs(), bootstrap_servers=kafka_bootstrap)
    try:
        for n, value in enumerate(sent):
            producer.send(topic, key=str(n).encode(), value=value)
        producer.flush(timeout=60)
    finally:
        producer.close()
    session = _Session(kafka_bootstrap)
    started = time.monotonic()
    got = session.read(topic, bytes)
    assert time.monotonic() - started < IDLE_S / 2, "the read waited for the topic to fall idle"
    assert sorted(got) == sorted(sent)
    # per partition in offset order: the records of one key keep the order they were sent in
    producer = KafkaProducer(**kafka_python_kwargs(), bootstrap_servers=kafka_bootstrap)
    try:
        for n in range(5):
            producer.send(topic, key=b"one key", value=f"version {n}".encode())
        producer.flush(timeout=60)
    finally:
        producer.close()
    versions = [v for v in session.read(topic, bytes) if v.startswith(b"version ")]
    assert versions == [f"version {n}".encode() for n in range(5)]


def test_an_empty_topic_and_one_not_created_read_as_nothing_at_once(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    session = _Session(kafka_bootstrap)
    started = time.monotonic()
    assert session.read(new_topic(partitions=3), bytes) == []
    assert session.read(f"absent-{uuid.uuid4().hex[:12]}", bytes) == []
    assert time.monotonic() - started < IDLE_S / 2, "a read waited for the topic to fall idle"
