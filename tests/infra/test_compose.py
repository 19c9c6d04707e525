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
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
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
        if name == "kafka":
            continue
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092"
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_dockerfile_copies_every_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for package in ("contracts", "producers", "streams", "gateway", "pcfx", "infra"):
        assert f"COPY {package} {package}" in text
