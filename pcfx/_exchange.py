"""The exchange ``pcfx demo`` runs on one machine: one topic namespace on a broker, its records
sent and read back (the broker tests' ``World`` is one too), and a worker stopped as its
supervisor would. The participants and worker command lines that tests and benchmarks build
their exchanges from are ``tests/harness.py``, which is not installed.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from pcf_exchange.contracts import (
    AvroSerde,
    Rejection,
    RolledUpFootprint,
)
from pcf_exchange.contracts.errors import BrokerError, PcfError
from pcf_exchange.contracts.kafka_client import kafka_python_kwargs
from pcf_exchange.producers.delivery import KafkaSink, Outgoing

__all__ = ["ExchangeSession", "namespace_of", "stop_worker"]


def namespace_of(product_id: str) -> str:
    """The company namespace a product id sits in, as the demo and tests register them:
    ``urn:<nid>:<first part>`` (``urn:pact:acme.cn:product-id:X`` -> ``urn:pact:acme.cn``).
    """
    return ":".join(product_id.split(":")[:3])


def stop_worker(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Stop a worker as its supervisor would: SIGTERM, then SIGKILL after *timeout_s*."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ExchangeSession:
    """One topic namespace on a broker, as the demo and the broker tests drive it: mixed into
    a class that has *bootstrap*, *prefix*, *serde*, *sink* (a :class:`KafkaSink`),
    *sequences* (subject -> the last sequence sent), *workdir* (the workers' logs are
    ``worker-*.log`` there) and *workers*.

    Sending encodes a record with the topic's schema and waits for the broker's
    acknowledgement (:class:`BrokerError` if none). Reading a topic means consuming it from the
    start up to its end offsets as the read begins (a read that gets nothing for *read_idle_s*,
    the class's default, ends there); :meth:`wait_for` polls the latest roll-ups until a
    predicate holds, and stops early, with the workers' logs, if a worker died (killed by a
    test is not dead)."""

    bootstrap: str
    prefix: str
    serde: AvroSerde
    sink: KafkaSink
    sequences: dict[str, int]
    workdir: Path
    workers: list[subprocess.Popen[bytes]]
    read_idle_s: ClassVar[float] = 2.0

    def topic(self, name: str) -> str:
        """*name* in this namespace (``pcf.products`` -> ``<prefix>pcf.products``)."""
        return self.prefix + name

    def next_sequence(self, subject: str) -> int:
        """The next sequence of *subject* (a key owner, a factor, a product's footprint)."""
        self.sequences[subject] = self.sequences.get(subject, 0) + 1
        return self.sequences[subject]

    def send(self, topic: str, key: str, record: Any) -> None:
        """*record* on *topic* (without the prefix) under *key*, acknowledged by the broker."""
        value = self.serde.encode(self.topic(topic), record)
        report = self.sink.send(Outgoing(self.topic(topic), key.encode(), value, key))
        outcome = report.result(timeout=60)
        if not outcome.ok:
            raise BrokerError(f"{topic} record for {key} was not acknowledged: {outcome.error}")

    def read(self, topic: str, model: type[Any], idle_s: float | None = None) -> list[Any]:
        """Every record of *topic* decoded as *model* (see :meth:`read_records`)."""
        return [self.serde.decode(m.value, model) for m in self.read_records(topic, idle_s)]

    def read_records(self, topic: str, idle_s: float | None = None) -> list[Any]:
        """Every record of *topic* (kafka-python ``ConsumerRecord``: key, value, headers,
        timestamp), from the start of each partition up to its end offset when the read began
        (records written meanwhile may be in it or not), each partition in offset order. The
        read ends once every partition is read to that end; should a partition's end not be
        reached, once nothing came for *idle_s* (the class's :attr:`read_idle_s`), as a read
        that waited for the topic to fall idle did every time."""
        from kafka import KafkaConsumer, TopicPartition

        idle = self.read_idle_s if idle_s is None else idle_s
        name = self.topic(topic)
        consumer = KafkaConsumer(
            **kafka_python_kwargs(),
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
        )
        try:
            partitions = sorted(consumer.partitions_for_topic(name) or ())
            if not partitions:
                return []  # (not created yet)
            tps = [TopicPartition(name, p) for p in partitions]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            pending = {tp for tp in tps if ends[tp] > 0}
            records: list[Any] = []
            quiet_since = time.monotonic()
            while pending:
                fetched = consumer.poll(timeout_ms=100)
                for batch in fetched.values():
                    records.extend(batch)
                if fetched:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= idle:
                    break
                pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
            return records
        finally:
            consumer.close()

    def latest_products(self) -> dict[str, RolledUpFootprint]:
        """The roll-up with the highest sequence per product on ``pcf.products``."""
        latest: dict[str, RolledUpFootprint] = {}
        for record in self.read("pcf.products", RolledUpFootprint):
            current = latest.get(record.product_id)
            if current is None or record.sequence >= current.sequence:
                latest[record.product_id] = record
        return latest

    def rejections(self) -> list[Rejection]:
        return self.read("pcf.rejected", Rejection)

    def worker_logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in self.workdir.glob("worker-*.log")
        )

    def wait_for(
        self,
        predicate: Callable[[dict[str, RolledUpFootprint]], bool],
        timeout_s: float = 180.0,
        what: str = "results",
    ) -> dict[str, RolledUpFootprint]:
        """The latest roll-ups once *predicate* holds for them; :class:`PcfError` (with the
        workers' logs) when a worker died or *timeout_s* passed."""
        deadline = time.monotonic() + timeout_s
        latest: dict[str, RolledUpFootprint] = {}
        while time.monotonic() < deadline:
            latest = self.latest_products()
            if predicate(latest):
                return latest
            dead = [p for p in self.workers if p.poll() not in (None, -9, -15, 0)]
            if dead:
                raise PcfError(f"a streams worker died:\n{self.worker_logs()}")
            time.sleep(0.5)
        raise PcfError(f"timed out waiting for {what}; have {sorted(latest)}\n{self.worker_logs()}")
