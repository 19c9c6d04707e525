"""Kafka's own ProducerPerformance at 250-byte records on the broker in use: the reference
figure for what this machine and broker can take, before any of our code is involved."""

from __future__ import annotations

from dataclasses import asdict

from bench.kafka_perf import ProducerSettings, create_topic, run_producer_perf
from bench.report import BenchResult, write_result
from pcf_exchange.pcfx.settings import bootstrap_servers

RECORD_SIZE = 250
NUM_RECORDS = 1_000_000


def main() -> None:
    bootstrap = bootstrap_servers()
    settings = ProducerSettings()
    topic = create_topic(bootstrap, "bench-kafka-perf")
    figures = run_producer_perf(
        bootstrap, topic, num_records=NUM_RECORDS, record_size=RECORD_SIZE, settings=settings
    )
    path = write_result(
        BenchResult(
            name="kafka_producer_perf_250b",
            unit="records/s",
            value=figures.records_per_s,
            higher_is_better=True,
            description=f"Kafka ProducerPerformance, {NUM_RECORDS:,} x {RECORD_SIZE} B, "
            f"acks={settings.acks}, linger.ms={settings.linger_ms}, "
            f"batch.size={settings.batch_size}, 1 partition",
            details={"figures": asdict(figures), "settings": asdict(settings)},
        )
    )
    print(f"{figures.records_per_s:,.0f} records/s ({figures.mb_per_s} MB/s) -> {path}")


if __name__ == "__main__":
    main()
