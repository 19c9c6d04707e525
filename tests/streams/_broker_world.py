"""Helpers for roll-up tests on the real broker: a topic prefix per test, signed publishing of
the demo chain, streams worker processes, and reading the results back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from contracts import (
    AvroSerde,
    BillOfMaterials,
    EmissionFactor,
    KafkaSchemaRegistry,
    ProductFootprint,
    Rejection,
    RolledUpFootprint,
    SupplierKey,
    load_boms,
    load_factors,
    load_footprints,
    register_all,
    sign,
)
from producers.delivery import KafkaSink, Outgoing
from producers.keys import new_key_pair

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_KEY_ID = "op-1"


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass
class World:
    """A topic namespace on the broker, the operator, and every party's signing key."""

    bootstrap: str
    workdir: Path
    partitions: int = 6
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}.")
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from streams.runtime import StreamsConfig, ensure_topics

        files = new_key_pair("operator", self.workdir / "keys")
        from producers.keys import load_private_key

        self.operator = load_private_key(files.private_key)
        self.operator_pub = files.public_key
        self.operator_key_id = files.key_id
        ensure_topics(
            StreamsConfig(self.bootstrap, {}, topic_prefix=self.prefix, partitions=self.partitions)
        )
        writer = KafkaSchemaRegistry(self.bootstrap, writer=True)
        try:
            register_all(writer, self.prefix)
        finally:
            writer.close()
        self.serde = AvroSerde(KafkaSchemaRegistry(self.bootstrap))
        self.sink = KafkaSink(self.bootstrap)

    def topic(self, name: str) -> str:
        return self.prefix + name

    def seq(self, subject: str) -> int:
        self.sequences[subject] = self.sequences.get(subject, 0) + 1
        return self.sequences[subject]

    # --- publishing ------------------------------------------------------------------------

    def _send(self, topic: str, key: str, record: Any) -> None:
        value = self.serde.encode(self.topic(topic), record)
        report = self.sink.send(Outgoing(self.topic(topic), key.encode(), value, key))
        assert report.result(timeout=60).ok

    def register(self, owner: str) -> Ed25519PrivateKey:
        key = self.keys.setdefault(owner, Ed25519PrivateKey.generate())
        registration = SupplierKey(
            supplier_id=owner,
            key_id=f"{owner}-k1",
            public_key=raw_public(key),
            valid_from=datetime(2020, 1, 1, tzinfo=UTC),
            registered_by="operator",
        )
        signed = sign(
            self.operator,
            registration,
            supplier_id="operator",
            key_id=self.operator_key_id,
            sequence=self.seq(f"key:{owner}"),
        )
        self._send("pcf.keys", owner, signed)
        return key

    def publish_factor(self, factor: EmissionFactor) -> None:
        signed = sign(
            self.operator,
            factor,
            supplier_id="operator",
            key_id=self.operator_key_id,
            sequence=self.seq(factor.factor_id),
        )
        self._send("pcf.factors", factor.factor_id, signed)

    def publish_footprint(self, fp: ProductFootprint, key: Ed25519PrivateKey | None = None) -> None:
        owner = fp.company_ids[0]
        signer = key or self.keys.get(owner) or self.register(owner)
        signed = sign(
            signer,
            fp,
            supplier_id=owner,
            key_id=f"{owner}-k1",
            sequence=self.seq(f"fp:{fp.product_ids[0]}"),
        )
        self._send("pcf.declared", fp.product_ids[0], signed)

    def publish_bom(self, bom: BillOfMaterials) -> None:
        owner = bom.owner or "unknown"
        signer = self.keys.get(owner) or self.register(owner)
        signed = sign(signer, bom, supplier_id=owner, key_id=f"{owner}-k1", sequence=bom.revision)
        self._send("pcf.bom", bom.product_id, signed)

    def publish_demo_chain(self, hold_back: int = 0) -> list[BillOfMaterials]:
        """Publish the demo chain's keys, factors, footprints and BOMs (top tier first: the
        roll-up must not depend on order), except the last *hold_back* BOMs (the lowest tiers),
        which are returned for the caller to publish later."""
        factors = [r.value for r in load_factors(ROOT / "producers/data/factors-cn.json")]
        footprints = [r.value for r in load_footprints(ROOT / "demo/lfp/suppliers-footprints.json")]
        boms = [r.value for r in load_boms(ROOT / "demo/lfp/manufacturers-boms.json")]
        assert all(x is not None for x in [*factors, *footprints, *boms])
        for bom in boms:
            assert bom is not None
            self.register(bom.owner or "")
        for factor in factors:
            assert factor is not None
            self.publish_factor(factor)
        for fp in footprints:
            assert fp is not None
            self.publish_footprint(fp)
        ordered = [b for b in reversed(boms) if b is not None]
        split = len(ordered) - hold_back
        for bom in ordered[:split]:
            self.publish_bom(bom)
        return ordered[split:]

    # --- workers -------------------------------------------------------------------------------

    def start_worker(
        self, name: str = "w1", loglevel: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a worker process; its log level is *loglevel*, else $PCFX_TEST_WORKER_LOGLEVEL,
        else ``warn`` (``info`` shows recovery and rebalance progress)."""
        loglevel = loglevel or os.environ.get("PCFX_TEST_WORKER_LOGLEVEL", "warn")
        log = (self.workdir / f"worker-{name}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "pcfx", "streams", "run",
                "--operator-key", str(self.operator_pub),
                "--app-id", f"{self.prefix}streams",
                "--topic-prefix", self.prefix,
                "--partitions", str(self.partitions),
                "--data-dir", str(self.workdir / f"data-{name}"),
                "--key-grace", "5",
                "--loglevel", loglevel,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap},
        )  # fmt: skip
        self.workers.append(proc)
        return proc

    def kill_worker(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        proc.send_signal(sig)
        proc.wait(timeout=60)

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.sink.close(timeout_s=10)

    def worker_logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in self.workdir.glob("worker-*.log")
        )

    # --- reading results -----------------------------------------------------------------------

    def read(self, topic: str, model: type[Any], idle_s: float = 3.0) -> list[Any]:
        consumer = KafkaConsumer(
            self.topic(topic),
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
            consumer_timeout_ms=int(idle_s * 1000),
        )
        records = [self.serde.decode(m.value, model) for m in consumer]
        consumer.close()
        return records

    def latest_products(self) -> dict[str, RolledUpFootprint]:
        latest: dict[str, RolledUpFootprint] = {}
        for record in self.read("pcf.products", RolledUpFootprint):
            current = latest.get(record.product_id)
            if current is None or record.sequence >= current.sequence:
                latest[record.product_id] = record
        return latest

    def rejections(self) -> list[Rejection]:
        return self.read("pcf.rejected", Rejection)

    def wait_for(
        self, predicate: Any, timeout_s: float = 120.0, what: str = "results"
    ) -> dict[str, RolledUpFootprint]:
        deadline = time.monotonic() + timeout_s
        latest: dict[str, RolledUpFootprint] = {}
        while time.monotonic() < deadline:
            latest = self.latest_products()
            if predicate(latest):
                return latest
            for proc in self.workers:
                assert proc.poll() is None or proc.returncode in (-9, -15, 0), self.worker_logs()
            time.sleep(1.0)
        raise AssertionError(
            f"timed out waiting for {what}; have {sorted(latest)}\n{self.worker_logs()}"
        )

    def traffic(self) -> int:
        """How many records the workers have written to the roll-up and result topics."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            names = ("pcf.rollup.component", "pcf.rollup.product", "pcf.products")
            tps = [TopicPartition(self.topic(t), p) for t in names for p in range(self.partitions)]
            return sum(consumer.end_offsets(tps).values())
        finally:
            consumer.close()

    def wait_quiet(self, settle_s: float = 4.0, timeout_s: float = 30.0) -> None:
        """Wait until the workers stop writing (for *settle_s*): redelivered messages must be
        no-ops, not the start of an endless echo between the two roll-up sides."""
        deadline = time.monotonic() + timeout_s
        count, since = self.traffic(), time.monotonic()
        while time.monotonic() - since < settle_s:
            assert time.monotonic() < deadline, (
                f"the workers keep writing ({count} records and counting)\n{self.worker_logs()}"
            )
            time.sleep(1.0)
            now = self.traffic()
            if now != count:
                count, since = now, time.monotonic()

    def wait_for_group(self, members: int, timeout_s: float = 90.0) -> None:
        """Wait until the workers' consumer group is stable with *members* members."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        group = f"{self.prefix}streams"
        deadline = time.monotonic() + timeout_s
        described: dict[str, Any] = {}
        try:
            while time.monotonic() < deadline:
                described = admin.describe_groups([group])[group]
                if described["group_state"] == "Stable" and len(described["members"]) == members:
                    return
                time.sleep(1.0)
        finally:
            admin.close()
        raise AssertionError(
            f"group {group} is {described.get('group_state')} with "
            f"{len(described.get('members', []))} members, not stable with {members}\n"
            f"{self.worker_logs()}"
        )


def values_of(records: Iterable[RolledUpFootprint]) -> dict[str, Any]:
    return {r.product_id: (r.bom_revision, r.pcf_excluding_biogenic_uptake) for r in records}
