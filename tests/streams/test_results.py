"""``pcfx results``' pure part (:mod:`streams.results`) and its rendering, on real roll-ups of the
demo supply chain (``run_rollup``, no broker): the latest version per product, hotspots, what
changed between versions, the ``—`` of an incomplete figure, id prefixes. Bad cases first."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

from pcf_exchange.contracts import Completeness, MissingComponent, RolledUpFootprint
from pcf_exchange.contracts.errors import ContractError
from pcf_exchange.pcfx.cli import app
from pcf_exchange.pcfx.commands.demo import BUS, CELL, DEMO_DIR, FACTORS_FILE, PACK
from pcf_exchange.streams.batch import run_rollup
from pcf_exchange.streams.results import (
    OWN_PROCESS,
    ProductResults,
    diff,
    figure_state,
    fold,
    hotspots,
    resolve,
)

invoke = CliRunner().invoke


def _rollups(*boms: str) -> dict[str, RolledUpFootprint]:
    result = run_rollup(
        [DEMO_DIR / "suppliers-footprints.json"],
        [DEMO_DIR / b for b in ("manufacturers-boms.json", *boms)],
        [FACTORS_FILE],
    )
    return {r.product_id: r for r in result.records}


@pytest.fixture(scope="module")
def versions() -> tuple[dict[str, RolledUpFootprint], dict[str, RolledUpFootprint]]:
    """Every product before and after the cell maker moved to hydro power (version 1, 2)."""
    before = {p: r.model_copy(update={"sequence": 1}) for p, r in _rollups().items()}
    after = _rollups("cell-green-electricity.json")
    return before, {p: r.model_copy(update={"sequence": 2}) for p, r in after.items()}


def _incomplete(record: RolledUpFootprint) -> RolledUpFootprint:
    return record.model_copy(
        update={
            "sequence": record.sequence + 1,
            "completeness": Completeness(
                components_total=3, components_resolved=2, coverage_percent=Decimal("66.7"),
                complete=False,
            ),
            "missing_components": (
                MissingComponent(
                    component_index=1, product_id=CELL, reason="no_footprint",
                    detail="no footprint published yet",
                ),
            ),
            "footprint": None,
            "footprint_withheld": "incomplete: a BOM line has no footprint",
        }
    )  # fmt: skip


# --- bad cases --------------------------------------------------------------------------------


def test_an_incomplete_figure_is_shown_as_a_dash_with_its_reason(versions: Any) -> None:
    state = figure_state(_incomplete(versions[1][PACK]))
    assert state.figure is None and state.shown == "—" and not state.complete
    assert state.reason is not None and "2 of 3" in state.reason and CELL in state.reason
    assert state.footprint_withheld == "incomplete: a BOM line has no footprint"
    assert figure_state(versions[1][PACK]).shown == format(
        versions[1][PACK].pcf_excluding_biogenic_uptake, "f"
    )


def test_unknown_and_ambiguous_products_are_refused_naming_the_candidates() -> None:
    ids = [PACK, BUS, CELL, "urn:pact:cz-packs.cn:product-id:PACK-300"]
    with pytest.raises(ContractError, match="no product on the topic matches 'nothing'"):
        resolve("nothing", ids)
    with pytest.raises(ContractError, match="ambiguous: 2 products match") as caught:
        resolve("PACK", ids)
    assert caught.value.code == "unknown_product" and PACK in caught.value.message
    with pytest.raises(ContractError):
        resolve("", ids)


def test_a_diff_is_between_versions_of_one_product(versions: Any) -> None:
    before, after = versions
    with pytest.raises(ValueError, match="one product"):
        diff(before[PACK], after[CELL])
    with pytest.raises(ValueError, match="at least 1"):
        hotspots(after[PACK], top=0)


# --- good paths -------------------------------------------------------------------------------


def test_resolve_takes_an_id_a_prefix_or_a_prefix_of_its_last_segment() -> None:
    ids = [PACK, BUS, CELL]
    assert resolve(PACK, ids) == PACK
    assert resolve("urn:pact:zz-bus", ids) == BUS
    assert resolve("LFP280", ids) == CELL


def test_fold_keeps_the_latest_and_the_one_before_in_any_order(versions: Any) -> None:
    before, after = versions
    older = before[PACK].model_copy(update={"sequence": 0})
    records = [older, before[PACK], after[PACK], before[PACK], after[CELL]]
    for _ in range(5):
        random.shuffle(records)
        folded = fold(records)
        previous = folded[PACK].previous
        assert folded[PACK].current.sequence == 2 and previous is not None
        assert previous.sequence == 1
        assert folded[CELL].previous is None and folded[CELL].changes() is None


@pytest.mark.parametrize("product", [CELL, PACK, BUS])
def test_what_changed_adds_up_to_the_figures_delta(versions: Any, product: str) -> None:
    before, after = versions
    change = diff(before[product], after[product])
    assert change.delta == after[product].pcf_excluding_biogenic_uptake - (
        before[product].pcf_excluding_biogenic_uptake
    )
    assert change.delta < 0, "hydro power lowers every product above the cell"
    own = change.own_after - change.own_before
    assert own + sum((c.delta for c in change.inputs), Decimal(0)) == change.delta, "exact"
    if product == CELL:  # its own electricity changed; no input did
        assert own < 0 and change.inputs == ()
    else:  # the product below republished: another footprint
        (moved,) = [c for c in change.inputs if c.change == "replaced"]
        assert moved.delta == change.delta and "→" in moved.detail


def test_hotspots_are_the_largest_contributions_with_their_shares(versions: Any) -> None:
    record = versions[1][CELL]
    spots = hotspots(record, top=3)
    assert len(spots) == 3
    assert [s.contribution for s in spots] == sorted((s.contribution for s in spots), reverse=True)
    every = hotspots(record, top=100)
    own = record.own_emissions
    assert sum((s.contribution for s in every), Decimal(0)) == record.pcf_excluding_biogenic_uptake
    assert any(
        s.key == OWN_PROCESS
        and s.contribution == own.direct_kg_co2e + own.electricity_kg_co2e + own.other_kg_co2e
        for s in every
    )
    assert all(s.share_percent is not None and 0 <= s.share_percent <= 100 for s in every)


# --- the command's rendering (the topic read replaced by the records) --------------------------


@pytest.fixture
def on_topic(versions: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, ProductResults]:
    before, after = versions
    records = [*before.values(), *after.values(), _incomplete(after[BUS])]
    products = fold(records)

    def read(*_: Any, **__: Any) -> tuple[dict[str, ProductResults], int]:
        return products, 1

    monkeypatch.setattr("pcf_exchange.pcfx.commands.results.read_results", read)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    # (the command's up-front check that a broker answers: none is needed, nothing is read)
    monkeypatch.setattr("pcf_exchange.pcfx.settings.check_reachable", lambda *_a, **_k: None)
    return products


def test_the_table_lists_every_product_and_dashes_an_incomplete_one(
    on_topic: dict[str, ProductResults],
) -> None:
    result = invoke(app, ["results"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "E-BUS-12M" in result.output and "—" in result.output and "incomplete" in result.output
    assert "1 record(s) on" in result.output  # the undecodable one is counted, not hidden
    data = json.loads(invoke(app, ["results", "--json"]).stdout)
    assert data["count"] == len(on_topic) and data["undecodable"] == 1
    bus = next(p for p in data["products"] if p["productId"] == BUS)
    assert bus["figure"] is None and bus["complete"] is False and bus["reason"]
    assert bus["footprintWithheld"] == "incomplete: a BOM line has no footprint"
    pack = next(p for p in data["products"] if p["productId"] == PACK)
    assert Decimal(pack["figure"]) == on_topic[PACK].current.pcf_excluding_biogenic_uptake
    assert pack["previous"]["sequence"] == 1 and Decimal(pack["delta"]) < 0


def test_one_product_shows_its_tree_hotspots_and_changes(
    on_topic: dict[str, ProductResults],
) -> None:
    result = invoke(app, ["results", "PACK-282"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("MOD-16S", "LFP280-CELL", "Hotspots", "Since version 1", "replaced"):
        assert text in result.output, text
    data = json.loads(invoke(app, ["results", "PACK", "--json", "--top", "2"]).stdout)
    assert data["productId"] == PACK and len(data["hotspots"]) == 2
    assert data["changes"]["inputs"][0]["change"] == "replaced"
    (module,) = [i for i in data["tree"]["inputs"] if i["kind"] == "footprint"]
    assert any(i["input"] == CELL for i in module["inputs"]), "the tree goes down the tiers"
    unknown = invoke(app, ["results", "NOPE"])
    assert unknown.exit_code == 1 and "no product on the topic matches" in unknown.output


@pytest.mark.broker
def test_results_reads_the_products_topic_to_its_end(versions: Any, kafka_bootstrap: str) -> None:
    """On the broker: two versions of each product on a fresh ``pcf.products``; ``pcfx results``
    shows the latest with its change, and a product's tree."""
    import uuid

    from confluent_kafka import Producer

    from pcf_exchange.contracts import AvroSerde, KafkaSchemaRegistry, subject_for
    from pcf_exchange.contracts._schemas import schema_json
    from pcf_exchange.contracts.topics import TOPICS, TopicNames, ensure_topics
    from pcf_exchange.gateway.runtime._avro import kafka_registrar

    before, after = versions
    prefix = f"t{uuid.uuid4().hex[:8]}."
    topic = TopicNames(prefix).products
    ensure_topics(kafka_bootstrap, [(topic, TOPICS["pcf.products"], 2)])
    kafka_registrar(kafka_bootstrap, prefix=prefix)(
        [(subject_for(topic), schema_json("RolledUpFootprint"))]
    )
    registry = KafkaSchemaRegistry(kafka_bootstrap, prefix=prefix)
    try:
        serde = AvroSerde(registry)
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for record in (*before.values(), *after.values()):
            producer.produce(
                topic, key=record.product_id.encode(), value=serde.encode(topic, record)
            )
        assert producer.flush(30) == 0
    finally:
        registry.close()
    scope = ["--bootstrap", kafka_bootstrap, "--topic-prefix", prefix]
    listing = invoke(app, ["results", "--json", *scope])
    assert listing.exit_code == 0, listing.output
    data = json.loads(listing.stdout)
    assert data["count"] == len(after) and data["undecodable"] == 0
    for row in data["products"]:
        assert row["sequence"] == 2, row["productId"]
        assert Decimal(row["figure"]) == after[row["productId"]].pcf_excluding_biogenic_uptake
    one = json.loads(invoke(app, ["results", "E-BUS", "--json", *scope]).stdout)
    assert one["productId"] == BUS and Decimal(one["changes"]["delta"]) < 0
