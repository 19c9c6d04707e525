"""The certification path end to end on a real broker: bodies, certificates, labels, staleness.

One test (broker tests are slow): the operator registers a body; the body certifies the cell
maker's footprint and signs a label; the label verifies live and from an exported snapshot; the
cell maker publishes a new footprint, the watcher tells holder and body the certificate is stale
(once), and the label turns stale; the operator blacklists the body: its next certificate is
refused at the broker's time, the earlier one is flagged.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcf_exchange.contracts import (
    AvroSerde,
    InMemorySchemaRegistry,
    parse_footprint,
    register_all,
    sign,
)
from pcf_exchange.contracts.certification import (
    BodyKey,
    BodyListing,
    BodyRegistration,
    CertStatus,
    ListingAction,
    Snapshot,
    StaleNotice,
    StatementSerde,
    sign_statement,
)
from pcf_exchange.contracts.kafka_client import librdkafka_config
from pcf_exchange.contracts.keyfiles import key_id_of
from pcf_exchange.contracts.labels import check_label, encode_label, label_for
from pcf_exchange.contracts.topics import TOPICS, ensure_topics
from pcf_exchange.producers.certification import (
    CertTopics,
    certificate_from_footprint,
    ensure_cert_topics,
    publish,
    read_exchange,
    watch_once,
)

FOOTPRINTS = Path(__file__).resolve().parents[2] / "demo" / "lfp" / "suppliers-footprints.json"


def _lithium_footprint() -> dict[str, Any]:
    data = json.loads(FOOTPRINTS.read_text())
    items = data if isinstance(data, list) else [data]
    return copy.deepcopy(items[0])


def _declare(bootstrap: str, serde: AvroSerde, topic: str, pact: dict[str, Any], seq: int) -> None:
    supplier = Ed25519PrivateKey.generate()
    signed = sign(
        supplier,
        parse_footprint(pact),
        supplier_id="qh-lithium",
        key_id=key_id_of(supplier.public_key()),
        sequence=seq,
    )
    producer = Producer(librdkafka_config(**{"bootstrap.servers": bootstrap, "acks": "all"}))
    producer.produce(topic, serde.encode(topic, signed), pact["productIds"][0].encode())
    assert producer.flush(30) == 0


def test_bodies_certificates_labels_and_staleness_on_a_broker(kafka_bootstrap: str) -> None:
    topics = CertTopics(f"cert-{uuid.uuid4().hex[:8]}.")
    ensure_cert_topics(kafka_bootstrap, topics)
    ensure_topics(kafka_bootstrap, [(topics.declared, TOPICS["pcf.declared"], 1)])
    registry = InMemorySchemaRegistry()
    register_all(registry, topics.prefix)
    statements = StatementSerde(registry)
    footprints = AvroSerde(registry)
    operator, body_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys = {key_id_of(operator.public_key()): operator.public_key()}
    now = datetime.now(UTC)

    # the operator registers the body; the supplier's footprint is on pcf.declared
    registration = BodyRegistration(
        "cqc",
        "China Quality Certification Centre",
        "CNCA-R-2002-001",
        ("LITHIUM_BATTERY",),
        now - timedelta(days=1),
        now + timedelta(days=365),
        (BodyKey.of(body_key.public_key()),),
        "operator",
        0,
    )
    pact = _lithium_footprint()
    _declare(kafka_bootstrap, footprints, topics.declared, pact, 1)

    # the body certifies it, bound to its content hash; publishes the certificate
    def certify(cert_id: str) -> Any:
        return certificate_from_footprint(
            pact,
            certificate_id=cert_id,
            body_id="cqc",
            body_key=body_key,
            holder="qh-lithium",
            pcr_pack_id="CN-CCL-PCR-LIB-TRACTION",
            pcr_pack_version="1.0.0",
            valid_from=now - timedelta(hours=1),
            valid_until=now + timedelta(days=300),
        )

    cert = certify("CQC-1")
    body_registered = sign_statement(operator, registration, signer_id="operator")
    publish(kafka_bootstrap, statements, [(topics.bodies, "cqc", body_registered)])
    certified = sign_statement(body_key, cert, signer_id="cqc")
    publish(kafka_bootstrap, statements, [(topics.certificates, "CQC-1", certified)])
    exchange = read_exchange(
        kafka_bootstrap, statements, keys, topics=topics, footprints=footprints
    )
    assert exchange.refused == [] and exchange.undecodable == 0
    state = exchange.registry.certificates["CQC-1"]
    assert abs(state.issued_at - datetime.now(UTC)) < timedelta(minutes=5)  # the broker's clock
    assert exchange.registry.status("CQC-1", datetime.now(UTC)).status is CertStatus.VALID

    # a label, verified live and offline from an exported snapshot
    text = encode_label(label_for(cert), body_key)
    assert check_label(text, exchange.registry, at=datetime.now(UTC)).valid
    snapshot = Snapshot.of(exchange.registry, exported_by="operator", at=datetime.now(UTC))
    _, offline = Snapshot.verify(json.loads(json.dumps(snapshot.sign(operator))), keys)
    assert check_label(text, offline, at=datetime.now(UTC)).valid

    # the supplier changes a figure: the watcher tells holder and body, once
    pact = copy.deepcopy(pact)
    pact["id"] = str(uuid.uuid4())
    pact["pcf"]["pcfExcludingBiogenicUptake"] = "6.90"
    _declare(kafka_bootstrap, footprints, topics.declared, pact, 2)
    first = watch_once(
        kafka_bootstrap, statements, footprints, operator, operator_id="operator", topics=topics
    )
    assert [(n.certificate_id, n.holder, n.body_id) for n in first.notices] == [
        ("CQC-1", "qh-lithium", "cqc")
    ]
    assert isinstance(first.notices[0], StaleNotice)
    again = watch_once(
        kafka_bootstrap, statements, footprints, operator, operator_id="operator", topics=topics
    )
    assert again.notices == ()
    exchange = read_exchange(
        kafka_bootstrap, statements, keys, topics=topics, footprints=footprints
    )
    assert exchange.registry.status("CQC-1", datetime.now(UTC)).status is CertStatus.STALE
    verdict = check_label(text, exchange.registry, at=datetime.now(UTC))
    assert [c.reason for c in verdict.failures] == ["stale"]

    # the operator blacklists the body: its next certificate is refused, the first is flagged
    listing = BodyListing("cqc", ListingAction.BLACKLIST, "accreditation withdrawn", "operator", 1)
    publish(
        kafka_bootstrap,
        statements,
        [(topics.bodies, "cqc", sign_statement(operator, listing, signer_id="operator"))],
    )
    late = certify("CQC-2")
    publish(
        kafka_bootstrap,
        statements,
        [(topics.certificates, "CQC-2", sign_statement(body_key, late, signer_id="cqc"))],
    )
    exchange = read_exchange(kafka_bootstrap, statements, keys, topics=topics)
    ((_, refused),) = exchange.refused
    assert refused.error is not None and refused.error.reason == "blacklisted_body"
    assert "CQC-2" not in exchange.registry.certificates
    report = exchange.registry.status("CQC-1", datetime.now(UTC))
    assert report.status is CertStatus.FLAGGED
    verdict = check_label(text, exchange.registry, at=datetime.now(UTC))
    assert verdict.failures[0].reason == "blacklisted_body"
