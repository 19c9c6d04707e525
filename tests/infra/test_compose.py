"""docker-compose.yml is valid for users with Docker (no engine runs here, so we check the file
with the rules `docker compose config` applies that matter to us)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def load() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_kafka_service_is_the_official_kraft_image_with_a_healthcheck() -> None:
    kafka = load()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@127.0.0.1:9093"  # loopback only
    assert "9092:9092" in kafka["ports"]
    assert "EXTERNAL://localhost:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka["healthcheck"]["test"][0] == "CMD-SHELL"


def test_every_service_is_runnable_and_references_resolve() -> None:
    compose = load()
    services = compose["services"]
    for name, service in services.items():
        assert "image" in service or "build" in service, f"service {name} has no image or build"
        for port in service.get("ports", []):
            assert re.fullmatch(r"\d+:\d+", str(port)), (
                f"{name}: port {port!r} is not HOST:CONTAINER"
            )
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file()


def test_project_services_use_the_internal_listener() -> None:
    for name, service in load()["services"].items():
        if name in {"kafka", "kafka-secrets"}:  # the broker, and what it needs before it starts
            continue
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092"
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_dockerfile_copies_every_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for package in ("contracts", "producers", "streams", "gateway", "pcfx", "infra"):
        assert f"COPY {package} {package}" in text


def _server_properties() -> dict[str, str]:
    from contracts.kafka_client import read_properties

    return read_properties(ROOT / "infra" / "kafka" / "server-compose.properties.template")


def test_the_broker_authenticates_and_authorizes_every_client() -> None:
    props = _server_properties()
    protocols = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
    advertised = props["advertised.listeners"]
    for listener, protocol in protocols.items():
        if protocol != "SASL_SSL":  # internal listeners are bound to the container's loopback
            assert f"{listener}://127.0.0.1:" in props["listeners"], listener
        else:
            assert props[f"listener.name.{listener.lower()}.sasl.enabled.mechanisms"] == (
                "SCRAM-SHA-512"
            )
    assert "EXTERNAL://localhost:9092" in advertised and "INTERNAL://kafka:29092" in advertised
    assert props["authorizer.class.name"].endswith("metadata.authorizer.StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert "User:${admin_user}" in props["super.users"]
    kafka = load()["services"]["kafka"]
    env = kafka["environment"]
    assert env["KAFKA_LISTENERS"] == props["listeners"], "the documented listeners are the real"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == advertised
    assert env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] == props["listener.security.protocol.map"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == props["controller.quorum.voters"]
    command = " ".join(kafka["command"])
    assert "--add-scram" in command and "/secrets/kafka/server.properties" in command
    assert "--command-config /secrets/kafka/admin.properties" in kafka["healthcheck"]["test"][1]
    assert kafka["depends_on"]["kafka-secrets"]["condition"] == "service_completed_successfully"


def test_compose_services_connect_with_a_client_config() -> None:
    for name, service in load()["services"].items():
        if name in {"kafka", "kafka-secrets"}:
            continue
        assert service["environment"]["KAFKA_CLIENT_CONFIG"].startswith("/secrets/kafka/")


def test_compose_secrets_are_complete_and_private(tmp_path: Path) -> None:
    from contracts.kafka_client import KafkaClientSettings, read_properties
    from infra.kafka.compose_secrets import write_compose_secrets

    written = write_compose_secrets(tmp_path / "secrets")
    again = write_compose_secrets(tmp_path / "secrets")
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in again], "kept on rerun"
    modes = {p.name: p.stat().st_mode & 0o777 for p in written}
    assert modes["ca.pem"] == 0o644
    for secret in ("broker.pem", "ca.key.pem", "admin.password", "server.properties"):
        assert modes[secret] == 0o600, secret
    server = read_properties(tmp_path / "secrets" / "server.properties")
    assert Path(server["ssl.keystore.location"]).is_file()
    assert server["super.users"] == "User:admin;User:pcfx-broker"
    admin = KafkaClientSettings.from_properties(tmp_path / "secrets" / "admin.properties")
    assert (admin.security_protocol, admin.username, admin.bootstrap_servers) == (
        "SASL_SSL",
        "admin",
        "kafka:29092",
    )
    assert admin.password == (tmp_path / "secrets" / "admin.password").read_text()
    assert len((tmp_path / "secrets" / "cluster.id").read_text()) == 22
