"""The gateway on the real broker: end to end, fail-closed transactions, restarts, approvals,
the audit CLI, two instances in one group. Every test has its own topic prefix and group."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from confluent_kafka import Consumer, Producer, TopicPartition
from typer.testing import CliRunner

from pcf_exchange.contracts import (
    AvroSerde,
    HttpSchemaRegistry,
    KafkaSchemaRegistry,
    RolledUpFootprint,
    SignerRole,
    subject_for,
)
from pcf_exchange.contracts._schemas import schema_json
from pcf_exchange.contracts.topics import TOPICS, ensure_topics
from pcf_exchange.gateway import GatewaySecrets, KeyRing, Policy, load_policy, open_message
from pcf_exchange.gateway._keys import (
    load_gateway_key,
    load_recipient_private_key,
    write_gateway_key,
    write_recipient_key,
)
from pcf_exchange.gateway.audit import EntryKind, check_audit_log
from pcf_exchange.gateway.runtime import (
    GatewayRunner,
    GatewaySerde,
    RunnerSettings,
    Subscriptions,
    Topics,
    kafka_registrar,
    load_subscriptions,
    parse_subscriptions,
    read_audit_logs,
    sealed_from_datum,
)
from pcf_exchange.pcfx.commands.gateway import approvals_app, audit_app, outbound_app
from tests.gateway._rollups import (
    CELL_SUPPLIER,
    SECRET_ADDRESS,
    SECRET_COMMENT,
    policy_with_keys,
    rolled_footprint,
)
from tests.gateway._trust import OFFICER, SERVICE, Trust, signed_batch

pytestmark = pytest.mark.broker

EU, EU_PURPOSE = "eu-battery-oem-de", "battery-regulation-art7"
GB, GB_PURPOSE = "uk-customer-gb", "pcf-exchange"
CN, CN_PURPOSE = "cn-carbon-label-body", "carbon-label-certification"
PSEUDONYM_SECRET = b"s" * 32

cli = typer.Typer()
cli.add_typer(audit_app, name="audit")
cli.add_typer(approvals_app, name="approvals")
cli.add_typer(outbound_app, name="outbound")
invoke = CliRunner().invoke


@dataclass
class Env:
    bootstrap: str
    topics: Topics
    tmp: Path
    registry: KafkaSchemaRegistry | HttpSchemaRegistry
    key_path: Path
    pub_path: Path
    trust: Trust
    recipient_keys: dict[str, Path] = field(default_factory=dict)
    group: str = ""

    @property
    def secrets(self) -> GatewaySecrets:
        return GatewaySecrets(load_gateway_key(self.key_path), PSEUDONYM_SECRET)

    def policy(self, *, hold_city_for_eu: bool = False) -> Policy:
        keys = {rid: load_recipient_private_key(p) for rid, p in self.recipient_keys.items()}
        path = self.tmp / f"policy-{hold_city_for_eu}.yaml"
        return load_policy(policy_with_keys(keys, path, hold_city_for_eu=hold_city_for_eu))

    def runner(
        self,
        policy: Policy,
        subscriptions: Subscriptions | None = None,
        **settings: Any,
    ) -> GatewayRunner:
        from pcf_exchange.gateway.runtime import default_subscriptions_path

        subs = subscriptions or load_subscriptions(default_subscriptions_path(), policy)
        fault = settings.pop("fault", None)
        return GatewayRunner(
            RunnerSettings(
                self.bootstrap,
                topics=self.topics,
                group_id=self.group,
                checkpoint_interval_s=settings.pop("checkpoint_interval_s", 0.0),
                retry_backoff_s=0.05,
                **settings,
            ),
            policy=policy,
            subscriptions=subs,
            secrets=self.secrets,
            registry=self.registry,
            operator_keys=self.trust.operator_keys,
            registrar=kafka_registrar(self.bootstrap, prefix=self.topics.prefix),
            fault=fault,
        )

    def publish(
        self, records: Sequence[RolledUpFootprint], *, signer: str | None = SERVICE
    ) -> None:
        """Publish roll-ups as the streams do: one batch signed by *signer*'s key (the service
        key by default; ``None``: unsigned, as an attacker writing to the topic would)."""
        serde = AvroSerde(self.registry)
        keyed = [(r.product_id.encode(), serde.encode(self.topics.products, r)) for r in records]
        self.publish_values(keyed, signer=signer)

    def publish_values(
        self,
        keyed: Sequence[tuple[bytes, bytes]],
        *,
        signer: str | None = SERVICE,
        partition: int | None = None,
    ) -> None:
        headers: list[list[tuple[str, bytes]]] = (
            signed_batch(self.trust.party(signer).signer, keyed)
            if signer is not None
            else [[] for _ in keyed]
        )
        producer = Producer({"bootstrap.servers": self.bootstrap})
        for (key, value), head in zip(keyed, headers, strict=True):
            items: list[tuple[str, str | bytes | None]] = list(head)
            producer.produce(
                self.topics.products,
                key=key,
                value=value,
                headers=items or None,
                partition=-1 if partition is None else partition,  # -1: by the key
            )
        assert producer.flush(30) == 0

    def publish_raw(self, value: bytes) -> None:
        """A value that is no roll-up, signed by the service key (so it reaches decoding)."""
        self.publish_values([(b"garbage", value)], partition=0)

    def officer_args(self, owner: str = OFFICER) -> list[str]:
        return ["--key", str(self.trust.party(owner).key_file)]

    def args(self) -> list[str]:
        return ["--topic-prefix", self.topics.prefix, "--bootstrap", self.bootstrap]


def make_env(kafka_bootstrap: str, tmp_path: Path, partitions: int = 2) -> Iterator[Env]:
    """A fresh topic prefix with *partitions* partitions of ``pcf.products``, a gateway key, the
    streams' service key and an officer's key registered by the operator, three recipients."""
    topics = Topics(f"t{uuid.uuid4().hex[:10]}.")
    ensure_topics(kafka_bootstrap, [(topics.products, TOPICS["pcf.products"], partitions)])
    kafka_registrar(kafka_bootstrap, prefix=topics.prefix)(
        [(subject_for(topics.products), schema_json("RolledUpFootprint"))]
    )
    key_path = tmp_path / "gateway.pem"
    _, pub_path = write_gateway_key(key_path)
    registry = KafkaSchemaRegistry(kafka_bootstrap, prefix=topics.prefix)
    # the operator registers the streams' service key and a compliance officer's key
    ensure_topics(kafka_bootstrap, [(topics.keys, TOPICS["pcf.keys"], 1)])
    kafka_registrar(kafka_bootstrap, prefix=topics.prefix)(
        [(subject_for(topics.keys), schema_json("SignedSupplierKey"))]
    )
    trust = Trust(tmp_path / "keys")
    trust.register(
        kafka_bootstrap,
        registry,
        topics.keys,
        [
            trust.registration(SERVICE, SignerRole.SERVICE),
            trust.registration(OFFICER, SignerRole.OFFICER),
        ],
    )
    e = Env(
        kafka_bootstrap,
        topics,
        tmp_path,
        registry,
        key_path,
        pub_path,
        trust,
        group=f"g-{uuid.uuid4().hex[:8]}",
    )
    for rid in (EU, GB, CN):
        write_recipient_key(tmp_path / f"{rid}.pem")
        e.recipient_keys[rid] = tmp_path / f"{rid}.pem"
    yield e
    registry.close()


@pytest.fixture
def env(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Env]:
    yield from make_env(kafka_bootstrap, tmp_path)


def read_values(bootstrap: str, topic: str, *, committed: bool = True) -> list[bytes]:
    """Every value of *topic* (all partitions), read_committed or read_uncommitted."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed" if committed else "read_uncommitted",
        }
    )
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    parts = list(meta.partitions)
    consumer.assign([TopicPartition(topic, p, -2) for p in parts])
    values: list[bytes] = []
    waiting = set(parts)
    for _ in range(200):
        for message in consumer.consume(500, 0.1):
            if message.error():
                waiting.discard(message.partition())
            else:
                values.append(message.value() or b"")
        if not waiting:
            break
    consumer.close()
    return values


def open_all(env: Env, recipient: str, values: list[bytes]) -> list[dict[str, Any]]:
    serde = GatewaySerde(env.registry)
    key = load_recipient_private_key(env.recipient_keys[recipient])
    ring = KeyRing.of(load_gateway_key(env.key_path).public_key)
    out = []
    for value in values:
        message = sealed_from_datum(serde.decode(value, "SealedMessage"))
        out.append(
            dict(
                open_message(
                    message, recipient_id=recipient, private_key=key, trusted=ring
                ).envelope
            )
        )
    return out


def audit(env: Env) -> tuple[dict[str, Any], dict[str, Any]]:
    entries, checkpoints, problems = read_audit_logs(
        env.bootstrap, env.topics, GatewaySerde(env.registry)
    )
    assert problems == []
    ring = KeyRing.of(load_gateway_key(env.key_path).public_key)
    for log_id, chain in entries.items():
        verdict = check_audit_log(chain, checkpoints.get(log_id, []), ring)
        assert verdict.ok, verdict.summary()
    return entries, checkpoints


# ----------------------------------------------------------------------------------------------


def test_end_to_end_recipients_get_what_the_policy_allows_and_the_audit_verifies(env: Env) -> None:
    policy = env.policy()
    rollups = [
        rolled_footprint(product_id=f"urn:pact:example-pack.cn:product-id:P{i}") for i in range(4)
    ]
    env.publish(rollups)
    with env.runner(policy) as runner:
        stats = runner.run(max_records=4, max_seconds=90)
    assert (stats.records, stats.sent, stats.blocked, stats.held) == (4, 12, 0, 0)

    # (1) the EU customer: generalised, pseudonymised, redacted, everything else exact
    raw = read_values(env.bootstrap, env.topics.outbound(EU))
    assert len(raw) == 4
    for secret in (SECRET_ADDRESS, SECRET_COMMENT, CELL_SUPPLIER, "Ningde"):
        assert all(secret.encode() not in value for value in raw)
    args = [
        "outbound",
        "decrypt",
        "--recipient",
        EU,
        "--key",
        str(env.recipient_keys[EU]),
        "--gateway-pub",
        str(env.pub_path),
        *env.args(),
    ]
    result = invoke(cli, args)
    assert result.exit_code == 0, result.output
    envelopes = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(envelopes) == 4
    text = json.dumps(envelopes)
    for secret in (SECRET_ADDRESS, SECRET_COMMENT, CELL_SUPPLIER, "Ningde"):
        assert secret not in text
    footprint = envelopes[0]["footprint"]
    assert footprint["pcf"]["pcfExcludingBiogenicUptake"] == "71.0220"
    assert "comment" not in footprint
    lineage = footprint["extensions"][1]["data"]["lineage"]
    assert lineage["facility"]["city"] == "CN-FJ"
    assert lineage["facility"]["address"] == "CN-FJ"
    assert lineage["inputs"][0]["supplierId"].startswith("urn:pcfx:pseudonym:")
    assert "contribution" not in lineage["inputs"][0]
    assert envelopes[0]["usagePolicies"]["cx-pcf-base"]

    # (2) the UK customer gets no sub-tier identity at all
    uk = open_all(env, GB, read_values(env.bootstrap, env.topics.outbound(GB)))
    assert len(uk) == 4
    assert all(
        "supplierId" not in e["footprint"]["extensions"][1]["data"]["lineage"]["inputs"][0]
        for e in uk
    )
    # crypto per batch: every message is version 2 with its own proof; a transaction's messages
    # (all recipients) share one root signature and each recipient's one HPKE encapsulation
    serde = GatewaySerde(env.registry)
    sealed = [
        sealed_from_datum(serde.decode(v, "SealedMessage"))
        for rid in (EU, GB)
        for v in read_values(env.bootstrap, env.topics.outbound(rid))
    ]
    assert all(m.version == 2 and m.proof is not None for m in sealed)
    assert len({m.signature for m in sealed}) <= stats.transactions
    encs = {(m.recipient_id, m.ciphertext[:32]) for m in sealed}
    assert len(encs) <= 2 * stats.transactions

    # (3) the audit log verifies (CLI), then an exported copy is tampered with
    assert (
        invoke(cli, ["audit", "verify", "--gateway-pub", str(env.pub_path), *env.args()]).exit_code
        == 0
    )
    export = env.tmp / "audit.jsonl"
    assert invoke(cli, ["audit", "export", "--out", str(export), *env.args()]).exit_code == 0
    result = invoke(
        cli, ["audit", "verify", "--gateway-pub", str(env.pub_path), "--file", str(export)]
    )
    assert result.exit_code == 0 and "OK:" in result.stdout
    lines = export.read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    log_of_two = docs[0]["logId"]
    index = next(
        i
        for i, d in enumerate(docs)
        if d["logId"] == log_of_two and d.get("entry", {}).get("seq") == 2
    )
    verify_file = ["audit", "verify", "--gateway-pub", str(env.pub_path), "--file"]
    edited = [dict(d) for d in docs]
    edited[index] = {**docs[index], "entry": {**docs[index]["entry"], "outcome": "allowed"}}
    export.write_text("".join(json.dumps(d) + "\n" for d in edited))
    result = invoke(cli, [*verify_file, str(export)])
    assert result.exit_code == 1
    assert f"{log_of_two}: FAIL" in result.stdout and "first bad entry: 2" in result.stdout
    removed = env.tmp / "removed.jsonl"
    removed.write_text("".join(json.dumps(d) + "\n" for i, d in enumerate(docs) if i != index))
    result = invoke(cli, [*verify_file, str(removed)])
    assert result.exit_code == 1 and "first bad entry: 2" in result.stdout

    # (4) show, prove, report
    result = invoke(cli, ["audit", "show", "--json", "--recipient", EU, *env.args()])
    shown = json.loads(result.stdout)
    assert len(shown) == 4 and {e["recipient"]["id"] for e in shown} == {EU}
    log_id = shown[0]["logId"]
    result = invoke(
        cli, ["audit", "prove", f"{log_id}:0", "--gateway-pub", str(env.pub_path), *env.args()]
    )
    assert result.exit_code == 0 and result.stdout.startswith("OK:")
    report = env.tmp / "report.html"
    result = invoke(
        cli,
        ["audit", "report", "--out", str(report), "--gateway-pub", str(env.pub_path), *env.args()],
    )
    assert result.exit_code == 0
    page = report.read_text()
    assert "Every audit log verified" in page and EU in page and "R06-sub-tier-identity" in page


def test_a_failed_audit_write_sends_nothing_and_the_record_is_processed_again(env: Env) -> None:
    policy = env.policy()
    subs = parse_subscriptions(
        {"schema_version": 1, "subscriptions": [{"recipient": EU, "purpose": EU_PURPOSE}]}, policy
    )
    env.publish([rolled_footprint(), rolled_footprint(sequence=2)])  # same key: one partition

    failures = {"n": 0}
    enough = threading.Event()

    def audit_write_fails(stage: str) -> None:
        if stage == "after_audit":
            time.sleep(0.2)  # let the producer ship the outbound records to the broker first
            failures["n"] += 1
            if failures["n"] >= 3:
                enough.set()
            raise OSError("injected: pcf.audit refused the write")

    # (1) the audit write always fails: nothing is visible, the offsets did not move
    with env.runner(policy, subs, fault=audit_write_fails) as runner:
        stats = runner.run(stop=enough, max_seconds=60)
    assert stats.records == 0 and stats.aborted >= 2
    assert read_values(env.bootstrap, env.topics.outbound(EU)) == []
    assert read_values(env.bootstrap, env.topics.audit) == []
    # the aborted sends did reach the log; read_committed consumers never see them
    assert len(read_values(env.bootstrap, env.topics.outbound(EU), committed=False)) >= 4
    probe = Consumer({"bootstrap.servers": env.bootstrap, "group.id": env.group})
    committed = probe.committed(
        [TopicPartition(env.topics.products, p) for p in (0, 1)], timeout=10
    )
    probe.close()
    assert all(tp.offset < 0 for tp in committed)  # nothing committed for the group

    # (2) the first attempt fails once, then the same records go, exactly once
    calls = {"n": 0}

    def fails_once(stage: str) -> None:
        if stage == "before_commit" and calls["n"] == 0:
            calls["n"] += 1
            raise RuntimeError("injected: crash before commit")

    with env.runner(policy, subs, fault=fails_once) as runner:
        stats = runner.run(max_records=2, max_seconds=60)
    assert stats.records == 2 and stats.aborted == 1
    envelopes = open_all(env, EU, read_values(env.bootstrap, env.topics.outbound(EU)))
    assert len(envelopes) == 2
    entries, _ = audit(env)
    (chain,) = entries.values()
    assert [e.seq for e in chain] == [0, 1]
    assert {e.message_id for e in chain} == {e["messageId"] for e in envelopes}


def test_a_restart_continues_the_chain(env: Env) -> None:
    policy = env.policy()
    subs = parse_subscriptions(
        {"schema_version": 1, "subscriptions": [{"recipient": GB, "purpose": GB_PURPOSE}]}, policy
    )
    env.publish([rolled_footprint(sequence=1), rolled_footprint(sequence=2)])
    with env.runner(policy, subs, checkpoint_interval_s=3600.0) as runner:
        assert runner.run(max_records=2, max_seconds=60).records == 2
    # closing sealed the chain; a new instance reads the head back and goes on
    env.publish([rolled_footprint(sequence=3)])
    with env.runner(policy, subs, checkpoint_interval_s=3600.0) as runner:
        assert runner.run(max_records=1, max_seconds=60).records == 1
    entries, checkpoints = audit(env)
    (log_id,) = entries
    assert [e.seq for e in entries[log_id]] == [0, 1, 2]
    assert [cp.tree_size for cp in checkpoints[log_id]] == [2, 3]


def test_held_transfers_wait_for_a_decision_and_every_step_is_audited(env: Env) -> None:
    policy = env.policy(hold_city_for_eu=True)
    subs = parse_subscriptions(
        {"schema_version": 1, "subscriptions": [{"recipient": EU, "purpose": EU_PURPOSE}]}, policy
    )
    env.publish(
        [rolled_footprint(sequence=1), rolled_footprint(sequence=2), rolled_footprint(sequence=3)]
    )
    with env.runner(policy, subs, approval_ttl=timedelta(seconds=20)) as runner:
        stats = runner.run(max_records=3, max_seconds=60)
        assert (stats.held, stats.sent) == (3, 0)
        assert read_values(env.bootstrap, env.topics.outbound(EU)) == []

        result = invoke(cli, ["approvals", "list", "--json", *env.args()])
        pending = json.loads(result.stdout)
        assert [p["status"] for p in pending] == ["pending"] * 3
        assert {h["rule"] for h in pending[0]["held"]} == {"R09-facility-address"}
        first, second, third = (p["approvalId"] for p in pending)

        # the requester may not decide; a compliance officer approves one and denies another
        result = invoke(
            cli,
            [
                "approvals",
                "approve",
                first,
                *env.officer_args("pcfx-gateway"),
                "--reason",
                "x",
                *env.args(),
            ],
        )
        assert result.exit_code == 1 and "four eyes" in result.output
        approve_args = [
            "approvals",
            "approve",
            first[:8],  # a unique prefix of the id is enough
            *env.officer_args(),
            "--reason",
            "CBAM plant location needed",
            *env.args(),
        ]
        assert invoke(cli, approve_args).exit_code == 0
        deny_args = [
            "approvals",
            "deny",
            second,
            *env.officer_args(),
            "--reason",
            "not needed",
            *env.args(),
        ]
        assert invoke(cli, deny_args).exit_code == 0

        stats = runner.run(idle_seconds=2, max_seconds=30)
        assert (stats.approvals_released, stats.approvals_denied) == (1, 1)

    released = open_all(env, EU, read_values(env.bootstrap, env.topics.outbound(EU)))
    assert len(released) == 1
    assert released[0]["approvalId"] == first
    assert (
        released[0]["footprint"]["extensions"][1]["data"]["lineage"]["facility"]["city"] == "Ningde"
    )

    result = invoke(cli, ["approvals", "list", "--all", "--json", *env.args()])
    states = {p["approvalId"]: p["status"] for p in json.loads(result.stdout)}
    assert states == {first: "released", second: "closed_denied", third: "pending"}
    result = invoke(
        cli, ["approvals", "approve", second, *env.officer_args(), "--reason", "late", *env.args()]
    )
    assert result.exit_code == 1

    entries, _ = audit(env)
    (chain,) = entries.values()
    kinds = [e.kind for e in chain]
    assert kinds[:3] == [EntryKind.TRANSFER_HELD.value] * 3
    assert sorted(kinds[3:]) == sorted(
        [
            EntryKind.APPROVAL_APPROVED.value,
            EntryKind.TRANSFER.value,
            EntryKind.APPROVAL_DENIED.value,
        ]
    )
    approved = next(e for e in chain if e.kind == EntryKind.APPROVAL_APPROVED.value)
    # the approver on record is the owner of the officer key's registration
    assert (approved.approver, approved.approval_reason) == (OFFICER, "CBAM plant location needed")
    sent = next(e for e in chain if e.kind == EntryKind.TRANSFER.value)
    assert sent.approval_id == first and sent.message_id == released[0]["messageId"]


def test_an_undecided_approval_expires(env: Env) -> None:
    policy = env.policy(hold_city_for_eu=True)
    subs = parse_subscriptions(
        {"schema_version": 1, "subscriptions": [{"recipient": EU, "purpose": EU_PURPOSE}]}, policy
    )
    env.publish([rolled_footprint()])
    with env.runner(policy, subs, approval_ttl=timedelta(seconds=1)) as runner:
        assert runner.run(max_records=1, max_seconds=60).held == 1
        stats = runner.run(max_seconds=4)
    assert stats.approvals_expired == 1
    entries, _ = audit(env)
    (chain,) = entries.values()
    assert [e.kind for e in chain] == [
        EntryKind.TRANSFER_HELD.value,
        EntryKind.APPROVAL_EXPIRED.value,
    ]
    assert read_values(env.bootstrap, env.topics.outbound(EU)) == []


def test_two_instances_share_the_partitions_and_each_record_goes_once(env: Env) -> None:
    policy = env.policy()
    subs = parse_subscriptions(
        {"schema_version": 1, "subscriptions": [{"recipient": GB, "purpose": GB_PURPOSE}]}, policy
    )
    products = [f"urn:pact:example-pack.cn:product-id:P{i}" for i in range(12)]
    env.publish([rolled_footprint(product_id=p) for p in products])
    runners = [env.runner(policy, subs), env.runner(policy, subs)]
    results: list[Any] = [None, None]

    def work(i: int) -> None:
        with runners[i] as runner:
            results[i] = runner.run(idle_seconds=6, max_seconds=60)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert sum(r.records for r in results) >= 12
    envelopes = open_all(env, GB, read_values(env.bootstrap, env.topics.outbound(GB)))
    got = sorted(e["footprint"]["productIds"][0] for e in envelopes)
    assert got == sorted(products)  # every record exactly once
    entries, _ = audit(env)
    assert set(entries) <= {"gateway-p0", "gateway-p1"}
    assert sum(len(chain) for chain in entries.values()) == 12


def test_the_cli_runs_the_gateway_and_recipients_decrypt_a_dumped_file(env: Env) -> None:
    from pcf_exchange.pcfx.commands.gateway import gateway_app

    app = typer.Typer()
    app.add_typer(gateway_app, name="gateway")
    app.add_typer(outbound_app, name="outbound")
    policy_file = env.tmp / "policy-cli.yaml"
    keys = {rid: load_recipient_private_key(p) for rid, p in env.recipient_keys.items()}
    policy_with_keys(keys, policy_file)
    subs_file = env.tmp / "subs.yaml"
    subs_file.write_text(
        f"schema_version: 1\nsubscriptions:\n  - {{recipient: {CN}, purpose: {CN_PURPOSE}}}\n"
    )
    result = invoke(
        app,
        [
            "gateway",
            "policy-check",
            "--policy",
            str(policy_file),
            "--subscriptions",
            str(subs_file),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["subscriptions"][0]["recipient"] == CN

    env.publish([rolled_footprint()])
    env.publish_raw(b"\x00\x00\x00\x00\x07 not a roll-up")
    args = [
        "gateway",
        "run",
        "--policy",
        str(policy_file),
        "--gateway-key",
        str(env.key_path),
        "--operator-key",
        str(env.trust.operator.public_file),
        "--subscriptions",
        str(subs_file),
        "--group",
        env.group,
        "--max-records",
        "2",
        "--max-seconds",
        "60",
        "--checkpoint-interval",
        "0",
        "--json",
        *env.args(),
    ]
    result = invoke(app, args)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert (stats["records"], stats["sent"], stats["rejected"]) == (2, 1, 1)
    rejected = read_values(env.bootstrap, env.topics.rejected)
    from pcf_exchange.contracts import Rejection

    (rejection,) = (AvroSerde(env.registry).decode(v, Rejection) for v in rejected)
    assert (
        rejection.error_code in {"serde", "unknown_schema"}
        and rejection.source_topic == env.topics.products
    )

    dump = env.tmp / "cn.jsonl"
    result = invoke(app, ["outbound", "dump", "--recipient", CN, "--out", str(dump), *env.args()])
    assert result.exit_code == 0 and len(dump.read_text().splitlines()) == 1
    result = invoke(
        app,
        [
            "outbound",
            "decrypt",
            "--recipient",
            CN,
            "--key",
            str(env.recipient_keys[CN]),
            "--gateway-pub",
            str(env.pub_path),
            str(dump),
        ],
    )
    assert result.exit_code == 0, result.output
    (envelope,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    # domestic: sub-tier ids and (facility scale makes it important) the address travel
    # encrypted in the field vault, exact for the need-to-know key
    lineage = envelope["footprint"]["extensions"][1]["data"]["lineage"]
    assert lineage["facility"]["address"] == {
        "pcfxEncrypted": "extensions[1].data.lineage.facility.address"
    }
    assert (
        envelope["decryptedFields"]["extensions[1].data.lineage.facility.address"] == SECRET_ADDRESS
    )
    assert (
        envelope["decryptedFields"]["extensions[1].data.lineage.inputs[0].supplierId"]
        == CELL_SUPPLIER
    )
    # another recipient's key cannot open it, a wrong gateway key is refused
    result = invoke(
        app,
        [
            "outbound",
            "decrypt",
            "--recipient",
            CN,
            "--key",
            str(env.recipient_keys[EU]),
            "--gateway-pub",
            str(env.pub_path),
            str(dump),
        ],
    )
    assert result.exit_code == 1
    other = env.tmp / "other.pem"
    _, other_pub = write_gateway_key(other)
    result = invoke(
        app,
        [
            "outbound",
            "decrypt",
            "--recipient",
            CN,
            "--key",
            str(env.recipient_keys[CN]),
            "--gateway-pub",
            str(other_pub),
            str(dump),
        ],
    )
    assert result.exit_code == 1 and "not trusted" in result.output


def test_the_core_gateway_shell_commits_through_the_kafka_seams(env: Env) -> None:
    from pcf_exchange.gateway import Gateway, TransferSink
    from pcf_exchange.gateway.audit import AuditStore
    from pcf_exchange.gateway.policy import CounterState
    from pcf_exchange.gateway.runtime import KafkaAuditStore, KafkaTransferSink, gateway_record

    policy = env.policy()
    ensure_topics(
        env.bootstrap,
        [
            (env.topics.audit, TOPICS["pcf.audit"], 1),
            (env.topics.checkpoints, TOPICS["pcf.audit.checkpoints"], 1),
            (env.topics.outbound(EU), TOPICS["pcf.outbound."], 1),
        ],
    )
    serde = GatewaySerde(
        env.registry, registrar=kafka_registrar(env.bootstrap, prefix=env.topics.prefix)
    )
    sink = KafkaTransferSink(
        env.bootstrap,
        topics=env.topics,
        serde=serde,
        log_id="shell",
        transactional_id=f"shell-{env.group}",
    )
    sink.open()
    store = KafkaAuditStore(
        env.bootstrap, topics=env.topics, serde=serde, log_id="shell", writer=sink
    )
    assert isinstance(sink, TransferSink) and isinstance(store, AuditStore)
    secrets = env.secrets
    shell = Gateway(
        policy, replace(secrets, log_id="shell"), sink, counters=CounterState.empty(2026)
    )
    from pcf_exchange.gateway.audit import ChainHead

    prepared = shell.process(
        gateway_record(rolled_footprint()), recipient=EU, purpose=EU_PURPOSE, now=datetime.now(UTC)
    )
    shell.checkpoint(now=datetime.now(UTC))
    assert prepared.outbound is not None
    assert len(read_values(env.bootstrap, env.topics.outbound(EU))) == 1
    entries = store.entries()
    assert entries == list(prepared.entries) and ChainHead.of(entries) == shell.head
    assert [cp.tree_size for cp in store.checkpoints()] == [1]
    reader = KafkaAuditStore(env.bootstrap, topics=env.topics, serde=serde, log_id="shell")
    from pcf_exchange.gateway import AuditStoreError

    with pytest.raises(AuditStoreError, match="read-only"):
        reader.append(entries)
