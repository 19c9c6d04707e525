"""Releases for the API without a broker: the gateway's core seals the API's copy into the same
batch (same envelope, same signature, one audit entry), and the API's reader serves a release
only when every check holds; each bad record is refused with its reason and served to nobody."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pcf_exchange.contracts import InMemorySchemaRegistry
from pcf_exchange.contracts.errors import RegistryError
from pcf_exchange.gateway import (
    GatewayKey,
    GatewaySecrets,
    KeyRing,
    default_policy_path,
    load_policy,
    open_message,
    prepare_transfer,
)
from pcf_exchange.gateway._sealing import (
    OUTBOUND_CONTENT_TYPE,
    OutboundBatch,
    SealedMessage,
    seal_batch,
)
from pcf_exchange.gateway.api import FootprintQuery
from pcf_exchange.gateway.api._kafka import API_RELEASES, KafkaReleaseSource
from pcf_exchange.gateway.audit import ChainHead, EntryKind
from pcf_exchange.gateway.policy import CounterState
from pcf_exchange.gateway.runtime import GatewaySerde, Topics, sealed_to_datum
from pcf_exchange.gateway.runtime._runner import _own_records
from tests.api._factory import make_footprint
from tests.gateway._factories import NOW, PSEUDONYM_SECRET, battery_record

OEM, PURPOSE = "eu-battery-oem-de", "battery-regulation-art7"
TOPICS = Topics("t.")
TOPIC = TOPICS.of(API_RELEASES)


def test_the_api_copy_is_the_same_envelope_in_the_same_batch_under_one_audit_entry() -> None:
    shipped = load_policy(default_policy_path())
    keys = {rid: X25519PrivateKey.generate() for rid in shipped.recipients}
    recipients = {
        rid: replace(
            r, encryption_key=keys[rid].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
        for rid, r in shipped.recipients.items()
    }
    policy = replace(shipped, recipients=recipients)
    signer, api_key = GatewayKey.generate(), X25519PrivateKey.generate()
    secrets = GatewaySecrets(signer=signer, pseudonym_secret=PSEUDONYM_SECRET)
    batch = OutboundBatch(signer)
    prepared = prepare_transfer(
        policy,
        battery_record(),
        recipient=OEM,
        purpose=PURPOSE,
        counters=CounterState.empty(2026, salt=b"s" * 32),
        head=ChainHead(),
        secrets=secrets,
        now=NOW,
        batch=batch,
        api_key=api_key.public_key(),
    )
    assert prepared.encrypted is not None and prepared.api_copy is not None
    (entry,) = prepared.entries
    assert entry.kind == EntryKind.TRANSFER.value
    assert entry.outbound_sha256 == prepared.encrypted.ciphertext_sha256
    to_recipient, to_api = batch.sign()
    ring = KeyRing.of(signer.public_key)
    theirs = open_message(to_recipient, recipient_id=OEM, private_key=keys[OEM], trusted=ring)
    ours = open_message(to_api, recipient_id=OEM, private_key=api_key, trusted=ring)
    assert ours.envelope == theirs.envelope and ours.plaintext == theirs.plaintext
    assert to_api.signature == to_recipient.signature  # one batch signature
    with pytest.raises(Exception, match="cannot decrypt"):
        open_message(to_api, recipient_id=OEM, private_key=keys[OEM], trusted=ring)


def test_without_an_api_key_nothing_more_is_sealed() -> None:
    shipped = load_policy(default_policy_path())
    secrets = GatewaySecrets(signer=GatewayKey.generate(), pseudonym_secret=PSEUDONYM_SECRET)
    batch = OutboundBatch(secrets.signer)
    prepared = prepare_transfer(
        shipped,
        battery_record(),
        recipient=OEM,
        purpose=PURPOSE,
        counters=CounterState.empty(2026, salt=b"s" * 32),
        head=ChainHead(),
        secrets=secrets,
        now=NOW,
        batch=batch,
    )
    assert prepared.api_copy is None and len(batch) == 1


def test_the_gateway_registers_the_schema_of_the_releases_topic() -> None:
    assert (TOPIC, "SealedMessage") in _own_records(TOPICS, [OEM])


class Reader:
    """A :class:`KafkaReleaseSource` fed records by hand (its Kafka thread is not started)."""

    def __init__(self) -> None:
        self.gateway = GatewayKey.generate()
        self.api_key = X25519PrivateKey.generate()
        registry = InMemorySchemaRegistry()
        self.serde = GatewaySerde(registry)
        self.source = KafkaReleaseSource(
            "unused:9092",
            topics=TOPICS,
            registry=registry,
            private_key=self.api_key,
            gateway_keys=[self.gateway.public_key],
        )

    def sealed(
        self,
        footprint: Mapping[str, Any],
        *,
        recipient: str = OEM,
        signer: GatewayKey | None = None,
        to: X25519PrivateKey | None = None,
    ) -> SealedMessage:
        envelope = {
            "contentType": OUTBOUND_CONTENT_TYPE,
            "messageId": str(uuid.uuid4()),
            "recipientId": recipient,
            "footprint": dict(footprint),
        }
        key = (to or self.api_key).public_key()
        (message,) = seal_batch([(envelope, key)], signer=signer or self.gateway)
        return message

    def value(self, message: SealedMessage) -> bytes:
        return self.serde.encode(TOPIC, "SealedMessage", sealed_to_datum(message))

    def apply(self, key: str, value: bytes) -> bool:
        return self.source.apply(key.encode(), value, where=f"{TOPIC}[0]@{uuid.uuid4().int % 999}")

    def listed(self, recipient: str = OEM) -> list[dict[str, Any]]:
        return [dict(fp) for fp in asyncio.run(self.source.list_for(recipient, FootprintQuery()))]


def test_a_release_is_served_to_its_recipient_only_and_a_deprecation_replaces_it() -> None:
    reader = Reader()
    footprint = make_footprint()
    assert reader.apply(f"{OEM}|{footprint['id']}", reader.value(reader.sealed(footprint)))
    assert reader.listed() == [footprint]
    assert reader.listed("uk-customer-gb") == []
    assert asyncio.run(reader.source.get_for("uk-customer-gb", footprint["id"])) is None
    deprecated = {**copy.deepcopy(footprint), "status": "Deprecated"}
    assert reader.apply(f"{OEM}|{footprint['id']}", reader.value(reader.sealed(deprecated)))
    assert [fp["status"] for fp in reader.listed()] == ["Deprecated"]
    assert reader.source.served == 2 and reader.source.refused == []


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no separator in the key", "malformed"),
        ("empty recipient in the key", "malformed"),
        ("key names another recipient", "wrong_recipient"),
        ("key names another footprint", "envelope_mismatch"),
        ("signed by another key", "unknown_key"),
        ("sealed to the recipient, not the API", "decrypt_failed"),
        ("not Avro", "serde"),
        ("empty value", "serde"),
    ],
)
def test_a_bad_release_is_refused_with_its_reason_and_served_to_nobody(
    case: str, reason: str
) -> None:
    reader = Reader()
    footprint = make_footprint()
    pf_id = footprint["id"]
    key, message = f"{OEM}|{pf_id}", reader.sealed(footprint)
    value = reader.value(message)
    if case == "no separator in the key":
        key = f"{OEM}:{pf_id}"
    elif case == "empty recipient in the key":
        key = f"|{pf_id}"
    elif case == "key names another recipient":
        key = f"uk-customer-gb|{pf_id}"
    elif case == "key names another footprint":
        key = f"{OEM}|{uuid.uuid4()}"
    elif case == "signed by another key":
        value = reader.value(reader.sealed(footprint, signer=GatewayKey.generate()))
    elif case == "sealed to the recipient, not the API":
        value = reader.value(reader.sealed(footprint, to=X25519PrivateKey.generate()))
    elif case == "not Avro":
        value = b"\x00\x00\x00\x00\x01garbage"
    else:
        value = b""
    assert not reader.apply(key, value)
    [refused] = reader.source.refused
    assert refused.reason == reason, refused
    assert refused.where.startswith(f"{TOPIC}[0]@")
    assert reader.listed() == [] and reader.listed("uk-customer-gb") == []
    assert reader.source.served == 0


def test_a_reader_needs_a_gateway_key() -> None:
    with pytest.raises(Exception, match="gateway public key"):
        KafkaReleaseSource(
            "unused:9092",
            topics=TOPICS,
            registry=InMemorySchemaRegistry(),
            private_key=X25519PrivateKey.generate(),
            gateway_keys=[],
        )


class _Flaky(InMemorySchemaRegistry):
    """A registry that does not answer the first *down* schema requests (an HTTP registry that
    is down), then answers."""

    def __init__(self, down: int) -> None:
        super().__init__()
        self.down = down

    def get_schema(self, schema_id: int) -> str:
        if self.down > 0:
            self.down -= 1
            raise RegistryError("schema registry http://registry:8081 unreachable (ConnectError)")
        return super().get_schema(schema_id)


def test_a_registry_outage_is_no_refusal_the_record_waits_and_is_served_once_it_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pcf_exchange.gateway.api._kafka as kafka_module

    monkeypatch.setattr(kafka_module, "_OUTAGE_PAUSES_S", (0.0,))
    reader = Reader()
    flaky = _Flaky(down=3)
    source = KafkaReleaseSource(
        "unused:9092",
        topics=TOPICS,
        registry=flaky,
        private_key=reader.api_key,
        gateway_keys=[reader.gateway.public_key],
    )
    footprint = make_footprint()
    message = reader.sealed(footprint)
    value = GatewaySerde(flaky).encode(TOPIC, "SealedMessage", sealed_to_datum(message))
    key = f"{OEM}|{footprint['id']}".encode()
    flaky.down = 3
    with pytest.raises(RegistryError):  # apply alone: the outage is raised, not a refusal
        source.apply(key, value, where=f"{TOPIC}[0]@7")
    assert source.refused == [] and source.served == 0
    source._deliver(key, value, where=f"{TOPIC}[0]@7")  # the reader's loop: waits, then serves
    assert flaky.down == 0 and source.refused == [] and source.served == 1
    assert [fp["id"] for fp in asyncio.run(source.list_for(OEM, FootprintQuery()))] == [
        footprint["id"]
    ]


def test_a_stopped_reader_gives_up_waiting_for_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pcf_exchange.gateway.api._kafka as kafka_module

    monkeypatch.setattr(kafka_module, "_OUTAGE_PAUSES_S", (0.0,))
    reader = Reader()
    flaky = _Flaky(down=10**9)
    source = KafkaReleaseSource(
        "unused:9092",
        topics=TOPICS,
        registry=flaky,
        private_key=reader.api_key,
        gateway_keys=[reader.gateway.public_key],
    )
    source.close()  # sets the stop flag (no thread was started)
    source._deliver(b"k|v", b"\x00\x00\x00\x00\x01x", where=f"{TOPIC}[0]@8")
    assert source.served == 0 and source.refused == []
