"""The streams roll-up on Kafka: sustained supplier-footprint updates/s through one worker, and
end-to-end latency (publish → the top product's new result on ``pcf.products``) across 1, 3 and
6 tiers, side by side with a no-op faust agent on the same broker, in one run.

``python -m bench.bench_streams`` starts one real worker (``pcfx streams run``, a subprocess, as
the broker tests do) on a fresh topic prefix and publishes synthetic supply chains: signed key
registrations, a grid factor, supplier footprints (the realistic ``contracts.examples`` cell
footprint, one product id and value each) and BOMs (one manufacturer, ``productInfo`` on every
product, so each complete result also issues its PACT v3 footprint). Once the initial load has
rolled up, it measures:

- ``streams_component_updates``: a backlog of N footprint updates (new versions of parts of a
  one-tier set of products, 4 parts per product, batch-signed per supplier as ``pcfx publish``
  does) is produced while the worker is paused (SIGSTOP), the worker is resumed, and the time
  until its last result lands on ``pcf.products`` (broker LogAppendTime) gives updates/s. Each
  update runs the whole path: Avro decode + Ed25519/Merkle check + sequence ledger, the part's
  node, the product's node (recompute, PACT footprint issue, Avro encode), the roll-up topic, the
  changelogs. The final results are checked against batch mode (:func:`run_batch`) on the same
  inputs. Baseline: a faust agent that forwards the same ``pcf.declared`` records unchanged
  (consume → produce, no decoding): what faust and Kafka cost alone.
- ``streams_component_updates_2workers``: the same backlog once a second worker has joined the
  group (6 partitions shared), side by side with the one-worker figure of the same run.
- ``streams_latency_p99_{1,3,6}tier``: chains of 1, 3 and 6 tiers (each product: the tier below at
  quantity 1, a static supplier part, own electricity); one leaf footprint per chain is updated at a
  steady rate (spread over the chains) and the latency of an update is the time from the moment it
  was due to the first result of the chain's top product that includes it (the broker's
  LogAppendTime of that record; a later update coalesced into the same result counts with that
  result). **The headline figures are batch-signed** (``--signing batch``, the default): a supplier
  that publishes this fast publishes as ``pcfx publish`` does, so the updates due within one
  :data:`SIGN_TICK_S` tick (``--sign-tick-ms``) are signed as one batch per supplier among them (one
  Ed25519 signature over a Merkle root, each record with its inclusion proof) and sent at the tick's
  end, the wait for the tick counted in each update's latency; with 8 suppliers at 1 000/s a 10 ms
  tick makes batches of one or two records (``signatures_per_update`` in the details).
  ``--signing single`` signs each update alone and sends it when due (the figures of sessions before
  18). **The offered rate (default 1 000/s) is held for ``--seconds`` (10 s, the issue's
  probe)**: the worker sustains it when it turns updates into results as fast as they come
  (``capacity_per_s``: the rate over the slope of result time against due time, at least
  :data:`KEPT_UP_SHARE` of the rate; see :func:`throughput_of`) and latencies stay flat
  (``kept_up``). If it does not, a backlog only makes latencies as long as the run, so latency
  is measured again at :data:`SHARE` of what it got through, and the description says so.
  (Sessions before 19 took the rate from three 1-s bursts, first publish to last result: a
  figure that cannot reach the rate, since it adds the last update's latency to one second.)
  The details say how far the updates coalesced
  (``products_records_per_update``: ``pcf.products`` records written per update; 2 x tiers if every
  update republished its whole chain). Baseline: one hop through the no-op faust agent at the
  offered rate.

Every run also notes the worker's CPU time per update (``worker_cpu_ms_per_update``, from
``/proc``): on a 2-core machine the broker and the load generator compete for the same cores, so
wall-clock rates move between runs more than the work per update does.

Results via :func:`bench.report.write_result`. The machine's load average goes into the details:
other work on a 2-core machine slows every figure down. ``--updates``, ``--rate``,
``--seconds``, ``--chains``, ``--tiers``, ``--signing``, ``--sign-tick-ms``,
``--out DIR``; ``--noop-worker`` is the
baseline worker's own entry point. ``--steps N`` only times the roll-up agent's plain steps in
this process, no broker (:func:`steps`): the figure to compare a change to them side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.report import RESULTS_DIR, Baseline, BenchResult, write_result
from pcf_exchange.contracts import (
    AvroSerde,
    BillOfMaterials,
    KafkaSchemaRegistry,
    ProductFootprint,
    RolledUpFootprint,
    SignedFootprint,
    load_factors,
    parse,
    parse_footprint,
    register_all,
)
from pcf_exchange.contracts.examples import example_footprint
from pcf_exchange.contracts.kafka_client import (
    faust_credentials,
    kafka_python_kwargs,
    librdkafka_config,
)
from pcf_exchange.streams.adapt import core_bom, core_factor, core_footprint, payload_hash
from pcf_exchange.streams.rollup import run_batch
from pcf_exchange.streams.runtime import StreamsConfig, ensure_topics
from tests.harness import Participants, start_worker, stop_worker, worker_command

ROOT = Path(__file__).resolve().parent.parent
TARGET_SHARE = 0.5
"""The backlog target (issue #19): at least half the rate of a no-op faust agent forwarding the
same records, measured in the same run."""
LATENCY_TARGET_MS = 1_000.0
SHARE = 0.25
"""Latency is measured at this share of the rate the worker got through when the offered rate is
not sustained."""
KEPT_UP_SHARE = 0.98
"""A worker sustains the offered rate when it turns updates into results at least this fast
(share of the rate, :func:`throughput_of`): at 98 % a 10 s run leaves ~0.2 s of backlog."""
SIGN_TICK_S = 0.010
"""The latency probes' suppliers batch-sign what falls due within one tick of this length."""
PARTITIONS = 6
COMPANY = "urn:pact:company:customcode:vendor-assigned:"
MAKER = f"{COMPANY}bench-maker"
SUPPLIERS = tuple(f"{COMPANY}bench-supplier-{i}" for i in range(8))
FACTOR_ID = "bg:cn-fj-grid-2022"
UNIT = "kilowatt hour"
STATIC_PARTS = 50
STEP = Decimal("0.01")
"""Each new version of a leaf adds this to its value: a top result names the update it includes."""


# --- synthetic supply chains ---------------------------------------------------------------------


_EXAMPLE = example_footprint()


def footprint(product_id: str, supplier: str, value: Decimal, version: int) -> ProductFootprint:
    """The example cell footprint as *supplier*'s *version* of *product_id*, worth *value*."""
    data = copy.deepcopy(_EXAMPLE)
    data["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{product_id}#{version}"))
    data.pop("precedingPfIds", None)
    data["productIds"] = [product_id]
    data["companyIds"] = [supplier]
    pcf = data["pcf"]
    pcf["pcfExcludingBiogenicUptake"] = pcf["pcfIncludingBiogenicUptake"] = str(value)
    pcf["fossilGhgEmissions"] = str(value - Decimal("0.30"))
    for ext in data["extensions"]:
        ext_data = ext["data"]
        if "stageBreakdown" in ext_data:
            ext_data["stageBreakdown"] = {
                "raw_material_acquisition": str(value - Decimal("13.20")),
                "production": "13.20",
            }
        if "uncertainty" in ext_data:
            ext_data["uncertainty"] = {
                "relativeStandardUncertaintyPercent": "7.5",
                "lower95": str((value * Decimal("0.85")).quantize(STEP)),
                "upper95": str((value * Decimal("1.15")).quantize(STEP)),
            }
    return parse_footprint(data)


def bom(
    product_id: str,
    lines: Sequence[tuple[str, str]],
    *,
    factor_id: str = FACTOR_ID,
    revision: int = 1,
    company: str = "Bench Manufacturing Co.",
) -> BillOfMaterials:
    """*product_id*'s BOM at *revision* from (component product id, quantity) lines: own
    process emissions and 2.5 kWh metered under *factor_id*, and ``productInfo`` of *company*
    (so that its complete result carries a PACT footprint). The soak's BOMs are these too
    (``tests.reliability.soak.soak_bom``)."""
    name = product_id.rsplit(":", 1)[-1]
    return parse(
        BillOfMaterials,
        {
            "productId": product_id,
            "productName": name,
            "owner": MAKER,
            "declaredUnit": {"amount": "1", "unit": UNIT},
            "productMassPerDeclaredUnit": "6.5",
            "components": [{"productId": pid, "quantity": qty, "unit": UNIT} for pid, qty in lines],
            "processEmissions": {
                "directKgCO2e": "0.35",
                "electricityKWh": "2.5",
                "electricityFactorId": factor_id,
            },
            "productInfo": {
                "companyName": company,
                "companyIds": [MAKER],
                "productDescription": f"Synthetic product {name}",
                "productNameCompany": name,
                "geographyCountrySubdivision": "CN-FJ",
                "referencePeriodStart": "2024-01-01T00:00:00Z",
                "referencePeriodEnd": "2025-01-01T00:00:00Z",
                "pilotCategory": "LITHIUM_BATTERY",
            },
            "revision": revision,
        },
    )


def pid(name: str) -> str:
    return f"urn:pact:bench.example:product-id:{name}"


@dataclass
class Chains:
    """Every synthetic product: the throughput set and one chain set per depth."""

    chains: int
    tiers: Sequence[int]
    flat_products: int
    boms: list[BillOfMaterials] = field(default_factory=list)
    parts: dict[str, str] = field(default_factory=dict)
    """part id -> supplier, for every part with a supplier footprint."""
    flat_parts: list[str] = field(default_factory=list)
    leaves: dict[int, list[str]] = field(default_factory=dict)
    """tiers -> the leaf part of each chain (what the latency phase updates)."""
    tops: dict[int, list[str]] = field(default_factory=dict)
    """tiers -> the top product of each chain (whose result the latency phase waits for)."""

    def __post_init__(self) -> None:
        statics = [pid(f"STATIC-{i}") for i in range(STATIC_PARTS)]
        for i, part in enumerate(statics):
            self.parts[part] = SUPPLIERS[i % len(SUPPLIERS)]
        for p in range(self.flat_products):
            lines = [(pid(f"PART-{p}-{k}"), "0.25") for k in range(4)]
            for part, _ in lines:
                self.parts[part] = SUPPLIERS[len(self.parts) % len(SUPPLIERS)]
                self.flat_parts.append(part)
            self.boms.append(bom(pid(f"FLAT-{p}"), lines))
        for depth in self.tiers:
            self.leaves[depth], self.tops[depth] = [], []
            for c in range(self.chains):
                leaf = pid(f"LEAF-{depth}-{c}")
                self.parts[leaf] = SUPPLIERS[c % len(SUPPLIERS)]
                self.leaves[depth].append(leaf)
                below = leaf
                for t in reversed(range(depth)):
                    product = pid(f"T{depth}-{c}-{t}")
                    static = statics[(c * depth + t) % STATIC_PARTS]
                    self.boms.append(bom(product, [(below, "1"), (static, "0.5")]))
                    below = product
                self.tops[depth].append(below)

    @property
    def products(self) -> list[str]:
        return [b.product_id for b in self.boms]


def base_value(part: str) -> Decimal:
    """A part's first value (version 1): 40.00-79.99, from its name."""
    return Decimal(40) + Decimal(uuid.uuid5(uuid.NAMESPACE_URL, part).int % 4000) * STEP


def value_at(part: str, version: int) -> Decimal:
    return base_value(part) + (version - 1) * STEP


# --- Kafka plumbing ----------------------------------------------------------------------------


@contextlib.contextmanager
def broker() -> Iterator[str]:
    explicit = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if explicit:
        yield explicit
        return
    from pcf_exchange.infra.kafka.provision import provision_broker

    with provision_broker() as provisioned:
        yield provisioned.bootstrap


def create_log_append_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Topics whose record timestamps are the broker's append time (what latency is read from)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(
        **kafka_python_kwargs(), bootstrap_servers=bootstrap, client_id="bench-streams"
    )
    try:
        admin.create_topics(
            [
                NewTopic(
                    n, PARTITIONS, 1, topic_configs={"message.timestamp.type": "LogAppendTime"}
                )
                for n in names
            ]
        )
    finally:
        admin.close()


def producer(bootstrap: str, linger_ms: int = 5) -> Producer:
    return Producer(
        {
            **librdkafka_config(),
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": linger_ms,
            "enable.idempotence": True,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def produce_all(prod: Producer, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
    for key, value in records:
        while True:
            try:
                prod.produce(topic, key=key, value=value)
                break
            except BufferError:
                prod.poll(0.05)
    if prod.flush(120) != 0:
        raise RuntimeError("records left unacknowledged")


def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer(
        {**librdkafka_config(), "bootstrap.servers": bootstrap, "group.id": "bench-offsets"}
    )
    try:
        out = {}
        for topic in topics:
            for p in range(PARTITIONS):
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                out[(topic, p)] = high
        return out
    finally:
        consumer.close()


def read_records(
    bootstrap: str,
    topic: str,
    start: dict[tuple[str, int], int] | None = None,
    keys: set[bytes] | None = None,
) -> list[tuple[bytes, bytes, int]]:
    """(key, value, timestamp ms) of *topic* from *start* offsets to its end (only *keys*)."""
    ends = end_offsets(bootstrap, [topic])
    assign = [
        TopicPartition(topic, p, (start or {}).get((topic, p), 0))
        for p in range(PARTITIONS)
        if ends[(topic, p)] > (start or {}).get((topic, p), 0)
    ]
    if not assign:
        return []
    remaining = sum(ends[(topic, tp.partition)] - tp.offset for tp in assign)
    consumer = Consumer(
        {
            **librdkafka_config(),
            "bootstrap.servers": bootstrap,
            "group.id": "bench-read",
            "enable.auto.commit": False,
        }
    )
    out: list[tuple[bytes, bytes, int]] = []
    try:
        consumer.assign(assign)
        deadline = time.monotonic() + 120
        while remaining > 0 and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 1.0):
                if msg.error() is not None:
                    continue
                remaining -= 1
                key = msg.key() or b""
                if keys is None or key in keys:
                    out.append((key, msg.value() or b"", msg.timestamp()[1]))
    finally:
        consumer.close()
    return out


def last_timestamp_ms(bootstrap: str, topic: str) -> int:
    """The latest record timestamp on *topic* (its last record in every partition)."""
    ends = end_offsets(bootstrap, [topic])
    starts = {tp: max(0, end - 1) for tp, end in ends.items()}
    return max((ts for _, _, ts in read_records(bootstrap, topic, starts)), default=0)


LATENCY_SETTLE_S = 10.0
"""How long nothing may be written before a latency probe counts as done."""


def wait_quiet(
    bootstrap: str,
    topics: Sequence[str],
    settle_s: float,
    timeout_s: float,
    workers: Sequence[subprocess.Popen[bytes]] = (),
) -> float:
    """Wait until nothing is written to *topics* for *settle_s* (while every one of *workers*
    runs); return when the last write was seen (monotonic)."""
    deadline = time.monotonic() + timeout_s
    count = sum(end_offsets(bootstrap, topics).values())
    since = time.monotonic()
    while time.monotonic() - since < settle_s:
        if time.monotonic() > deadline:
            raise TimeoutError(f"still writing after {timeout_s:.0f} s ({count} records)")
        for worker in workers:
            if worker.poll() is not None:
                raise RuntimeError(f"a worker exited with {worker.returncode}")
        time.sleep(0.5)
        now = sum(end_offsets(bootstrap, topics).values())
        if now != count:
            count, since = now, time.monotonic()
    return since


def latest_results(
    bootstrap: str, serde: AvroSerde, topic: str, products: Sequence[str]
) -> dict[str, RolledUpFootprint]:
    wanted = {p.encode() for p in products}
    latest: dict[str, RolledUpFootprint] = {}
    for key, value, _ in read_records(bootstrap, topic, keys=wanted):
        latest[key.decode()] = serde.decode(value, RolledUpFootprint)
    return latest


# --- the baseline worker -----------------------------------------------------------------------


def noop_worker(bootstrap: str, source: str, sink: str, app_id: str) -> None:
    """A faust agent that forwards every record of *source* to *sink* unchanged, as fast as faust
    goes (batches, the producer called directly, no spinner): faust's own consume → produce
    ceiling, where a worker's figures start from."""
    import faust

    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        broker_credentials=faust_credentials(),
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="bench-noop-"),
        topic_partitions=PARTITIONS,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
    )
    src = app.topic(source, key_type=bytes, value_type=bytes, partitions=PARTITIONS)

    @app.agent(src)
    async def forward(stream: Any) -> None:
        # faust at its fastest: batches, the producer called directly, one wait for the acks
        async for events in stream.take_events(500, within=0.005):
            acks = [await app.producer.send(sink, e.key, e.value, None, None, None) for e in events]
            await asyncio.gather(*acks)

    worker = faust.Worker(app, loglevel="warn", quiet=True)
    worker.spinner = None  # as ours (the spinner's debug logging costs every record)
    worker.execute_from_commandline()


# --- the phases ----------------------------------------------------------------------------------


@dataclass
class Bench:
    bootstrap: str
    workdir: Path
    chains: Chains
    prefix: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:8]}.")
    versions: dict[str, int] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.people = Participants(self.workdir / "keys")
        create_log_append_topics(
            self.bootstrap, [self.topic("pcf.products"), self.topic("noop.sink")]
        )
        ensure_topics(
            StreamsConfig(self.bootstrap, {}, topic_prefix=self.prefix, partitions=PARTITIONS)
        )
        writer = KafkaSchemaRegistry(self.bootstrap, prefix=self.prefix, writer=True)
        try:
            register_all(writer, self.prefix)
        finally:
            writer.close()
        self.serde = AvroSerde(KafkaSchemaRegistry(self.bootstrap, prefix=self.prefix))
        self.producer = producer(self.bootstrap)
        factors = [r.value for r in load_factors(ROOT / "producers/data/factors-cn.json")]
        self.factor = next(f for f in factors if f is not None and f.factor_id == FACTOR_ID)

    def topic(self, name: str) -> str:
        return self.prefix + name

    def encode(self, topic: str, record: Any) -> bytes:
        return self.serde.encode(self.topic(topic), record)

    def start_worker(self) -> None:
        """Start one more worker of the app (the first takes every partition)."""
        n = len(self.workers) + 1
        command = worker_command(
            self.people.operator_pub,
            service_key=self.people.service_key,
            app_id=f"{self.prefix}streams",
            topic_prefix=self.prefix,
            partitions=PARTITIONS,
            data_dir=self.workdir / f"data-{n}",
            key_grace_s=5,
            loglevel=os.environ.get("PCFX_BENCH_WORKER_LOGLEVEL", "warn"),
        )
        profile = os.environ.get("PCFX_BENCH_WORKER_PROFILE")  # cProfile output file, by hand
        if profile:
            command = [command[0], "-m", "cProfile", "-o", profile, *command[1:]]
        self.workers.append(start_worker(self.bootstrap, command, self.workdir / f"worker-{n}.log"))

    def stop(self) -> None:
        for worker in self.workers:
            stop_worker(worker, timeout_s=60)
        self.workers = []

    def worker_log(self) -> str:
        logs = sorted(self.workdir.glob("worker-*.log"))
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in logs)

    def wait_for_group(self, members: int, timeout_s: float = 120.0) -> None:
        """Wait until the workers' consumer group is stable with *members* members, and then
        until they are quiet (a new member's partitions are recovered from the changelogs)."""
        from kafka import KafkaAdminClient

        group = f"{self.prefix}streams"
        admin = KafkaAdminClient(**kafka_python_kwargs(), bootstrap_servers=self.bootstrap)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                described = admin.describe_groups([group])[group]
                if described["group_state"] == "Stable" and len(described["members"]) == members:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"group {group}: {described['group_state']}")
                time.sleep(1.0)
        finally:
            admin.close()
        wait_quiet(self.bootstrap, self.output_topics(), 3.0, 300, self.workers)

    def output_topics(self) -> list[str]:
        names = ("pcf.rollup", "pcf.products", "pcf.rejected")
        return [self.topic(n) for n in names]

    def rejected(self) -> int:
        return sum(end_offsets(self.bootstrap, [self.topic("pcf.rejected")]).values())

    # -- initial load

    def footprint_update(self, part: str) -> ProductFootprint:
        version = self.versions.get(part, 0) + 1
        self.versions[part] = version
        return footprint(part, self.chains.parts[part], value_at(part, version), version)

    def load(self) -> float:
        """Publish keys, the factor, every part's first footprint and every BOM; wait for the
        roll-up to settle. Returns seconds."""
        people, chains = self.people, self.chains
        began = time.monotonic()
        for owner in (MAKER, *SUPPLIERS):  # every bench product id is in one namespace
            people.claim(owner, pid("x"))
        keys = [
            (owner.encode(), self.encode("pcf.keys", people.registration(owner)))
            for owner in (MAKER, *SUPPLIERS)
        ]
        produce_all(self.producer, self.topic("pcf.keys"), keys)
        factor = self.encode("pcf.factors", people.factor(self.factor, 1))
        produce_all(self.producer, self.topic("pcf.factors"), [(FACTOR_ID.encode(), factor)])
        by_supplier: dict[str, list[tuple[ProductFootprint, int]]] = {}
        for part in chains.parts:
            fp = self.footprint_update(part)
            by_supplier.setdefault(chains.parts[part], []).append((fp, self.versions[part]))
        records = []
        for fps in by_supplier.values():
            for signed in self.batch_signed(fps):
                records.append((signed.footprint.product_ids[0].encode(), signed))
        produce_all(
            self.producer,
            self.topic("pcf.declared"),
            [(k, self.encode("pcf.declared", s)) for k, s in records],
        )
        produce_all(
            self.producer,
            self.topic("pcf.bom"),
            [(b.product_id.encode(), self.encode("pcf.bom", people.bom(b))) for b in chains.boms],
        )
        print(f"published {len(chains.parts)} footprints, {len(chains.boms)} BOMs", flush=True)
        self.start_worker()
        wanted = {p.encode() for p in chains.products}
        deadline = time.monotonic() + 600
        while True:
            seen = {k for k, _, _ in read_records(self.bootstrap, self.topic("pcf.products"))}
            if wanted <= seen:
                break
            if time.monotonic() > deadline or any(w.poll() is not None for w in self.workers):
                raise RuntimeError(
                    f"initial load incomplete: {len(wanted & seen)}/{len(wanted)} products\n"
                    + self.worker_log()
                )
            time.sleep(2.0)
        wait_quiet(self.bootstrap, self.output_topics(), 3.0, 300, self.workers)
        return time.monotonic() - began

    def batch_signed(self, fps: Sequence[tuple[ProductFootprint, int]]) -> list[Any]:
        """(footprint, version) pairs of one supplier, signed in batches of 64 (as ``pcfx
        publish`` does)."""
        out = []
        for i in range(0, len(fps), 64):
            chunk = fps[i : i + 64]
            out.extend(self.people.footprints([fp for fp, _ in chunk], [v for _, v in chunk]))
        return out

    # -- throughput

    def throughput(self, updates: int) -> dict[str, Any]:
        parts = self.chains.flat_parts
        rng = random.Random(5)
        order: list[str] = []
        while len(order) < updates:
            round_ = list(parts)
            rng.shuffle(round_)
            order.extend(round_)
        order = order[:updates]
        began = time.monotonic()
        by_supplier: dict[str, list[tuple[ProductFootprint, int]]] = {}
        for part in order:
            fp = self.footprint_update(part)
            by_supplier.setdefault(self.chains.parts[part], []).append((fp, self.versions[part]))
        signed: dict[int, bytes] = {}
        positions: dict[str, list[int]] = {}
        for i, part in enumerate(order):
            positions.setdefault(self.chains.parts[part], []).append(i)
        for supplier, fps in by_supplier.items():
            for i, record in zip(positions[supplier], self.batch_signed(fps), strict=True):
                signed[i] = self.encode("pcf.declared", record)
        values = [(order[i].encode(), signed[i]) for i in range(updates)]
        prepared_s = time.monotonic() - began
        assert self.workers
        products_start = end_offsets(self.bootstrap, [self.topic("pcf.products")])
        changelog_start = end_offsets(self.bootstrap, [self.changelog()])
        cpu_before = cpu_seconds(self.workers)
        for worker in self.workers:
            worker.send_signal(signal.SIGSTOP)
        try:
            produce_all(producer(self.bootstrap, 20), self.topic("pcf.declared"), values)
        finally:
            resumed = time.time()
            for worker in self.workers:
                worker.send_signal(signal.SIGCONT)
        wait_quiet(self.bootstrap, self.output_topics(), 4.0, 600, self.workers)
        # on a loaded machine a worker can stall for longer than the quiet period: the backlog
        # is through only when every flat product shows its last update
        deadline = time.monotonic() + 600
        while self.flat_results_wrong() and time.monotonic() < deadline:
            wait_quiet(self.bootstrap, self.output_topics(), 4.0, 600, self.workers)
        cpu_after = cpu_seconds(self.workers)
        last = last_timestamp_ms(self.bootstrap, self.topic("pcf.products")) / 1000
        products_end = end_offsets(self.bootstrap, [self.topic("pcf.products")])
        elapsed = last - resumed
        return {
            "updates": updates,
            "elapsed_s": round(elapsed, 3),
            "updates_per_s": updates / elapsed,
            "results_published": sum(products_end.values()) - sum(products_start.values()),
            "prepare_s": round(prepared_s, 1),
            "worker_cpu_ms_per_update": per_update_ms(cpu_before, cpu_after, updates),
            **changelog_written(
                read_records(self.bootstrap, self.changelog(), changelog_start), updates
            ),
        }

    def changelog(self) -> str:
        """The nodes table's changelog (the worker's app id is ``<prefix>streams``)."""
        return f"{self.prefix}streams-nodes-changelog"

    def check_flat_results(self) -> int:
        """Compare every flat product's latest result with batch mode on the same inputs."""
        wrong, expected, got = self._flat_results()
        if wrong:
            example = wrong[0]
            raise AssertionError(
                f"{len(wrong)} products differ from batch mode, e.g. {example}:"
                f" {got[example].pcf_excluding_biogenic_uptake if example in got else None}"
                f" != {expected[example].pcf}"
            )
        return len(expected)

    def flat_results_wrong(self) -> bool:
        """Whether some flat product's latest result is not batch mode's (yet)."""
        return bool(self._flat_results()[0])

    def _flat_results(self) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
        chains = self.chains
        fps = [
            core_footprint(fp, sequence=self.versions[part], content_hash=payload_hash(fp))
            for part in [*chains.flat_parts, *(p for p in chains.parts if "STATIC" in p)]
            for fp in [footprint(part, chains.parts[part], value_at(part, self.versions[part]), 1)]
        ]
        flat = [b for b in chains.boms if ":FLAT-" in b.product_id]
        factor = core_factor(self.factor, sequence=1, content_hash=payload_hash(self.factor))
        expected = run_batch(fps, [core_bom(b) for b in flat], [factor])
        got = latest_results(
            self.bootstrap, self.serde, self.topic("pcf.products"), [b.product_id for b in flat]
        )
        wrong = [
            p
            for p, r in expected.items()
            if p not in got or got[p].pcf_excluding_biogenic_uptake != r.pcf
        ]
        return wrong, expected, got

    # -- latency

    def latency_plan(
        self, order: Sequence[str], rate: float, tick_s: float | None
    ) -> tuple[list[Tick], int]:
        """The next version of each leaf of *order* (due at ``i / rate``), signed and encoded,
        in the ticks they are sent in, and the number of signatures made. Singly signed
        (*tick_s* ``None``): each update alone, sent when it is due. Batch-signed: the updates
        due within one tick of *tick_s*, one batch per supplier among them (a Merkle root signed
        once, each record with its inclusion proof, as ``pcfx publish`` signs), all sent at the
        tick's end."""
        versions = []
        for leaf in order:
            fp = self.footprint_update(leaf)
            versions.append((leaf, fp, self.versions[leaf]))
        plan: list[Tick] = []
        signatures = 0
        for tick, send_s in ticks(len(order), rate, tick_s or 0.0):
            signed: dict[int, SignedFootprint] = {}
            if tick_s is None:
                for i in tick:
                    signed[i] = self.people.footprint(versions[i][1], versions[i][2])
                signatures += len(tick)
            else:
                by_supplier: dict[str, list[int]] = {}
                for i in tick:
                    by_supplier.setdefault(self.chains.parts[versions[i][0]], []).append(i)
                for positions in by_supplier.values():
                    fps = [versions[i][1] for i in positions]
                    batch = self.people.footprints(fps, [versions[i][2] for i in positions])
                    signed.update(zip(positions, batch, strict=True))
                signatures += len(by_supplier)
            updates = [
                (versions[i][0], versions[i][2], i / rate, self.encode("pcf.declared", signed[i]))
                for i in tick
            ]
            plan.append(Tick(send_s, updates))
        return plan, signatures

    def latency(
        self, depth: int, rate: float, seconds: float, tick_s: float | None = SIGN_TICK_S
    ) -> dict[str, Any]:
        """Latency of *depth*-tier chains' leaf updates at *rate*/s for *seconds*: batch-signed
        per :data:`SIGN_TICK_S` tick (*tick_s*), or each signed singly (*tick_s* ``None``)."""
        leaves, tops = self.chains.leaves[depth], self.chains.tops[depth]
        top_of = dict(zip(tops, leaves, strict=True))
        total = int(rate * seconds)
        rng = random.Random(depth)
        order: list[str] = []
        while len(order) < total:
            round_ = list(leaves)
            rng.shuffle(round_)
            order.extend(round_)
        order = order[:total]
        # the value each top holds now, and its offset from its leaf's value
        current = latest_results(self.bootstrap, self.serde, self.topic("pcf.products"), tops)
        offset = {
            top: current[top].pcf_excluding_biogenic_uptake - value_at(leaf, self.versions[leaf])
            for top, leaf in top_of.items()
        }
        plan, signatures = self.latency_plan(order, rate, tick_s)
        start = end_offsets(self.bootstrap, [self.topic("pcf.products")])
        cpu_before = cpu_seconds(self.workers)
        published = pace_ticks(self.bootstrap, self.topic("pcf.declared"), plan)
        # (a burst's first batches run every tier before they write anything: on a loaded
        # machine that took over 3 s, and a shorter quiet spell ended the probe before its
        # results came)
        wait_quiet(self.bootstrap, self.output_topics(), LATENCY_SETTLE_S, 600, self.workers)
        cpu_after = cpu_seconds(self.workers)
        products_end = end_offsets(self.bootstrap, [self.topic("pcf.products")])
        tops_bytes = {t.encode() for t in tops}
        results: dict[str, list[tuple[int, float]]] = {}
        for key, value, ts in read_records(
            self.bootstrap, self.topic("pcf.products"), start, tops_bytes
        ):
            top = key.decode()
            leaf_value = self.serde.decode(value, RolledUpFootprint).pcf_excluding_biogenic_uptake
            steps = (leaf_value - offset[top] - base_value(top_of[top])) / STEP
            version = int(steps.to_integral_value()) + 1
            results.setdefault(top_of[top], []).append((version, ts / 1000))
        latencies, due, landed = [], [], []
        missing = 0
        for leaf, version, sent in published:
            found = next((ts for v, ts in results.get(leaf, []) if v >= version), None)
            if found is None:
                missing += 1
            else:
                latencies.append((found - sent) * 1000)
                due.append(sent)
                landed.append(found)
        stats = summarise(latencies, published, missing, rate)
        stats["signing"] = signing(tick_s)
        stats["signatures_per_update"] = round(signatures / len(published), 3)
        stats.update(throughput_of(due, landed))
        # (includes the quiet seconds waited for at the end: a worker's idle timers)
        stats["worker_cpu_ms_per_update"] = per_update_ms(cpu_before, cpu_after, len(published))
        # how far a burst coalesced: a product republished for every update of its chain writes
        # 2 x depth records per update (each result after the Deprecated copy of the one it
        # supersedes); once per roll-up batch that took several of the chain's updates, fewer
        written = sum(products_end.values()) - sum(start.values())
        stats["products_records_per_update"] = round(written / len(published), 2)
        return stats


def changelog_written(records: Sequence[tuple[bytes, bytes, int]], updates: int) -> dict[str, Any]:
    """What the worker wrote to the nodes changelog for *updates* updates: records, bytes, rows
    and the mean row size. A record is one row (workers before row groups) or a group of rows
    (key :data:`~streams._rollup_step.GROUP_PREFIX`), or a tombstone (empty value). With a codec
    that still writes layout 0 (:func:`~streams.codec.encode_layout0`), the same rows are also
    encoded and decoded both ways here, side by side (µs per row)."""
    rows: list[bytes] = []
    for key, value, _ in records:
        if key.startswith(b"\x00rows:"):
            if value:
                from pcf_exchange.streams.codec import (
                    decode_rows,  # (only workers with row groups write them)
                )

                rows.extend(row for _, row in decode_rows(value))
        elif value:
            rows.append(value)
    out: dict[str, Any] = {
        "changelog_records_per_update": round(len(records) / updates, 3),
        "changelog_bytes_per_update": round(sum(len(v) for _, v, _ in records) / updates),
        "rows_written_per_update": round(len(rows) / updates, 3),
        "row_bytes_mean": round(sum(map(len, rows)) / len(rows)) if rows else None,
    }
    out.update(row_codec(rows[-2000:]))
    return out


def row_codec(rows: Sequence[bytes]) -> dict[str, Any]:
    """Layout 0 (JSON with field names) against layout 1 (positional) on the same rows: bytes
    and µs per row to encode and to decode (nothing when the codec has no layout 1)."""
    from pcf_exchange.streams import codec
    from pcf_exchange.streams._rollup_step import NodeRecord

    if not rows or not hasattr(codec, "encode_layout0"):
        return {}
    nodes = [codec.decode(NodeRecord, row) for row in rows]
    out: dict[str, Any] = {"rows_timed": len(nodes)}
    for name, encode in (("layout0", codec.encode_layout0), ("layout1", codec.encode)):
        start = time.perf_counter()
        data = [encode(node) for node in nodes]
        encoded = time.perf_counter() - start
        start = time.perf_counter()
        for row in data:
            codec.decode(NodeRecord, row)
        decoded = time.perf_counter() - start
        out[f"{name}_row_bytes_mean"] = round(sum(map(len, data)) / len(data))
        out[f"{name}_encode_us_per_row"] = round(encoded / len(data) * 1e6, 1)
        out[f"{name}_decode_us_per_row"] = round(decoded / len(data) * 1e6, 1)
    return out


def cpu_seconds(workers: Sequence[subprocess.Popen[bytes]]) -> float | None:
    """CPU time (user + system) the worker processes have used so far (Linux ``/proc``)."""
    total = 0.0
    for worker in workers:
        try:
            fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def per_update_ms(cpu_before: float | None, cpu_after: float | None, updates: int) -> float | None:
    if cpu_before is None or cpu_after is None or not updates:
        return None
    return round((cpu_after - cpu_before) * 1000 / updates, 2)


@dataclass(frozen=True)
class Tick:
    """Updates sent together at *send_s* (seconds from the start of a probe), each of them due
    at its own ``due_s`` (the same moment, for an update signed singly)."""

    send_s: float
    updates: Sequence[tuple[str, int, float, bytes]]
    """(leaf, version, due_s, record value), in the order they are produced."""


def ticks(total: int, rate: float, tick_s: float) -> list[tuple[range, float]]:
    """Updates ``0 .. total-1`` (update *i* due at ``i / rate`` s) grouped by the tick of
    *tick_s* they fall due in (``[k * tick_s, (k + 1) * tick_s)``), each with the time it is
    sent: the tick's end. With *tick_s* 0, each update alone, sent when due. (Whole
    microseconds, so that a due time on a tick's boundary opens the next tick.)"""
    if tick_s <= 0:
        return [(range(i, i + 1), i / rate) for i in range(total)]
    tick_us = max(1, round(tick_s * 1_000_000))
    out: list[tuple[range, float]] = []
    start = 0
    while start < total:
        k = round(start * 1_000_000 / rate) // tick_us
        stop = start + 1
        while stop < total and round(stop * 1_000_000 / rate) // tick_us == k:
            stop += 1
        out.append((range(start, stop), (k + 1) * tick_us / 1_000_000))
        start = stop
    return out


def signing(tick_s: float | None) -> str:
    """How a latency probe's updates are signed, in words (for the results)."""
    if tick_s is None:
        return "each update signed singly and sent when due"
    return (
        f"batch-signed as pcfx publish signs: the updates due within {tick_s * 1000:g} ms, one"
        " Merkle root signed per supplier among them, sent at the tick's end; latency from when"
        " each update was due"
    )


def pace(
    bootstrap: str, topic: str, updates: Sequence[tuple[str, int, bytes]], rate: float
) -> list[tuple[str, int, float]]:
    """Produce *updates* one by one at *rate*/s; return (leaf, version, wall-clock time of
    produce())."""
    plan = [
        Tick(i / rate, [(leaf, v, i / rate, value)]) for i, (leaf, v, value) in enumerate(updates)
    ]
    return pace_ticks(bootstrap, topic, plan)


def pace_ticks(bootstrap: str, topic: str, plan: Sequence[Tick]) -> list[tuple[str, int, float]]:
    """Produce each tick's updates at its ``send_s``; return (leaf, version, wall-clock time)
    per update: for an update sent when it is due the time of its produce() call, for one sent
    later (at the end of its tick) the moment it was due, so the wait for its batch counts in
    its latency."""
    prod = producer(bootstrap, 1)
    # connected and holding the topic's metadata before the clock starts: otherwise the first
    # updates' latencies include the client's own start-up (measured: ~650 ms on the first one)
    prod.list_topics(topic, timeout=30)
    sent: list[tuple[str, int, float]] = []
    began = time.perf_counter()
    began_wall = time.time()
    for tick in plan:
        due = began + tick.send_s
        while (ahead := due - time.perf_counter()) > 0:
            prod.poll(0)
            time.sleep(min(ahead, 0.002))
        now = time.time()
        for leaf, version, due_s, value in tick.updates:
            sent.append((leaf, version, now if due_s >= tick.send_s else began_wall + due_s))
            prod.produce(topic, key=leaf.encode(), value=value)
        prod.poll(0)
    if prod.flush(60) != 0:
        raise RuntimeError("updates left unacknowledged")
    return sent


def summarise(
    latencies: list[float], published: Sequence[tuple[str, int, float]], missing: int, rate: float
) -> dict[str, Any]:
    if not latencies:
        raise RuntimeError(f"no update reached a top product ({missing} missing)")
    ordered = sorted(latencies)
    tenth = max(1, len(latencies) // 10)
    span = published[-1][2] - published[0][2]
    return {
        "p50_ms": round(percentile(ordered, 50), 1),
        "p99_ms": round(percentile(ordered, 99), 1),
        "max_ms": round(ordered[-1], 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "updates": len(published),
        "unmatched": missing,
        "target_rate_per_s": rate,
        "achieved_rate_per_s": round((len(published) - 1) / span, 1) if span > 0 else None,
        "span_s": round(span, 2),
        "first_tenth_p50_ms": round(statistics.median(latencies[:tenth]), 1),
        "last_tenth_p50_ms": round(statistics.median(latencies[-tenth:]), 1),
    }


def percentile(ordered: Sequence[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def throughput_of(due: Sequence[float], landed: Sequence[float]) -> dict[str, Any]:
    """Updates/s the worker turned into results, from when each update was due and when the
    result that includes it landed: ``capacity_per_s``, the offered rate over the slope of the
    least-squares line of landed time on due time (1 when every update takes as long as the
    others, above 1 when a backlog grows: latency then rises with each update), so no single
    update's latency weighs in; and ``first_to_last_per_s``, the updates over the time from the
    first result to the last (the spread of latencies lengthens that time: at 1 000/s for 10 s,
    latencies of 0.2-0.8 s make it ~950/s for a worker that keeps up). The offered rate is the
    number of updates over their span of due times."""
    if len(due) < 2 or due[-1] <= due[0]:
        return {"capacity_per_s": None, "first_to_last_per_s": None, "landed_per_due_s": None}
    rate = (len(due) - 1) / (due[-1] - due[0])
    slope = statistics.linear_regression(due, landed).slope
    busy = max(landed) - min(landed)
    return {
        "capacity_per_s": round(rate / slope, 1) if slope > 0 else None,
        "first_to_last_per_s": round((len(landed) - 1) / busy, 1) if busy > 0 else None,
        "landed_per_due_s": round(slope, 4),
    }


def sustained(stats: dict[str, Any], rate: float) -> bool:
    """Whether a run at the offered *rate* kept up with it: results as fast as the updates came
    (:data:`KEPT_UP_SHARE`) and latencies flat through the run."""
    return bool((stats["capacity_per_s"] or 0.0) >= KEPT_UP_SHARE * rate and stats["kept_up"])


def kept_up(stats: dict[str, Any]) -> bool:
    """Whether latencies stayed flat over the run: a worker that cannot keep up with the rate
    builds a backlog, and latency grows by (1 - capacity / rate) of the elapsed time."""
    growth = stats["last_tenth_p50_ms"] - stats["first_tenth_p50_ms"]
    return bool(growth < 0.05 * stats["span_s"] * 1000 + 250)


def baseline(bench: Bench, rate: float, seconds: float) -> dict[str, Any]:
    """The no-op faust agent on the same records: forward rate and one-hop latency."""
    source, sink = bench.topic("pcf.declared"), bench.topic("noop.sink")
    total = sum(end_offsets(bench.bootstrap, [source]).values())
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "bench.bench_streams", "--noop-worker",
            bench.bootstrap, source, sink, f"{bench.prefix}noop",
        ],
        stdout=(bench.workdir / "noop.log").open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while sum(end_offsets(bench.bootstrap, [sink]).values()) < total:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the no-op agent did not forward every record")
            time.sleep(0.5)
        stamps = sorted(ts for _, _, ts in read_records(bench.bootstrap, sink))
        # skip the first 5 % (group join, fetch start-up), as ours starts warm
        skip = len(stamps) // 20
        forward_rate = (len(stamps) - skip - 1) / ((stamps[-1] - stamps[skip]) / 1000)
        # one hop at the latency phases' rate: the same kind of record, new keys
        start = end_offsets(bench.bootstrap, [sink])
        sample = read_records(bench.bootstrap, source, {(source, p): 0 for p in range(PARTITIONS)})
        count = int(rate * seconds)
        updates = [(f"noop-{i}", i, sample[i % len(sample)][1]) for i in range(count)]
        published = pace(bench.bootstrap, source, updates, rate)
        while sum(end_offsets(bench.bootstrap, [sink]).values()) < total + count:
            if time.monotonic() > deadline + 120:
                raise RuntimeError("the no-op agent did not forward the paced records")
            time.sleep(0.5)
        arrived = {
            key.decode(): ts / 1000
            for key, _, ts in read_records(bench.bootstrap, sink, start)
            if key.startswith(b"noop-")
        }
        latencies = [(arrived[f"noop-{i}"] - t) * 1000 for _, i, t in published]
        return {"forward_rate": forward_rate, **summarise(latencies, published, 0, rate)}
    finally:
        stop_worker(proc)


def steps(chains: Chains, depth: int, updates: int, repeats: int = 5) -> dict[str, Any]:
    """CPU per leaf update of the roll-up agent's plain steps on *depth*-tier chains, in this
    process, no broker: :func:`~streams._rollup_step.roll_up` (every node local, as with one
    worker), :class:`~streams._publish.Publisher` (records built, encoded, signed), the new rows
    and the applied messages encoded (:mod:`streams.codec`) -- what the worker does between its
    broker reads and writes, without faust, aiokafka, ingestion or the broker. For side-by-side
    comparisons of a change to those steps (run this file with the other tree's PYTHONPATH,
    alternating): it leaves out the broker's and faust's share of the noise, but process CPU
    still rises with the machine's load (session 17: ~2.4 ms per update at load 2.6, ~4.8 ms at
    load 3-4), so only figures taken side by side compare. Each update is a batch of its own
    (nothing coalesces): every product of its chain is republished. The best of *repeats* runs
    of *updates* updates each (µs of process CPU per update)."""
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pcf_exchange.contracts import InMemorySchemaRegistry
    from pcf_exchange.contracts.handoff import HandoffSigner
    from pcf_exchange.streams import codec
    from pcf_exchange.streams._packs import keyed
    from pcf_exchange.streams._publish import Publisher
    from pcf_exchange.streams._rollup_step import NodeRecord, Work, roll_up
    from pcf_exchange.streams.rollup import BomDeclared, FactorPublished, FootprintDeclared, Message

    factors = [r.value for r in load_factors(ROOT / "producers/data/factors-cn.json")]
    grid = next(f for f in factors if f is not None and f.factor_id == FACTOR_ID)
    parts = [p for p in chains.parts if "STATIC" in p or f"LEAF-{depth}-" in p]
    boms = [b for b in chains.boms if f":T{depth}-" in b.product_id]
    docs = {b.product_id: b.model_dump_json(by_alias=True).encode() for b in boms}
    registry = InMemorySchemaRegistry()
    register_all(registry, "steps.")
    publisher = Publisher(
        AvroSerde(registry),
        "steps.pcf.products",
        HandoffSigner(Ed25519PrivateKey.generate(), "urn:pcfx:streams", "steps-k1"),
    )
    rows: dict[bytes, NodeRecord] = {}
    heights: dict[str, int] = {}  # (kept from batch to batch, as the worker does)
    published = [0]

    def step(messages: list[Message]) -> None:
        work: Work = {}
        for key, message in keyed(messages):
            doc = docs[message.bom.product_id] if isinstance(message, BomDeclared) else None
            work.setdefault(key, []).append((doc, message))
        batch = roll_up(work, rows.get, set(range(PARTITIONS)), PARTITIONS, heights=heights)
        publication = publisher.publish(batch.results, batch.rows, lambda: datetime.now(UTC))
        new = {**batch.rows, **publication.rows}
        for node in new.values():
            codec.encode(node)
        for _, message in batch.applied:
            codec.encode_message(message)
        rows.update(new)
        published[0] += len(publication.records)

    def supplier(part: str, version: int) -> FootprintDeclared:
        fp = footprint(part, chains.parts[part], value_at(part, version), version)
        return FootprintDeclared(
            core_footprint(fp, sequence=version, content_hash=payload_hash(fp))
        )

    load: list[Message] = [supplier(p, 1) for p in parts]
    load.append(FactorPublished(core_factor(grid, sequence=1, content_hash=payload_hash(grid))))
    load += [BomDeclared(core_bom(b)) for b in boms]
    step(load)
    leaves = chains.leaves[depth]
    made = [supplier(leaves[i % len(leaves)], 2 + i // len(leaves)) for i in range(updates)]
    runs = []
    published[0] = 0
    loaded = dict(rows)
    for _ in range(repeats):  # (each run from the rows after the load: the same updates apply)
        start = time.process_time()
        for update in made:
            step([update])  # (one update per batch: nothing coalesces)
        runs.append((time.process_time() - start) / updates * 1e6)
        rows.clear()
        rows.update(loaded)
    return {
        "depth": depth,
        "updates": updates,
        "us_per_update_runs": [round(r) for r in runs],
        "us_per_update": round(min(runs)),
        "records_per_update": round(published[0] / (updates * repeats), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop-worker", nargs=4, metavar=("BOOTSTRAP", "SOURCE", "SINK", "APP"))
    parser.add_argument("--updates", type=int, default=8_000)
    parser.add_argument("--flat-products", type=int, default=400)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--chains", type=int, default=60)
    parser.add_argument(
        "--signing",
        choices=("batch", "single"),
        default="batch",
        help="latency probes: updates batch-signed per --sign-tick-ms tick (the headline), or"
        " each signed singly",
    )
    parser.add_argument("--sign-tick-ms", type=float, default=SIGN_TICK_S * 1000)
    parser.add_argument("--tiers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 3, 6])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="results of the code before a change, run the same session (e.g. from a worktree"
        " of main with --out DIR): their figures go into each result's details",
    )
    parser.add_argument(
        "--two-workers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the backlog through two workers",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=0,
        metavar="UPDATES",
        help="only time the roll-up agent's plain steps in this process (no broker) on chains"
        " of the deepest --tiers, UPDATES leaf updates per run, and print the figures",
    )
    args = parser.parse_args(argv)
    if args.noop_worker:
        noop_worker(*args.noop_worker)
        return
    if args.steps:
        chains = Chains(args.chains, args.tiers, 0)
        print(steps(chains, max(args.tiers), args.steps), flush=True)
        return

    chains = Chains(args.chains, args.tiers, args.flat_products)
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        bench = Bench(bootstrap, Path(tmp), chains)
        try:
            run(bench, args)
        except BaseException:
            print(bench.worker_log(), file=sys.stderr)
            raise
        finally:
            bench.stop()


def before(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The same result of the code before a change (``--before DIR``), for the details."""
    path = args.before / f"{name}.json" if args.before else None
    if path is None or not path.exists():
        return {}
    import json

    data = json.loads(path.read_text())
    keep = (
        "updates_per_s",
        "capacity_per_s",
        "p99_ms",
        "worker_cpu_ms_per_update",
        "products_records_per_update",
        "changelog_records_per_update",
        "changelog_bytes_per_update",
        "rows_written_per_update",
        "row_bytes_mean",
        "load_average",
    )
    details = {k: v for k, v in data.get("details", {}).items() if k in keep}
    baseline = (data.get("baseline") or {}).get("value")
    return {
        "before_this_change": {
            "value": data.get("value"),
            "baseline": baseline,
            "ratio": data.get("ratio"),
            "measured_at": data.get("measured_at"),
            **details,
        }
    }


def run(bench: Bench, args: argparse.Namespace) -> None:
    load_s = bench.load()
    print(f"initial load rolled up in {load_s:.1f} s", flush=True)
    ours = bench.throughput(args.updates)
    checked = bench.check_flat_results()
    if bench.rejected():
        raise AssertionError(f"{bench.rejected()} records were rejected (pcf.rejected)")
    print(
        f"ours: {ours['updates_per_s']:,.0f} updates/s ({ours['updates']} in"
        f" {ours['elapsed_s']} s; {checked} products equal batch mode)",
        flush=True,
    )
    latency: dict[int, dict[str, Any]] = {}
    tick_s = args.sign_tick_ms / 1000 if args.signing == "batch" else None
    for depth in args.tiers:
        # the offered rate for --seconds; if the worker cannot keep up with it, latencies only
        # say how long the run was, so latency is taken again at a share of what it sustains
        stats = bench.latency(depth, args.rate, args.seconds, tick_s)
        stats["kept_up"] = kept_up(stats)
        stats["offered_rate_per_s"] = args.rate
        capacity = stats["capacity_per_s"] or 0.0
        print(
            f"{depth} tier(s) at {args.rate:g}/s for {args.seconds:g} s: got through"
            f" {capacity:g}/s, p99 {stats['p99_ms']:g} ms, kept up {stats['kept_up']}",
            flush=True,
        )
        if not sustained(stats, args.rate):
            at_offered = stats
            rate = max(10.0, float(int(SHARE * capacity / 10) * 10))
            stats = bench.latency(depth, rate, args.seconds, tick_s)
            stats["kept_up"] = kept_up(stats)
            stats["offered_rate_per_s"] = args.rate
            stats["at_offered_rate"] = at_offered
            print(f"{depth} tier(s) at {rate:g}/s: {stats}", flush=True)
        latency[depth] = stats
    two: dict[str, Any] | None = None
    if args.two_workers:
        # the same backlog through two workers sharing the 6 partitions (a second process is
        # the way past one Python core: see the figures)
        bench.start_worker()
        bench.wait_for_group(2)
        two = bench.throughput(args.updates)
        bench.check_flat_results()
        print(f"two workers: {two['updates_per_s']:,.0f} updates/s", flush=True)
    if bench.rejected():
        raise AssertionError(f"{bench.rejected()} records were rejected (pcf.rejected)")
    bench.stop()  # the baseline gets the machine to itself, as ours did
    base = baseline(bench, args.rate, min(args.seconds, 5.0))
    print(f"no-op faust agent: {base}", flush=True)
    load = os.getloadavg()
    common = {
        "load_average": [round(x, 2) for x in load],
        "partitions": PARTITIONS,
        "workers": 1,
        "initial_load_s": round(load_s, 1),
        "products": len(bench.chains.boms),
        "parts": len(bench.chains.parts),
    }
    write_result(
        BenchResult(
            name="streams_component_updates",
            unit="updates/s",
            value=round(ours["updates_per_s"]),
            higher_is_better=True,
            description=(
                f"pcfx streams run, 1 worker, {PARTITIONS} partitions: {ours['updates']} signed"
                " supplier-footprint updates (backlog) → verify + ledger → part's node →"
                " product's node (recompute, PACT footprint, Avro) → pcf.products; results equal"
                " batch mode"
            ),
            baseline=Baseline(
                "no-op faust agent forwarding the same records (batched)",
                round(base["forward_rate"]),
                "records/s",
            ),
            target=round(TARGET_SHARE * base["forward_rate"]),
            details={
                **ours,
                **common,
                "products_checked_against_batch": checked,
                **before(args, "streams_component_updates"),
            },
        ),
        args.out,
    )
    if two is not None:
        write_result(
            BenchResult(
                name="streams_component_updates_2workers",
                unit="updates/s",
                value=round(two["updates_per_s"]),
                higher_is_better=True,
                description=(
                    f"as streams_component_updates, with 2 workers sharing the {PARTITIONS}"
                    f" partitions ({os.cpu_count()} cores, the broker on the same machine);"
                    " results equal batch mode"
                ),
                baseline=Baseline(
                    "1 worker, same backlog, same run", round(ours["updates_per_s"]), "updates/s"
                ),
                target=None,
                details={**two, **common, "workers": 2},
            ),
            args.out,
        )
    if 6 in latency:
        offered = latency[6].get("at_offered_rate", latency[6])
        capacity = offered["capacity_per_s"] or 0.0
        kept = sustained(offered, args.rate)
        write_result(
            BenchResult(
                name="streams_updates_6tier",
                unit="updates/s",
                # the offered rate when the worker kept up with it (its results then come as fast
                # as the updates, give or take the fit), else the rate it got through
                value=args.rate if kept else round(capacity),
                higher_is_better=True,
                description=(
                    f"updates/s one worker sustains on 6-tier chains ({args.chains} chains),"
                    f" offered {args.rate:g}/s for {args.seconds:g} s:"
                    f" {'kept up' if kept else 'did NOT keep up'} (results at {capacity:g}/s,"
                    f" the rate over the slope of result time on due time; latencies"
                    f" {'flat' if offered['kept_up'] else 'growing'}); p50"
                    f" {offered['p50_ms']:g} ms, p99 {offered['p99_ms']:g} ms; updates"
                    f" {signing(tick_s)}"
                ),
                baseline=Baseline(
                    "no-op faust agent forwarding the same records (batched)",
                    round(base["forward_rate"]),
                    "records/s",
                ),
                target=args.rate,
                details={**offered, **common, **before(args, "streams_updates_6tier")},
            ),
            args.out,
        )
    for depth, stats in latency.items():
        rate = stats["target_rate_per_s"]
        rate_note = f"{rate:g} updates/s"
        if rate < args.rate:
            probed = stats["at_offered_rate"]["capacity_per_s"]
            rate_note += (
                f" ({SHARE:.0%} of the {probed:g}/s the worker got through at {depth} tiers:"
                f" {args.rate:g}/s is NOT sustained)"
            )
        if not stats["kept_up"]:
            rate_note += ", backlog grew during the run"
        write_result(
            BenchResult(
                name=f"streams_latency_p99_{depth}tier",
                unit="ms",
                value=stats["p99_ms"],
                higher_is_better=False,
                description=(
                    f"publish → top product's new result on pcf.products, {depth}-tier chains"
                    f" ({args.chains} chains), {rate_note}, 1 worker, updates {signing(tick_s)};"
                    " p50"
                    f" {stats['p50_ms']:g} ms, p99 {stats['p99_ms']:g} ms"
                ),
                baseline=Baseline(
                    "one hop through a no-op faust agent (p99)", base["p99_ms"], "ms"
                ),
                # the target is p99 < 1 s *at 1 000 updates/s*: only a figure at that rate
                # can meet it (streams_updates_6tier says whether the worker gets there)
                target=LATENCY_TARGET_MS if depth == 6 and rate >= args.rate else None,
                details={
                    **stats,
                    **common,
                    "baseline": base,
                    **before(args, f"streams_latency_p99_{depth}tier"),
                },
            ),
            args.out,
        )


if __name__ == "__main__":
    main()
