"""Hold for review on a real broker, end to end: a supplier's update to 999 kgCO2e/kg is held on
``pcf.review`` (the value before it stays in force); a compliance officer lists the held records
and, with ``pcfx review release|reject`` (signed with the officer key), brings one into the
roll-up and sends another to the DLQ, which names the officer and the reason."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pcf_exchange.contracts import (
    KafkaSchemaRegistry,
    ProductFootprint,
    SignerRole,
    load_footprints,
)
from pcf_exchange.contracts.pcr import ReviewEvent, ReviewSerde
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
    for _ in range(180):
        events = [serde.decode(m.value) for m in world.read_records(name)]
        if len(events) >= want:
            return events
        time.sleep(1)
    raise AssertionError(f"{len(events)} events on {name}, not {want}\n{world.worker_logs()}")


def _pcfx(world: World, *args: Any) -> Any:
    """``pcfx …`` on this test's topics, as an officer runs it."""
    from typer.testing import CliRunner

    from pcf_exchange.pcfx.cli import app

    common = ["--bootstrap", world.bootstrap, "--topic-prefix", world.prefix]
    result = CliRunner().invoke(app, [str(a) for a in (*args, *common)])
    assert result.exit_code == 0, result.output
    return result


def test_held_then_released_then_rejected(world: World, tmp_path: Path) -> None:
    from pcf_exchange.producers.keys import load_private_key, new_key_pair

    officer = new_key_pair(OFFICER, tmp_path / "officer")
    world.participants.keys[OFFICER] = load_private_key(officer.private_key)
    world.register(OFFICER, role=SignerRole.OFFICER, key_id=officer.key_id)
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
    registry = KafkaSchemaRegistry(world.bootstrap, prefix=world.prefix)
    try:
        held = {
            e.subject.rsplit(":", 1)[-1]: e
            for e in _read(world, "pcf.review", ReviewSerde(registry), 2)
        }
    finally:
        registry.close()
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
    listed = json.loads(_pcfx(world, "review", "list", "--json").stdout)
    assert sorted(e["heldId"] for e in listed) == sorted(e.held_id for e in held.values())
    key = ["--key", officer.private_key]
    lithium_id, phosphate_id = held["LI2CO3-BG"].held_id, held["FEPO4-BG"].held_id
    _pcfx(world, "review", "release", lithium_id, *key, "--reason", "plant records checked")
    _pcfx(world, "review", "reject", phosphate_id, *key, "--reason", "999 g entered as kg")
    left = json.loads(_pcfx(world, "review", "list", "--all", "--json").stdout)
    assert {e["heldId"]: e["state"] for e in left} == {
        lithium_id: "released",
        phosphate_id: "rejected",
    }
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
    assert "999 g entered as kg" in rejection.message
