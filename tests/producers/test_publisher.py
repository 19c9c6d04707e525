"""The SDK on a real broker: what lands on the topic is what was acknowledged, decodes and
verifies; bad records are reported and never sent; re-runs are duplicates; updates follow the
PACT v3 lifecycle in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.partitioner.default import murmur2

from pcf_exchange.contracts import (
    BillOfMaterials,
    SignedBillOfMaterials,
    SignedEmissionFactor,
    SignedFootprint,
    ValidationFailed,
    parse,
    parse_footprint,
    verify,
)
from pcf_exchange.contracts.errors import BrokerError
from pcf_exchange.infra.kafka.launcher import free_port
from pcf_exchange.producers import (
    Item,
    KeyDirectory,
    KeyState,
    Ledger,
    Publisher,
    Signer,
    Status,
    load_items,
    registration,
    revocation,
)
from tests.producers.conftest import Cluster, bom_json, footprint_json, write_json

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.broker


def _java_partition(key: bytes, partitions: int) -> int:
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def test_mixed_file_sends_the_good_records_and_names_the_bad(
    cluster: Cluster, signer: Signer, tmp_path: Path
) -> None:
    records = [footprint_json(i) for i in range(6)]
    records[1]["pcf"]["pcfExcludingBiogenicUptake"] = "1,5"
    records[4]["productIds"] = ["not-a-urn"]
    records[4]["pcf"]["dqi"]["temporalDQR"] = "0"
    path = write_json(tmp_path / "cells.json", {"data": records})
    with cluster.publisher(signer) as publisher:
        summary = publisher.publish_many(load_items("footprints", path))
    assert (summary.sent, summary.rejected, summary.failed) == (4, 2, 0)
    assert not summary.ok
    bad = {o.index: o for o in summary.outcomes if o.status is Status.REJECTED}
    assert set(bad) == {1, 4}
    assert [v.path for v in bad[1].violations] == ["pcf.pcfExcludingBiogenicUptake"]
    assert {v.path for v in bad[4].violations} == {"productIds[0]", "pcf.dqi.temporalDQR"}, (
        "every problem of a record at once"
    )
    assert bad[4].ref == f"{path}#4"
    kinds = summary.by_error()
    assert sum(kinds.values()) == 3 and kinds["decimal_pattern"] == 1, kinds

    messages = cluster.read(cluster.topics.declared, expected=4)
    assert len(messages) == 4, "nothing but the acknowledged records"
    serde, registry = cluster.serde()
    sent = {(o.partition, o.offset): o for o in summary.outcomes if o.status is Status.SENT}
    try:
        for message in messages:
            record = serde.decode(message.value(), SignedFootprint)
            outcome = sent[(message.partition(), message.offset())]
            assert message.key() == record.footprint.product_ids[0].encode()
            assert message.partition() == _java_partition(message.key(), 3), "murmur2 like Java"
            assert record.batch_proof is not None, "batch-signed by default"
            assert verify(signer.public_key, record) == outcome.content_hash
            assert record.sequence == outcome.sequence
            assert (record.supplier_id, record.key_id) == (signer.owner, signer.key_id)
    finally:
        registry.close()


def test_rerunning_a_file_repeats_ids_and_sequences(
    cluster: Cluster, signer: Signer, tmp_path: Path
) -> None:
    path = write_json(tmp_path / "cells.json", [footprint_json(i) for i in range(5)])
    ledger = Ledger(tmp_path / "ledger.json")
    with cluster.publisher(signer, ledger=ledger) as publisher:
        first = publisher.publish_many(load_items("footprints", path))
    with cluster.publisher(signer, ledger=Ledger(tmp_path / "ledger.json")) as publisher:
        second = publisher.publish_many(load_items("footprints", path))
    assert first.ok and second.ok
    assert [(o.record_id, o.sequence, o.content_hash) for o in first.outcomes] == [
        (o.record_id, o.sequence, o.content_hash) for o in second.outcomes
    ]
    messages = cluster.read(cluster.topics.declared, expected=10)
    serde, registry = cluster.serde()
    try:
        pairs: dict[tuple[str, int], list[SignedFootprint]] = {}
        for message in messages:
            record = serde.decode(message.value(), SignedFootprint)
            pairs.setdefault((str(record.footprint.id), record.sequence), []).append(record)
    finally:
        registry.close()
    assert len(pairs) == 5 and all(len(v) == 2 for v in pairs.values()), (
        "each footprint twice with the same sequence: the streams see a duplicate"
    )


def test_update_lands_in_lifecycle_order(cluster: Cluster, signer: Signer) -> None:
    old = parse_footprint(footprint_json(1, created="2025-01-01T00:00:00Z"))
    data = footprint_json(2, created="2025-06-01T00:00:00Z")
    data["productIds"] = footprint_json(1)["productIds"]
    new = parse_footprint(data)
    with cluster.publisher(signer) as publisher:
        assert publisher.publish(old).ok
        summary = publisher.publish_update(old, new)
    assert summary.ok and summary.sent == 2
    messages = cluster.read(cluster.topics.declared, expected=3)
    serde, registry = cluster.serde()
    try:
        records = [serde.decode(m.value(), SignedFootprint) for m in messages]
    finally:
        registry.close()
    assert len({m.partition() for m in messages}) == 1, "one product, one partition"
    assert [(str(r.footprint.id), r.footprint.status) for r in records] == [
        (str(old.id), "Active"),
        (str(old.id), "Deprecated"),
        (str(new.id), "Active"),
    ]
    assert records[2].footprint.preceding_pf_ids == (old.id,)
    sequences = [r.sequence for r in records]
    assert sequences == sorted(sequences) and len(set(sequences)) == 3
    for record in records:
        assert verify(signer.public_key, record)


def test_bom_signed_by_its_owner(cluster: Cluster, signer: Signer, tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "boms.json",
        [
            bom_json(owner=None, revision=0),
            bom_json(productId="urn:pact:x:product-id:2", owner="else"),
        ],
    )
    with cluster.publisher(signer) as publisher:
        summary = publisher.publish_many(load_items("boms", path))
    assert (summary.sent, summary.rejected) == (1, 1)
    assert summary.outcomes[1].error_code == "owner_mismatch"
    (message,) = cluster.read(cluster.topics.bom, expected=1)
    serde, registry = cluster.serde()
    try:
        record = serde.decode(message.value(), SignedBillOfMaterials)
    finally:
        registry.close()
    assert record.bom.owner == signer.owner
    assert record.bom.revision == record.sequence == summary.outcomes[0].sequence
    assert record.sequence > 0
    assert message.key() == record.bom.product_id.encode()
    assert verify(signer.public_key, record)


def test_shipped_factor_set_publishes_cleanly(cluster: Cluster, operator_signer: Signer) -> None:
    path = ROOT / "producers" / "data" / "factors-cn.json"
    with cluster.publisher(operator_signer) as publisher:
        summary = publisher.publish_many(load_items("factors", path))
    assert summary.ok, summary.by_error()
    messages = cluster.read(cluster.topics.factors, expected=summary.sent)
    assert len(messages) == summary.sent
    serde, registry = cluster.serde()
    try:
        ids = set()
        for message in messages:
            record = serde.decode(message.value(), SignedEmissionFactor)
            assert message.key() == record.factor.factor_id.encode()
            assert verify(operator_signer.public_key, record)
            ids.add(record.factor.factor_id)
    finally:
        registry.close()
    assert "bg:cn-grid-2022" in ids and len(ids) == summary.sent


def test_key_registration_and_revocation(
    cluster: Cluster, operator_signer: Signer, signer: Signer
) -> None:
    with cluster.publisher(operator_signer) as operator:
        record = registration(signer.owner, signer.public_key, registered_by="operator")
        assert operator.publish_key(record).ok
        directory = KeyDirectory.read(
            cluster.bootstrap,
            operator.serde,
            topic=cluster.topics.keys,
            operator_key=operator_signer.public_key,
        )
        assert directory.status(signer.owner, signer.key_id).state is KeyState.ACTIVE
        assert directory.status("someone-else", signer.key_id).state is KeyState.OTHER_SUPPLIER
        current = directory.lookup(signer.owner, signer.key_id)
        assert current is not None
        revoked = revocation(current, at=None, revoked_by="operator")
        summary = operator.publish_key(revoked, after_sequence=current.sequence)
        assert summary.ok and (summary.outcomes[0].sequence or 0) > current.sequence
        after = KeyDirectory.read(
            cluster.bootstrap,
            operator.serde,
            topic=cluster.topics.keys,
            operator_key=operator_signer.public_key,
        )
        assert after.status(signer.owner, signer.key_id).state is KeyState.REVOKED
        # a registration not signed by the operator key given is not trusted
        stranger = KeyDirectory.read(
            cluster.bootstrap,
            operator.serde,
            topic=cluster.topics.keys,
            operator_key=signer.public_key,
        )
        assert stranger.status(signer.owner, signer.key_id).state is KeyState.UNKNOWN
        assert stranger.skipped == 2
    with cluster.publisher(signer) as supplier:
        assert supplier.key_status(keys_topic=cluster.topics.keys).state is KeyState.REVOKED


def test_records_the_broker_refuses_are_not_acknowledged(
    kafka_bootstrap: str, new_topic: Callable[..., str], signer: Signer
) -> None:
    from pcf_exchange.producers import Topics

    tiny = new_topic(prefix="tiny", **{"max.message.bytes": "600"})
    cluster = Cluster(kafka_bootstrap, Topics(declared=tiny), f"schemas-{tiny}")
    with cluster.publisher(signer) as publisher:
        summary = publisher.publish_many([parse_footprint(footprint_json(i)) for i in range(3)])
    assert summary.failed == 3 and summary.sent == 0 and not summary.ok
    for outcome in summary.outcomes:
        assert outcome.status is Status.FAILED
        assert outcome.error_code == "not_acknowledged"
        assert outcome.offset is None
        assert "too large" in (outcome.message or "").lower() or outcome.message
    assert cluster.read(tiny, expected=0, timeout_s=3) == []


def test_unreachable_broker_fails_fast_and_sends_nothing(signer: Signer) -> None:
    with pytest.raises(BrokerError, match="nothing was sent"):
        Publisher(f"127.0.0.1:{free_port()}", signer=signer, connect_timeout_s=2)


def test_one_record_at_a_time_and_async(cluster: Cluster, signer: Signer) -> None:
    first, second = (parse_footprint(footprint_json(i)) for i in (1, 2))

    async def publish() -> bool:
        with cluster.publisher(signer) as publisher:
            reports = await asyncio.gather(
                asyncio.wrap_future(publisher.submit(first)),
                asyncio.wrap_future(publisher.submit(second)),
            )
            return all(r.ok and r.offset is not None for r in reports)

    assert asyncio.run(publish())
    assert len(cluster.read(cluster.topics.declared, expected=2)) == 2


def test_single_publish_refusal_raises(cluster: Cluster, signer: Signer) -> None:
    ledger = Ledger.in_memory()
    original = parse_footprint(footprint_json(1))
    edited_data = footprint_json(1)
    edited_data["comment"] = "changed after publishing"
    with cluster.publisher(signer, ledger=ledger) as publisher:
        assert publisher.publish(original).ok
        with pytest.raises(ValidationFailed) as caught:
            publisher.publish(parse_footprint(edited_data))
    assert caught.value.violations[0].code == "immutable_footprint"


def test_bom_items_from_objects_and_items(cluster: Cluster, signer: Signer) -> None:
    bom = parse(BillOfMaterials, bom_json(owner=signer.owner, revision=4))
    with cluster.publisher(signer) as publisher:
        summary = publisher.publish_many([bom, Item.of(bom, "again")])
    assert summary.ok and [o.sequence for o in summary.outcomes] == [4, 4]


@pytest.fixture
def http_registry() -> Iterator[Any]:
    """A Confluent-compatible registry (the REST subset contracts tests use) on an OS port."""
    import socket
    import threading
    import time

    import uvicorn

    from pcf_exchange.contracts import InMemorySchemaRegistry
    from tests.contracts.conftest import RegistryServer, registry_app

    backend = InMemorySchemaRegistry()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(registry_app(backend), lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield RegistryServer(f"http://127.0.0.1:{sock.getsockname()[1]}", backend)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_confluent_compatible_registry_by_url(
    cluster: Cluster, signer: Signer, http_registry: Any
) -> None:
    with cluster.publisher(signer, registry=http_registry.url) as publisher:
        summary = publisher.publish_many([parse_footprint(footprint_json(i)) for i in range(3)])
    assert summary.ok and summary.sent == 3
    assert "pcf.declared-value" not in http_registry.backend.subjects()
    assert f"{cluster.topics.declared}-value" in http_registry.backend.subjects()
    from pcf_exchange.contracts import AvroSerde

    serde = AvroSerde(http_registry.backend)
    for message in cluster.read(cluster.topics.declared, expected=3):
        assert verify(signer.public_key, serde.decode(message.value(), SignedFootprint))
