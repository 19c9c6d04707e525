"""Shared fixtures: one real Kafka broker per test run, a fresh topic per test, and one run of
``pcfx demo`` on its own secure broker for the tests that check it.

The broker comes from :func:`infra.kafka.provision.provision_broker` (KAFKA_BOOTSTRAP_SERVERS,
else Docker via testcontainers, else the local jar broker). It is started lazily: a run that
selects no broker test never starts Java.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from pcf_exchange.contracts.kafka_client import kafka_python_kwargs
from pcf_exchange.infra.kafka.provision import ProvisionedBroker, provision_broker
from tests.harness import DemoRun, demo_on_its_own_secure_broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[ProvisionedBroker]:
    with provision_broker() as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: ProvisionedBroker) -> str:
    """``host:port`` of a real Kafka broker for this test run."""
    return kafka_broker.bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(
        **kafka_python_kwargs(), bootstrap_servers=kafka_bootstrap, client_id="pcfx-tests"
    )
    yield admin
    admin.close()


@pytest.fixture
def new_topic(kafka_admin: KafkaAdminClient) -> Callable[..., str]:
    """Create a uniquely named topic (``test-<uuid>``) and return its name."""

    def make(partitions: int = 1, prefix: str = "test", **config: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        kafka_admin.create_topics(
            [
                NewTopic(
                    name=name,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs=config,
                )
            ]
        )
        return name

    return make


@pytest.fixture(scope="session")
def secure_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """``pcfx demo`` on its own secure broker (:func:`tests.harness.demo_on_its_own_secure_broker`),
    run once per session: ``tests/e2e/test_demo.py`` checks its figures against an independent
    calculation and ``tests/infra/test_demo_secure.py`` what the secure broker refused (the demo
    takes minutes; the README's walkthroughs run it once more, left running, on the test
    broker)."""
    return demo_on_its_own_secure_broker(tmp_path_factory.mktemp("secure-demo"))
