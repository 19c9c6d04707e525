"""Helpers for roll-up tests on the real broker: a topic prefix per test, signed publishing of
the demo chain, streams worker processes, and reading the results back."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from pcf_exchange.contracts import (
    AvroSerde,
    BillOfMaterials,
    EmissionFactor,
    KafkaSchemaRegistry,
    Keyring,
    ProductFootprint,
    RolledUpFootprint,
    SignedSupplierKey,
    load_boms,
    load_factors,
    load_footprints,
    register_all,
)
from pcf_exchange.contracts.handoff import HandoffCheck, check_handoff
from pcf_exchange.pcfx._exchange import ExchangeSession
from pcf_exchange.producers.delivery import KafkaSink, Outgoing
from tests.harness import Participants, start_worker, stop_worker, worker_command

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class World(ExchangeSession):
    """A topic namespace on the broker, the operator, and every party's signing key; sending
    and reading the results back are the demo's own (:class:`pcfx._exchange.ExchangeSession`)."""

    read_idle_s: ClassVar[float] = 3.0

    bootstrap: str
    workdir: Path
    partitions: int = 6
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}.")
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from pcf_exchange.streams.runtime import StreamsConfig, ensure_topics

        self.participants = Participants(self.workdir / "keys")
        self.keys = self.participants.keys
        self.operator_pub = self.participants.operator_pub
        ensure_topics(
            StreamsConfig(
                self.bootstrap,
                {},
                app_id=self.app_id,
                topic_prefix=self.prefix,
                partitions=self.partitions,
            )
        )
        writer = KafkaSchemaRegistry(self.bootstrap, prefix=self.prefix, writer=True)
        try:
            register_all(writer, self.prefix)
        finally:
            writer.close()
        self.serde = AvroSerde(KafkaSchemaRegistry(self.bootstrap, prefix=self.prefix))
        self.sink = KafkaSink(self.bootstrap)
        # the operator registers the workers' service key (role service): it signs pcf.products
        self._send("pcf.keys", "pcfx-streams", self.participants.service_registration())

    @property
    def app_id(self) -> str:
        """The workers' app id: their consumer group, and the start of their changelogs' names."""
        return f"{self.prefix}streams"

    # the names the broker tests use for ExchangeSession's
    seq = ExchangeSession.next_sequence
    _send = ExchangeSession.send

    def register(self, owner: str, **changes: Any) -> Ed25519PrivateKey:
        """The operator (re-)registers *owner*'s key with the namespaces it claimed; *changes*
        override fields of the registration (``revoked_at``, ``valid_from``...)."""
        signed = self.participants.registration(owner, sequence=self.seq(f"key:{owner}"), **changes)
        self._send("pcf.keys", owner, signed)
        return self.participants.key(owner)

    def claim(self, owner: str, *product_ids: str) -> None:
        """Grant *owner* the namespaces of *product_ids*, registering its key again if that
        adds one (do it before publishing: keys and data travel on different topics)."""
        new = [self.participants.claim(owner, pid) for pid in product_ids]
        if any(new) or owner not in self.keys:
            self.register(owner)

    def publish_factor(self, factor: EmissionFactor) -> None:
        signed = self.participants.factor(factor, sequence=self.seq(factor.factor_id))
        self._send("pcf.factors", factor.factor_id, signed)

    def publish_footprint(
        self, fp: ProductFootprint, key: Ed25519PrivateKey | None = None, *, claim: bool = True
    ) -> None:
        """*fp* signed by its supplier (``companyIds[0]``), who first claims its product ids'
        namespaces (unless not *claim*: an attempt on another company's product), or by *key*."""
        owner = fp.company_ids[0]
        if key is None and claim:
            self.claim(owner, *fp.product_ids)
        elif key is None and owner not in self.keys:
            self.register(owner)
        signed = self.participants.footprint(fp, self.seq(f"fp:{fp.product_ids[0]}"), key=key)
        self._send("pcf.declared", fp.product_ids[0], signed)

    def publish_bom(
        self, bom: BillOfMaterials, *, claim: bool = True, signer: str | None = None
    ) -> None:
        """*bom* signed by its owner (or *signer*), who first claims the product's namespace
        (unless not *claim*)."""
        owner = signer or bom.owner or "unknown"
        if claim:
            self.claim(owner, bom.product_id)
        elif owner not in self.keys:
            self.register(owner)
        self._send("pcf.bom", bom.product_id, self.participants.bom(bom, signer=signer))

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
            self.participants.claim(bom.owner or "", bom.product_id)
        for fp in footprints:
            assert fp is not None
            for pid in fp.product_ids:
                self.participants.claim(fp.company_ids[0], pid)
        for owner in sorted(self.participants.namespaces):
            self.register(owner)
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
        self,
        name: str = "w1",
        loglevel: str | None = None,
        inject: str | None = None,
        key_grace_s: float = 5,
    ) -> subprocess.Popen[bytes]:
        """Start a worker process; its log level is *loglevel*, else $PCFX_TEST_WORKER_LOGLEVEL,
        else ``warn`` (``info`` shows recovery and rebalance progress). *inject*: Python code the
        process runs before ``pcfx streams run`` (a fault to inject)."""
        loglevel = loglevel or os.environ.get("PCFX_TEST_WORKER_LOGLEVEL", "warn")
        command = worker_command(
            self.operator_pub,
            service_key=self.participants.service_key,
            app_id=self.app_id,
            topic_prefix=self.prefix,
            partitions=self.partitions,
            data_dir=self.workdir / f"data-{name}",
            key_grace_s=key_grace_s,
            loglevel=loglevel,
        )
        if inject is not None:  # python -c "<inject>; run pcfx" streams run ...
            launcher = f"{inject}\nfrom pcfx.cli import main\nmain()"
            command = [command[0], "-c", launcher, *command[3:]]
        proc = start_worker(self.bootstrap, command, self.workdir / f"worker-{name}.log")
        self.workers.append(proc)
        return proc

    def kill_worker(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        proc.send_signal(sig)
        proc.wait(timeout=60)

    def publish_footprint_versions(self, note: str, versions: int = 1) -> int:
        """Publish every demo footprint again *versions* times, each under a new (higher)
        sequence with other content (its ``comment`` says *note* and the version) and the same
        figures: legitimate updates the roll-up must take without any change to the results.
        They are sent together and acknowledged together, so they arrive in few batches.
        Returns how many were sent."""
        footprints = [r.value for r in load_footprints(ROOT / "demo/lfp/suppliers-footprints.json")]
        reports = []
        for v in range(versions):
            for fp in footprints:
                assert fp is not None and fp.company_ids[0] in self.keys
                pid = fp.product_ids[0]
                signed = self.participants.footprint(
                    fp.model_copy(update={"comment": f"{note}, version {v}"}),
                    self.seq(f"fp:{pid}"),
                )
                value = self.serde.encode(self.topic("pcf.declared"), signed)
                outgoing = Outgoing(self.topic("pcf.declared"), pid.encode(), value, pid)
                reports.append(self.sink.send(outgoing))
        assert all(report.result(timeout=60).ok for report in reports)
        return len(reports)

    def stop(self) -> None:
        for proc in self.workers:
            stop_worker(proc)
        self.sink.close(timeout_s=10)

    # --- reading results -----------------------------------------------------------------------

    def product_signatures(self) -> list[HandoffCheck]:
        """Every ``pcf.products`` record checked as a signed hand-off against the key registry
        (``pcf.keys`` folded with the operator key), at the broker's time of each record."""
        keyring = Keyring(
            {self.participants.operator_key_id: self.participants.operator.public_key()}
        )
        for m in self.read_records("pcf.keys"):
            keyring.apply(self.serde.decode(m.value, SignedSupplierKey))
        return [
            check_handoff(
                keyring,
                m.key,
                m.value,
                m.headers,
                appended_at=datetime.fromtimestamp(m.timestamp / 1000, UTC),
            )
            for m in self.read_records("pcf.products")
        ]

    def end_offsets(self, *names: str) -> dict[tuple[str, int], int]:
        """The end offset of every partition of the topics *names* (without the prefix)."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            tps = [TopicPartition(self.topic(t), p) for t in names for p in range(self.partitions)]
            return {(tp.topic, tp.partition): end for tp, end in consumer.end_offsets(tps).items()}
        finally:
            consumer.close()

    def traffic(self) -> int:
        """How many records the workers have written to the roll-up and result topics."""
        return sum(self.end_offsets("pcf.rollup", "pcf.products").values())

    def wait_quiet(self, settle_s: float = 4.0, timeout_s: float = 30.0) -> None:
        """Wait until the workers stop writing (for *settle_s*): redelivered messages must be
        no-ops, not the start of an endless echo between nodes."""
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
        """Wait until the workers' consumer group is stable with *members* members
        (:func:`wait_stable`)."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            wait_stable(admin, self.app_id, members, timeout_s, detail=self.worker_logs)
        finally:
            admin.close()


def wait_stable(
    admin: Any,
    group: str,
    members: int,
    timeout_s: float,
    *,
    detail: Callable[[], str] = lambda: "",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll ``admin.describe_groups`` until *group* is ``Stable`` with *members* members and
    return its description. A retriable broker error (``CoordinatorNotAvailableError`` while a
    fresh broker has not yet created ``__consumer_offsets``, ``CoordinatorLoadInProgressError``,
    a node not ready) is waited out like an unstable group, within the same *timeout_s*; any
    other error is raised at once. Past the time, an AssertionError says the group's last
    state (or the last retriable error) and *detail()* (the workers' logs)."""
    deadline = clock() + timeout_s
    described: dict[str, Any] = {}
    last_error: KafkaError | None = None
    while True:
        try:
            described = admin.describe_groups([group])[group]
            last_error = None
        except KafkaError as exc:
            if not exc.retriable:
                raise
            last_error = exc
        else:
            if described["group_state"] == "Stable" and len(described["members"]) == members:
                return described
        if clock() >= deadline:
            break
        sleep(1.0)
    state = (
        f"unanswered ({type(last_error).__name__}: {last_error})"
        if last_error is not None
        else f"{described.get('group_state')} with {len(described.get('members', []))} members"
    )
    raise AssertionError(
        f"group {group} is {state} after {timeout_s:g} s, not stable with {members}\n{detail()}"
    )


def values_of(records: Iterable[RolledUpFootprint]) -> dict[str, Any]:
    return {r.product_id: (r.bom_revision, r.pcf_excluding_biogenic_uptake) for r in records}
