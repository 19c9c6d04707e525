"""Get a Kafka broker for a test run or the demo, in the order ARCHITECTURE.md fixes.

1. ``KAFKA_BOOTSTRAP_SERVERS`` if set: use that cluster, start nothing.
2. A Docker engine that answers: testcontainers' Kafka module (``apache/kafka`` image).
3. Otherwise the local jar broker: reuse the one ``pcfx broker start`` runs (connecting as its
   operator when it is a ``--secure`` one and no ``KAFKA_CLIENT_CONFIG`` is set), or start a
   private one in a temporary state folder and stop it afterwards.

Whatever this starts, it stops; whatever it found running, it leaves running.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pcf_exchange.contracts.kafka_client import CONFIG_ENV, reset
from pcf_exchange.infra.kafka import launcher

__all__ = ["ProvisionedBroker", "docker_engine_answers", "provision_broker"]

KAFKA_IMAGE = "apache/kafka:4.1.1"


@dataclass(frozen=True)
class ProvisionedBroker:
    bootstrap: str
    source: str
    """``env``, ``testcontainers``, ``local-running`` or ``local-started``."""


def docker_engine_answers() -> bool:
    """True when a Docker engine answers a ping within two seconds."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure (no socket, no SDK, refused) means "no engine"
        return False


@contextlib.contextmanager
def provision_broker() -> Iterator[ProvisionedBroker]:
    explicit = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if explicit:
        yield ProvisionedBroker(explicit, "env")
        return
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield ProvisionedBroker(container.get_bootstrap_server(), "testcontainers")
        return
    running = launcher.status()
    if running.running and running.info is not None:
        if running.info.admin_config and not os.environ.get(CONFIG_ENV):
            # a secure local broker: the tests connect as its operator (a super user)
            os.environ[CONFIG_ENV] = running.info.admin_config
            reset()
        yield ProvisionedBroker(running.info.bootstrap, "local-running")
        return
    with tempfile.TemporaryDirectory(prefix="pcfx-broker-") as tmp:
        state_dir = Path(tmp)
        info = launcher.start(state_dir)
        try:
            yield ProvisionedBroker(info.bootstrap, "local-started")
        finally:
            launcher.stop(state_dir)
