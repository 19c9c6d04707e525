"""Fixtures for the producer tests: keys, realistic records, fresh topics, reading back.

Every test gets its own ledger, key folder and state folder (never the user's ``~``), and on the
broker its own topic prefix and topics, including its own schema-registry topic
(``<prefix>pcf._schemas``, the one the CLI reads under ``--topic-prefix``), so that runs never
see each other's records nor fence each other's registry writer.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcf_exchange.contracts import AvroSerde, KafkaSchemaRegistry
from pcf_exchange.producers import (
    KeyPairFiles,
    KeyRole,
    Ledger,
    Publisher,
    Signer,
    Topics,
    new_key_pair,
)
from tests.contracts.conftest import BOM_JSON, FACTOR_JSON, FOOTPRINT_JSON

SUPPLIER = "urn:pact:company:customcode:vendor-assigned:example-cells"
"""Supplier ids are the company URNs that footprints list in ``companyIds``."""


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PCFX_LEDGER", str(tmp_path / "state" / "ledger.json"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("PCFX_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.delenv("PCFX_KEY_PASSPHRASE", raising=False)


def footprint_json(n: int = 0, **changes: Any) -> dict[str, Any]:
    """A valid PACT v3 footprint, distinct per *n* (id, product, created)."""
    data = copy.deepcopy(FOOTPRINT_JSON)
    data["id"] = str(uuid.UUID(int=(0xF0 << 120) + n))
    data["productIds"] = [f"urn:pact:example-cells.cn:product-id:P{n:05d}"]
    data["created"] = f"2025-03-01T08:{n // 60 % 60:02d}:{n % 60:02d}Z"
    data["companyIds"] = [SUPPLIER]
    data.pop("precedingPfIds", None)
    data.update(changes)
    return data


def bom_json(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BOM_JSON)
    data.update(changes)
    return data


def factor_json(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(FACTOR_JSON)
    data.update(changes)
    return data


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def signer() -> Signer:
    return Signer.from_private_key(Ed25519PrivateKey.generate(), SUPPLIER)


@pytest.fixture
def operator_signer() -> Signer:
    return Signer.from_private_key(Ed25519PrivateKey.generate(), "operator", KeyRole.OPERATOR)


@pytest.fixture
def supplier_files(tmp_path: Path) -> KeyPairFiles:
    return new_key_pair(SUPPLIER, tmp_path / "keys")


@pytest.fixture
def operator_files(tmp_path: Path) -> KeyPairFiles:
    return new_key_pair("operator", tmp_path / "keys", role=KeyRole.OPERATOR)


@dataclass(frozen=True)
class Cluster:
    """A broker plus this test's own topics."""

    bootstrap: str
    topics: Topics
    schemas_topic: str
    prefix: str = ""
    """The deployment prefix the topics were made under (the CLI's ``--topic-prefix``)."""

    def publisher(self, signer: Signer, **kwargs: Any) -> Publisher:
        kwargs.setdefault("ledger", Ledger.in_memory())
        kwargs.setdefault("schemas_topic", self.schemas_topic)
        return Publisher(self.bootstrap, signer=signer, topics=self.topics, **kwargs)

    def scope(self) -> list[str]:
        """CLI options for this cluster's prefix and key topic (``--keys-topic`` is prefixed)."""
        return [
            "--bootstrap", self.bootstrap, "--topic-prefix", self.prefix,
            "--keys-topic", self.topics.keys.removeprefix(self.prefix),
        ]  # fmt: skip

    def serde(self) -> tuple[AvroSerde, KafkaSchemaRegistry]:
        registry = KafkaSchemaRegistry(self.bootstrap, topic=self.schemas_topic)
        return AvroSerde(registry), registry

    def read(self, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
        """Every message on *topic* (at least *expected*), in partition/offset order."""
        return read_topic(self.bootstrap, topic, expected, timeout_s)


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    quiet_until = None
    while time.monotonic() < deadline:
        batch = consumer.consume(500, timeout=0.5)
        messages += [m for m in batch if m.error() is None]
        if len(messages) >= expected:
            # linger a moment to catch records beyond the expected count
            quiet_until = quiet_until or time.monotonic() + 1.0
            if time.monotonic() > quiet_until:
                break
    consumer.close()
    return sorted(messages, key=lambda m: (m.partition(), m.offset()))


@pytest.fixture
def cluster(kafka_bootstrap: str, new_topic: Callable[..., str]) -> Iterator[Cluster]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    topics = Topics(
        declared=new_topic(partitions=3, prefix=f"{prefix}declared"),
        bom=new_topic(partitions=3, prefix=f"{prefix}bom"),
        factors=new_topic(partitions=1, prefix=f"{prefix}factors"),
        keys=new_topic(partitions=1, prefix=f"{prefix}keys"),
        schemas=f"{prefix}pcf._schemas",
    )
    yield Cluster(kafka_bootstrap, topics, topics.schemas, prefix)
