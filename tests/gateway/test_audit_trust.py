"""The audit chain resumes only from what the gateway signed; auditors pin checkpoints.

Pure checks first (``check_resume``, ``check_audit_log`` with pins), then the attacks on the
real broker: a chained forged entry and a bad-hash entry written to ``pcf.audit`` by a producer
that is not the gateway, deleted and rolled-back checkpoints, a tail cut after a pinned
checkpoint, a crash that left the tail unsealed, and the audit topics' retention.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
)
from typer.testing import CliRunner

from pcf_exchange.contracts.errors import InfrastructureError
from pcf_exchange.contracts.topics import TOPICS, ensure_topics
from pcf_exchange.gateway import GatewayKey, KeyRing
from pcf_exchange.gateway._codec import entry_from_datum, entry_to_datum
from pcf_exchange.gateway.audit import (
    AuditEntry,
    AuditResumeRefused,
    ChainHead,
    Checkpoint,
    Problem,
    RefusalReason,
    append_entry,
    check_audit_log,
    check_resume,
    make_checkpoint,
    resume_chain,
    seal_entry,
)
from pcf_exchange.gateway.runtime import (
    GatewaySerde,
    Topics,
    parse_subscriptions,
    read_audit_logs,
)
from pcf_exchange.pcfx.commands.gateway import audit_app
from tests.gateway._rollups import rolled_footprint
from tests.gateway.test_runtime_kafka import EU, GB, GB_PURPOSE, Env, make_env, read_values

cli = typer.Typer()
cli.add_typer(audit_app, name="audit")
invoke = CliRunner().invoke
NOW = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
LOG = "gateway-p0"


# ----------------------------------------------------------------------------------------------
# pure: a chain written the way the gateway writes it


def _draft(i: int, recipient: str = GB) -> AuditEntry:
    return AuditEntry(
        0,
        "",
        "transfer",
        f"2026-12-06T06:00:{i % 60:02d}.000Z",
        recipient_id=recipient,
        outcome="allowed",
    )


def _write(
    key: GatewayKey, batches: Sequence[int], *, log_id: str = LOG, recipient: str = GB
) -> tuple[list[AuditEntry], ChainHead]:
    """Entries in *batches* (sizes), the last of each batch sealed, as KafkaTransferSink does."""
    head = ChainHead()
    out: list[AuditEntry] = []
    for size in batches:
        batch = []
        for _ in range(size):
            entry, head = append_entry(head, _draft(head.size, recipient))
            batch.append(entry)
        batch[-1] = seal_entry(batch[-1], log_id=log_id, signer=key)
        out += batch
    return out, head


@pytest.fixture(scope="module")
def key() -> GatewayKey:
    return GatewayKey.generate()


@pytest.fixture(scope="module")
def ring(key: GatewayKey) -> KeyRing:
    return KeyRing.of(key.public_key)


def _checkpoint(key: GatewayKey, entries: Sequence[AuditEntry], log_id: str = LOG) -> Checkpoint:
    return make_checkpoint(ChainHead.of(entries), log_id=log_id, signer=key, issued_at=NOW)


def test_a_sealed_tail_after_the_checkpoint_resumes(key: GatewayKey, ring: KeyRing) -> None:
    entries, head = _write(key, [3, 2, 4])
    cp = _checkpoint(key, entries[:5])
    check = resume_chain(LOG, entries, [cp], ring)
    assert check.head == head and check.anchor == cp and check.unsealed == 4
    # a crash before any checkpoint: the batch seals vouch for the whole log
    assert resume_chain(LOG, entries, [], ring).head == head
    assert resume_chain(LOG, [], [], ring).head == ChainHead()


def test_a_chained_forged_entry_is_not_adopted(key: GatewayKey, ring: KeyRing) -> None:
    entries, head = _write(key, [3, 2])
    forged, _ = append_entry(head, replace(_draft(9), recipient_id="attacker"))
    offsets = list(range(100, 106))
    check = check_resume(
        LOG, [*entries, forged], [_checkpoint(key, entries)], ring, offsets=offsets
    )
    assert not check and check.reason is RefusalReason.UNVOUCHED_TAIL
    assert (check.first_bad_entry, check.offset) == (5, 105)
    assert "gateway-p0" in check.message and "pcf.audit offset 105" in check.message
    with pytest.raises(AuditResumeRefused, match="first bad entry: entry 5") as caught:
        resume_chain(LOG, [*entries, forged], [], ring, offsets=offsets)
    assert caught.value.log_id == LOG and caught.value.offset == 105
    # sealing it with another key does not help: the seal is forged
    other = GatewayKey.generate()
    sealed = seal_entry(forged, log_id=LOG, signer=other)
    check = check_resume(LOG, [*entries, sealed], [], ring)
    assert check.reason is RefusalReason.FORGED_SEAL and check.first_bad_entry == 5
    # nor does a checkpoint the attacker signs over it
    check = check_resume(LOG, [*entries, forged], [_checkpoint(other, [*entries, forged])], ring)
    assert check.reason is RefusalReason.UNVOUCHED_TAIL and check.ignored_checkpoints == 1


def test_a_seal_moved_from_another_log_is_forged(key: GatewayKey, ring: KeyRing) -> None:
    entries, _ = _write(key, [2], log_id="gateway-p1")
    check = check_resume(LOG, entries, [], ring)
    assert check.reason is RefusalReason.FORGED_SEAL


def test_a_bad_hash_entry_is_refused(key: GatewayKey, ring: KeyRing) -> None:
    entries, _ = _write(key, [2, 2])
    bad = [*entries[:3], replace(entries[3], outcome="blocked")]
    check = check_resume(LOG, bad, [_checkpoint(key, entries[:2])], ring)
    assert check.reason is RefusalReason.BAD_ENTRY and check.first_bad_entry == 3
    assert "hashes to" in check.message


def test_rewritten_or_truncated_history_under_a_checkpoint_is_refused(
    key: GatewayKey, ring: KeyRing
) -> None:
    entries, _ = _write(key, [4])
    cp = _checkpoint(key, entries)
    # history rewritten with every hash recomputed: only the signed root can tell
    rewritten, head = [], ChainHead()
    for e in entries:
        entry, head = append_entry(head, replace(e, outcome="transformed"))
        rewritten.append(entry)
    check = check_resume(LOG, rewritten, [cp], ring)
    assert check.reason is RefusalReason.CHECKPOINT_MISMATCH
    check = check_resume(LOG, entries[:3], [cp], ring)
    assert check.reason is RefusalReason.TRUNCATED and check.first_bad_entry == 3


def test_verify_names_unvouched_entries_and_forged_seals(key: GatewayKey, ring: KeyRing) -> None:
    entries, head = _write(key, [2, 2])
    forged, _ = append_entry(head, _draft(7))

    def strict(log: Sequence[AuditEntry], offsets: Sequence[int] | None = None) -> Any:
        return check_audit_log(log, [], ring, log_id=LOG, require_vouched=True, offsets=offsets)

    assert strict(entries).ok
    verdict = strict([*entries, forged], [0, 1, 2, 3, 9])
    assert [f.problem for f in verdict.findings] == [Problem.UNVOUCHED]
    assert verdict.first_bad_entry == 4 and "(offset 9)" in verdict.findings[0].message
    assert check_audit_log([*entries, forged], [], ring).ok  # the lax form, as before
    sealed = seal_entry(forged, log_id=LOG, signer=GatewayKey.generate())
    verdict = strict([*entries, sealed])
    assert {f.problem for f in verdict.findings} == {Problem.SEAL_INVALID, Problem.UNVOUCHED}


def test_a_pinned_checkpoint_exposes_rollback_cut_fork_and_deletion(
    key: GatewayKey, ring: KeyRing
) -> None:
    entries, _ = _write(key, [2, 2, 2])
    cp2, cp4, cp6 = (_checkpoint(key, entries[:n]) for n in (2, 4, 6))

    def problems(
        log: Sequence[AuditEntry], cps: Sequence[Checkpoint], pin: Checkpoint
    ) -> set[Problem]:
        return {f.problem for f in check_audit_log(log, cps, ring, pinned=[pin]).findings}

    assert problems(entries, [cp2, cp4, cp6], cp4) == set()
    assert problems(entries, [cp2, cp4], cp6) == {Problem.PIN_ROLLBACK}
    assert problems(entries, [], cp4) == {Problem.PIN_MISSING}
    assert problems(entries, [cp2, cp6], cp4) == {Problem.PIN_MISSING}
    assert problems(entries[:4], [cp2, cp4], cp6) == {Problem.PIN_TAIL_CUT, Problem.PIN_ROLLBACK}
    other, _ = _write(key, [1, 3], recipient=EU)
    forked = _checkpoint(key, other)
    assert Problem.PIN_FORK in problems(entries, [cp2, cp4, cp6], forked)
    # without a pin, deleting every checkpoint is visible only as "unsealed"
    verdict = check_audit_log(entries, [], ring, require_checkpoint=True)
    assert [f.problem for f in verdict.findings] == [Problem.UNSEALED]
    assert check_audit_log(entries, [], ring).ok


def test_a_seal_survives_the_wire_and_the_export(key: GatewayKey) -> None:
    entries, _ = _write(key, [2])
    sealed = entries[-1]
    assert sealed.seal is not None and entries[0].seal is None
    _, back = entry_from_datum(entry_to_datum(sealed, LOG))
    assert back == sealed and back.compute_hash() == sealed.entry_hash
    assert AuditEntry.from_json(json.loads(json.dumps(sealed.to_json()))) == sealed


# ----------------------------------------------------------------------------------------------
# on the real broker


@pytest.fixture
def env(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Env]:
    yield from make_env(kafka_bootstrap, tmp_path, 1)


@pytest.fixture
def env3(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Env]:
    yield from make_env(kafka_bootstrap, tmp_path, 3)


def _gb(env: Env) -> Any:
    policy = env.policy()
    return policy, parse_subscriptions(
        {"schema_version": 1, "subscriptions": [{"recipient": GB, "purpose": GB_PURPOSE}]}, policy
    )


def _publish(env: Env, partition: int, products: Sequence[str]) -> None:
    """Roll-ups of *products* on *partition* of ``pcf.products``, signed as the streams do."""
    from pcf_exchange.contracts import AvroSerde

    serde = AvroSerde(env.registry)
    keyed = [
        (p.encode(), serde.encode(env.topics.products, rolled_footprint(product_id=p)))
        for p in products
    ]
    env.publish_values(keyed, partition=partition)


def _logs(env: Env) -> tuple[dict[str, list[AuditEntry]], dict[str, list[Checkpoint]]]:
    entries, checkpoints, problems = read_audit_logs(
        env.bootstrap, env.topics, GatewaySerde(env.registry)
    )
    assert problems == []
    return entries, checkpoints


def _append_raw(env: Env, topic: str, key: str, value: bytes) -> int:
    """What any principal allowed to write the topic can do: one plain, non-gateway producer."""
    producer = Producer({"bootstrap.servers": env.bootstrap})
    offsets: list[int] = []
    producer.produce(
        topic,
        key=key.encode(),
        value=value,
        partition=0,
        on_delivery=lambda err, msg: offsets.append(msg.offset() or 0),
    )
    assert producer.flush(30) == 0
    return offsets[0]


def _delivered(env: Env) -> list[str]:
    from pcf_exchange.gateway import open_message
    from pcf_exchange.gateway._keys import load_gateway_key, load_recipient_private_key
    from pcf_exchange.gateway.runtime import sealed_from_datum

    serde = GatewaySerde(env.registry)
    key = load_recipient_private_key(env.recipient_keys[GB])
    ring = KeyRing.of(load_gateway_key(env.key_path).public_key)
    out = []
    for value in read_values(env.bootstrap, env.topics.outbound(GB)):
        message = sealed_from_datum(serde.decode(value, "SealedMessage"))
        opened = open_message(message, recipient_id=GB, private_key=key, trusted=ring)
        out.append(opened.envelope["footprint"]["productIds"][0])
    return sorted(out)


def _verify(env: Env, *extra: str) -> Any:
    return invoke(cli, ["audit", "verify", "--gateway-pub", str(env.pub_path), *env.args(), *extra])


def _product(tag: str, i: int) -> str:
    return f"urn:pact:example-pack.cn:product-id:{tag}{i}"


@pytest.mark.broker
def test_a_chained_forged_entry_and_a_bad_hash_entry_each_stop_only_their_partition(
    env3: Env,
) -> None:
    env = env3
    policy, subs = _gb(env)
    for p in range(3):
        _publish(env, p, [_product(f"A{p}-", i) for i in range(2)])
    with env.runner(policy, subs, checkpoint_interval_s=3600.0) as runner:
        assert runner.run(max_records=6, max_seconds=90).records == 6
    entries, checkpoints = _logs(env)
    assert sorted(entries) == ["gateway-p0", "gateway-p1", "gateway-p2"]
    serde = GatewaySerde(env.registry)

    # the attack: a plain producer appends to pcf.audit
    # (1) gateway-p0: a correctly chained forged entry (a transfer that never happened)
    p0 = entries["gateway-p0"]
    forged, _ = append_entry(ChainHead.of(p0), replace(p0[-1], recipient_id="attacker-sink"))
    forged_at = _append_raw(
        env,
        env.topics.audit,
        "gateway-p0",
        serde.encode_entry(env.topics.audit, forged, "gateway-p0"),
    )
    # (2) gateway-p1: a chained entry whose content no longer matches its hash
    p1 = entries["gateway-p1"]
    chained, _ = append_entry(ChainHead.of(p1), p1[-1])
    bad = replace(chained, outcome="blocked")
    bad_at = _append_raw(
        env, env.topics.audit, "gateway-p1", serde.encode_entry(env.topics.audit, bad, "gateway-p1")
    )

    # new work on every partition; the restarted gateway goes on with p2 only
    for p in range(3):
        _publish(env, p, [_product(f"B{p}-", i) for i in range(2)])
    with env.runner(policy, subs, checkpoint_interval_s=0.0) as runner:
        stats = runner.run(max_records=2, max_seconds=90)
        runner.run(idle_seconds=2, max_seconds=10)  # p0/p1 records stay where they are
        stopped = dict(runner.stopped)
    assert stats.records == 2
    assert sorted(stopped) == [0, 1]
    refused0, refused1 = stopped[0], stopped[1]
    assert refused0.refusal is RefusalReason.UNVOUCHED_TAIL
    assert (refused0.log_id, refused0.first_bad_entry, refused0.offset) == (
        "gateway-p0",
        2,
        forged_at,
    )
    assert f"offset {forged_at}" in refused0.message and "gateway-p0" in refused0.message
    assert refused1.refusal is RefusalReason.BAD_ENTRY
    assert (refused1.log_id, refused1.first_bad_entry, refused1.offset) == ("gateway-p1", 2, bad_at)

    # p2's new records went out; nothing of p0/p1 did, and their chains were neither
    # extended nor sealed over the forged entries
    delivered = _delivered(env)
    assert [p for p in delivered if "B2-" in p] == [_product("B2-", 0), _product("B2-", 1)]
    assert not [p for p in delivered if "B0-" in p or "B1-" in p]
    after, after_cps = _logs(env)
    assert len(after["gateway-p0"]) == 3 and len(after["gateway-p1"]) == 3
    assert len(after["gateway-p2"]) == 4
    assert after_cps["gateway-p0"] == checkpoints["gateway-p0"]
    assert after_cps["gateway-p1"] == checkpoints["gateway-p1"]

    # the auditor's view names both
    result = _verify(env)
    assert result.exit_code == 1, result.output
    assert "gateway-p0: FAIL" in result.stdout
    assert "no signature of a trusted gateway key covers them" in result.stdout
    assert f"offset {forged_at}" in result.stdout
    assert "gateway-p1: FAIL" in result.stdout and "first bad entry: 2" in result.stdout
    assert "gateway-p2: OK" in result.stdout


@pytest.mark.broker
def test_a_tail_left_unsealed_by_a_crash_is_resumed_from_its_batch_seals(env: Env) -> None:
    policy, subs = _gb(env)
    _publish(env, 0, [_product("C", i) for i in range(3)])
    with env.runner(policy, subs, checkpoint_interval_s=3600.0, batch_size=1) as runner:
        runner._seal = lambda chain: False  # type: ignore[method-assign]  # crash: never sealed
        assert runner.run(max_records=3, max_seconds=60).records == 3
    entries, checkpoints = _logs(env)
    assert len(entries["gateway-p0"]) == 3 and "gateway-p0" not in checkpoints
    assert _verify(env).exit_code == 14  # entries but no checkpoint: not clean without a pin
    assert _verify(env, "--allow-unsealed").exit_code == 0
    _publish(env, 0, [_product("C", 9)])
    with env.runner(policy, subs, checkpoint_interval_s=0.0) as runner:
        assert runner.run(max_records=1, max_seconds=60).records == 1
        assert runner.stopped == {}
    entries, checkpoints = _logs(env)
    assert [e.seq for e in entries["gateway-p0"]] == [0, 1, 2, 3]
    assert [cp.tree_size for cp in checkpoints["gateway-p0"]][-1] == 4


def _recreate(env: Env, topic: str, values: Sequence[tuple[bytes, bytes]]) -> None:
    """An operator-level attacker: delete *topic*, create it again, write *values* back."""
    admin = AdminClient({"bootstrap.servers": env.bootstrap})
    admin.delete_topics([topic], operation_timeout=30)[topic].result(30)
    deadline = time.monotonic() + 60
    while True:
        if topic not in admin.list_topics(timeout=10).topics:
            try:
                new = NewTopic(
                    topic,
                    num_partitions=1,
                    replication_factor=-1,
                    config=dict(TOPICS["pcf.audit"].configs),
                )
                admin.create_topics([new], operation_timeout=30)[topic].result(30)
                break
            except KafkaException:
                pass
        assert time.monotonic() < deadline, f"{topic} could not be recreated"
        time.sleep(0.5)

    def leader() -> int:
        partition = admin.list_topics(topic, timeout=10).topics[topic].partitions.get(0)
        return -1 if partition is None else int(partition.leader)

    while leader() < 0:  # written to once its partition has a leader (not after a fixed 1 s)
        assert time.monotonic() < deadline, f"{topic} has no leader"
        time.sleep(0.1)
    producer = Producer({"bootstrap.servers": env.bootstrap})
    for key, value in values:
        producer.produce(topic, key=key, value=value, partition=0)
    assert producer.flush(30) == 0


def _raw(env: Env, topic: str) -> list[tuple[bytes, bytes]]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": env.bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex[:8]}",
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(topic, 0, -2)])
    out: list[tuple[bytes, bytes]] = []
    for _ in range(300):
        done = False
        for message in consumer.consume(500, 0.1):
            if message.error():
                done = True
            else:
                out.append((message.key() or b"", message.value() or b""))
        if done:
            break
    consumer.close()
    return out


@pytest.mark.broker
def test_deleted_rolled_back_and_cut_audit_topics_are_reported_against_a_pinned_checkpoint(
    env: Env,
) -> None:
    policy, subs = _gb(env)
    _publish(env, 0, [_product("D", 0), _product("D", 1)])
    with env.runner(policy, subs) as runner:
        assert runner.run(max_records=2, max_seconds=60).records == 2
    old_checkpoints = _raw(env, env.topics.checkpoints)
    old_entries = _raw(env, env.topics.audit)
    _publish(env, 0, [_product("D", 2), _product("D", 3)])
    with env.runner(policy, subs) as runner:
        assert runner.run(max_records=2, max_seconds=60).records == 2
    _, checkpoints = _logs(env)
    newest = max(cp.tree_size for cp in checkpoints[LOG])
    assert newest == 4 and all(cp.tree_size <= 2 for cp in _cps(env, old_checkpoints))

    # the auditor pins what they verified (a file, or inline JSON)
    pin = env.tmp / "pin.json"
    result = invoke(
        cli,
        ["audit", "checkpoint", "--out", str(pin), "--gateway-pub", str(env.pub_path), *env.args()],
    )
    assert result.exit_code == 0, result.output
    (pinned,) = json.loads(pin.read_text())["checkpoints"]
    assert (pinned["logId"], pinned["treeSize"]) == (LOG, 4)
    assert _verify(env, "--trusted-checkpoint", str(pin)).exit_code == 0
    verified = json.loads(_verify(env, "--json").stdout)
    assert verified["logs"][LOG]["checkpoint"]["treeSize"] == 4
    assert _verify(env, "--trusted-checkpoint", json.dumps(pinned)).exit_code == 0

    # (1) the checkpoint topic rolled back to its older state
    _recreate(env, env.topics.checkpoints, old_checkpoints)
    assert _verify(env).exit_code == 0  # invisible without a pin
    result = _verify(env, "--trusted-checkpoint", str(pin))
    assert result.exit_code == 12, result.output
    assert f"log {LOG} rolled back" in result.stdout and "size 2" in result.stdout
    assert "size 4" in result.stdout

    # (2) every checkpoint deleted
    _recreate(env, env.topics.checkpoints, [])
    result = _verify(env, "--trusted-checkpoint", str(pin))
    assert result.exit_code == 13, result.output
    assert f"log {LOG} has no valid checkpoint" in result.stdout
    assert _verify(env).exit_code == 14
    assert _verify(env, "--allow-unsealed").exit_code == 0

    # (3) the tail cut back to the old, self-consistent state: clean on its own, not to the pin
    _recreate(env, env.topics.checkpoints, old_checkpoints)
    _recreate(env, env.topics.audit, old_entries)
    assert _verify(env).exit_code == 0
    result = _verify(env, "--trusted-checkpoint", str(pin), "--json")
    assert result.exit_code == 11, result.output
    doc = json.loads(result.stdout)
    problems = {f["problem"]: f for f in doc["logs"][LOG]["findings"]}
    assert set(problems) == {"pin_tail_cut", "pin_rollback"} and doc["verdict"] == "tail_cut"
    assert "entries 2..3 are gone" in problems["pin_tail_cut"]["message"]
    assert problems["pin_tail_cut"]["entry"] == 2


def _cps(env: Env, raw: Sequence[tuple[bytes, bytes]]) -> list[Checkpoint]:
    from pcf_exchange.gateway._codec import checkpoint_from_datum

    serde = GatewaySerde(env.registry)
    return [checkpoint_from_datum(serde.decode(v, "AuditLogCheckpoint")) for _, v in raw]


@pytest.mark.broker
def test_audit_topics_keep_their_evidence_forever(env: Env) -> None:
    policy, subs = _gb(env)
    runner = env.runner(policy, subs)
    runner.start()
    runner.close()
    admin = AdminClient({"bootstrap.servers": env.bootstrap})
    for topic in (env.topics.audit, env.topics.checkpoints):
        (future,) = admin.describe_configs(
            [ConfigResource(ConfigResource.Type.TOPIC, topic)]
        ).values()
        configs = future.result(30)
        assert (configs["retention.ms"].value, configs["retention.bytes"].value) == ("-1", "-1")

    # audit topics someone created with the broker's default retention: the gateway refuses
    other = replace(env, topics=Topics(f"t{uuid.uuid4().hex[:10]}."), group=env.group + "-b")
    ensure_topics(env.bootstrap, [(other.topics.products, TOPICS["pcf.products"], 1)])
    admin = AdminClient({"bootstrap.servers": env.bootstrap})
    weekly = NewTopic(other.topics.checkpoints, 1, 1, config={"retention.ms": "604800000"})
    admin.create_topics([weekly])[other.topics.checkpoints].result(30)
    with pytest.raises(InfrastructureError, match=r"must have retention\.ms=-1") as caught:
        other.runner(policy, subs).start()
    assert other.topics.checkpoints in caught.value.message
    assert "kafka-configs.sh" in caught.value.hint and "retention.ms=-1" in caught.value.hint


def test_every_verify_exit_code_is_documented_in_the_help_and_the_readme() -> None:
    from pcf_exchange.pcfx.commands.gateway_audit import VerifyExit

    help_text = " ".join(invoke(cli, ["audit", "verify", "--help"]).stdout.split())
    readme = (Path(__file__).resolve().parents[2] / "gateway" / "README.md").read_text()
    for code in VerifyExit:
        words = code.name.lower().replace("_", " ")
        if code is not VerifyExit.OK:
            assert f"{int(code)} {words}" in help_text, code
            assert f"| {int(code)} | {code.name.lower()} |" in readme, code


def test_pins_on_an_exported_file_fork_untrusted_and_unreadable(
    key: GatewayKey, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from pcf_exchange.gateway.audit._export import write_export

    pub = tmp_path / "gateway.pub.pem"
    pub.write_bytes(key.public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    entries, _ = _write(key, [2, 2])
    export = tmp_path / "audit.jsonl"
    write_export(export, {LOG: entries}, {LOG: [_checkpoint(key, entries)]})
    verify = ["audit", "verify", "--gateway-pub", str(pub), "--file", str(export)]
    assert invoke(cli, verify).exit_code == 0
    # the auditor saw another history of the same size: a fork (inline JSON pin)
    other, _ = _write(key, [4], recipient=EU)
    result = invoke(
        cli, [*verify, "--trusted-checkpoint", json.dumps(_checkpoint(key, other).to_json())]
    )
    assert result.exit_code == 10, result.output
    assert f"log {LOG} forked" in result.stdout
    # a pin the trusted keys did not sign is refused outright
    foreign = _checkpoint(GatewayKey.generate(), entries)
    result = invoke(cli, [*verify, "--trusted-checkpoint", json.dumps(foreign.to_json())])
    assert result.exit_code == 1
    assert "not signed by a trusted --gateway-pub key" in " ".join(result.output.split())
    # a pin that is not a checkpoint
    result = invoke(cli, [*verify, "--trusted-checkpoint", '{"treeSize": 4}'])
    assert result.exit_code == 4, result.output
    result = invoke(cli, [*verify, "--trusted-checkpoint", str(tmp_path / "missing.json")])
    assert result.exit_code == 4, result.output
