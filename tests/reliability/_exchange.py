"""The whole exchange on a cluster, under a steady load, and the checker that judges a run.

:class:`Exchange` extends the streams tests' :class:`~tests.streams._broker_world.World` (a topic
prefix, the operator, every party's key, streams workers as processes) with what the fault tests
need around it:

- a **steady publish load** (:meth:`Exchange.publish_versions`): new versions of the demo
  chain's supplier footprints (figures scaled by a few %, a new PCF id each), signed by their
  suppliers and sent one at a time through the idempotent ``acks=all`` sink; every
  acknowledged record is remembered (key and the SHA-256 of its bytes) and so is the last
  acknowledged version of each product, which is what the oracle rolls up;
- **the gateway** as a process (``pcfx gateway run`` with the demo's policy, keys and
  subscriptions: the EU OEM gets the pack, the notified body's transfers are held);
- :meth:`Exchange.check`: a :class:`Verdict` comparing the final state with the oracle (the
  batch roll-up, :func:`streams.batch.run_rollup`, of the last acknowledged versions)
  and, once
  the gateway's group has committed every roll-up (its lag is part of the verdict: a stalled
  gateway fails it), the outbound topics with the audit chains. It counts, never hides:
  records lost (acknowledged but not on their topic), records on the DLQ with their reasons (a
  legitimate record there is a false rejection), outbound messages without exactly one audit
  entry, audit transfers without their message, transfers of the same record to the same
  recipient twice.

Faults are injected by the callers (the tests and :mod:`tests.reliability.nemesis`): brokers
through :class:`infra.kafka.launcher.Cluster`, processes with :func:`signal_process`.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from pcf_exchange.contracts import KafkaSchemaRegistry, ProductFootprint, read_footprints
from pcf_exchange.contracts.errors import PcfError
from pcf_exchange.contracts.kafka_client import librdkafka_config
from pcf_exchange.gateway.audit import EntryKind
from pcf_exchange.gateway.runtime import GatewaySerde, Topics, gateway_schemas, read_audit_logs
from pcf_exchange.producers.delivery import KafkaSink, Outgoing
from pcf_exchange.streams.batch import run_rollup
from tests.streams._broker_world import ROOT, World

SUPPLIERS_FILE = ROOT / "demo/lfp/suppliers-footprints.json"
BOMS_FILE = ROOT / "demo/lfp/manufacturers-boms.json"
FACTORS_FILE = ROOT / "producers/data/factors-cn.json"
SCALED = ("pcfExcludingBiogenicUptake", "pcfIncludingBiogenicUptake", "fossilGhgEmissions")
"""The figures a new version scales (together, so that the PACT cross-field rules hold)."""
SEND_TIMEOUT_S = 240.0
"""How long one record may wait for its acknowledgement (a 30 s outage must fit, with room)."""


def version_of(base: dict[str, Any], n: int) -> dict[str, Any]:
    """Version *n* of a supplier footprint (PACT JSON): its figures times (95 + n % 11) / 100,
    exactly, and a new PCF id (a new version of a footprint is a new PCF)."""
    doc: dict[str, Any] = json.loads(json.dumps(base))
    scale = Decimal(95 + n % 11) / 100
    for name in SCALED:
        doc["pcf"][name] = str((Decimal(doc["pcf"][name]) * scale).normalize())
    doc["id"] = str(uuid.uuid5(uuid.UUID(base["id"]), f"version-{n}"))
    return doc


def parse_footprint(doc: dict[str, Any]) -> ProductFootprint:
    (loaded,) = read_footprints(json.dumps([doc]))
    assert loaded.value is not None, loaded
    return loaded.value


def signal_process(proc: subprocess.Popen[bytes], sig: signal.Signals) -> bool:
    """Send *sig* to *proc* if it still runs (a process of ours); True when sent."""
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, sig)
    return True


@dataclass(frozen=True)
class Verdict:
    """What a run left behind, judged (every count should be zero, ``converged`` true)."""

    acknowledged: int
    lost: int
    """Acknowledged records (load, keys, factors, BOMs) not on their topic at the end."""
    rejected: tuple[str, ...]
    """``reason: detail`` of every record on the DLQ (all loads here are legitimate)."""
    converged: bool
    mismatched: tuple[str, ...]
    """``product: got != expected`` for every product whose last roll-up differs."""
    gateway_lag: int
    """``pcf.products`` records the gateway had not committed when judged (it stalled)."""
    outbound: int
    transfers: int
    outbound_without_audit: int
    audit_without_outbound: int
    outbound_twice: int
    """Outbound messages whose id is on the topic more than once."""
    transfers_twice: int
    """The same record (its SHA-256) sent to the same recipient by more than one transfer."""

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and not self.rejected
            and self.converged
            and self.gateway_lag == 0
            and self.outbound_without_audit == 0
            and self.audit_without_outbound == 0
            and self.outbound_twice == 0
            and self.transfers_twice == 0
        )

    def summary(self) -> str:
        rejected = Counter(r.split(":", 1)[0] for r in self.rejected)
        return (
            f"acknowledged {self.acknowledged}, lost {self.lost}; rejected {len(self.rejected)}"
            f" {dict(rejected)}; roll-ups {'equal the oracle' if self.converged else 'DIFFER'}"
            f" {list(self.mismatched)[:3]}; gateway lag {self.gateway_lag}; outbound"
            f" {self.outbound}, transfers"
            f" {self.transfers}, outbound without audit {self.outbound_without_audit}, audit"
            f" without outbound {self.audit_without_outbound}, outbound twice"
            f" {self.outbound_twice}, transfers twice {self.transfers_twice}"
        )


@dataclass
class Exchange(World):
    """A World with a steady load, a gateway process and the checker (module docstring)."""

    acked: list[tuple[str, bytes, str]] = field(default_factory=list)
    """(topic, key, SHA-256 of the value) of every record the cluster acknowledged."""
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    send_failures: list[str] = field(default_factory=list)
    gateways: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sink.close(timeout_s=10)
        self.sink = KafkaSink(self.bootstrap, delivery_timeout_s=SEND_TIMEOUT_S - 30)
        self.bases: list[dict[str, Any]] = json.loads(SUPPLIERS_FILE.read_text())
        self.latest = {doc["productIds"][0]: doc for doc in self.bases}

    def _send(self, topic: str, key: str, record: Any) -> None:
        value = self.serde.encode(self.topic(topic), record)
        report = self.sink.send(Outgoing(self.topic(topic), key.encode(), value, key))
        outcome = report.result(timeout=SEND_TIMEOUT_S)
        if not outcome.ok:
            raise AssertionError(f"{topic} {key} not acknowledged: {outcome.error}")
        with self._lock:
            self.acked.append((self.topic(topic), key.encode(), hashlib.sha256(value).hexdigest()))

    # --- the load --------------------------------------------------------------------------

    def publish_versions(
        self, count: int, *, interval_s: float = 0.2, stop: threading.Event | None = None
    ) -> int:
        """Publish *count* new supplier footprint versions, round robin over the suppliers, one
        at a time (each waits for its acknowledgement), *interval_s* apart; stop early when
        *stop* is set. Returns how many were acknowledged."""
        done = 0
        for n in range(count):
            if stop is not None and stop.is_set():
                break
            base = self.bases[n % len(self.bases)]
            doc = version_of(base, n // len(self.bases) + 1)
            try:
                self.publish_footprint(parse_footprint(doc))
            except (AssertionError, TimeoutError) as exc:
                self.send_failures.append(f"version {n}: {exc}")
                continue
            with self._lock:
                self.latest[doc["productIds"][0]] = doc
            done += 1
            time.sleep(interval_s)
        return done

    def load_in_background(self, count: int, interval_s: float = 0.2) -> LoadThread:
        return LoadThread(self, count, interval_s)

    # --- the gateway -----------------------------------------------------------------------

    def prepare_gateway(self) -> None:
        """Keys, policy and subscriptions as the demo makes them; the gateway's schemas."""
        from pcf_exchange.contracts import register_missing
        from pcf_exchange.pcfx.commands.demo import EU_OEM, NOTIFIED_BODY, _gateway_files

        _gateway_files(self.bootstrap, self.workdir / "gateway-keys")
        register_missing(
            self.bootstrap,
            gateway_schemas(Topics(self.prefix), (EU_OEM, NOTIFIED_BODY)),
            prefix=self.prefix,
        )

    def start_gateway(self, name: str = "g1") -> subprocess.Popen[bytes]:
        from pcf_exchange.pcfx.commands.demo import _gateway_run

        argv = [
            sys.executable,
            "-m",
            "pcf_exchange.pcfx",
            *_gateway_run(self.prefix, self.workdir, self.operator_pub),
        ]
        log = (self.workdir / f"gateway-{name}.log").open("wb")
        try:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap},
            )
        finally:
            log.close()
        self.gateways.append(proc)
        return proc

    def stop(self) -> None:
        from pcf_exchange.pcfx._exchange import stop_worker

        for proc in self.gateways:
            signal_process(proc, signal.SIGCONT)
            stop_worker(proc)
        for proc in self.workers:
            signal_process(proc, signal.SIGCONT)
        super().stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-2500:]
            for p in sorted(self.workdir.glob("*.log"))
        )

    # --- the oracle and the checker --------------------------------------------------------

    def oracle(self) -> dict[str, Decimal]:
        """The batch roll-up of the last acknowledged version of every supplier footprint."""
        path = self.workdir / "oracle-footprints.json"
        with self._lock:
            path.write_text(json.dumps(list(self.latest.values()), ensure_ascii=False))
        outcome = run_rollup([path], [BOMS_FILE], [FACTORS_FILE])
        return {r.product_id: r.pcf_excluding_biogenic_uptake for r in outcome.records}

    def read_raw(self, topic: str) -> list[tuple[bytes, bytes]]:
        """Every committed (key, value) of *topic* (full name), all partitions, to its end."""
        consumer = Consumer(
            librdkafka_config(
                **{
                    "bootstrap.servers": self.bootstrap,
                    "group.id": f"check-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "isolation.level": "read_committed",
                }
            )
        )
        try:
            meta = consumer.list_topics(topic, timeout=30).topics[topic]
            parts = list(meta.partitions)
            consumer.assign([TopicPartition(topic, p, -2) for p in parts])
            out: list[tuple[bytes, bytes]] = []
            waiting = set(parts)
            deadline = time.monotonic() + 120
            while waiting and time.monotonic() < deadline:
                for message in consumer.consume(500, 0.5):
                    if message.error():
                        waiting.discard(message.partition())
                    else:
                        out.append((message.key() or b"", message.value() or b""))
            assert not waiting, f"{topic}: partitions {sorted(waiting)} never reached their end"
            return out
        finally:
            consumer.close()

    def wait_converged(self, timeout_s: float = 240.0) -> bool:
        expected = self.oracle()
        try:
            self.wait_for(
                lambda got: all(
                    pid in got and got[pid].pcf_excluding_biogenic_uptake == value
                    for pid, value in expected.items()
                ),
                timeout_s=timeout_s,
                what="the roll-ups to equal the oracle",
            )
        except PcfError:  # timed out, or a worker died (pcfx._exchange.ResultsReader.wait_for)
            return False
        return True

    @property
    def gateway_group(self) -> str:
        return f"{self.prefix}gateway"  # (what pcfx.commands.demo._gateway_run passes as --group)

    def gateway_lag(self) -> int:
        """How many ``pcf.products`` records the gateway's group has not committed yet."""
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="pcfx-reliability")
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            topic = self.topic("pcf.products")
            tps = [TopicPartition(topic, p) for p in range(self.partitions)]
            ends = consumer.end_offsets(tps)
            group = self.gateway_group
            committed = admin.list_group_offsets({group: None}).get(group, {})
            return sum(
                max(0, end - (committed[tp].offset if tp in committed else 0))
                for tp, end in ends.items()
            )
        finally:
            consumer.close()
            admin.close()

    def wait_gateway_caught_up(self, timeout_s: float = 300.0) -> int:
        """Wait until the gateway has committed every ``pcf.products`` record; the lag left."""
        deadline = time.monotonic() + timeout_s
        lag = self.gateway_lag()
        while lag and time.monotonic() < deadline:
            time.sleep(2.0)
            lag = self.gateway_lag()
        return lag

    def check(self, *, with_gateway: bool = True) -> Verdict:
        from pcf_exchange.pcfx.commands.demo import EU_OEM

        with self._lock:
            acked = list(self.acked)
        lost = 0
        for topic in sorted({t for t, _, _ in acked}):
            there = {(k, hashlib.sha256(v).hexdigest()) for k, v in self.read_raw(topic)}
            lost += sum(1 for t, k, h in acked if t == topic and (k, h) not in there)
        expected = self.oracle()
        latest = self.latest_products()
        mismatched = tuple(
            f"{pid}: {latest[pid].pcf_excluding_biogenic_uptake if pid in latest else None}"
            f" != {value}"
            for pid, value in sorted(expected.items())
            if pid not in latest or latest[pid].pcf_excluding_biogenic_uptake != value
        )
        rejected = tuple(
            f"{r.reason or r.error_code}: {r.source_topic}: {r.message}"[:300]
            for r in self.rejections()
        )
        outbound_ids: list[str] = []
        transfers: list[Any] = []
        lag = 0
        if with_gateway:
            lag = self.wait_gateway_caught_up()
            registry = KafkaSchemaRegistry(self.bootstrap, prefix=self.prefix)
            try:
                serde = GatewaySerde(registry)
                topics = Topics(self.prefix)
                for _, value in self.read_raw(topics.outbound(EU_OEM)):
                    outbound_ids.append(serde.decode(value, "SealedMessage")["messageId"])
                entries, _, problems = read_audit_logs(self.bootstrap, topics, serde)
                assert problems == [], problems
                transfers = [
                    e
                    for chain in entries.values()
                    for e in chain
                    if e.kind == EntryKind.TRANSFER.value and e.recipient_id == EU_OEM
                ]
            finally:
                registry.close()
        audited = Counter(e.message_id for e in transfers)
        sent = Counter(outbound_ids)
        return Verdict(
            acknowledged=len(acked),
            lost=lost,
            rejected=rejected,
            converged=not mismatched,
            mismatched=mismatched,
            gateway_lag=lag,
            outbound=len(outbound_ids),
            transfers=len(transfers),
            outbound_without_audit=sum(1 for m in sent if audited.get(m, 0) != 1),
            audit_without_outbound=sum(1 for m in audited if m not in sent),
            outbound_twice=sum(1 for n in sent.values() if n > 1),
            transfers_twice=sum(
                1
                for n in Counter((e.recipient_id, e.record_sha256) for e in transfers).values()
                if n > 1
            ),
        )


class LoadThread(threading.Thread):
    """:meth:`Exchange.publish_versions` on a thread (``stop()`` ends it early)."""

    def __init__(self, exchange: Exchange, count: int, interval_s: float) -> None:
        super().__init__(name="pcfx-load", daemon=True)
        self.exchange, self.count, self.interval_s = exchange, count, interval_s
        self.halt = threading.Event()
        self.sent = 0

    def run(self) -> None:
        self.sent = self.exchange.publish_versions(
            self.count, interval_s=self.interval_s, stop=self.halt
        )

    def stop(self, timeout_s: float = SEND_TIMEOUT_S + 10) -> None:
        self.halt.set()
        self.join(timeout_s)
