"""The PCR step of ingestion, without a broker: a trusted record that breaks its category's rule
pack goes to the DLQ, one with a figure far outside the plausible range is held for review
(``pcf.review``) and held again when redelivered; an officer's signed release brings it back
(accepted, not held again for the same reason), a signed rejection sends it to the DLQ naming the
officer; decisions that are not an officer's, or not for this record, are refused."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcf_exchange.contracts import InMemorySchemaRegistry, SignerRole
from pcf_exchange.contracts.errors import PcrOutOfRange, PcrReviewRejected, PcrViolation, TrustError
from pcf_exchange.contracts.pcr import (
    DecisionState,
    PcrOutcome,
    ReviewEvent,
    ReviewSerde,
    decide,
    pending,
    review_schemas,
)
from pcf_exchange.streams._ingest_step import (
    TableLedger,
    act_on_decision,
    check_batch,
    held_event,
)
from pcf_exchange.streams.ingest import Ingested, IngestOutcome, SourceRef
from tests.contracts.conftest import FOOTPRINT_JSON
from tests.streams.test_ingest import MANUFACTURER, SUPPLIER, T0, World, bom_bytes

OFFICER = "compliance-officer-li"
NOW = T0 + timedelta(days=2)


class ReviewWorld(World):
    """The ingestion world, with a compliance officer's key."""

    def __init__(self) -> None:
        super().__init__()
        self.officer = Ed25519PrivateKey.generate()


@pytest.fixture
def world() -> ReviewWorld:
    w = ReviewWorld()
    assert w.register(SUPPLIER, w.supplier, "s-1").outcome is IngestOutcome.ACCEPTED
    assert w.register(MANUFACTURER, w.manufacturer, "m-1").outcome is IngestOutcome.ACCEPTED
    registered = w.register(OFFICER, w.officer, "o-1", role=SignerRole.OFFICER)
    assert registered.outcome is IngestOutcome.ACCEPTED
    return w


def footprint_bytes(world: ReviewWorld, seq: int = 1, **pcf: Any) -> bytes:
    doc = copy.deepcopy(FOOTPRINT_JSON)
    doc["pcf"].update(pcf)
    return world.footprint_bytes(seq, pcf=doc["pcf"])


def cathode(world: ReviewWorld, seq: int = 1) -> bytes:
    """The 999 kgCO2e/kg cathode: a battery-category material far outside its range."""
    return footprint_bytes(
        world,
        seq,
        declaredUnitOfMeasurement="kilogram",
        pcfExcludingBiogenicUptake="999",
        pcfIncludingBiogenicUptake="999",
        fossilGhgEmissions="998.7",
    )


def ingest(world: ReviewWorld, *records: bytes) -> Any:
    def check(data: bytes, source: SourceRef) -> Ingested:
        result: Ingested = world.check("pcf.declared", data)
        return result

    return check_batch(
        [(i, world.source("pcf.declared"), data) for i, data in enumerate(records)],
        check,
        TableLedger({}),
    )


def held_of(world: ReviewWorld, data: bytes) -> ReviewEvent:
    batch = ingest(world, data)
    (hold,) = batch.held
    return held_event(hold, NOW)


def decided(world: ReviewWorld, held: ReviewEvent, state: DecisionState, **kw: Any) -> ReviewEvent:
    return decide(
        held,
        state,
        reason=kw.pop("reason", "checked against the supplier's plant data"),
        private_key=kw.pop("key", world.officer),
        signer_id=kw.pop("signer_id", OFFICER),
        key_id=kw.pop("key_id", "o-1"),
        now=NOW,
    )


def decision_source(world: ReviewWorld) -> SourceRef:
    return world.source("pcf.review.decisions", NOW)


def act(world: ReviewWorld, event: ReviewEvent) -> Any:
    def check(data: bytes, source: SourceRef) -> Ingested:
        result: Ingested = world.check("pcf.declared", data, source.appended_at)
        return result

    return act_on_decision(event, decision_source(world), world.keys, check)


# --- the screen in check_batch ------------------------------------------------------------------


def test_a_footprint_inside_its_rules_is_forwarded(world: ReviewWorld) -> None:
    batch = ingest(world, world.footprint_bytes())
    assert len(batch.checked) == 1 and not batch.rejected and not batch.held


def test_a_broken_rule_goes_to_the_dlq_naming_rule_field_and_pack(world: ReviewWorld) -> None:
    doc = copy.deepcopy(FOOTPRINT_JSON)
    doc["extensions"][0]["data"]["pilotCategory"] = "CEMENT"
    doc["pcf"]["declaredUnitOfMeasurement"] = "liter"
    batch = ingest(world, world.footprint_bytes(pcf=doc["pcf"], extensions=doc["extensions"]))
    assert not batch.checked and not batch.held
    ((result, original),) = batch.rejected
    assert isinstance(result.error, PcrViolation) and original
    rejection = result.rejection(original, NOW, "test")
    assert rejection.error_code == "pcr"
    assert rejection.field_path == "pcf.declaredUnitOfMeasurement"
    assert "CN-CCL-PCR-CEMENT@1.0.0" in rejection.message


def test_the_999_cathode_is_held_and_held_again_when_redelivered(world: ReviewWorld) -> None:
    data = cathode(world)
    first = ingest(world, data)
    again = ingest(world, data)  # a DUPLICATE by the ledger: still not forwarded
    for batch in (first, again):
        assert not batch.checked and not batch.rejected
        (hold,) = batch.held
        assert hold.check.outcome is PcrOutcome.OUT_OF_RANGE
        assert isinstance(hold.result.error, PcrOutOfRange)
    assert again.held[0].result.outcome is IngestOutcome.DUPLICATE
    event = held_event(first.held[0], NOW)
    assert (event.event, event.rule, event.field_path) == (
        "held",
        "plausible-range",
        "pcf.pcfExcludingBiogenicUptake",
    )
    assert event.original == data and "999 kgCO2e per kilogram" in event.reason
    assert event.held_id == f"pcf.declared/0/{first.held[0].result.source.offset}"


def test_a_bom_in_a_unit_its_category_is_never_declared_in_goes_to_the_dlq(
    world: ReviewWorld,
) -> None:
    info = {
        "companyName": "Example Pack Co.",
        "companyIds": ["urn:pact:example-pack.cn:company:1"],
        "productDescription": "48 V battery pack",
        "productNameCompany": "PACK-48V",
        "referencePeriodStart": "2025-01-01T00:00:00Z",
        "referencePeriodEnd": "2026-01-01T00:00:00Z",
        "pilotCategory": "LITHIUM_BATTERY",
    }
    good = bom_bytes(world, 1, productInfo=info)
    litres = bom_bytes(world, 2, productInfo=info, declaredUnit={"amount": "1", "unit": "liter"})

    def check(data: bytes, source: SourceRef) -> Ingested:
        result: Ingested = world.check("pcf.bom", data)
        return result

    records = [(i, world.source("pcf.bom"), d) for i, d in enumerate([good, litres])]
    batch = check_batch(records, check, TableLedger({}))
    assert len(batch.checked) == 1 and not batch.held
    ((rejected, _),) = batch.rejected
    assert isinstance(rejected.error, PcrViolation)
    assert rejected.error.violations[0].path == "declaredUnit.unit"
    assert rejected.error.violations[0].got == "'liter'"


def test_every_input_ends_somewhere(world: ReviewWorld) -> None:
    records = [world.footprint_bytes(seq=1), cathode(world, 2), b"garbage"]
    batch = ingest(world, *records)
    assert len(batch.checked) + len(batch.rejected) + len(batch.held) == len(records)


# --- officers' decisions --------------------------------------------------------------------------


def test_a_released_record_is_accepted_and_not_held_again(world: ReviewWorld) -> None:
    held = held_of(world, cathode(world))
    acted = act(world, decided(world, held, DecisionState.RELEASED))
    assert acted.rejected is None and acted.hold is None
    assert acted.checked is not None and acted.checked.content_hash == held.content_hash
    assert acted.checked.outcome is IngestOutcome.DUPLICATE  # the same record, re-entered


def test_a_rejected_record_goes_to_the_dlq_naming_the_officer_and_reason(
    world: ReviewWorld,
) -> None:
    held = held_of(world, cathode(world))
    event = decided(world, held, DecisionState.REJECTED, reason="a unit slip: 999 g, not kg")
    acted = act(world, event)
    assert acted.checked is None and acted.rejected is not None
    error = acted.rejected.error
    assert isinstance(error, PcrReviewRejected)
    assert error.violations[0].path == "pcf.pcfExcludingBiogenicUptake"
    assert f"rejected by compliance officer {OFFICER} (key o-1)" in error.message
    assert "a unit slip: 999 g, not kg" in error.message
    assert "CN-CCL-PCR-LIB-" in error.message


def test_a_decision_signed_with_a_company_key_is_refused(world: ReviewWorld) -> None:
    held = held_of(world, cathode(world))
    forged = decided(
        world, held, DecisionState.RELEASED, key=world.supplier, signer_id=SUPPLIER, key_id="s-1"
    )
    acted = act(world, forged)
    assert isinstance(acted.rejected.error, TrustError)
    assert acted.rejected.error.reason == "wrong_role"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda e: replace(e, reason="something else"), "bad_signature"),
        (lambda e: replace(e, decision=replace(e.decision, key_id="o-9")), "unknown_key"),
        (lambda e: replace(e, decision=None), "unsigned"),
    ],
)
def test_a_tampered_or_unsigned_decision_is_refused(
    world: ReviewWorld, tamper: Any, reason: str
) -> None:
    held = held_of(world, cathode(world))
    acted = act(world, tamper(decided(world, held, DecisionState.RELEASED)))
    assert acted.checked is None and acted.rejected.error.reason == reason


def test_a_decision_cannot_be_moved_onto_another_record(world: ReviewWorld) -> None:
    held = held_of(world, cathode(world, seq=1))
    other = cathode(world, seq=2)  # another record (another sequence): another content hash
    event = decided(world, replace(held, original=other), DecisionState.RELEASED)
    acted = act(world, event)
    assert acted.rejected.error.reason == "decision_mismatch"


def test_a_revoked_officer_key_decides_nothing(world: ReviewWorld) -> None:
    revoked = world.register(
        OFFICER, world.officer, "o-1", seq=2, role=SignerRole.OFFICER, revoked_at=NOW - timedelta(1)
    )
    assert revoked.outcome is IngestOutcome.ACCEPTED
    held = held_of(world, cathode(world))
    acted = act(world, decided(world, held, DecisionState.RELEASED))
    assert acted.rejected.error.reason == "revoked_key"


def test_a_decision_needs_a_held_record_and_a_reason(world: ReviewWorld) -> None:
    held = held_of(world, cathode(world))
    with pytest.raises(ValueError, match="needs a reason"):
        decided(world, held, DecisionState.RELEASED, reason="  ")
    once = decided(world, held, DecisionState.RELEASED)
    with pytest.raises(ValueError, match="only a held record"):
        decided(world, once, DecisionState.REJECTED)


# --- the review topic's Avro, and what is still pending -----------------------------------------


def test_review_events_round_trip_through_their_avro(world: ReviewWorld) -> None:
    registry = InMemorySchemaRegistry()
    for subject, text in review_schemas(["t.pcf.review", "t.pcf.review.decisions"]):
        registry.register(subject, text)
    serde = ReviewSerde(registry)
    held = held_of(world, cathode(world))
    event = decided(world, held, DecisionState.REJECTED)
    for topic, e in (("t.pcf.review", held), ("t.pcf.review.decisions", event)):
        data = serde.encode(topic, e)
        assert data[0] == 0 and serde.decode(data) == e
    assert pending([held], []) == [held] and pending([held], [event]) == []
    assert serde.decode(serde.encode("t.pcf.review", held)).at == NOW.astimezone(UTC)
