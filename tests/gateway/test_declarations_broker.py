"""``pcfx declarations art7 --kafka`` on the real broker: the sealed declaration on
``pcf.outbound.<recipient>`` and exactly one audit entry per release on the chain
``pcfx-declarations``, resumed (not restarted) by the next release. Its own topic prefix."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from pcf_exchange.contracts import KafkaSchemaRegistry
from pcf_exchange.gateway import KeyRing, SealedMessage, open_message
from pcf_exchange.gateway._codec import sealed_from_datum
from pcf_exchange.gateway._topics import Topics
from pcf_exchange.gateway.audit import check_audit_log
from pcf_exchange.gateway.runtime import read_audit_logs
from pcf_exchange.gateway.runtime._avro import GatewaySerde
from pcf_exchange.gateway.runtime._kafka import read_to_end
from pcf_exchange.pcfx.cli import app
from tests.gateway.test_declarations_cli import OEM, files, invoke, release_args

pytestmark = pytest.mark.broker
__all__ = ["files"]  # the fixture, shared with the CLI tests


def test_kafka_release_one_transaction_one_entry_chain_resumed(
    files: dict[str, Any], kafka_bootstrap: str
) -> None:
    d: Path = files["dir"]
    prefix = f"t{uuid.uuid4().hex[:8]}."
    args = [
        "declarations",
        "art7",
        str(d / "lfp.json"),
        "--input",
        str(d / "art7.yaml"),
        "--recipient",
        OEM,
        "--kafka",
        "--bootstrap",
        kafka_bootstrap,
        "--topic-prefix",
        prefix,
        "--json",
        *release_args(d),
    ]
    first = invoke(app, args)
    assert first.exit_code == 0, first.output
    second = invoke(app, args)
    assert second.exit_code == 0, second.output
    ids = [json.loads(r.stdout)["release"]["messageId"] for r in (first, second)]
    assert not (d / "audit.jsonl").exists()  # the chain is on the broker, not in a file
    topics = Topics(prefix)
    registry = KafkaSchemaRegistry(kafka_bootstrap, prefix=prefix)
    try:
        serde = GatewaySerde(registry)
        entries, checkpoints, problems = read_audit_logs(
            kafka_bootstrap, topics, serde, log_ids=["pcfx-declarations"]
        )
        sealed = [
            sealed_from_datum(serde.decode(m.value() or b"", "SealedMessage"))
            for m in read_to_end(kafka_bootstrap, [(topics.outbound(OEM), 0)], timeout_s=60)
        ]
    finally:
        registry.close()
    assert problems == []
    chain = entries["pcfx-declarations"]
    assert [(e.seq, e.kind, e.message_id) for e in chain] == [
        (0, "transfer", ids[0]),
        (1, "transfer", ids[1]),
    ]
    keys = KeyRing.of(files["gw"].public_key)
    verdict = check_audit_log(
        chain, checkpoints["pcfx-declarations"], keys, log_id="pcfx-declarations"
    )
    assert verdict.ok, verdict.summary()
    assert [m.message_id for m in sealed] == ids
    opened = open_message(sealed[1], recipient_id=OEM, private_key=files["oem"], trusted=keys)
    assert opened.footprint["batteryPassport"]["batteryCarbonFootprint"] == "60.65"
    assert isinstance(sealed[0], SealedMessage)


# --- a held declaration: approved, denied, or decided by a key that is not an officer's --------


@pytest.fixture
def held_env(files: dict[str, Any], kafka_bootstrap: str) -> dict[str, Any]:
    """A CBAM communication held for approval on a fresh prefix (its request queued on
    ``pcf.approvals``), with the operator's registrations of an officer and a company key."""
    from pcf_exchange.contracts import SignerRole, subject_for
    from pcf_exchange.contracts._schemas import schema_json
    from pcf_exchange.contracts.topics import TOPICS, ensure_topics
    from pcf_exchange.gateway.runtime._avro import kafka_registrar
    from tests.gateway._trust import COMPANY, OFFICER, Trust

    d: Path = files["dir"]
    prefix = f"t{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix)
    ensure_topics(kafka_bootstrap, [(topics.keys, TOPICS["pcf.keys"], 1)])
    kafka_registrar(kafka_bootstrap, prefix=prefix)(
        [(subject_for(topics.keys), schema_json("SignedSupplierKey"))]
    )
    trust = Trust(d / "keys")
    registry = KafkaSchemaRegistry(kafka_bootstrap, prefix=prefix)
    try:
        trust.register(
            kafka_bootstrap,
            registry,
            topics.keys,
            [
                trust.registration(OFFICER, SignerRole.OFFICER),
                trust.registration(COMPANY, SignerRole.COMPANY),
            ],
        )
    finally:
        registry.close()
    kafka = ["--kafka", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix]
    held = invoke(
        app,
        [
            "declarations", "cbam", str(d / "al.json"), "--input", str(d / "cbam.json"),
            "--recipient", "eu-cbam-importer-nl", "--json", *kafka, *release_args(d),
        ],
    )  # fmt: skip
    assert held.exit_code == 1, held.output
    out = json.loads(held.stdout)["release"]
    assert out["outcome"] == "held" and out["released"] is False
    return {
        "dir": d,
        "prefix": prefix,
        "topics": topics,
        "kafka": kafka,
        "approval": out["approvalId"],
        "officer": trust.party(OFFICER).key_file,
        "company": trust.party(COMPANY).key_file,
        "operator": trust.operator.public_file,
        "bootstrap": kafka_bootstrap,
    }


def _decide(env: dict[str, Any], verb: str, key: Path) -> None:
    from pcf_exchange.pcfx.commands.gateway import approvals_app

    result = invoke(
        approvals_app,
        [
            verb, env["approval"][:10], "--key", str(key), "--reason", f"{verb} in a test",
            "--topic-prefix", env["prefix"], "--bootstrap", env["bootstrap"],
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def _release(env: dict[str, Any]) -> Any:
    d: Path = env["dir"]
    return invoke(
        app,
        [
            "declarations", "release", "--approval", env["approval"][:10], "--out", str(d / "out"),
            "--operator-key", str(env["operator"]), "--policy", str(d / "policy.yaml"),
            "--gateway-key", str(d / "gw.pem"), "--json",
            *env["kafka"][1:],
        ],
    )  # fmt: skip


def _chain(env: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    registry = KafkaSchemaRegistry(env["bootstrap"], prefix=env["topics"].prefix)
    try:
        serde = GatewaySerde(registry)
        topics = env["topics"]
        entries, _, problems = read_audit_logs(
            env["bootstrap"], topics, serde, log_ids=["pcfx-declarations"]
        )
        sealed = [
            sealed_from_datum(serde.decode(m.value() or b"", "SealedMessage"))
            for m in read_to_end(
                env["bootstrap"], [(topics.outbound("eu-cbam-importer-nl"), 0)], timeout_s=60
            )
        ]
    finally:
        registry.close()
    assert problems == []
    return entries["pcfx-declarations"], sealed


def test_a_held_declaration_is_released_once_an_officer_approves_it(
    held_env: dict[str, Any],
) -> None:
    env = held_env
    assert (env["dir"] / "out").glob("cbam-embedded-emissions-*.held.json")
    # not decided yet: stays held, nothing audited or sent
    early = _release(env)
    assert early.exit_code == 1, early.output
    assert json.loads(early.stdout)["outcome"] == "pending"
    # a company key signs an "approval": refused and audited, still held
    _decide(env, "approve", env["company"])
    refused = _release(env)
    assert refused.exit_code == 1, refused.output
    body = json.loads(refused.stdout)
    assert body["released"] is False and len(body["refusedDecisions"]) == 1
    assert "officer" in body["refusedDecisions"][0]
    # the registered officer approves: released, sealed, audited naming the approval
    _decide(env, "approve", env["officer"])
    released = _release(env)
    assert released.exit_code == 0, released.output
    out = json.loads(released.stdout)
    assert out["outcome"] == "released" and out["approver"] == "alice"
    chain, sealed = _chain(env)
    assert [e.kind for e in chain] == [
        "transfer_held",
        "approval_refused",
        "approval_approved",
        "transfer",
    ]
    sent = [e for e in chain if e.kind == "transfer"]
    assert len(sent) == 1 and sent[0].approval_id == env["approval"]
    assert [m.message_id for m in sealed] == [out["messageId"]]
    keys = KeyRing.of(env_gateway_key(env).public_key)
    assert check_audit_log(chain, [], keys, log_id="pcfx-declarations").ok
    # once resolved, it is not released again
    again = _release(env)
    assert again.exit_code != 0 and "already resolved" in " ".join(again.output.split())


def env_gateway_key(env: dict[str, Any]) -> Any:
    from pcf_exchange.gateway._keys import load_gateway_key

    return load_gateway_key(env["dir"] / "gw.pem")


def test_a_denied_declaration_is_never_released(held_env: dict[str, Any]) -> None:
    env = held_env
    _decide(env, "deny", env["officer"])
    denied = _release(env)
    assert denied.exit_code == 1, denied.output
    assert json.loads(denied.stdout)["outcome"] == "denied"
    chain, sealed = _chain(env)
    assert [e.kind for e in chain] == ["transfer_held", "approval_denied"]
    assert sealed == []
