"""The sink counts a record as sent only when a real broker acknowledged it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer

from pcf_exchange.contracts.errors import BrokerError
from pcf_exchange.infra.kafka.launcher import free_port
from pcf_exchange.producers.delivery import KafkaSink, Outgoing


@pytest.mark.broker
def test_every_record_is_acknowledged_with_its_offset(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=3)
    with KafkaSink(kafka_bootstrap) as sink:
        sink.check_reachable()
        futures = [
            sink.send(Outgoing(topic, f"k{i}".encode(), f"v{i}".encode(), f"rec#{i}"))
            for i in range(200)
        ]
        reports = [f.result(timeout=60) for f in futures]
    assert all(r.ok for r in reports)
    assert [r.ref for r in reports] == [f"rec#{i}" for i in range(200)]
    assert len({(r.partition, r.offset) for r in reports}) == 200
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    seen = 0
    for _ in range(30):
        seen += sum(len(v) for v in consumer.poll(timeout_ms=500).values())
        if seen >= 200:
            break
    consumer.close()
    assert seen == 200


@pytest.mark.broker
def test_futures_can_be_awaited(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic()

    async def publish() -> list[bool]:
        with KafkaSink(kafka_bootstrap) as sink:
            futures = [sink.send(Outgoing(topic, b"k", b"v", str(i))) for i in range(10)]
            return [(await asyncio.wrap_future(f)).ok for f in futures]

    assert asyncio.run(publish()) == [True] * 10


def test_unreachable_broker_fails_fast_and_claims_nothing() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"  # nobody listens here
    sink = KafkaSink(bootstrap, delivery_timeout_s=2)
    with pytest.raises(BrokerError, match=f"no Kafka broker answered at {bootstrap}"):
        sink.check_reachable(timeout_s=2)
    report = sink.send(Outgoing("t", b"k", b"v", "only#0")).result(timeout=30)
    sink.close(timeout_s=5)
    assert not report.ok
    assert report.offset is None
    assert report.error


@pytest.mark.broker
def test_inline_reports_run_on_the_caller_and_the_thread_serves_again_after(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    import threading
    import time

    topic = new_topic()
    caller = threading.get_ident()
    served_on: list[int] = []
    answers: list[tuple[object, int | None]] = []

    def on_delivery(err: object, msg: object) -> None:
        served_on.append(threading.get_ident())
        answers.append((err, None if err is not None else msg.offset()))  # type: ignore[attr-defined]

    with KafkaSink(kafka_bootstrap) as sink:
        with sink.inline():
            time.sleep(0.3)  # a poll the thread was already in returns within 0.1 s
            for i in range(50):
                assert sink.produce(topic, f"k{i}".encode(), b"v", on_delivery) is None
            time.sleep(1.0)  # acknowledged by now, but nobody served the reports yet
            assert answers == []
            deadline = time.monotonic() + 30
            while len(answers) < 50 and time.monotonic() < deadline:
                sink.serve()
                time.sleep(0.05)
        assert len(answers) == 50 and set(served_on) == {caller}
        assert all(err is None for err, _ in answers)
        assert sorted(offset for _, offset in answers) == list(range(50))  # type: ignore[type-var]
        # outside inline(), the delivery thread serves again: a future resolves on its own
        report = sink.send(Outgoing(topic, b"k", b"v", "after#0")).result(timeout=30)
        assert report.ok and report.offset == 50
