"""Signed hand-offs on the real broker, named after the attack: what reaches ``pcf.products`` or
``pcf.approvals`` without the signature of a key the operator registered for that role is not
released, and the refusal is in the audit log (and, for products, on ``pcf.rejected``)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from pcf_exchange.contracts import AvroSerde, Rejection, SignerRole
from pcf_exchange.gateway import Policy
from pcf_exchange.gateway._approvals import approve
from pcf_exchange.gateway._decision_signing import sign_decision
from pcf_exchange.gateway.audit import AuditEntry, EntryKind
from pcf_exchange.gateway.runtime import (
    GatewaySerde,
    Subscriptions,
    decided_event,
    parse_subscriptions,
)
from tests.gateway._rollups import rolled_footprint
from tests.gateway._trust import COMPANY, OFFICER, SERVICE
from tests.gateway.test_runtime_kafka import (
    EU,
    EU_PURPOSE,
    Env,
    audit,
    cli,
    invoke,
    read_values,
)
from tests.gateway.test_runtime_kafka import env as env  # noqa: PLC0414 (the fixture)

pytestmark = pytest.mark.broker


def _eu_only(env: Env, *, hold: bool = False) -> tuple[Policy, Subscriptions]:
    policy = env.policy(hold_city_for_eu=hold)
    subs = parse_subscriptions(
        {"schema_version": 1, "subscriptions": [{"recipient": EU, "purpose": EU_PURPOSE}]}, policy
    )
    return policy, subs


def _blocked_reasons(entries: dict[str, list[AuditEntry]]) -> dict[str, str]:
    """record sha256 -> the reason code of its ``transfer_blocked`` entry."""
    return {
        e.record_sha256 or "": e.reasons[0].split("|")[0]
        for chain in entries.values()
        for e in chain
        if e.kind == EntryKind.TRANSFER_BLOCKED.value
    }


def test_unsigned_record_written_straight_to_pcf_products_is_not_delivered(env: Env) -> None:
    policy, subs = _eu_only(env)
    env.publish([rolled_footprint()], signer=None)  # what an attacker with write access does
    with env.runner(policy, subs) as runner:
        stats = runner.run(max_records=1, max_seconds=60)
    assert (stats.records, stats.sent, stats.untrusted, stats.blocked) == (1, 0, 1, 1)
    assert read_values(env.bootstrap, env.topics.outbound(EU)) == []
    entries, _ = audit(env)
    ((entry,),) = entries.values()
    assert entry.kind == EntryKind.TRANSFER_BLOCKED.value and entry.outcome == "blocked"
    assert entry.reasons[0].startswith("unsigned|") and "unsigned" in entry.reasons[1]
    (rejection,) = (
        AvroSerde(env.registry).decode(v, Rejection)
        for v in read_values(env.bootstrap, env.topics.rejected)
    )
    assert rejection.reason == "unsigned" and rejection.source_topic == env.topics.products


def test_forged_records_are_not_delivered_and_a_valid_signed_one_is(env: Env) -> None:
    from tests.gateway._trust import signed_batch

    policy, subs = _eu_only(env)
    # the operator registered a company key (role company) and revoked an old service key
    env.trust.register(
        env.bootstrap,
        env.registry,
        env.topics.keys,
        [
            env.trust.registration(COMPANY, SignerRole.COMPANY),
            env.trust.registration(
                "old-streams", SignerRole.SERVICE, revoked_at=datetime.now(UTC) - timedelta(1)
            ),
        ],
    )
    serde = AvroSerde(env.registry)
    values = {
        name: serde.encode(
            env.topics.products,
            rolled_footprint(product_id=f"urn:pact:example-pack.cn:product-id:{name}"),
        )
        for name in ("valid", "company", "tampered", "swapped", "unknown", "revoked")
    }
    key = b"urn:pact:example-pack.cn:product-id:P"  # one partition: one chain, in this order
    service = env.trust.party(SERVICE).signer
    (valid_h, tampered_h, other_h) = signed_batch(
        service, [(key, values["valid"]), (key, values["tampered"]), (key, b"other bytes")]
    )

    def alone(owner: str, name: str) -> list[tuple[str, bytes]]:
        return signed_batch(env.trust.party(owner).signer, [(key, values[name])])[0]

    sends = [
        (values["valid"], valid_h),
        (values["company"], alone(COMPANY, "company")),  # a company key, not a service's
        (values["tampered"] + b"\x00", tampered_h),  # altered after signing
        (values["swapped"], other_h),  # a proof for other bytes
        (values["unknown"], alone("mallory", "unknown")),  # a key nobody registered
        (values["revoked"], alone("old-streams", "revoked")),  # a revoked service key
    ]
    producer = Producer({"bootstrap.servers": env.bootstrap})
    for value, headers in sends:
        items: list[tuple[str, str | bytes | None]] = list(headers)
        producer.produce(env.topics.products, key=key, value=value, headers=items)
    assert producer.flush(30) == 0

    with env.runner(policy, subs) as runner:
        stats = runner.run(max_records=len(sends), max_seconds=60)
    assert (stats.records, stats.sent, stats.untrusted) == (6, 1, 5)
    (delivered,) = read_values(env.bootstrap, env.topics.outbound(EU))
    assert delivered  # the valid one, sealed for the EU customer
    entries, _ = audit(env)
    sha = {
        name: hashlib.sha256(value).hexdigest()
        for name, (value, _) in zip(values, sends, strict=True)
    }
    assert _blocked_reasons(entries) == {
        sha["company"]: "wrong_role",
        sha["tampered"]: "bad_signature",
        sha["swapped"]: "bad_signature",
        sha["unknown"]: "unknown_key",
        sha["revoked"]: "revoked_key",
    }
    sent = [e for chain in entries.values() for e in chain if e.kind == EntryKind.TRANSFER.value]
    assert [e.record_sha256 for e in sent] == [sha["valid"]]
    # one chain, its entries in the records' offset order: the runner checks a whole batch's
    # hand-offs first, but each refusal takes its record's place in the chain
    (chain,) = entries.values()
    assert [e.record_sha256 for e in chain] == list(sha.values())
    rejected = [
        AvroSerde(env.registry).decode(v, Rejection).reason or ""
        for v in read_values(env.bootstrap, env.topics.rejected)
    ]
    assert sorted(rejected) == sorted(
        ["wrong_role", "bad_signature", "bad_signature", "unknown_key", "revoked_key"]
    )


def _write_decision(env: Env, datum: dict[str, object]) -> None:
    serde = GatewaySerde(env.registry)
    producer = Producer({"bootstrap.servers": env.bootstrap})
    approval_id = str(datum["approvalId"])
    producer.produce(
        env.topics.approvals,
        key=approval_id.encode(),
        value=serde.encode(env.topics.approvals, "ApprovalEvent", datum),
    )
    assert producer.flush(30) == 0


def test_forged_and_unsigned_approvals_leave_the_transfer_held(env: Env) -> None:
    policy, subs = _eu_only(env, hold=True)
    env.trust.register(
        env.bootstrap,
        env.registry,
        env.topics.keys,
        [env.trust.registration(COMPANY, SignerRole.COMPANY)],
    )
    env.publish([rolled_footprint()])
    with env.runner(policy, subs, approval_ttl=timedelta(minutes=10)) as runner:
        assert runner.run(max_records=1, max_seconds=60).held == 1
        (pending,) = json.loads(invoke(cli, ["approvals", "list", "--json", *env.args()]).stdout)
        approval_id = pending["approvalId"]
        from pcf_exchange.pcfx.commands.gateway_approvals import _book

        row = _book(env.bootstrap, env.topics, GatewaySerde(env.registry)).rows[approval_id]
        now = datetime.now(UTC)
        at = now.isoformat()
        decided = approve(row.approval, approver="anonymous attacker", reason="ship it", now=now)
        # (1) a raw record on the topic with a free-text approver: unsigned
        _write_decision(env, decided_event(decided, at=at))
        # (2) signed by a key nobody registered, claiming to be the officer
        mallory = env.trust.party("mallory")
        for who, party in ((OFFICER, mallory), (COMPANY, env.trust.party(COMPANY))):
            # (3) signed by a registered company key: not an officer's
            signed = sign_decision(
                decided,
                row.approval,
                private_key=party.private_key,
                signer_id=who,
                key_id=party.key_id,
                at=at,
            )
            _write_decision(env, decided_event(decided, at=at, signed=signed))
        stats = runner.run(idle_seconds=3, max_seconds=30)
        assert (stats.approvals_refused, stats.approvals_released) == (3, 0)
        assert read_values(env.bootstrap, env.topics.outbound(EU)) == []
        listed = json.loads(invoke(cli, ["approvals", "list", "--json", *env.args()]).stdout)
        assert [p["status"] for p in listed] == ["pending"]  # still held
        assert all(d["refused"] for d in listed[0]["decisions"])

        # the compliance officer's own key releases it (CLI, a unique prefix of the id)
        result = invoke(
            cli,
            [
                "approvals",
                "approve",
                approval_id[:8],
                *env.officer_args(),
                "--reason",
                "CBAM plant location needed",
                *env.args(),
            ],
        )
        assert result.exit_code == 0, result.output
        stats = runner.run(idle_seconds=3, max_seconds=30)
        assert stats.approvals_released == 1
    assert len(read_values(env.bootstrap, env.topics.outbound(EU))) == 1
    entries, _ = audit(env)
    (chain,) = entries.values()
    refused = [e for e in chain if e.kind == EntryKind.APPROVAL_REFUSED.value]
    assert [e.reasons[0].split("|")[0] for e in refused] == [
        "unsigned",
        "unknown_key",
        "wrong_role",
    ]
    assert all(e.approval_id == approval_id and e.approver is None for e in refused)
    (approved,) = [e for e in chain if e.kind == EntryKind.APPROVAL_APPROVED.value]
    assert approved.approver == OFFICER  # the owner of the officer key's registration
