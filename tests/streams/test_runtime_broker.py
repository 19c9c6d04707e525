"""The streams on a real broker: the demo chain rolls up to exactly the batch-mode figures,
updates propagate through every tier, and forged records land in the DLQ with a reason."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcf_exchange.contracts import ProductFootprint, RolledUpFootprint
from pcf_exchange.streams.adapt import deprecated_record
from pcf_exchange.streams.batch import run_rollup
from tests.streams._broker_world import ROOT, World

pytestmark = [pytest.mark.broker, pytest.mark.slow]

PACK = "urn:pact:cz-packs.cn:product-id:PACK-282"
BUS = "urn:pact:zz-bus.cn:product-id:E-BUS-12M"
CELL = "urn:pact:fj-cells.cn:product-id:LFP280-CELL"


@pytest.fixture
def world(kafka_bootstrap: str, tmp_path: Path) -> Iterator[World]:
    w = World(kafka_bootstrap, tmp_path)
    yield w
    w.stop()


def batch_figures(extra_boms: list[Path] | None = None) -> dict[str, Decimal]:
    outcome = run_rollup(
        [ROOT / "demo/lfp/suppliers-footprints.json"],
        [ROOT / "demo/lfp/manufacturers-boms.json", *(extra_boms or [])],
        [ROOT / "producers/data/factors-cn.json"],
    )
    return {r.product_id: r.pcf_excluding_biogenic_uptake for r in outcome.records}


def test_streaming_equals_batch_and_updates_propagate(world: World) -> None:
    world.start_worker()
    world.publish_demo_chain()
    expected = batch_figures()
    latest = world.wait_for(
        lambda got: all(
            pid in got and got[pid].pcf_excluding_biogenic_uptake == value
            for pid, value in expected.items()
        ),
        what="the demo chain's roll-ups",
    )
    pack = latest[PACK]
    assert pack.footprint is not None, "a complete roll-up issues a PACT footprint"
    assert pack.completeness.complete
    # the cell maker moves to hydro power: a new BOM revision propagates to pack and bus
    from pcf_exchange.contracts import load_boms

    green = load_boms(ROOT / "demo/lfp/cell-green-electricity.json")[0].value
    assert green is not None
    world.publish_bom(green)
    after = batch_figures([ROOT / "demo/lfp/cell-green-electricity.json"])
    assert after[PACK] < expected[PACK]
    latest = world.wait_for(
        lambda got: (
            got[BUS].pcf_excluding_biogenic_uptake == after[BUS]
            and got[PACK].pcf_excluding_biogenic_uptake == after[PACK]
        ),
        what="the green cell to reach the pack and the bus",
    )
    new_pack = latest[PACK]
    assert new_pack.footprint is not None and pack.footprint is not None
    assert [str(p) for p in new_pack.footprint.preceding_pf_ids or ()] == [str(pack.footprint.id)]
    world.wait_quiet()
    history = world.read("pcf.products", RolledUpFootprint)
    deprecated = assert_pact_lifecycle(history)
    assert str(pack.footprint.id) in deprecated, "the pack's superseded footprint is deprecated"
    assert world.rejections() == []
    # every record on pcf.products (footprints and Deprecated copies) carries the batch
    # signature of the workers' service key, registered by the operator with role service
    checks = world.product_signatures()
    assert len(checks) == len(history)
    assert [c.reason for c in checks if not c.ok] == []
    assert {c.signer for c in checks} == {"pcfx-streams"}


def assert_pact_lifecycle(records: list[RolledUpFootprint]) -> set[str]:
    """PACT v3 on ``pcf.products``, per product in topic order: every footprint a later one
    names in ``precedingPfIds`` comes again, just before it, as ``Deprecated`` with nothing else
    changed; nothing else is deprecated, and each product's last footprint is ``Active``.
    Returns the deprecated ids."""
    by_product: dict[str, list[tuple[RolledUpFootprint, ProductFootprint]]] = {}
    for record in records:
        if record.footprint is not None:
            by_product.setdefault(record.product_id, []).append((record, record.footprint))
    deprecated: set[str] = set()
    for product, history in by_product.items():
        issued: dict[str, RolledUpFootprint] = {}
        named: set[str] = set()
        retired: set[str] = set()
        for i, (record, footprint) in enumerate(history):
            pf_id = str(footprint.id)
            named.update(str(p) for p in footprint.preceding_pf_ids or ())
            if footprint.status == "Active":
                issued[pf_id] = record
                continue
            assert deprecated_record(issued[pf_id]) == record, f"{product}: {pf_id} changed"
            successor = history[i + 1][1] if i + 1 < len(history) else None
            assert successor is not None and successor.status == "Active", product
            assert [str(p) for p in successor.preceding_pf_ids or ()] == [pf_id], product
            retired.add(pf_id)
        assert named == retired, f"{product}: superseded {named}, deprecated {retired}"
        deprecated |= retired
        assert history[-1][1].status == "Active", product
    return deprecated


def test_forged_and_sequence_reusing_records_go_to_the_dlq(world: World) -> None:
    world.start_worker()
    from pcf_exchange.contracts import load_footprints

    fp = load_footprints(ROOT / "demo/lfp/suppliers-footprints.json")[0].value
    assert fp is not None
    world.register(fp.company_ids[0])
    world.publish_footprint(fp)  # sequence 1, genuine
    world.publish_footprint(fp, key=Ed25519PrivateKey.generate())  # sequence 2, forged
    world.sequences[f"fp:{fp.product_ids[0]}"] = 0
    changed = copy.deepcopy(fp).model_copy(update={"comment": "replayed with an old sequence"})
    world.publish_footprint(changed)  # sequence 1 again, other content: a reused sequence
    rejections = []
    for _ in range(60):
        rejections = world.rejections()
        if len(rejections) >= 2:
            break
        time.sleep(1)
    assert sorted(r.reason or "" for r in rejections) == ["bad_signature", "sequence_reused"], (
        world.worker_logs()
    )
    forged = next(r for r in rejections if r.reason == "bad_signature")
    assert forged.source_topic == world.topic("pcf.declared")
    assert "signature does not match" in forged.message


def test_a_result_too_large_to_write_goes_to_the_dlq_and_the_worker_goes_on(world: World) -> None:
    # Valid inputs can multiply into a figure no decimal field holds (1e60 kg CO2e per kg, and a
    # BOM line of 1e10 kg): the result goes to the DLQ, named, and the worker does not stop on it
    from pcf_exchange.contracts import load_boms, load_footprints, parse_footprint, to_pact_json

    proc = world.start_worker()
    fp = load_footprints(ROOT / "demo/lfp/suppliers-footprints.json")[0].value
    template = load_boms(ROOT / "demo/lfp/manufacturers-boms.json")[0].value
    assert fp is not None and template is not None
    doc = to_pact_json(fp)
    doc["productIds"] = ["urn:pact:qh-lithium.cn:product-id:HUGE"]
    huge = "1" + "0" * 60
    for name in ("pcfExcludingBiogenicUptake", "pcfIncludingBiogenicUptake", "fossilGhgEmissions"):
        doc["pcf"][name] = huge
    doc.pop("extensions", None)
    line = template.components[0].model_copy(
        update={"product_id": doc["productIds"][0], "quantity": Decimal("1e10")}
    )
    bom = template.model_copy(
        update={
            "product_id": "urn:pact:hn-cathode.cn:product-id:HUGE-CAM",
            "components": (line,),
            "process_emissions": None,
        }
    )
    world.publish_footprint(parse_footprint(doc))
    world.publish_bom(bom)
    rejections: list[Any] = []
    for _ in range(60):
        rejections = world.rejections()
        if rejections:
            break
        time.sleep(1)
    assert len(rejections) == 1, world.worker_logs()
    (rejected,) = rejections
    assert rejected.source_topic == world.topic("pcf.rollup")
    assert rejected.key == bom.product_id.encode()
    assert rejected.error_code == "rollup"
    assert (rejected.field_path or "").startswith("pcf."), rejected
    assert "HUGE-CAM" in rejected.message and "more digits before the point" in rejected.message
    # the worker goes on: the demo chain still rolls up to the batch figures
    world.publish_demo_chain()
    world.wait_for(_converged(_expected_all()), what="the demo chain after the DLQ'd result")
    assert proc.poll() is None
    # (an incomplete result may have gone out before the footprint reached the product)
    last = world.latest_products().get(bom.product_id)
    assert last is None or not last.completeness.complete


def _expected_all() -> dict[str, Decimal]:
    return batch_figures()


def _converged(expected: dict[str, Decimal]):
    return lambda got: all(
        pid in got and got[pid].pcf_excluding_biogenic_uptake == value
        for pid, value in expected.items()
    )


def test_kill_9_mid_stream_then_restart_converges_to_the_same_results(world: World) -> None:
    # Kill -9 while the worker has state in its changelogs and work in flight: offsets of what
    # it did since its last commit are redelivered to its successor, which must treat them as
    # no-ops (not re-send them, which makes parents and inputs echo each other forever).
    expected = _expected_all()
    worker = world.start_worker("first")
    held_back = world.publish_demo_chain(hold_back=3)
    world.wait_for(lambda got: len(got) >= 1, what="the first worker to produce")
    for bom in held_back:
        world.publish_bom(bom)
    world.kill_worker(worker)  # no chance to clean up, commit or flush
    world.start_worker("second")
    latest = world.wait_for(_converged(expected), what="convergence after kill -9")
    assert {pid: r.pcf_excluding_biogenic_uptake for pid, r in latest.items()} == expected
    world.wait_quiet()
    assert world.rejections() == []


def test_two_workers_on_six_partitions_give_the_same_results_as_one(world: World) -> None:
    # The second worker joins mid-stream, so partitions move while records flow. (Starting
    # two workers at the same instant on a fresh app can stall faust's changelog recovery,
    # faust-streaming/faust#432; a rolling start is also how deployments scale out.)
    expected = _expected_all()
    world.start_worker("a")
    held_back = world.publish_demo_chain(hold_back=3)
    world.wait_for(lambda got: len(got) >= 1, what="the first worker to produce")
    world.start_worker("b")
    for bom in held_back:
        world.publish_bom(bom)
        time.sleep(1.0)
    latest = world.wait_for(_converged(expected), what="two workers to converge")
    assert {pid: r.pcf_excluding_biogenic_uptake for pid, r in latest.items()} == expected
    world.wait_for_group(members=2)  # both workers own partitions now
    from pcf_exchange.contracts import load_boms

    green = load_boms(ROOT / "demo/lfp/cell-green-electricity.json")[0].value
    assert green is not None
    world.publish_bom(green)
    after = batch_figures([ROOT / "demo/lfp/cell-green-electricity.json"])
    latest = world.wait_for(_converged(after), what="two workers to propagate an update")
    assert {pid: r.pcf_excluding_biogenic_uptake for pid, r in latest.items()} == after
    assert all(r.footprint is not None for r in latest.values())
    world.wait_quiet()
    assert all(w.poll() is None for w in world.workers), "both workers are still running"
    assert world.rejections() == []


def test_the_tables_changelogs_exist_before_a_worker_starts(world: World) -> None:
    # A worker whose client has no changelog in its metadata crashes on its first table write
    # (faust PartitionsMismatch: "the changelog topic has 0 partitions"), so they are created
    # with the app's other topics: compacted, co-partitioned with the inputs.
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    from pcf_exchange.streams.runtime import TABLES

    names = [f"{world.app_id}-{table}-changelog" for table in TABLES]
    admin = KafkaAdminClient(bootstrap_servers=world.bootstrap)
    try:
        described = {t["name"]: t for t in admin.describe_topics(names)}
        assert {n: len(described[n]["partitions"]) for n in names} == dict.fromkeys(
            names, world.partitions
        )
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )["topic"]
        policies = {n: configs[n]["cleanup.policy"]["value"] for n in names}
        assert policies == dict.fromkeys(names, "compact")
    finally:
        admin.close()


def test_records_on_the_internal_topics_that_no_worker_wrote_go_to_the_dlq(world: World) -> None:
    from confluent_kafka import Producer

    from pcf_exchange.streams import codec
    from pcf_exchange.streams._packs import partition as _partition
    from pcf_exchange.streams.rollup import ComponentState, Ref, Subscribe

    proc = world.start_worker()
    producer = Producer({"bootstrap.servers": world.bootstrap})
    subscribe = Subscribe(Ref.product("s"), "p", 1)  # a message for node product:s
    home = _partition(b"product:s", world.partitions)
    wrong = (home + 1) % world.partitions
    row = codec.encode_pack([codec.encode_message(ComponentState(Ref.product("q")))])
    garbage = [
        (b"not json", None),
        (b'[{"@type": "ChildValue", "parent": "p"}]', None),
        (row, None),  # a table row, not a message
        (codec.encode_pack([codec.encode_message(subscribe)]), wrong),
    ]
    topic = world.topic("pcf.rollup")
    # a bare message on its node's partition, as workers wrote before packing: read, not refused
    producer.produce(topic, codec.encode_message(subscribe), partition=home)
    for value, partition in garbage:
        producer.produce(topic, value, partition=0 if partition is None else partition)
    assert producer.flush(30) == 0
    rejections: list[Any] = []
    for _ in range(60):
        rejections = world.rejections()
        if len(rejections) >= len(garbage):
            break
        time.sleep(1)
    found = {(r.source_topic, r.error_code, r.field_path, r.message[:8]) for r in rejections}
    assert len(rejections) == len(garbage), world.worker_logs()
    assert found == {
        (topic, "codec", None, "not JSON"),
        (topic, "codec", "$[0].child", "'$[0].ch"),
        (topic, "codec", "$[0].@type", "'$[0].@t"),
        (topic, "codec", "$[0]", "'$[0]' i"),
    }, world.worker_logs()
    assert proc.poll() is None, "the worker goes on"


_FAILING_PRODUCT_SIDE = """
import pcf_exchange.streams.rollup._engine as engine_module

def fail(*args, **kwargs):
    raise RuntimeError("injected failure in the product side")

engine_module.Engine._product_batch = fail
"""


def test_a_failing_agent_stops_the_worker_with_exit_code_3(world: World) -> None:
    # faust would restart the agent alone, its record unacknowledged and its partition stuck,
    # while the worker looked healthy; the worker stops instead, saying why
    from pcf_exchange.contracts import load_boms

    proc = world.start_worker(inject=_FAILING_PRODUCT_SIDE)
    bom = load_boms(ROOT / "demo/lfp/manufacturers-boms.json")[0].value
    assert bom is not None
    world.publish_bom(bom)
    assert proc.wait(timeout=120) == 3, world.worker_logs()
    log = world.worker_logs()
    assert "injected failure in the product side" in log
    assert "the streams worker stopped because an agent failed" in log


def test_a_streams_topic_with_another_partition_count_stops_the_worker_before_it_starts(
    kafka_bootstrap: str,
) -> None:
    # e.g. pcf.factors auto-created with 1 partition by a first publish: every factor would
    # crash the ingest agent on its ledger write (faust PartitionsMismatch)
    import uuid

    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from pcf_exchange.contracts.errors import InfrastructureError
    from pcf_exchange.contracts.topics import TOPICS
    from pcf_exchange.streams.runtime import StreamsConfig, ensure_topics

    prefix = f"t{uuid.uuid4().hex[:8]}."
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        clock = dict(TOPICS["pcf.factors"].configs)  # (only the partition count is wrong)
        admin.create_topics([NewTopic(f"{prefix}pcf.factors", 1, 1, topic_configs=clock)])
    finally:
        admin.close()
    config = StreamsConfig(kafka_bootstrap, {}, app_id=f"{prefix}streams", topic_prefix=prefix)
    with pytest.raises(InfrastructureError, match=rf"{prefix}pcf\.factors has 1") as raised:
        ensure_topics(config)
    assert "must have 6 partitions" in str(raised.value)
    assert "run 'pcfx streams topics' before publishing" in raised.value.hint


def test_a_worker_skips_only_its_own_echoes(world: World) -> None:
    # With one worker every node is local: a message is applied in the batch that made it, and
    # its copy on the roll-up topic carries the echo stamp of that worker's app, which skips it.
    # A pack stamped by another app (a crashed predecessor whose receiver row was lost) is applied.
    import dataclasses
    import os

    from confluent_kafka import Consumer, Producer, TopicPartition

    from pcf_exchange.contracts import load_footprints
    from pcf_exchange.streams import codec
    from pcf_exchange.streams._packs import ECHO_HEADER
    from pcf_exchange.streams._packs import node_key as _node_key
    from pcf_exchange.streams._packs import partition as _partition
    from pcf_exchange.streams.adapt import core_footprint
    from pcf_exchange.streams.rollup import FootprintDeclared

    expected = _expected_all()
    world.start_worker()
    world.publish_demo_chain()
    world.wait_for(_converged(expected), what="the demo chain's roll-ups")
    stamps = {dict(m.headers).get(ECHO_HEADER) for m in world.read_records("pcf.rollup")} - {None}
    assert len(stamps) == 1, "the worker stamps the packs it applied itself, with one stamp"
    (own,) = stamps
    assert own is not None
    foreign = os.urandom(8) + own[8:]  # another app, same consumer generation

    # a supplier footprint used in the chain, re-declared twice with other declared amounts
    fp = next(r.value for r in load_footprints(ROOT / "demo/lfp/suppliers-footprints.json"))
    assert fp is not None
    core = core_footprint(fp, sequence=1000, content_hash="")

    def declared(sequence: int, factor: int) -> FootprintDeclared:
        amount = core.declared_unit_amount * factor
        return FootprintDeclared(
            dataclasses.replace(core, sequence=sequence, declared_unit_amount=amount)
        )

    applied, skipped = declared(1000, 2), declared(1001, 4)
    home = _partition(_node_key(applied), world.partitions)
    producer = Producer({"bootstrap.servers": world.bootstrap})
    topic = world.topic("pcf.rollup")

    def send(message: FootprintDeclared, stamp: bytes) -> int:
        pack = codec.encode_pack([codec.encode_message(message)])
        producer.produce(topic, pack, partition=home, headers=[(ECHO_HEADER, stamp)])
        assert producer.flush(30) == 0
        return world.end_offsets("pcf.rollup")[topic, home]

    send(applied, foreign)
    world.wait_for(
        lambda got: any(got[p].pcf_excluding_biogenic_uptake != v for p, v in expected.items()),
        what="the pack another app stamped to be applied",
    )
    world.wait_quiet()  # (up every tier)
    changed = world.latest_products()
    end = send(skipped, own)
    # the worker has gone past its own stamped pack (committed it), and nothing more changed
    group = Consumer({"bootstrap.servers": world.bootstrap, "group.id": world.app_id})
    try:
        for _ in range(60):
            (committed,) = group.committed([TopicPartition(topic, home)], timeout=10)
            if committed.offset >= end:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"the worker did not commit {topic}:{home} up to {end}")
    finally:
        group.close()
    world.wait_quiet()
    after = world.latest_products()
    assert {p: r.pcf_excluding_biogenic_uptake for p, r in after.items()} == {
        p: r.pcf_excluding_biogenic_uptake for p, r in changed.items()
    }, "a pack with the worker's own stamp is skipped, not applied"
    assert world.rejections() == []
