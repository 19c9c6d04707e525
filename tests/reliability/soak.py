"""The soak (#22 item 3): the whole exchange under a steady mixed load for a bounded time, with
memory, consumer lag and throughput recorded over time, then judged.

``python -m tests.reliability.soak [--minutes M] [--products N] ...`` (``make soak``, with
``SOAK_MINUTES``) runs, on the broker of ``KAFKA_BOOTSTRAP_SERVERS`` or else a local broker it
provisions (a fresh topic prefix; all it starts is stopped however the run ends):

- **a synthetic supply graph** of ``--products`` products (:func:`build_graph`, 10 000 by
  default) in three tiers (5 % finished products, 25 % modules, 70 % sub-assemblies), each
  product made of three products of the tier below (the sub-assemblies of purchased parts, one
  part per two products, sold by eight suppliers), every product with its own process emissions
  and metered electricity under one of four grid factors, and ``productInfo`` on every BOM (so
  every complete result carries its PACT footprint);
- **two streams workers** (``pcfx streams run`` processes, one consumer group, 6 partitions) and
  **the gateway** (``pcfx gateway run``) releasing every finished product to **three
  recipients** under the shipped policy (the EU battery OEM for Art. 7, the UK customer for PACT
  exchange, the Chinese label body for certification; the policy decides what of each record
  goes);
- **the load** (:class:`Load`, a thread): supplier footprint updates (a new version of a random
  part, figures up by 0.01, batch-signed per supplier as ``pcfx publish`` does, acknowledged),
  with a BOM change (a new revision of a random product with one quantity changed) every
  ``--bom-every`` seconds and a grid-factor revision (a new version of one of the four factors,
  which reaches about a quarter of the graph directly) every ``--factor-every`` seconds. The
  load keeps at most ``--max-backlog`` supplier updates ahead of what the streams' group has
  committed, as a real upstream with back-pressure: the soak measures what the exchange gets
  through, it does not pile up a backlog it could never drain (``--rate`` caps the offered rate
  instead, for a fixed-rate soak);
- **a sampler** (:class:`Sampler`, every ``--interval`` seconds): the resident set (RSS) of each
  process (``/proc``), the lag of each consumer group (end offsets against committed offsets:
  the streams' group on its input topics and, apart, on its internal roll-up topic; the
  gateway's group on ``pcf.products``) and the counters (updates acknowledged, results written,
  messages sent to the recipients).

When the time is up the load stops, every group drains, and the verdict (:class:`SoakVerdict`)
checks:

1. **no unbounded growth**: over the second half of the soak, the least-squares slope of each
   process's RSS is at most ``--max-rss-slope`` MB per minute (5 by default: a leak of 5 MB a
   minute would be 50 MB over the 10 minutes; a process whose state is bounded by the graph's
   size levels off after the warm-up), and every group's lag drains to 0 within the drain time
   once the load stops (a group that cannot keep up never does). A drain where nothing moves
   for ``--stall-timeout`` seconds (:func:`stall`) is given up at once as a failed verdict,
   and the soak prints its progress every 30 s whatever the sampler does (:func:`progress`):
   it never waits in silence;
2. **the final figures equal the oracle**: the last result of every product equals the batch
   roll-up (:func:`streams.rollup.run_batch`) of the last version of every input, and no record
   is on the DLQ (every record of this load is legitimate);
3. **outbound equals audit**: for each recipient, every outbound message has exactly one audit
   ``transfer`` entry and every such entry its message; no message is on a topic twice.

The figures go to ``bench/results/soak.json`` (:func:`bench.report.write_result`: the
throughput is the value, every sample and the verdict in the details, the load average at the
end in the machine facts) and a PNG of lag, memory and throughput over time beside it
(``soak.png``); ``--out DIR`` writes them elsewhere. Exit code 0 when the verdict is clean.

**What one 2-core machine gets through.** The issue's 1 M updates in 10 minutes (1 700/s) is
several times what two workers, the gateway, the broker and the load generator sharing two
cores sustain: the streams alone were measured at 113–485 updates/s on one-tier products
(``BENCHMARKS.md``); every update here reaches three tiers. So the volume is whatever the
exchange sustains in ``--minutes`` (``--updates`` caps it), and the run says how many that
was. A figure measured while other work shares the machine is a lower bound.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, TopicPartition

from bench.bench_streams import (
    MAKER,
    SUPPLIERS,
    bom,
    broker,
    footprint,
    pid,
    produce_all,
    producer,
)
from bench.report import RESULTS_DIR, BenchResult, write_result
from pcf_exchange.contracts import (
    BillOfMaterials,
    EmissionFactor,
    KafkaSchemaRegistry,
    ProductFootprint,
    RolledUpFootprint,
    load_factors,
)
from pcf_exchange.contracts.errors import PcfError
from pcf_exchange.contracts.kafka_client import librdkafka_config
from pcf_exchange.gateway.audit import EntryKind
from pcf_exchange.gateway.runtime import GatewaySerde, Topics, gateway_schemas, read_audit_logs
from pcf_exchange.streams.adapt import core_bom, core_factor, core_footprint, payload_hash
from pcf_exchange.streams.rollup import run_batch
from tests.reliability._exchange import FACTORS_FILE, Exchange

RECIPIENTS = (
    ("eu-battery-oem-de", "battery-regulation-art7"),
    ("uk-customer-gb", "pcf-exchange"),
    ("cn-carbon-label-body", "carbon-label-certification"),
)
"""The three recipients and their purposes (recipients of the shipped policy)."""
GRIDS = ("bg:cn-fj-grid-2022", "bg:cn-grid-2022", "bg:cn-grid-east-2022", "bg:cn-grid-south-2022")
"""The grid factors products are metered under (a revision of one reaches about a quarter)."""
LINES = 3
STEP = Decimal("0.01")
STREAMS_INPUTS = ("pcf.declared", "pcf.bom", "pcf.factors", "pcf.keys")
T = TypeVar("T")
LOAD_GRACE_S = 300.0
"""How long past its time the load may still be finishing a send before it is reported stuck."""


# --- the graph -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Graph:
    """Product ids by tier (finished products first), each product's lines, the parts."""

    tiers: tuple[tuple[str, ...], ...]
    lines: dict[str, tuple[tuple[str, str], ...]]
    """product -> (component, quantity) lines."""
    grid: dict[str, str]
    """product -> the grid factor its electricity is metered under."""
    parts: dict[str, str]
    """purchased part -> its supplier."""

    @property
    def products(self) -> list[str]:
        return [p for tier in self.tiers for p in tier]

    @property
    def finished(self) -> tuple[str, ...]:
        return self.tiers[0]


def build_graph(products: int, seed: int = 22) -> Graph:
    """*products* products in three tiers (5 %, 25 %, 70 %, at least one each), three lines
    each from the tier below, one purchased part per two products (module docstring)."""
    if products < 3:
        raise ValueError(f"--products must be at least 3 (one per tier), got {products}")
    rng = random.Random(seed)
    top = max(1, products // 20)
    mid = max(1, products // 4)
    sizes = (top, mid, products - top - mid)
    tiers = tuple(tuple(pid(f"SOAK-T{t}-{i}") for i in range(n)) for t, n in enumerate(sizes))
    parts = {pid(f"SOAK-PART-{i}"): SUPPLIERS[i % len(SUPPLIERS)] for i in range(products // 2)}
    part_ids = list(parts) or [pid("SOAK-PART-0")]
    parts = parts or {part_ids[0]: SUPPLIERS[0]}
    lines: dict[str, tuple[tuple[str, str], ...]] = {}
    grid: dict[str, str] = {}
    for t, tier in enumerate(tiers):
        below = list(tiers[t + 1]) if t + 1 < len(tiers) else part_ids
        for product in tier:
            chosen = rng.sample(below, min(LINES, len(below)))
            lines[product] = tuple((c, str(Decimal(rng.randint(1, 8)) / 4)) for c in chosen)
            grid[product] = rng.choice(GRIDS)
    return Graph(tiers, lines, grid, parts)


def soak_bom(
    product: str, lines: Sequence[tuple[str, str]], factor_id: str, revision: int
) -> BillOfMaterials:
    """*product*'s BOM at *revision*: *lines*, own process emissions and 2.5 kWh metered under
    *factor_id*, ``productInfo`` (so its complete result carries a PACT footprint): the bench's
    BOM (:func:`bench.bench_streams.bom`) under the soak's own company name."""
    return bom(
        product,
        lines,
        factor_id=factor_id,
        revision=revision,
        company="Soak Manufacturing Co.",
    )


def part_value(part: str, version: int) -> Decimal:
    """A part's figure at *version*: 40.00–79.99 from its name, plus 0.01 per version."""
    return (
        Decimal(40)
        + Decimal(uuid.uuid5(uuid.NAMESPACE_URL, part).int % 4000) * STEP
        + (version - 1) * STEP
    )


def revised_factor(base: EmissionFactor, version: int) -> EmissionFactor:
    """Version *version* of a grid factor: its value times (100 + version % 7) / 100, exactly."""
    return base.model_copy(update={"value": base.value * Decimal(100 + version % 7) / 100})


# --- measuring ----------------------------------------------------------------------------------


def rss_mb(pid_: int) -> float | None:
    """The resident set of process *pid_* in MB (``/proc/<pid>/status``), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid_}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of (seconds, value) points, per minute (0 for fewer than 2)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60


class GroupLag:
    """The lag of one consumer group on some topics: the sum over their partitions of the end
    offset minus the group's committed offset (all of the partition when nothing is committed).
    A consumer carrying the group's id that never subscribes reads the committed offsets
    without joining the group."""

    def __init__(self, bootstrap: str, group: str, topics: Sequence[str], partitions: int):
        self.consumer = Consumer(
            librdkafka_config(
                **{"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
            )
        )
        self.tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]

    def __call__(self) -> int:
        committed = {
            (tp.topic, tp.partition): tp.offset
            for tp in self.consumer.committed(self.tps, timeout=30)
        }
        lag = 0
        for tp in self.tps:
            low, high = self.consumer.get_watermark_offsets(tp, timeout=30)
            at = committed.get((tp.topic, tp.partition), -1)
            lag += max(0, high - (at if at >= 0 else low))
        return lag

    def close(self) -> None:
        self.consumer.close()


@dataclass(frozen=True)
class Sample:
    t_s: float
    """Seconds since the soak began (the initial load is before 0)."""
    rss_mb: dict[str, float]
    """process name -> resident set (MB)."""
    lag: dict[str, int]
    """group -> records behind (``streams``: its inputs; ``streams-rollup``: its own roll-up
    topic; ``gateway``: ``pcf.products``)."""
    updates: int
    """Supplier updates acknowledged so far (the soak's own, not the initial load)."""
    results: int
    """Records on ``pcf.products`` so far."""
    outbound: int
    """Messages on the three recipients' outbound topics so far."""


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Soak(Exchange):
    """The exchange on a fresh prefix with the soak's graph, two workers and the gateway."""

    graph: Graph = field(default_factory=lambda: build_graph(30))
    versions: dict[str, int] = field(default_factory=dict)
    """part -> the last version acknowledged."""
    boms: dict[str, BillOfMaterials] = field(default_factory=dict)
    """product -> its last BOM acknowledged."""
    factors: dict[str, tuple[EmissionFactor, int]] = field(default_factory=dict)
    """factor id -> (the last version acknowledged, its sequence)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.kafka = producer(self.bootstrap, linger_ms=20)
        self.base_factors = {
            f.factor_id: f
            for f in (r.value for r in load_factors(FACTORS_FILE))
            if f is not None and f.factor_id in GRIDS
        }
        missing = set(GRIDS) - set(self.base_factors)
        assert not missing, f"grid factors missing from {FACTORS_FILE}: {sorted(missing)}"

    # -- set-up

    def publish_graph(self) -> None:
        """Keys, the grid factors, every part's first footprint and every BOM (acknowledged)."""
        for owner in (MAKER, *SUPPLIERS):  # every soak product id is in the bench namespace
            self.claim(owner, pid("x"))
        for factor in self.base_factors.values():
            self.publish_factor(factor)
            self.factors[factor.factor_id] = (factor, self.sequences[factor.factor_id])
        self.publish_parts(list(self.graph.parts))
        records = []
        for product in self.graph.products:
            bom = soak_bom(product, self.graph.lines[product], self.graph.grid[product], 1)
            self.boms[product] = bom
            signed = self.participants.bom(bom)
            records.append((product.encode(), self.serde.encode(self.topic("pcf.bom"), signed)))
        produce_all(self.kafka, self.topic("pcf.bom"), records)

    def publish_parts(self, parts: Sequence[str]) -> int:
        """A new version of each of *parts*, batch-signed per supplier (64 a batch); waits for
        every acknowledgement. Returns how many were sent."""
        by_supplier: dict[str, list[tuple[ProductFootprint, int, str]]] = {}
        for part in parts:
            version = self.versions.get(part, 0) + 1
            self.versions[part] = version
            supplier = self.graph.parts[part]
            fp = footprint(part, supplier, part_value(part, version), version)
            by_supplier.setdefault(supplier, []).append((fp, version, part))
        records = []
        for items in by_supplier.values():
            for i in range(0, len(items), 64):
                chunk = items[i : i + 64]
                signed = self.participants.footprints(
                    [f for f, _, _ in chunk], [v for _, v, _ in chunk]
                )
                for (_, _, part), record in zip(chunk, signed, strict=True):
                    value = self.serde.encode(self.topic("pcf.declared"), record)
                    records.append((part.encode(), value))
        produce_all(self.kafka, self.topic("pcf.declared"), records)
        return len(records)

    def change_bom(self, rng: random.Random) -> str:
        """A new revision of a random product's BOM with one line's quantity changed."""
        product = rng.choice(self.graph.products)
        old = self.boms[product]
        lines = [(c.product_id or "", str(c.quantity)) for c in old.components]
        k = rng.randrange(len(lines))
        lines[k] = (lines[k][0], str(Decimal(rng.randint(1, 8)) / 4))
        bom = soak_bom(product, lines, self.graph.grid[product], old.revision + 1)
        value = self.serde.encode(self.topic("pcf.bom"), self.participants.bom(bom))
        produce_all(self.kafka, self.topic("pcf.bom"), [(product.encode(), value)])
        self.boms[product] = bom
        return product

    def revise_factor(self, rng: random.Random) -> str:
        """A new version of a random grid factor."""
        factor_id = rng.choice(GRIDS)
        _, sequence = self.factors[factor_id]
        factor = revised_factor(self.base_factors[factor_id], sequence + 1)
        self.publish_factor(factor)
        self.factors[factor_id] = (factor, self.sequences[factor_id])
        return factor_id

    def prepare_three_recipients(self) -> None:
        """The gateway's key, the recipients' keys in the shipped policy, subscriptions of the
        three recipients to every finished product, the gateway's schemas."""
        from pcf_exchange.contracts import register_missing
        from pcf_exchange.gateway._keys import (
            load_recipient_private_key,
            policy_with_recipient_keys,
            write_gateway_key,
            write_recipient_key,
        )
        from pcf_exchange.gateway.policy import default_policy_path

        keys = self.workdir / "gateway-keys"
        keys.mkdir(parents=True, exist_ok=True)
        write_gateway_key(keys / "gateway.key.pem")
        public = {}
        for rid, _ in RECIPIENTS:
            write_recipient_key(keys / f"{rid}.x25519.pem")
            public[rid] = load_recipient_private_key(keys / f"{rid}.x25519.pem").public_key()
        policy = Path(default_policy_path()).read_text()
        (self.workdir / "policy.yaml").write_text(policy_with_recipient_keys(policy, public))
        finished = self.graph.finished[0].rsplit(":", 1)[0] + ":SOAK-T0-*"
        (self.workdir / "subscriptions.yaml").write_text(
            "schema_version: 1\nsubscriptions:\n"
            + "".join(
                f'  - recipient: {rid}\n    purpose: {purpose}\n    products: ["{finished}"]\n'
                for rid, purpose in RECIPIENTS
            )
        )
        register_missing(
            self.bootstrap, gateway_schemas(Topics(self.prefix), [r for r, _ in RECIPIENTS])
        )

    def start_soak_gateway(self, name: str = "g1") -> subprocess.Popen[bytes]:
        argv = [
            sys.executable, "-m", "pcf_exchange.pcfx", "gateway", "run",
            "--policy", str(self.workdir / "policy.yaml"),
            "--subscriptions", str(self.workdir / "subscriptions.yaml"),
            "--gateway-key", str(self.workdir / "gateway-keys" / "gateway.key.pem"),
            "--operator-key", str(self.operator_pub),
            "--topic-prefix", self.prefix,
            "--group", self.gateway_group,
            "--log-level", "warning",
        ]  # fmt: skip
        log = (self.workdir / f"gateway-{name}.log").open("wb")
        try:  # (run from the work folder: no 'gateway' folder there shadows the package)
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap},
            )
        finally:
            log.close()
        self.gateways.append(proc)
        return proc

    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        named = {f"worker-{i + 1}": p for i, p in enumerate(self.workers)}
        named.update({f"gateway-{i + 1}": p for i, p in enumerate(self.gateways)})
        return named

    # -- the oracle and the checks

    def expected(self) -> dict[str, Decimal | None]:
        """The batch roll-up of the last acknowledged version of every input."""
        fps = []
        for part, version in self.versions.items():
            fp = footprint(part, self.graph.parts[part], part_value(part, version), version)
            fps.append(core_footprint(fp, sequence=version, content_hash=payload_hash(fp)))
        factors = [
            core_factor(f, sequence=seq, content_hash=payload_hash(f))
            for f, seq in self.factors.values()
        ]
        results = run_batch(fps, [core_bom(b) for b in self.boms.values()], factors)
        return {product: r.pcf for product, r in results.items()}

    def last_values(self, topic: str) -> dict[bytes, bytes]:
        """The last value of every key of *topic* (full name), in partition order."""
        last: dict[bytes, bytes] = {}
        for key, value in self.read_raw(topic):
            last[key] = value
        return last

    def latest_figures(self) -> dict[str, Decimal]:
        last = self.last_values(self.topic("pcf.products"))
        out: dict[str, Decimal] = {}
        for key, value in last.items():
            record = self.serde.decode(value, RolledUpFootprint)
            out[key.decode()] = record.pcf_excluding_biogenic_uptake
        return out

    def outbound_against_audit(self) -> dict[str, dict[str, int]]:
        """Per recipient: messages, transfer entries, messages without exactly one entry,
        entries without their message, messages on the topic twice."""
        registry = KafkaSchemaRegistry(self.bootstrap, prefix=self.prefix)  # (the run's own)
        try:
            serde = GatewaySerde(registry)
            topics = Topics(self.prefix)
            entries, _, problems = read_audit_logs(self.bootstrap, topics, serde)
            assert problems == [], problems
            out: dict[str, dict[str, int]] = {}
            for rid, _ in RECIPIENTS:
                sent = Counter(
                    serde.decode(value, "SealedMessage")["messageId"]
                    for _, value in self.read_raw(topics.outbound(rid))
                )
                audited = Counter(
                    e.message_id
                    for chain in entries.values()
                    for e in chain
                    if e.kind == EntryKind.TRANSFER.value and e.recipient_id == rid
                )
                out[rid] = {
                    "outbound": sum(sent.values()),
                    "transfers": sum(audited.values()),
                    "outbound_without_audit": sum(1 for m in sent if audited.get(m, 0) != 1),
                    "audit_without_outbound": sum(1 for m in audited if m not in sent),
                    "outbound_twice": sum(1 for n in sent.values() if n > 1),
                }
            return out
        finally:
            registry.close()


class Load(threading.Thread):
    """The soak's load (module docstring): supplier updates in chunks, a BOM change and a
    factor revision now and then, at most *max_backlog* updates ahead of the streams."""

    def __init__(
        self,
        soak: Soak,
        *,
        seconds: float,
        chunk: int,
        max_backlog: int,
        rate: float,
        bom_every_s: float,
        factor_every_s: float,
        max_updates: int,
        seed: int,
    ) -> None:
        super().__init__(name="soak-load", daemon=True)
        self.soak, self.seconds, self.chunk, self.max_backlog = soak, seconds, chunk, max_backlog
        self.rate, self.bom_every_s, self.factor_every_s = rate, bom_every_s, factor_every_s
        self.max_updates, self.rng = max_updates, random.Random(seed)
        self.updates = self.bom_changes = self.factor_revisions = 0
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.backlog = GroupLag(
            soak.bootstrap, soak.app_id, [soak.topic("pcf.declared")], soak.partitions
        )

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the caller (the verdict fails)
            self.error = exc
        finally:
            self.backlog.close()

    def _run(self) -> None:
        began = time.monotonic()
        next_bom, next_factor = began + self.bom_every_s, began + self.factor_every_s
        parts = list(self.soak.graph.parts)
        while not self.halt.is_set() and time.monotonic() - began < self.seconds:
            if self.max_updates and self.updates >= self.max_updates:
                break
            if self.backlog() > self.max_backlog:
                time.sleep(0.5)
                continue
            now = time.monotonic()
            if now >= next_bom:
                self.soak.change_bom(self.rng)
                self.bom_changes += 1
                next_bom = now + self.bom_every_s
            if now >= next_factor:
                self.soak.revise_factor(self.rng)
                self.factor_revisions += 1
                next_factor = now + self.factor_every_s
            n = self.chunk
            if self.max_updates:
                n = min(n, self.max_updates - self.updates)
            started = time.monotonic()
            self.updates += self.soak.publish_parts([self.rng.choice(parts) for _ in range(n)])
            if self.rate > 0:
                time.sleep(max(0.0, n / self.rate - (time.monotonic() - started)))


class Sampler(threading.Thread):
    """Every *interval_s*: RSS of each process, lag of each group, the counters
    (:class:`Sample`). A sample that fails (a look-up timed out) is counted and skipped, the
    thread goes on: a sampler that died silently is what once left the soak waiting,
    printing nothing, for the whole drain time (:func:`stall`)."""

    def __init__(self, soak: Soak, load: Load, interval_s: float, began: float) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.soak, self.load, self.interval_s, self.began = soak, load, interval_s, began
        self.samples: list[Sample] = []
        self.failures = 0
        """Samples that could not be taken (a look-up on the broker failed or timed out)."""
        self.error: str | None = None
        """The last such failure."""
        self.halt = threading.Event()
        p = soak.partitions
        self.lags = {
            "streams": GroupLag(
                soak.bootstrap, soak.app_id, [soak.topic(t) for t in STREAMS_INPUTS], p
            ),
            "streams-rollup": GroupLag(soak.bootstrap, soak.app_id, [soak.topic("pcf.rollup")], p),
            "gateway": GroupLag(
                soak.bootstrap, soak.gateway_group, [soak.topic("pcf.products")], p
            ),
        }
        topics = Topics(soak.prefix)
        self.products = [TopicPartition(soak.topic("pcf.products"), i) for i in range(p)]
        self.outbound = [TopicPartition(topics.outbound(rid), 0) for rid, _ in RECIPIENTS]

    def sample(self) -> Sample:
        watch = self.lags["streams"].consumer
        ends = 0
        for tp in self.products:
            ends += watch.get_watermark_offsets(tp, timeout=30)[1]
        sent = 0
        for tp in self.outbound:
            with contextlib.suppress(KafkaException):  # (a topic before its first message)
                sent += watch.get_watermark_offsets(tp, timeout=5)[1]
        rss = {name: rss_mb(p.pid) for name, p in self.soak.processes().items()}
        return Sample(
            t_s=round(time.monotonic() - self.began, 1),
            rss_mb={n: round(v, 1) for n, v in rss.items() if v is not None},
            lag={name: lag() for name, lag in self.lags.items()},
            updates=self.load.updates,
            results=ends,
            outbound=sent,
        )

    def run(self) -> None:
        while not self.halt.is_set():
            started = time.monotonic()
            try:
                self.samples.append(self.sample())
            except Exception as exc:  # (a broker look-up timed out: the next one may answer)
                self.failures += 1
                self.error = f"{type(exc).__name__}: {exc}"[:300]
            self.halt.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def stop(self) -> None:
        """Stop sampling; the consumers are closed once the thread is out of its look-ups (a
        thread stuck in one keeps them: closing a consumer under it is not safe)."""
        self.halt.set()
        self.join(90)
        if not self.is_alive():
            for lag in self.lags.values():
                lag.close()


def bounded(check: Callable[[], T], timeout_s: float, what: str) -> T:
    """*check()*, in a thread given *timeout_s* seconds: its result, its exception, or a
    ``TimeoutError`` naming *what* (the thread is left to end with the process). The checks
    read whole topics and the registry; one that waits on something that never comes (the audit
    read through a registry that was not the run's: every entry missed its schema, a second of
    retries each) must fail the verdict, not hang the soak."""
    out: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            out.append(check())
        except BaseException as exc:  # (handed to the caller)
            failed.append(exc)

    thread = threading.Thread(target=run, name=f"soak-check {what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"{what}: not done in {timeout_s:.0f} s")
    if failed:
        raise failed[0]
    return out[0]


def progress(sampler: Sampler, now_s: float, doing: str = "") -> str:
    """One line of the soak's progress at *now_s*: the last sample (and how old it is when it
    is not the current one) and the samples that failed, so that the soak is never silent."""
    last = sampler.samples[-1] if sampler.samples else None
    head = f"soak: t+{now_s:.0f}s" + (f" {doing}" if doing else "")
    if last is None:
        seen = " no sample yet"
    else:
        age = now_s - last.t_s
        seen = (
            f"{f' (last sample {age:.0f} s ago)' if age > 2 * sampler.interval_s else ''}"
            f" {last.updates} updates, lag {last.lag}, RSS {last.rss_mb} MB"
        )
    failed = f"; {sampler.failures} samples failed ({sampler.error})" if sampler.failures else ""
    return head + seen + failed


def stall(samples: Sequence[Sample], now_s: float, stall_s: float) -> str | None:
    """Why the drain is stuck, or ``None`` while it is not: no sample for *stall_s* seconds
    (the sampler is stuck on the broker), or some lag left and nothing at all moving (every
    group's lag and the results and outbound counters the same) for the last *stall_s* seconds
    of samples. A worker that still works moves one of them, however slowly; one that waits on
    something that never comes (the livelock of session 14, a producer that never drains) does
    not, and the soak reports it as a failed verdict instead of waiting out its drain time.
    Times are seconds since the soak began (:attr:`Sample.t_s`)."""
    if not samples:
        return None
    last = samples[-1]
    if now_s - last.t_s >= stall_s:
        return f"no sample for {now_s - last.t_s:.0f} s (the lag look-ups do not answer)"
    if not any(last.lag.values()):
        return None

    def state(s: Sample) -> tuple[Any, ...]:
        return (sorted(s.lag.items()), s.results, s.outbound)

    since = last.t_s
    for s in reversed(samples):
        if state(s) != state(last):
            break
        since = s.t_s
    if last.t_s - since >= stall_s:
        return (
            f"stalled: lag {last.lag}, {last.results} results and {last.outbound} outbound"
            f" unchanged for {last.t_s - since:.0f} s (t+{since:.0f}s to t+{last.t_s:.0f}s)"
        )
    return None


# --- the verdict ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakVerdict:
    rss_slopes: dict[str, float]
    """process -> MB per minute over the second half of the soak."""
    max_rss_slope: float
    drained: bool
    """Every group's lag reached 0 within the drain time after the load stopped."""
    drain_s: float
    mismatched: tuple[str, ...]
    """``product: got != expected`` for each product whose last result is not the oracle's."""
    products: int
    rejected: int
    """Records on the DLQ (every record of the soak is legitimate)."""
    recipients: dict[str, dict[str, int]]
    load_error: str | None
    exited: tuple[str, ...]
    """Processes that exited during the soak (name and exit code)."""
    check_error: str | None = None
    """Why the oracle and the audit were not (fully) checked, if they were not."""
    stalled: str | None = None
    """Why the drain was given up before its time (:func:`stall`), if it was."""

    @property
    def growth_ok(self) -> bool:
        return all(s <= self.max_rss_slope for s in self.rss_slopes.values())

    @property
    def audit_ok(self) -> bool:
        return all(
            c["outbound_without_audit"] == 0
            and c["audit_without_outbound"] == 0
            and c["outbound_twice"] == 0
            for c in self.recipients.values()
        )

    @property
    def ok(self) -> bool:
        return (
            self.growth_ok
            and self.drained
            and not self.mismatched
            and self.rejected == 0
            and self.audit_ok
            and self.load_error is None
            and not self.exited
            and self.check_error is None
            and self.stalled is None
            and self.products > 0
            and bool(self.recipients)
        )

    def summary(self) -> str:
        slopes = ", ".join(f"{n} {s:+.2f}" for n, s in sorted(self.rss_slopes.items()))
        sent = sum(c["outbound"] for c in self.recipients.values())
        return (
            f"RSS slope (MB/min, 2nd half; bound {self.max_rss_slope:g}): {slopes};"
            f" drained {'in ' + format(self.drain_s, '.0f') + ' s' if self.drained else 'NO'};"
            f" {self.products - len(self.mismatched)}/{self.products} products equal the oracle;"
            f" DLQ {self.rejected}; outbound {sent} to {len(self.recipients)} recipients,"
            f" audit {'= outbound' if self.audit_ok else 'DIFFERS'}"
            + (f"; load failed: {self.load_error}" if self.load_error else "")
            + (f"; exited: {', '.join(self.exited)}" if self.exited else "")
            + (f"; {self.stalled}" if self.stalled else "")
            + (f"; {self.check_error}" if self.check_error else "")
        )


def second_half_slopes(samples: Sequence[Sample], soak_s: float) -> dict[str, float]:
    """Per process, the RSS slope (MB/min) over the samples of the soak's second half."""
    half = [s for s in samples if soak_s / 2 <= s.t_s <= soak_s]
    names = sorted({n for s in half for n in s.rss_mb})
    return {
        n: round(slope_per_minute([(s.t_s, s.rss_mb[n]) for s in half if n in s.rss_mb]), 3)
        for n in names
    }


@dataclass(frozen=True)
class SoakResult:
    minutes: float
    products: int
    parts: int
    initial_load_s: float
    updates: int
    bom_changes: int
    factor_revisions: int
    soak_s: float
    results_written: int
    outbound_written: int
    samples: tuple[Sample, ...]
    verdict: SoakVerdict

    @property
    def updates_per_s(self) -> float:
        return self.updates / self.soak_s if self.soak_s else 0.0


def run(
    bootstrap: str,
    workdir: Path,
    *,
    minutes: float,
    products: int,
    interval_s: float = 5.0,
    chunk: int = 64,
    max_backlog: int = 2_000,
    rate: float = 0.0,
    bom_every_s: float = 5.0,
    factor_every_s: float = 60.0,
    max_updates: int = 0,
    max_rss_slope: float = 5.0,
    drain_timeout_s: float = 600.0,
    stall_s: float = 180.0,
    check_s: float = 600.0,
    seed: int = 22,
    log: Any = print,
) -> SoakResult:
    """The soak (module docstring) on *bootstrap*; everything it starts is stopped on return."""
    soak = Soak(bootstrap, workdir, graph=build_graph(products, seed))
    try:
        soak.prepare_three_recipients()
        began_load = time.monotonic()
        soak.publish_graph()
        soak.start_worker("a")
        soak.start_worker("b")
        soak.start_soak_gateway()
        log(
            f"soak: {len(soak.graph.products)} products, {len(soak.graph.parts)} parts published;"
            " waiting for the first roll-up of every product"
        )
        soak.wait_for_group(2, timeout_s=300)
        initial = GroupLag(
            bootstrap,
            soak.app_id,
            [soak.topic(t) for t in (*STREAMS_INPUTS, "pcf.rollup")],
            soak.partitions,
        )
        try:
            deadline = time.monotonic() + drain_timeout_s
            while initial() > 0:
                assert time.monotonic() < deadline, "the initial load never drained"
                time.sleep(2.0)
        finally:
            initial.close()
        initial_load_s = time.monotonic() - began_load
        log(f"soak: initial load rolled up in {initial_load_s:.0f} s; soaking {minutes:g} min")
        seconds = minutes * 60
        load = Load(
            soak,
            seconds=seconds,
            chunk=chunk,
            max_backlog=max_backlog,
            rate=rate,
            bom_every_s=bom_every_s,
            factor_every_s=factor_every_s,
            max_updates=max_updates,
            seed=seed,
        )
        began = time.monotonic()
        sampler = Sampler(soak, load, interval_s, began)
        sampler.start()
        load.start()
        stalled: str | None = None
        try:
            said = -1.0
            while load.is_alive():
                load.join(interval_s)
                now_s = time.monotonic() - began
                if now_s - said >= 30:
                    said = now_s
                    log(progress(sampler, now_s))
                if load.is_alive() and now_s > seconds + LOAD_GRACE_S:
                    load.halt.set()  # (bounded: a stuck load is reported, never waited for)
                    load.error = load.error or TimeoutError(
                        f"the load was still sending {LOAD_GRACE_S:.0f} s after its time"
                    )
                    break
            soak_s = time.monotonic() - began
            log(f"soak: load stopped after {soak_s:.0f} s ({load.updates} updates); draining")
            drain_began = time.monotonic()
            drained = False
            while time.monotonic() - drain_began < drain_timeout_s:
                time.sleep(interval_s)
                now_s = time.monotonic() - began
                last = sampler.samples[-1] if sampler.samples else None
                if last is not None and last.t_s >= soak_s and not any(last.lag.values()):
                    drained = True
                    break
                stalled = stall(sampler.samples, now_s, stall_s)
                if stalled is not None:
                    log(f"soak: {stalled}; giving up the drain")
                    break
                if now_s - said >= 30:
                    said = now_s
                    log(progress(sampler, now_s, "draining"))
            drain_s = time.monotonic() - drain_began
        finally:
            sampler.stop()
        exited = tuple(
            f"{name} ({p.returncode})"
            for name, p in soak.processes().items()
            if p.poll() is not None
        )
        mismatched: tuple[str, ...] = ()
        recipients: dict[str, dict[str, int]] = {}
        products_checked, rejected, check_error = 0, 0, None
        if drained:
            log(f"soak: drained in {drain_s:.0f} s; checking the oracle, the DLQ and the audit")
            time.sleep(5)  # the gateway's last transaction commits
            try:
                expected = soak.expected()
                got = bounded(soak.latest_figures, check_s, "reading the results")
                products_checked = len(expected)
                mismatched = tuple(
                    f"{product}: {got.get(product)} != {value}"
                    for product, value in sorted(expected.items())
                    if got.get(product) != value
                )
                rejected = len(
                    bounded(lambda: soak.read_raw(soak.topic("pcf.rejected")), check_s, "the DLQ")
                )
                recipients = bounded(soak.outbound_against_audit, check_s, "outbound and audit")
            except (AssertionError, PcfError, TimeoutError) as exc:  # (a topic not read in time)
                check_error = f"{type(exc).__name__}: {exc}"[:500]
        else:
            why = "stalled" if stalled else f"had not drained {drain_timeout_s:.0f} s after"
            check_error = (
                f"not checked: the groups {why} the load stopped (the oracle and the audit are"
                " judged on a quiet exchange)"
            )
        verdict = SoakVerdict(
            rss_slopes=second_half_slopes(sampler.samples, soak_s),
            max_rss_slope=max_rss_slope,
            drained=drained,
            drain_s=round(drain_s, 1),
            mismatched=mismatched,
            products=products_checked,
            rejected=rejected,
            recipients=recipients,
            load_error=None if load.error is None else repr(load.error),
            exited=exited,
            check_error=check_error,
            stalled=stalled,
        )
        last = sampler.samples[-1] if sampler.samples else None
        first = sampler.samples[0] if sampler.samples else None
        result = SoakResult(
            minutes=minutes,
            products=len(soak.graph.products),
            parts=len(soak.graph.parts),
            initial_load_s=round(initial_load_s, 1),
            updates=load.updates,
            bom_changes=load.bom_changes,
            factor_revisions=load.factor_revisions,
            soak_s=round(soak_s, 1),
            results_written=(last.results - first.results) if last and first else 0,
            outbound_written=(last.outbound - first.outbound) if last and first else 0,
            samples=tuple(sampler.samples),
            verdict=verdict,
        )
        if not verdict.ok:
            log(soak.logs())
        return result
    finally:
        soak.kafka.flush(30)
        soak.stop()


# --- the record ----------------------------------------------------------------------------------


def plot(result: SoakResult, path: Path) -> Path:
    """A PNG of lag, RSS and throughput over the soak (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result.samples
    t = [s.t_s / 60 for s in samples]
    fig, (ax_lag, ax_rss, ax_rate) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for group in sorted({g for s in samples for g in s.lag}):
        ax_lag.plot(t, [s.lag.get(group, 0) for s in samples], label=group)
    ax_lag.set_ylabel("consumer lag (records)")
    ax_lag.legend(loc="upper right")
    for name in sorted({n for s in samples for n in s.rss_mb}):
        ax_rss.plot(t, [s.rss_mb.get(name, float("nan")) for s in samples], label=name)
    ax_rss.set_ylabel("RSS (MB)")
    ax_rss.legend(loc="lower right")
    pairs = list(itertools.pairwise(samples))
    mid = [(a.t_s + b.t_s) / 120 for a, b in pairs]
    for label, attr in (("updates acknowledged", "updates"), ("results", "results"),
                        ("outbound messages", "outbound")):  # fmt: skip
        ax_rate.plot(
            mid,
            [(getattr(b, attr) - getattr(a, attr)) / max(b.t_s - a.t_s, 1e-9) for a, b in pairs],
            label=label,
        )
    ax_rate.set_ylabel("per second")
    ax_rate.set_xlabel("minutes into the soak (load stops at the dashed line)")
    ax_rate.legend(loc="upper right")
    for ax in (ax_lag, ax_rss, ax_rate):
        ax.axvline(result.soak_s / 60, linestyle="--", color="grey")
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"soak: {result.products:,} products, {result.updates:,} supplier updates in"
        f" {result.soak_s / 60:.1f} min ({result.updates_per_s:.0f}/s), 2 workers, gateway to 3"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def record(result: SoakResult, out: Path, name: str = "soak") -> tuple[Path, Path]:
    """``<out>/<name>.json`` through :func:`bench.report.write_result` and ``<out>/<name>.png``."""
    v = result.verdict
    bench = BenchResult(
        name=name,
        unit="updates/s",
        value=round(result.updates_per_s, 1),
        higher_is_better=True,
        description=(
            f"soak: {result.updates:,} supplier updates over a {result.products:,}-product"
            f" graph in {result.soak_s / 60:.1f} min, {result.bom_changes} BOM changes and"
            f" {result.factor_revisions} factor revisions mixed in, 2 streams workers, the"
            f" gateway releasing to 3 recipients; verdict {'clean' if v.ok else 'FAILED'}:"
            f" {v.summary()}"
        ),
        details={
            **{k: val for k, val in asdict(result).items() if k not in ("samples", "verdict")},
            "updates_per_s": round(result.updates_per_s, 2),
            "verdict": {**asdict(v), "mismatched": list(v.mismatched[:20]), "ok": v.ok},
            "samples": [asdict(s) for s in result.samples],
        },
    )
    json_path = write_result(bench, out)
    return json_path, plot(result, out / f"{name}.png")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.soak",
        description="A bounded soak of the whole exchange (2 streams workers, the gateway to 3"
        " recipients) on KAFKA_BOOTSTRAP_SERVERS: memory, lag and throughput over time, then"
        " the oracle and outbound against audit. Writes bench/results/soak.json and soak.png.",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load runs")
    parser.add_argument("--products", type=int, default=10_000, help="products in the graph")
    parser.add_argument("--updates", type=int, default=0, help="stop after N updates (0: none)")
    parser.add_argument("--rate", type=float, default=0.0, help="updates/s cap (0: none)")
    parser.add_argument("--max-backlog", type=int, default=2_000)
    parser.add_argument("--bom-every", type=float, default=5.0, help="seconds between BOM changes")
    parser.add_argument("--factor-every", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--max-rss-slope", type=float, default=5.0, help="MB per minute")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=180.0,
        help="give the drain up (a failed verdict) when nothing moves for this many seconds",
    )
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="soak", help="result name: <out>/<name>.json, .png")
    args = parser.parse_args(argv)
    # stopped by SIGTERM (a supervisor, a CI timeout): unwind, so that every process and the
    # broker this run started are stopped by the ``finally`` blocks
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="pcfx-soak-") as tmp:
        result = run(
            bootstrap,
            Path(tmp),
            minutes=args.minutes,
            products=args.products,
            interval_s=args.interval,
            max_backlog=args.max_backlog,
            rate=args.rate,
            bom_every_s=args.bom_every,
            factor_every_s=args.factor_every,
            max_updates=args.updates,
            max_rss_slope=args.max_rss_slope,
            drain_timeout_s=args.drain_timeout,
            stall_s=args.stall_timeout,
            seed=args.seed,
            log=lambda line: print(line, flush=True),
        )
    json_path, png = record(result, args.out, args.name)
    v = result.verdict
    print(
        f"soak: {result.updates} updates in {result.soak_s:.0f} s ({result.updates_per_s:.1f}/s),"
        f" {result.bom_changes} BOM changes, {result.factor_revisions} factor revisions,"
        f" {result.results_written} results, {result.outbound_written} outbound; {v.summary()}"
    )
    for line in v.mismatched[:10]:
        print(f"soak:   {line}")
    print(f"soak: {'OK' if v.ok else 'FAILED'}; {json_path}, {png}")
    return 0 if v.ok else 1


if __name__ == "__main__":
    sys.exit(main())
