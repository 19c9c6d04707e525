"""Attacks on ownership, the clock and the key registry, on the real broker (issue 18, items 1-3).

One worker runs the demo chain for the whole module; each test mounts one attack on it and looks
for its own records in the DLQ (``pcf.rejected``) and in the results (``pcf.products``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from kafka import KafkaProducer

from pcf_exchange.contracts import (
    MAX_SEQUENCE,
    BillOfMaterials,
    ProductFootprint,
    Rejection,
    load_boms,
    load_footprints,
)
from tests.streams._broker_world import ROOT, World

pytestmark = [pytest.mark.broker, pytest.mark.slow]

GRACE_S = 8.0
"""The worker's grace period for records with an unknown key."""
PACK = "urn:pact:cz-packs.cn:product-id:PACK-282"
CAM = "urn:pact:hn-cathode.cn:product-id:LFP-CAM"
LI2CO3 = "urn:pact:qh-lithium.cn:product-id:LI2CO3-BG"
ATTACKER = "urn:pact:company:customcode:vendor-assigned:evil-co"
PACKS = "urn:pact:company:customcode:vendor-assigned:cz-packs"


def company(name: str) -> str:
    return f"urn:pact:company:customcode:vendor-assigned:{name}"


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(kafka_bootstrap, tmp_path_factory.mktemp("trust"))
    w.start_worker(key_grace_s=GRACE_S)
    w.publish_demo_chain()
    w.claim(ATTACKER, "urn:pact:evil.cn:product-id:X")  # a registered company, own namespace
    w.wait_for(lambda got: PACK in got and got[PACK].completeness.complete, what="the pack")
    yield w
    w.stop()


def demo_footprint(product_id: str) -> ProductFootprint:
    for loaded in load_footprints(ROOT / "demo/lfp/suppliers-footprints.json"):
        if loaded.value is not None and loaded.value.product_ids[0] == product_id:
            return loaded.value
    raise LookupError(product_id)


def demo_bom(product_id: str) -> BillOfMaterials:
    for loaded in load_boms(ROOT / "demo/lfp/manufacturers-boms.json"):
        if loaded.value is not None and loaded.value.product_id == product_id:
            return loaded.value
    raise LookupError(product_id)


def rejections_about(
    world: World, text: str, count: int = 1, timeout_s: float = 60.0
) -> list[Rejection]:
    """The DLQ records whose message mentions *text*, once there are *count* of them."""
    deadline = time.monotonic() + timeout_s
    found: list[Rejection] = []
    while time.monotonic() < deadline:
        found = [r for r in world.rejections() if text in r.message]
        if len(found) >= count:
            return found
        time.sleep(1.0)
    raise AssertionError(f"{len(found)} rejections mention {text!r}\n{world.worker_logs()}")


def pack_value(world: World) -> Decimal:
    return world.latest_products()[PACK].pcf_excluding_biogenic_uptake


def test_hijacked_footprint_is_refused_as_not_owner(world: World) -> None:
    before = pack_value(world)
    genuine = demo_footprint(LI2CO3)
    forged = genuine.model_copy(
        update={
            "company_ids": (ATTACKER,),
            "pcf": genuine.pcf.model_copy(update={"pcf_excluding_biogenic_uptake": Decimal("0.1")}),
        }
    )
    world.publish_footprint(forged, claim=False)  # signed by the attacker's registered key
    (rejection,) = rejections_about(world, f"(got {LI2CO3!r})")
    assert rejection.reason == "not_owner"
    assert ATTACKER in rejection.message and "evil-co-k1" in rejection.message
    assert "urn:pact:evil.cn" in rejection.message  # the namespaces it has
    assert rejection.source_topic == world.topic("pcf.declared")
    time.sleep(2)
    assert pack_value(world) == before
    # lineage names the supplier of every input: the real lithium supplier, not the attacker
    cam = world.latest_products()[CAM]
    inputs = {i.product_id: i.supplier_id for i in cam.inputs if i.kind == "footprint"}
    assert inputs[LI2CO3] == company("qh-lithium")
    assert all(i.supplier_id for i in cam.inputs), cam.inputs


def test_hijacked_bom_is_refused_as_not_owner(world: World) -> None:
    bom = demo_bom(PACK).model_copy(update={"owner": ATTACKER, "revision": 5})
    world.publish_bom(bom, claim=False)
    (rejection,) = rejections_about(world, f"(got {PACK!r})")
    assert rejection.reason == "not_owner" and ATTACKER in rejection.message
    assert rejection.source_topic == world.topic("pcf.bom")


def test_owner_less_bom_is_refused_as_not_owner(world: World) -> None:
    bom = demo_bom("urn:pact:js-modules.cn:product-id:MOD-16S").model_copy(
        update={"owner": None, "revision": 7}
    )
    world.publish_bom(bom, claim=False, signer=company("js-modules"))
    (rejection,) = rejections_about(world, "'owner' must name the manufacturer")
    assert rejection.reason == "not_owner"
    assert "MOD-16S" in rejection.message and company("js-modules") in rejection.message


def test_huge_revision_bom_from_the_attacker_then_the_real_owners_bom(world: World) -> None:
    cell = "urn:pact:fj-cells.cn:product-id:LFP280-CELL"
    huge = demo_bom(cell).model_copy(update={"owner": ATTACKER, "revision": MAX_SEQUENCE})
    world.publish_bom(huge, claim=False)
    (rejection,) = rejections_about(world, f"(got {cell!r})")
    assert rejection.reason == "not_owner"
    real = demo_bom(cell).model_copy(update={"revision": 3})
    world.publish_bom(real)
    latest = world.wait_for(
        lambda got: cell in got and got[cell].bom_revision == 3, what="the real owner's BOM"
    )
    assert latest[cell].owner == company("fj-cells")
    assert not [
        r
        for r in world.rejections()
        if r.reason in ("replayed", "sequence_reused") and cell in r.message
    ]


def test_backdated_record_after_revocation_is_refused_as_revoked_key(world: World) -> None:
    owner, pid = company("revoked-co"), "urn:pact:revoked-co.cn:product-id:R1"
    world.claim(owner, pid)
    revoked_at = datetime.now(UTC)
    world.register(owner, revoked_at=revoked_at)
    time.sleep(3)  # the revocation is in the worker's registry
    fp = demo_footprint(LI2CO3).model_copy(update={"company_ids": (owner,), "product_ids": (pid,)})
    signed = world.participants.footprint(fp, world.seq(f"fp:{pid}"))
    backdated = revoked_at - timedelta(minutes=1)
    producer = KafkaProducer(bootstrap_servers=world.bootstrap)
    try:
        producer.send(
            world.topic("pcf.declared"),
            value=world.serde.encode(world.topic("pcf.declared"), signed),
            key=pid.encode(),
            timestamp_ms=int(backdated.timestamp() * 1000),
        ).get(timeout=30)
    finally:
        producer.close()
    (rejection,) = rejections_about(world, "revoked-co-k1")
    assert rejection.reason == "revoked_key", rejection.message
    assert "revoked at" in rejection.message


def test_record_before_the_keys_not_before_is_refused(world: World) -> None:
    owner, pid = company("early-co"), "urn:pact:early-co.cn:product-id:E1"
    world.participants.claim(owner, pid)
    world.register(owner, valid_from=datetime.now(UTC) + timedelta(hours=1))
    time.sleep(2)
    fp = demo_footprint(LI2CO3).model_copy(update={"company_ids": (owner,), "product_ids": (pid,)})
    world.publish_footprint(fp, key=world.participants.key(owner))
    (rejection,) = rejections_about(world, "early-co-k1")
    assert rejection.reason == "key_not_yet_valid", rejection.message


def test_500_unknown_key_records_then_one_valid_update_is_not_delayed(world: World) -> None:
    ghost = company("ghost-co")
    template = demo_footprint(LI2CO3)
    key = world.participants.key(ghost)  # never registered
    for i in range(500):
        fp = template.model_copy(
            update={"company_ids": (ghost,), "product_ids": (f"urn:pact:ghost.cn:product-id:G{i}",)}
        )
        world.publish_footprint(fp, key=key)
    before = pack_value(world)
    update = template.model_copy(
        update={
            "pcf": template.pcf.model_copy(update={"pcf_excluding_biogenic_uptake": Decimal(9)})
        }
    )
    started = time.monotonic()
    world.publish_footprint(update)
    world.wait_for(lambda got: got[PACK].pcf_excluding_biogenic_uptake != before, timeout_s=60)
    took = time.monotonic() - started
    # one record waiting its grace period in turn would hold the update for GRACE_S at least
    assert took < GRACE_S - 2, f"the valid update took {took:.1f} s"
    parked = rejections_about(world, "ghost-co-k1", count=500, timeout_s=GRACE_S + 60)
    assert {r.reason for r in parked} == {"unknown_key"}  # nothing lost: each in the DLQ


def test_unknown_key_then_its_registration_arrives_releases_the_record(world: World) -> None:
    late = company("late-co")
    pid = "urn:pact:late-co.cn:product-id:CAM"
    bom = demo_bom(CAM).model_copy(update={"product_id": pid, "owner": late, "revision": 1})
    world.participants.claim(late, pid)
    world._send("pcf.bom", pid, world.participants.bom(bom))  # its key is not registered yet
    time.sleep(2)
    assert pid not in world.latest_products()
    world.register(late)
    world.wait_for(lambda got: pid in got, timeout_s=GRACE_S + 30, what="the released BOM")
    assert not [r for r in world.rejections() if "late-co" in r.message]


def test_unknown_key_past_the_deadline_goes_to_the_dlq(world: World) -> None:
    never = company("never-co")
    fp = demo_footprint(LI2CO3).model_copy(
        update={"company_ids": (never,), "product_ids": ("urn:pact:never.cn:product-id:N1",)}
    )
    started = time.monotonic()
    world.publish_footprint(fp, key=world.participants.key(never))
    (rejection,) = rejections_about(world, "never-co-k1", timeout_s=GRACE_S + 60)
    assert rejection.reason == "unknown_key" and "waited for it until" in rejection.message
    assert time.monotonic() - started >= GRACE_S - 1


def test_data_topics_carry_the_brokers_clock(world: World, tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": world.bootstrap})
    names = [world.topic(n) for n in ("pcf.declared", "pcf.bom", "pcf.factors", "pcf.keys")]
    described = admin.describe_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    )
    clocks = {r.name: f.result(30)["message.timestamp.type"].value for r, f in described.items()}
    assert clocks == dict.fromkeys(names, "LogAppendTime")


def test_a_data_topic_with_producer_timestamps_stops_the_worker_before_it_starts(
    kafka_bootstrap: str, kafka_admin: object
) -> None:
    import uuid

    from kafka.admin import NewTopic

    from pcf_exchange.contracts.errors import InfrastructureError
    from pcf_exchange.streams.runtime import StreamsConfig, ensure_topics

    prefix = f"t{uuid.uuid4().hex[:8]}."
    kafka_admin.create_topics([NewTopic(f"{prefix}pcf.declared", 6, 1)])  # type: ignore[attr-defined]
    with pytest.raises(InfrastructureError) as raised:
        ensure_topics(StreamsConfig(kafka_bootstrap, {}, app_id=f"{prefix}s", topic_prefix=prefix))
    assert (
        f"topic '{prefix}pcf.declared' must have message.timestamp.type=LogAppendTime"
        " (it has message.timestamp.type=CreateTime)" in raised.value.message
    )
    assert "--add-config message.timestamp.type=LogAppendTime" in (raised.value.hint or "")


def test_a_parked_record_is_not_lost_when_the_worker_is_killed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """At least once: a parked record is not acknowledged (its offset not committed) until it
    is resolved, so the worker's successor reads it again."""
    w = World(kafka_bootstrap, tmp_path)
    try:
        first = w.start_worker(key_grace_s=120)
        w.publish_demo_chain()
        w.wait_for(lambda got: CAM in got, what="the cathode material")
        crash, pid = company("crash-co"), "urn:pact:crash-co.cn:product-id:CAM"
        bom = demo_bom(CAM).model_copy(update={"product_id": pid, "owner": crash, "revision": 1})
        w.participants.claim(crash, pid)
        w._send("pcf.bom", pid, w.participants.bom(bom))  # parked: its key is unknown
        time.sleep(3)
        assert pid not in w.latest_products()
        w.kill_worker(first)  # kill -9 while it is parked
        w.register(crash)
        w.start_worker("w2", key_grace_s=120)
        w.wait_for(lambda got: pid in got, timeout_s=120, what="the parked BOM after a crash")
        assert not [r for r in w.rejections() if "crash-co" in r.message]
    finally:
        w.stop()
