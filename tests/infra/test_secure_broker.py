"""A secure broker (``pcfx broker start --secure``) refuses, by itself, every read and write a
tenant's role does not allow, and lets the allowed paths through.

One secure broker for this module, in a temporary state dir on free ports (never the running
plain broker). Every refusal below comes from the broker: a TOPIC_AUTHORIZATION_FAILED answer,
a failed SASL authentication, or a TLS listener that a plaintext client cannot talk to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from pcf_exchange.contracts.acl import grants_for
from pcf_exchange.contracts.kafka_client import KafkaClientSettings
from pcf_exchange.infra.kafka import launcher
from pcf_exchange.infra.kafka.tenants import add_tenant

pytestmark = pytest.mark.broker

PREFIX = "t18."
SUPPLIER_URN = "urn:pact:company:customcode:vendor-assigned:example-cells"
NAMESPACE = "urn:pact:example-cells.cn"
PCFX = [sys.executable, "-m", "pcf_exchange.pcfx"]


@dataclass(frozen=True)
class SecureBroker:
    info: launcher.BrokerInfo
    admin: KafkaClientSettings
    configs: dict[str, Path]
    """Tenant name -> its client properties file."""
    workdir: Path

    @property
    def bootstrap(self) -> str:
        return self.info.bootstrap

    def settings(self, tenant: str) -> KafkaClientSettings:
        return KafkaClientSettings.from_properties(self.configs[tenant])

    def env(self, tenant: str) -> dict[str, str]:
        """A process environment that connects as *tenant* (no other Kafka settings)."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PCFX_TOPIC_PREFIX"))
        }
        env |= {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_CLIENT_CONFIG": str(self.configs[tenant]),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        }
        return env


TENANTS = {
    "acme": "supplier",
    "cells": "manufacturer",
    "bus": "manufacturer",
    "eu-oem": "recipient",
    "us-oem": "recipient",
    "ops": "operator",
    "streams": "streams",
    "gw": "gateway",
}


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    state = tmp_path_factory.mktemp("secure-broker")
    info = launcher.start(state, secure=True)
    try:
        assert info.admin_config is not None
        admin = info.client_settings()
        topics = [
            f"{PREFIX}{name}"
            for name in (
                "pcf.declared",
                "pcf.bom",
                "pcf.factors",
                "pcf.keys",
                "pcf.products",
                "pcf.rejected",
                "pcf.approvals",
                "pcf.audit",
                "pcf.outbound.eu-oem",
                "pcf.outbound.us-oem",
                "pcf.outbound.cells",
                "pcf.outbound.bus",
            )
        ]
        client = AdminClient(admin.librdkafka() | {"bootstrap.servers": info.bootstrap})
        futures = client.create_topics(
            [
                NewTopic(t, num_partitions=1 if "keys" in t else 3, replication_factor=1)
                for t in topics
            ]
            + [  # the schema registry's topic, as the operator creates it
                NewTopic(
                    f"{PREFIX}pcf._schemas",
                    num_partitions=1,
                    replication_factor=1,
                    config={"cleanup.policy": "compact"},
                )
            ]
        )
        for future in futures.values():
            future.result(timeout=30)
        configs = {}
        for name, role in TENANTS.items():
            out = state / "tenants" / f"{name}.properties"
            add_tenant(name, role, bootstrap=info.bootstrap, out=out, prefix=PREFIX, settings=admin)
            configs[name] = out
        yield SecureBroker(info, admin, configs, state)
    finally:
        launcher.stop(state)


# -- helpers: one produce, one read, with a given principal's settings


def produce(
    secure: SecureBroker, who: KafkaClientSettings, topic: str, value: bytes
) -> KafkaError | None:
    """Produce one record; the delivery error (None: the broker acknowledged it)."""
    reports: list[KafkaError | None] = []
    producer = Producer(
        who.librdkafka() | {"bootstrap.servers": secure.bootstrap, "message.timeout.ms": 20000}
    )
    producer.produce(topic, value, key=b"k", on_delivery=lambda err, _msg: reports.append(err))
    producer.flush(30)
    assert reports, f"no delivery report for {topic}"
    return reports[0]


def read(
    secure: SecureBroker, who: KafkaClientSettings, topic: str, group: str | None = None
) -> tuple[list[bytes], KafkaError | None]:
    """Read every partition of *topic* to its end: the values, or the error that stopped it (on a
    message, or reported to the client's error callback: a topic the principal may not even
    describe fails in the metadata answer)."""
    reported: list[KafkaError] = []
    consumer = Consumer(
        who.librdkafka()
        | {
            "bootstrap.servers": secure.bootstrap,
            # a group the principal may use (its own namespace), so the topic's ACL decides
            "group.id": group or f"{who.username}.probe-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "error_cb": reported.append,
        }
    )
    values: list[bytes] = []
    try:
        # (1) the metadata answer: a topic the principal may not describe is refused here
        described = consumer.list_topics(topic, timeout=15).topics[topic]
        if described.error is not None:
            return values, described.error
        # (2) the fetch: a topic it may describe (it writes there) but not read is refused here
        waiting = set(described.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in waiting])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if reported:
                return values, reported[0]
            if message is None:
                continue
            error = message.error()
            if error is None:
                values.append(message.value() or b"")
            elif error.code() == KafkaError._PARTITION_EOF:
                waiting.discard(message.partition())
                if not waiting:
                    return values, None
            else:
                return values, error
        raise AssertionError(f"reading {topic} neither ended nor failed within 30 s")
    finally:
        consumer.close()


def _denied(error: KafkaError | None, topic: str) -> None:
    assert error is not None, f"the broker accepted it on {topic}"
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error.str()


# -- forbidden writes and reads


@pytest.mark.parametrize(
    "topic",
    ["pcf.keys", "pcf.factors", "pcf.products", "pcf._schemas", "pcf.approvals"],
)
def test_a_supplier_cannot_write_what_only_others_write(secure: SecureBroker, topic: str) -> None:
    name = f"{PREFIX}{topic}"
    _denied(produce(secure, secure.settings("acme"), name, b"forged"), name)


@pytest.mark.parametrize("topic", ["pcf.declared", "pcf.bom", "pcf.products"])
def test_a_supplier_cannot_read_other_companies_data(secure: SecureBroker, topic: str) -> None:
    name = f"{PREFIX}{topic}"
    assert produce(secure, secure.admin, name, b"someone else's") is None
    values, error = read(secure, secure.settings("acme"), name)
    _denied(error, name)
    assert values == []


def test_a_recipient_reads_its_own_outbound_topic_and_no_other(secure: SecureBroker) -> None:
    mine, theirs = f"{PREFIX}pcf.outbound.eu-oem", f"{PREFIX}pcf.outbound.us-oem"
    assert produce(secure, secure.admin, mine, b"for eu") is None
    assert produce(secure, secure.admin, theirs, b"for us") is None
    values, error = read(secure, secure.settings("eu-oem"), mine, group="eu-oem.reader")
    assert error is None and values == [b"for eu"]
    values, error = read(secure, secure.settings("eu-oem"), theirs, group="eu-oem.reader")
    _denied(error, theirs)
    assert values == []


def test_a_manufacturer_reads_its_own_results_and_not_another_companys(
    secure: SecureBroker,
) -> None:
    # the gateway releases each manufacturer its products' results on its own outbound topic
    mine, theirs = f"{PREFIX}pcf.outbound.cells", f"{PREFIX}pcf.outbound.bus"
    assert produce(secure, secure.settings("gw"), mine, b"cells' pack") is None
    assert produce(secure, secure.settings("gw"), theirs, b"bus' bus") is None
    values, error = read(secure, secure.settings("cells"), mine)
    assert error is None and values == [b"cells' pack"]
    _denied(read(secure, secure.settings("cells"), theirs)[1], theirs)
    _denied(read(secure, secure.settings("cells"), f"{PREFIX}pcf.products")[1], "pcf.products")


def test_a_wrong_password_fails_sasl_authentication(secure: SecureBroker) -> None:
    from dataclasses import replace

    errors: list[KafkaError] = []
    wrong = replace(secure.settings("acme"), password="not-the-password")
    admin = AdminClient(
        wrong.librdkafka() | {"bootstrap.servers": secure.bootstrap, "error_cb": errors.append}
    )
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=8)
    admin.poll(1)  # serves the error callback
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), [e.str() for e in errors]
    assert any("SCRAM-SHA-512" in e.str() for e in errors)


def test_a_plaintext_client_gets_nothing_from_the_tls_port(secure: SecureBroker) -> None:
    errors: list[KafkaError] = []
    plain: dict[str, Any] = {"security.protocol": "plaintext"}
    admin = AdminClient(
        plain
        | {
            "bootstrap.servers": secure.bootstrap,
            "error_cb": errors.append,
            "socket.timeout.ms": 4000,
        }
    )
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=6)
    admin.poll(1)  # serves the error callback
    assert errors, "the TLS listener must not answer a plaintext client"
    assert all(e.code() != KafkaError.NO_ERROR for e in errors)


def test_tls_without_sasl_is_refused_too(secure: SecureBroker) -> None:
    """TLS alone (a trusted CA, no SCRAM credential) does not open the listener."""
    errors: list[KafkaError] = []
    tls_only = KafkaClientSettings(
        security_protocol="SSL", ssl_ca_location=secure.admin.ssl_ca_location
    )
    admin = AdminClient(
        tls_only.librdkafka()
        | {
            "bootstrap.servers": secure.bootstrap,
            "error_cb": errors.append,
            "socket.timeout.ms": 4000,
        }
    )
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=6)
    admin.poll(1)  # serves the error callback
    assert errors


# -- allowed paths


def _pcfx(secure: SecureBroker, tenant: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PCFX, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        env=secure.env(tenant) | {"PCFX_KEY_DIR": str(secure.workdir / "keys")},
        cwd=secure.workdir,
        check=False,
    )


def test_operator_registers_a_key_and_the_supplier_publishes_a_signed_footprint(
    secure: SecureBroker,
) -> None:
    from pcf_exchange.contracts import KafkaSchemaRegistry, register_all
    from pcf_exchange.contracts.kafka_client import reset
    from pcf_exchange.producers import KeyRole, new_key_pair
    from tests.producers.conftest import footprint_json, write_json

    keys = secure.workdir / "keys"
    operator = new_key_pair("operator", keys, role=KeyRole.OPERATOR)
    supplier = new_key_pair(SUPPLIER_URN, keys)
    # the operator registers the schemas (nobody else writes the schemas topic)
    saved = os.environ.get("KAFKA_CLIENT_CONFIG")
    os.environ["KAFKA_CLIENT_CONFIG"] = str(secure.configs["ops"])
    reset()
    try:
        with KafkaSchemaRegistry(secure.bootstrap, prefix=PREFIX, writer=True) as writer:
            register_all(writer, PREFIX)
    finally:
        if saved is None:
            os.environ.pop("KAFKA_CLIENT_CONFIG", None)
        else:
            os.environ["KAFKA_CLIENT_CONFIG"] = saved
        reset()
    # a supplier may not register its own key ...
    forged = _pcfx(
        secure, "acme", "keys", "register", "--key", operator.private_key,
        "--public-key", supplier.public_key, "--valid-until", "2099-01-01T00:00:00Z",
        "--namespace", NAMESPACE, "--topic-prefix", PREFIX,
    )  # fmt: skip
    assert forged.returncode != 0
    assert "authoriz" in (forged.stdout + forged.stderr).lower(), forged.stderr
    # ... the operator may
    registered = _pcfx(
        secure, "ops", "keys", "register", "--key", operator.private_key,
        "--public-key", supplier.public_key, "--valid-until", "2099-01-01T00:00:00Z",
        "--namespace", NAMESPACE, "--topic-prefix", PREFIX, "--json",
    )  # fmt: skip
    assert registered.returncode == 0, registered.stdout + registered.stderr
    # the supplier publishes through the environment's settings (KAFKA_CLIENT_CONFIG)
    path = write_json(secure.workdir / "cells.json", [footprint_json(7)])
    published = _pcfx(
        secure, "acme", "publish", "footprints", path, "--key", supplier.private_key,
        "--supplier", SUPPLIER_URN, "--topic-prefix", PREFIX, "--json",
    )  # fmt: skip
    assert published.returncode == 0, published.stdout + published.stderr
    assert json.loads(published.stdout)["sent"] == 1
    declared = f"{PREFIX}pcf.declared"
    found = [
        value for partition in range(3) for value in _read_partition(secure, declared, partition)
    ]
    assert len(found) >= 1


def _read_partition(secure: SecureBroker, topic: str, partition: int) -> list[bytes]:
    consumer = Consumer(
        secure.admin.librdkafka()
        | {
            "bootstrap.servers": secure.bootstrap,
            "group.id": "admin.probe",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is None:
                values.append(message.value() or b"")
            elif message.error().code() == KafkaError._PARTITION_EOF:  # type: ignore[union-attr]
                break
    finally:
        consumer.close()
    return values


def test_aiokafka_and_kafka_python_connect_with_the_same_settings(secure: SecureBroker) -> None:
    """The streams principal reads pcf.keys with aiokafka (ssl_context) and kafka-python."""
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from kafka import KafkaConsumer

    who = secure.settings("streams")
    topic = f"{PREFIX}pcf.keys"

    async def partitions() -> set[int]:
        # as the streams' key reader (streams/_ingest_step.py): no group, wait for its assignment
        consumer = AIOKafkaConsumer(
            topic,
            **who.aiokafka(),
            bootstrap_servers=secure.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            for _ in range(100):
                if consumer.assignment():
                    break
                await asyncio.sleep(0.1)
            ends = await consumer.end_offsets(list(consumer.assignment()))
            return {tp.partition for tp in ends}
        finally:
            await consumer.stop()

    assert asyncio.run(partitions()) == {0}
    consumer = KafkaConsumer(**who.kafka_python(), bootstrap_servers=secure.bootstrap)
    try:
        assert consumer.partitions_for_topic(topic) == {0}
    finally:
        consumer.close()


def test_tenants_cli_add_list_remove(secure: SecureBroker) -> None:
    admin = ["--kafka-config", str(secure.info.admin_config)]
    out = secure.workdir / "cli-tenant.properties"
    added = subprocess.run(
        [*PCFX, *admin, "tenants", "add", "cli-supplier", "--role", "supplier", "--out", str(out),
         "--topic-prefix", PREFIX, "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert "WRITE topic:t18.pcf.declared" in json.loads(added.stdout)["acls"]
    again = subprocess.run(
        [*PCFX, *admin, "tenants", "add", "cli-supplier", "--role", "supplier", "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 1 and "writtenonce" in "".join(again.stderr.split())
    listed = subprocess.run(
        [*PCFX, *admin, "tenants", "list", "--topic-prefix", PREFIX, "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["cli-supplier"]["role"] == "supplier"
    assert rows["eu-oem"]["role"] == "recipient"
    # a tenant cannot manage tenants: the broker refuses the admin calls (exit 3)
    as_tenant = subprocess.run(
        [*PCFX, "--kafka-config", str(out), "tenants", "list"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert as_tenant.returncode == 3, as_tenant.stdout + as_tenant.stderr
    removed = subprocess.run(
        [*PCFX, *admin, "tenants", "remove", "cli-supplier", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert removed.returncode == 0, removed.stderr
    # every ACL the role gives (the topic table's, e.g. READ of pcf.bodies and pcf.certificates)
    expected = grants_for("supplier", "cli-supplier", prefix=PREFIX)
    assert json.loads(removed.stdout)["aclsDeleted"] == len(expected)
    gone = subprocess.run(
        [*PCFX, *admin, "tenants", "remove", "cli-supplier"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert gone.returncode == 1
    # the removed credential no longer authenticates
    errors: list[KafkaError] = []
    client = AdminClient(
        KafkaClientSettings.from_properties(out).librdkafka()
        | {"bootstrap.servers": secure.bootstrap, "error_cb": errors.append}
    )
    with pytest.raises(KafkaException):
        client.list_topics(timeout=8)
    client.poll(1)  # serves the error callback
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors)


def test_status_says_how_to_connect(secure: SecureBroker) -> None:
    status = subprocess.run(
        [*PCFX, "broker", "status", "--state-dir", secure.info.state_dir, "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    broker: dict[str, Any] = json.loads(status.stdout)["broker"]
    assert broker["securityProtocol"] == "SASL_SSL"
    assert broker["saslMechanism"] == "SCRAM-SHA-512"
    assert Path(broker["caFile"]).is_file()
    admin_file = Path(broker["adminConfig"])
    assert oct(admin_file.stat().st_mode & 0o777) == "0o600"
    text = admin_file.read_text()
    assert "security.protocol=SASL_SSL" in text and "ssl.truststore.location=" in text
    server = Path(secure.info.state_dir) / "server.properties"
    assert oct(server.stat().st_mode & 0o777) == "0o600"
    config = server.read_text()
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in config
    assert "allow.everyone.if.no.acl.found=false" in config


def test_cli_without_credentials_is_told_how_to_connect_to_a_secure_local_broker(
    secure: SecureBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pcf_exchange.contracts.errors import BrokerError
    from pcf_exchange.contracts.kafka_client import reset
    from pcf_exchange.pcfx.settings import bootstrap_servers

    monkeypatch.setenv("PCFX_BROKER_DIR", secure.info.state_dir)
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_CLIENT_CONFIG", "KAFKA_SECURITY_PROTOCOL"):
        monkeypatch.delenv(var, raising=False)
    reset()
    try:
        with pytest.raises(BrokerError) as caught:
            bootstrap_servers()
        assert "SASL_SSL" in caught.value.message
        assert str(secure.info.admin_config) in caught.value.hint
        monkeypatch.setenv("KAFKA_CLIENT_CONFIG", str(secure.configs["acme"]))
        reset()
        assert bootstrap_servers() == secure.bootstrap
    finally:
        monkeypatch.undo()
        reset()


def test_cli_start_secure_reuses_the_broker_and_refuses_to_mix_modes(secure: SecureBroker) -> None:
    state = secure.info.state_dir
    again = subprocess.run(
        [*PCFX, "broker", "start", "--secure", "--state-dir", state, "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["pid"] == secure.info.pid
    plain = subprocess.run(
        [*PCFX, "broker", "start", "--state-dir", state],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert plain.returncode == 3
    assert "SASL_SSL" in plain.stderr and "pcfx broker stop" in " ".join(plain.stderr.split())


def test_a_password_from_a_file_is_used_and_bad_ones_are_refused(secure: SecureBroker) -> None:
    admin = ["--kafka-config", str(secure.info.admin_config)]
    secret = secure.workdir / "pw.txt"
    secret.write_text("correct horse battery staple\n")
    out = secure.workdir / "pw-tenant.properties"
    added = subprocess.run(
        [*PCFX, *admin, "tenants", "add", "pw-recipient", "--role", "recipient",
         "--password-file", str(secret), "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    settings = KafkaClientSettings.from_properties(out)
    assert settings.password == "correct horse battery staple"
    _values, error = read(secure, settings, f"{PREFIX}pcf.outbound.us-oem")
    _denied(error, "pcf.outbound.us-oem")  # authenticated with that password, then refused
    short = secure.workdir / "short.txt"
    short.write_text("1234\n")
    refused = subprocess.run(
        [*PCFX, *admin, "tenants", "add", "pw-2", "--role", "recipient",
         "--password-file", str(short), "--out", str(secure.workdir / "pw2.properties")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "atleast12characters" in "".join(refused.stderr.split())
    missing = subprocess.run(
        [*PCFX, *admin, "tenants", "add", "pw-3", "--role", "recipient",
         "--password-file", str(secure.workdir / "nope.txt")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert missing.returncode == 4, missing.stderr
    bad_role = subprocess.run(
        [*PCFX, *admin, "tenants", "add", "pw-4", "--role", "root"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad_role.returncode == 2
    bad_name = subprocess.run(
        [*PCFX, *admin, "tenants", "add", "admin", "--role", "supplier"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad_name.returncode == 1 and "admin" in bad_name.stderr
