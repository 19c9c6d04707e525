"""Getting bytes onto Kafka and knowing, per record, whether the broker has them.

:class:`KafkaSink` wraps confluent-kafka's librdkafka producer (12x kafka-python's throughput on
this machine, see README). It is idempotent (``enable.idempotence``: retries never duplicate or
reorder), waits for ``acks=all``, and retries with backoff inside librdkafka until
``delivery_timeout_s``. Every record gets a :class:`DeliveryReport`: a record counts as sent only
when the broker acknowledged it. ``send`` returns a :class:`concurrent.futures.Future`, so the
same sink serves scripts (``future.result()``) and asyncio code (``asyncio.wrap_future``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from pcf_exchange.contracts.errors import BrokerError
from pcf_exchange.contracts.kafka_client import librdkafka_config

__all__ = ["DeliveryReport", "KafkaSink", "Outgoing"]

KAFKA_LOGGER = logging.getLogger("producers.kafka")
"""librdkafka's log lines (connection refused, retries) go here instead of stderr: the CLI
says what went wrong in one message; an application that configures logging still sees them."""
KAFKA_LOGGER.addHandler(logging.NullHandler())


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to send, and a reference the sender understands (``file.json#3``)."""

    topic: str
    key: bytes
    value: bytes
    ref: str


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    ref: str
    topic: str
    partition: int | None
    offset: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


class KafkaSink:
    """An idempotent, acks=all producer with per-record delivery reports."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "pcfx-producer",
        linger_ms: int = 5,
        batch_size: int = 262144,
        delivery_timeout_s: float = 60.0,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self._config: dict[str, Any] = {
            **librdkafka_config(),
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "enable.idempotence": True,
            # Java's partitioner (murmur2), as faust/aiokafka and kafka-python use: a product id
            # lands in the same partition number on every topic keyed by it (co-partitioning).
            "partitioner": "murmur2_random",
            "acks": "all",
            "linger.ms": linger_ms,
            "batch.size": batch_size,
            "compression.type": "none",
            "message.timeout.ms": int(delivery_timeout_s * 1000),
            "retry.backoff.ms": 100,
            "retry.backoff.max.ms": 2000,
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "logger": KAFKA_LOGGER,
        }
        self._config.update(extra_config or {})
        self._producer = Producer(self._config)
        self._closed = threading.Event()
        self._thread_serves = threading.Event()
        """Set: the delivery thread serves the reports; clear: the caller does (:meth:`inline`)."""
        self._thread_serves.set()
        self._inline_lock = threading.Lock()
        self._inline_depth = 0
        self._poller = threading.Thread(target=self._poll_loop, name="pcfx-delivery", daemon=True)
        self._poller.start()

    def check_reachable(self, timeout_s: float = 10.0) -> None:
        """Fail fast with a clear message when no broker answers a metadata request."""
        admin = AdminClient(
            librdkafka_config(**{"bootstrap.servers": self.bootstrap, "logger": KAFKA_LOGGER})
        )
        try:
            admin.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            raise BrokerError(
                f"no Kafka broker answered at {self.bootstrap} within {timeout_s:.0f} s "
                f"({exc.args[0].str() if exc.args else exc}); nothing was sent"
            ) from exc

    def send(self, message: Outgoing) -> Future[DeliveryReport]:
        """Queue *message*; the future resolves when the broker acknowledged it or gave up."""
        future: Future[DeliveryReport] = Future()
        self.submit(message, future.set_result)
        return future

    def submit(self, message: Outgoing, on_report: Callable[[DeliveryReport], None]) -> None:
        """Queue *message* and call *on_report* once with its :class:`DeliveryReport`.

        The lighter form of :meth:`send` for batches (no future per record). *on_report* runs on
        the delivery thread (or in :meth:`flush`); keep it short and thread-safe.
        """

        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                report = DeliveryReport(message.ref, message.topic, None, None, err.str())
            else:
                report = DeliveryReport(
                    message.ref, message.topic, msg.partition(), msg.offset(), None
                )
            on_report(report)

        error = self.produce(message.topic, message.key, message.value, on_delivery)
        if error is not None:
            on_report(DeliveryReport(message.ref, message.topic, None, None, error))

    def produce(
        self, topic: str, key: bytes, value: bytes, on_delivery: Callable[[Any, Any], None]
    ) -> str | None:
        """Queue one message; librdkafka calls ``on_delivery(err, msg)`` once (``err`` ``None``:
        acknowledged, ``msg.partition()``/``msg.offset()`` say where; else a ``KafkaError``).
        Returns ``None`` when queued, else why it could not be (then *on_delivery* is never
        called). The lightest form, for callers that keep their own per-record state
        (``Publisher.publish_many``: no report object and no closure per record)."""
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=on_delivery)
                return None
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)
            except KafkaException as exc:
                return str(exc.args[0])

    def serve(self) -> None:
        """Run the callbacks of the delivery reports that arrived, on the calling thread (no
        wait). Inside :meth:`inline`, call it now and then (every few dozen records)."""
        self._producer.poll(0)

    @contextlib.contextmanager
    def inline(self) -> Iterator[None]:
        """While inside, the delivery thread stands down and the reports' callbacks run on the
        thread that calls :meth:`serve` or :meth:`flush` (``Publisher.publish_many``: between
        batches). A caller that is busy in Python anyway saves the GIL hand-over per report
        (the delivery thread takes the GIL for each callback, so each report made the two
        threads trade it); a report still arrives when :meth:`submit` waits for queue space
        (it polls) and on :meth:`flush`."""
        with self._inline_lock:
            self._inline_depth += 1
            self._thread_serves.clear()
        try:
            yield
        finally:
            with self._inline_lock:
                self._inline_depth -= 1
                if self._inline_depth == 0:
                    self._thread_serves.set()

    def flush(self, timeout_s: float = 120.0) -> int:
        """Wait for outstanding deliveries; return how many are still not reported."""
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float = 120.0) -> int:
        remaining = self.flush(timeout_s)
        self._closed.set()
        self._thread_serves.set()
        self._poller.join(timeout=5)
        return remaining

    def __enter__(self) -> KafkaSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _poll_loop(self) -> None:
        # Delivery callbacks run inside poll(); a dedicated thread keeps futures resolving
        # even while the caller is busy validating and signing the next records.
        # (:meth:`inline` pauses it: then the caller serves the reports between batches)
        while not self._closed.is_set():
            if self._thread_serves.wait(0.1):
                self._producer.poll(0.1)
