"""Hold for review on a real broker, end to end: a supplier's update to 999 kgCO2e/kg is held on
``pcf.review`` (the value before it stays in force), a compliance officer's signed release
brings it into the roll-up, and a signed rejection of another one lands in the DLQ naming the
officer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer

from contracts import KafkaSchemaRegistry, ProductFootprint, SignerRole, load_footprints
from contracts.pcr import DecisionState, ReviewEvent, ReviewSerde, decide
from tests.streams._broker_world import ROOT, World

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CATHODE = "urn:pact:hn-cathode.cn:product-id:LFP-CAM"
OFFICER = "officer-wang"


@pytest.fixture
def world(kafka_bootstrap: str, tmp_path: Path) -> Iterator[World]:
    w = World(kafka_bootstrap, tmp_path)
    yield w
    w.stop()


def _at_999(fp: ProductFootprint) -> ProductFootprint:
    pcf = fp.pcf.model_copy(
        update={
            "pcf_excluding_biogenic_uptake": Decimal(999),
            "pcf_including_biogenic_uptake": Decimal(999),
            "fossil_ghg_emissions": Decimal(999),
        }
    )
    return fp.model_copy(update={"pcf": pcf})


def _read(world: World, name: str, serde: ReviewSerde, want: int) -> list[ReviewEvent]:
    events: list[ReviewEvent] = []
    for _ in range(90):
        consumer = KafkaConsumer(
            world.topic(name),
            bootstrap_servers=world.bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
            consumer_timeout_ms=2000,
        )
        events = [serde.decode(m.value) for m in consumer]
        consumer.close()
        if len(events) >= want:
            return events
        time.sleep(1)
    raise AssertionError(f"{len(events)} events on {name}, not {want}\n{world.worker_logs()}")


def _decide(world: World, serde: ReviewSerde, held: ReviewEvent, state: DecisionState) -> None:
    from confluent_kafka import Producer

    from contracts.kafka_client import librdkafka_config

    event = decide(
        held,
        state,
        reason=f"{state.value}: checked against the plant's records",
        private_key=world.participants.key(OFFICER),
        signer_id=OFFICER,
        key_id=world.participants.key_id(OFFICER),
        now=datetime.now(UTC),
    )
    topic = world.topic("pcf.review.decisions")
    value = serde.encode(topic, event)
    # as pcfx review does: uncompressed, on the held record's partition
    producer = Producer({**librdkafka_config(), "bootstrap.servers": world.bootstrap})
    producer.produce(topic, key=held.subject.encode(), value=value, partition=held.source_partition)
    assert producer.flush(30) == 0


def test_held_then_released_then_rejected(world: World) -> None:
    world.register(OFFICER, role=SignerRole.OFFICER)
    world.start_worker()
    world.publish_demo_chain()
    first = world.wait_for(lambda got: CATHODE in got, what="the cathode's first roll-up")
    before = first[CATHODE].pcf_excluding_biogenic_uptake
    loaded = {
        r.value.product_ids[0].rsplit(":", 1)[-1]: r.value
        for r in load_footprints(ROOT / "demo/lfp/suppliers-footprints.json")
        if r.value is not None
    }
    lithium, phosphate = loaded["LI2CO3-BG"], loaded["FEPO4-BG"]
    world.publish_footprint(_at_999(lithium))
    world.publish_footprint(_at_999(phosphate))
    registry = KafkaSchemaRegistry(world.bootstrap)
    try:
        serde = ReviewSerde(registry)
        held = {e.subject.rsplit(":", 1)[-1]: e for e in _read(world, "pcf.review", serde, 2)}
        assert set(held) == {"LI2CO3-BG", "FEPO4-BG"}, held
        for event in held.values():
            assert (event.rule, event.field_path) == (
                "plausible-range",
                "pcf.pcfExcludingBiogenicUptake",
            )
            assert "999 kgCO2e per kilogram" in event.reason
        # neither accepted nor dropped: the cathode keeps the values before the update
        assert world.latest_products()[CATHODE].pcf_excluding_biogenic_uptake == before
        assert world.rejections() == []
        _decide(world, serde, held["LI2CO3-BG"], DecisionState.RELEASED)
        _decide(world, serde, held["FEPO4-BG"], DecisionState.REJECTED)
    finally:
        registry.close()
    after = world.wait_for(
        lambda got: got[CATHODE].pcf_excluding_biogenic_uptake > before + 100,
        what="the released lithium carbonate to reach the cathode",
    )
    assert after[CATHODE].pcf_excluding_biogenic_uptake > before
    rejections: list[Any] = []
    for _ in range(60):
        rejections = world.rejections()
        if rejections:
            break
        time.sleep(1)
    (rejection,) = rejections
    assert rejection.error_code == "pcr_review_rejected"
    assert rejection.source_topic == world.topic("pcf.declared")
    assert f"rejected by compliance officer {OFFICER}" in rejection.message
