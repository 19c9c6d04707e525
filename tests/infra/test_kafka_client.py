"""One set of Kafka security settings, read the same way everywhere, rendered per library; and
the role -> ACL table keeps its promises (no broker needed here: test_secure_broker.py shows the
broker enforcing them)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from pcf_exchange.contracts import kafka_client
from pcf_exchange.contracts.acl import ROLES, SCHEMAS_TOPIC_NAME, TOPIC_ACCESS, grants_for
from pcf_exchange.contracts.errors import BrokerError
from pcf_exchange.contracts.kafka_client import KafkaClientSettings, write_client_properties
from pcf_exchange.infra.kafka.tls import make_broker_tls


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    return make_broker_tls(tmp_path / "tls").ca_file


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in [*kafka_client.ENV_VARS, kafka_client.CONFIG_ENV, "KAFKA_BOOTSTRAP_SERVERS"]:
        monkeypatch.delenv(var, raising=False)
    kafka_client.reset()
    yield
    kafka_client.reset()  # the next test reads its own environment


def _secure(ca: Path) -> KafkaClientSettings:
    return KafkaClientSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username="acme",
        password='p"ss\\word',
        ssl_ca_location=str(ca),
        bootstrap_servers="127.0.0.1:9093",
    )


def test_defaults_are_plaintext_for_every_library() -> None:
    settings = kafka_client.client_settings()
    assert settings.librdkafka() == {"security.protocol": "plaintext"}
    assert settings.kafka_python() == {"security_protocol": "PLAINTEXT"}
    assert settings.aiokafka() == {"security_protocol": "PLAINTEXT"}
    assert settings.faust_credentials() is None


def test_a_properties_file_round_trips_and_java_tools_could_read_it(
    tmp_path: Path, ca: Path
) -> None:
    path = write_client_properties(tmp_path / "acme.properties", _secure(ca))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    text = path.read_text()
    assert "org.apache.kafka.common.security.scram.ScramLoginModule required" in text
    assert "ssl.truststore.type=PEM" in text
    read = KafkaClientSettings.from_properties(path)
    assert (read.username, read.password, read.ssl_ca_location) == ("acme", 'p"ss\\word', str(ca))
    assert read.bootstrap_servers == "127.0.0.1:9093"


def test_each_library_gets_the_same_principal(ca: Path) -> None:
    settings = _secure(ca)
    rd = settings.librdkafka()
    assert (rd["security.protocol"], rd["sasl.mechanism"], rd["sasl.username"]) == (
        "sasl_ssl",
        "SCRAM-SHA-512",
        "acme",
    )
    assert rd["ssl.ca.location"] == str(ca)
    assert rd["ssl.endpoint.identification.algorithm"] == "https"
    kp = settings.kafka_python()
    assert (kp["sasl_plain_username"], kp["sasl_plain_password"], kp["ssl_cafile"]) == (
        "acme",
        'p"ss\\word',
        str(ca),
    )
    ak = settings.aiokafka()
    assert isinstance(ak["ssl_context"], ssl.SSLContext)
    assert ak["ssl_context"].check_hostname and ak["sasl_mechanism"] == "SCRAM-SHA-512"
    creds = settings.faust_credentials()
    assert (creds.username, creds.mechanism.value, creds.protocol.value) == (
        "acme",
        "SCRAM-SHA-512",
        "SASL_SSL",
    )


def test_secrets_never_show(ca: Path) -> None:
    settings = _secure(ca)
    assert 'p"ss' not in repr(settings)
    assert settings.redacted()["password"] == "********"
    assert 'p"ss' not in repr(settings.faust_credentials())


def test_env_vars_override_the_file_and_the_flag_replaces_both(
    tmp_path: Path, ca: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_client_properties(tmp_path / "acme.properties", _secure(ca))
    monkeypatch.setenv("KAFKA_CLIENT_CONFIG", str(path))
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "other")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # restored after the test
    kafka_client.reset()
    assert kafka_client.client_settings().username == "other"
    ops = write_client_properties(
        tmp_path / "ops.properties",
        _secure(ca).__class__(**{**_secure(ca).__dict__, "username": "ops"}),
    )
    assert kafka_client.use_config_file(ops).username == "ops"
    assert "KAFKA_SASL_USERNAME" not in os.environ, "the flag's file wins in child processes too"
    assert os.environ["KAFKA_CLIENT_CONFIG"] == str(ops.resolve())
    assert os.environ["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9093"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, ["'security.protocol'", "SASL_SSL", "'TLS'"]),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"},
            ["'sasl.mechanism'", "SCRAM-SHA-512", "'GSSAPI'"],
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
            ["'sasl.username' is required", "got nothing"],
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem"},
            ["'ssl.ca.location'", "/nonexistent/ca.pem"],
        ),
        ({"KAFKA_CLIENT_CONFIG": "/nonexistent/client.properties"}, ["cannot be read"]),
    ],
)
def test_wrong_settings_name_the_setting_expected_and_got(
    env: dict[str, str], words: list[str]
) -> None:
    with pytest.raises(BrokerError) as caught:
        KafkaClientSettings.from_env(env)
    for word in words:
        assert word in caught.value.message
    assert caught.value.hint


def test_nobody_but_the_operator_writes_keys_factors_or_schemas() -> None:
    for role in ROLES:
        for topic in ("pcf.keys", "pcf.factors", SCHEMAS_TOPIC_NAME):
            name = f"p.{topic}"  # the schemas topic is the deployment's too
            writes = {
                g
                for g in grants_for(role, "x", prefix="p.")
                if g.operation == "WRITE" and g.resource == "topic" and name.startswith(g.name)
                if g.pattern == "prefixed" or g.name == name
            }
            assert bool(writes) == (role == "operator"), (role, topic, writes)
    writers = {
        (g.name, g.pattern)
        for g in grants_for("operator", "x", prefix="p.")
        if g.resource == "transactional_id"
    }
    assert writers == {("pcfx-schema-writer:p.", "prefixed")}, "its own deployment's writer only"


def test_companies_never_read_shared_data_topics() -> None:
    for role in ("supplier", "manufacturer", "recipient"):
        reads = {g.name for g in grants_for(role, "acme", prefix="p.") if g.operation == "READ"}
        for shared in ("p.pcf.declared", "p.pcf.bom", "p.pcf.products", "p.pcf.rejected"):
            assert shared not in reads, (role, shared)
        assert not any(
            g.pattern == "prefixed" and g.resource == "topic"
            for g in grants_for(role, "acme", prefix="p.")
        ), "a company's topic grants are literal (its own names only)"
    manufacturer = {g.name for g in grants_for("manufacturer", "acme", prefix="p.")}
    assert "p.pcf.outbound.acme" in manufacturer


def test_the_table_names_only_known_roles() -> None:
    for topic, roles in TOPIC_ACCESS.items():
        assert set(roles) <= set(ROLES), topic
        assert all(set(access) <= set("RWCD") for access in roles.values()), topic
    with pytest.raises(KeyError, match="unknown role"):
        grants_for("attacker", "x")


def test_the_gateway_may_use_the_transactional_ids_its_runner_names() -> None:
    grants = grants_for("gateway", "gw", prefix="demo-1.", group="demo-1.gateway")
    txn = [g for g in grants if g.resource == "transactional_id" and g.operation == "WRITE"]
    used = "pcfx-gateway.demo-1.gateway.demo-1.pcf.products.3"  # _runner.py's format
    assert any(used.startswith(g.name) for g in txn)
    other = "pcfx-gateway.pcfx-gateway.pcf.products.0"  # another deployment's gateway
    assert not any(other.startswith(g.name) for g in txn)
