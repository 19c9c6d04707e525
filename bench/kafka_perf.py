"""Kafka's own ``ProducerPerformance`` tool, run from the same jars as the broker.

It is the baseline every producer-side figure of ours is compared with, so the settings that
matter (record size, acks, linger, batch size, compression) are explicit arguments, and the
caller passes the same ones to our pipeline.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from pcf_exchange.contracts.kafka_client import kafka_python_kwargs
from pcf_exchange.infra.kafka.launcher import java_tool

__all__ = ["PerfFigures", "ProducerSettings", "create_topic", "run_producer_perf"]

_SUMMARY = re.compile(
    r"(?P<records>\d+) records sent, (?P<rps>[\d.]+) records/sec \((?P<mbps>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th"
)


@dataclass(frozen=True)
class ProducerSettings:
    acks: str = "all"
    linger_ms: int = 5
    batch_size: int = 65536
    compression: str = "none"

    def as_props(self) -> list[str]:
        return [
            f"acks={self.acks}",
            f"linger.ms={self.linger_ms}",
            f"batch.size={self.batch_size}",
            f"compression.type={self.compression}",
        ]


@dataclass(frozen=True)
class PerfFigures:
    records: int
    records_per_s: float
    mb_per_s: float
    avg_latency_ms: float
    p50_ms: int
    p99_ms: int


def create_topic(bootstrap: str, prefix: str, partitions: int = 1) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(
        **kafka_python_kwargs(), bootstrap_servers=bootstrap, client_id="pcfx-bench"
    )
    try:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()
    return name


def run_producer_perf(
    bootstrap: str,
    topic: str,
    *,
    num_records: int,
    record_size: int,
    settings: ProducerSettings,
) -> PerfFigures:
    """Run ProducerPerformance once and parse its final summary line."""
    result = java_tool(
        "org.apache.kafka.tools.ProducerPerformance",
        [
            "--topic",
            topic,
            "--num-records",
            str(num_records),
            "--record-size",
            str(record_size),
            "--throughput",
            "-1",
            "--producer-props",
            f"bootstrap.servers={bootstrap}",
            *settings.as_props(),
        ],
    )
    matches = list(_SUMMARY.finditer(result.stdout))
    if result.returncode != 0 or not matches:
        raise RuntimeError(
            f"ProducerPerformance failed (exit {result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    last = matches[-1]
    return PerfFigures(
        records=int(last["records"]),
        records_per_s=float(last["rps"]),
        mb_per_s=float(last["mbps"]),
        avg_latency_ms=float(last["avg"]),
        p50_ms=int(last["p50"]),
        p99_ms=int(last["p99"]),
    )
