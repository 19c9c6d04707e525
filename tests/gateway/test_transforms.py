"""apply(): generalise, pseudonymise, encrypt (field vault), redact; blocked and held refused."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pcf_exchange.gateway import Policy, TransferBlocked, TransferHeld
from pcf_exchange.gateway._sealing import hpke_open
from pcf_exchange.gateway.policy import (
    ENCRYPTED_MARKER,
    PSEUDONYM_PREFIX,
    CounterState,
    apply,
    evaluate,
    pseudonym,
    vault_context,
)
from tests.gateway._factories import NOW, PSEUDONYM_SECRET, battery_record

OEM, PURPOSE = "eu-battery-oem-de", "battery-regulation-art7"


def outbound_for(
    policy: Policy,
    counters: CounterState,
    rid: str,
    purpose: str,
    record: dict[str, Any] | None = None,
) -> Any:
    record = record or battery_record()
    decision = evaluate(policy, record, rid, purpose, counters, NOW)
    return apply(decision, record, pseudonym_secret=PSEUDONYM_SECRET)


def lineage(footprint: Any) -> Any:
    return footprint["extensions"][0]["data"]["lineage"]


def test_eu_payload(policy: Policy, counters: CounterState) -> None:
    out = outbound_for(policy, counters, OEM, PURPOSE)
    fp = out.footprint
    assert fp["pcf"]["pcfExcludingBiogenicUptake"] == "61.27"
    assert "comment" not in fp and "allocationRulesDescription" not in fp["pcf"]
    facility = lineage(fp)["facility"]
    assert facility["city"] == "CN-GD" and facility["address"] == "CN-GD"  # province
    assert "latitude" not in facility and "unLocode" not in facility
    assert facility["productionVolume"] == {"unit": "kilowatt hour"}  # quantity redacted
    assert facility["energy"][0]["quantity"] == {"intensity": "45", "per": "kilowatt hour"}
    assert facility["energy"][1]["quantity"] == {"intensity": "2.583", "per": "kilowatt hour"}
    assert "processParameters" not in facility
    assert lineage(fp)["contacts"] == [{"role": "PCF owner"}]
    first = lineage(fp)["inputs"][0]
    assert first["supplierId"].startswith(PSEUDONYM_PREFIX)
    assert "quantity" not in first and "massShare" not in first
    assert first["inputs"][0]["backgroundDataset"] == {"name": "ecoinvent", "version": "3.10"}
    assert set(out.usage_policies) == {"cx-pcf-base"}
    assert out.field_vault is None


def test_other_gets_country_and_no_sub_tier(policy: Policy, counters: CounterState) -> None:
    fp = outbound_for(policy, counters, "uk-customer-gb", "pcf-exchange").footprint
    facility = lineage(fp)["facility"]
    assert facility["city"] == "CN" and facility["address"] == "CN"
    assert "facilityId" not in facility
    for item in lineage(fp)["inputs"]:
        assert not {"supplierId", "supplierName", "pfId", "productId", "sha256"} & set(item)


def test_lineage_never_names_sub_tier_suppliers_abroad(
    policy: Policy, counters: CounterState
) -> None:
    names = [
        "Example Cathode Materials Co.",
        "Example Lithium Salt Refinery",
        "CATHODE01",
        "LITHIUM02",
        "COPPERF3",
        "cathode.example.cn",
    ]
    for rid, purpose in ((OEM, PURPOSE), ("uk-customer-gb", "pcf-exchange")):
        out = outbound_for(policy, counters, rid, purpose)
        text = repr(out.footprint)
        assert not [n for n in names if n in text], rid


def test_domestic_fields_go_in_the_vault(
    policy: Policy, counters: CounterState, recipient_keys: dict[str, X25519PrivateKey]
) -> None:
    rid = "cn-carbon-label-body"
    out = outbound_for(policy, counters, rid, "carbon-label-certification")
    facility = lineage(out.footprint)["facility"]
    assert facility["latitude"] == {
        ENCRYPTED_MARKER: "extensions[0].data.lineage.facility.latitude"
    }
    assert out.field_vault is not None and b"22.7213" not in out.field_vault
    vault = hpke_open(recipient_keys[rid], out.field_vault, vault_context(rid, out.decision_id))
    assert b'"22.7213"' in vault and b"Example Cathode Materials Co." in vault
    from pcf_exchange.contracts.errors import TrustError

    with pytest.raises(TrustError):
        hpke_open(recipient_keys[rid], out.field_vault, vault_context(rid, "another-decision"))


def test_pseudonyms_are_stable_per_recipient() -> None:
    a1 = pseudonym(PSEUDONYM_SECRET, "a", "urn:x")
    assert a1 == pseudonym(PSEUDONYM_SECRET, "a", "urn:x")
    assert a1 != pseudonym(PSEUDONYM_SECRET, "b", "urn:x")
    assert a1 != pseudonym(PSEUDONYM_SECRET, "a", "urn:y")
    assert pseudonym(PSEUDONYM_SECRET, "a", "5") != pseudonym(PSEUDONYM_SECRET, "a", 5)
    assert a1 != pseudonym(b"q" * 32, "a", "urn:x")


def test_same_supplier_same_pseudonym_across_records(
    policy: Policy, counters: CounterState
) -> None:
    one = outbound_for(policy, counters, OEM, PURPOSE).footprint
    record = battery_record()
    record["id"] = "another-footprint"
    two = outbound_for(policy, counters, OEM, PURPOSE, record).footprint
    assert lineage(one)["inputs"][1]["supplierId"] == lineage(two)["inputs"][1]["supplierId"]


def test_blocked_and_held_are_refused(policy: Policy, counters: CounterState) -> None:
    record = battery_record()
    blocked = evaluate(policy, record, "nobody", PURPOSE, counters, NOW)
    with pytest.raises(TransferBlocked) as info:
        apply(blocked, record, pseudonym_secret=PSEUDONYM_SECRET)
    assert info.value.reasons[0].code == "unknown_recipient"
    held = evaluate(policy, record, "eu-cbam-importer-nl", "cbam-reporting", counters, NOW)
    with pytest.raises(TransferHeld, match="no approval was given"):
        apply(held, record, pseudonym_secret=PSEUDONYM_SECRET)


def test_only_decided_fields_go_out(policy: Policy, counters: CounterState) -> None:
    # A decision applied to a record with extra fields never copies the extras.
    record = battery_record()
    decision = evaluate(policy, record, OEM, PURPOSE, counters, NOW)
    grown = battery_record()
    grown["pcf"]["secretAddition"] = "do-not-send"
    grown["extensions"][0]["data"]["lineage"]["inputs"][0]["note"] = "do-not-send"
    out = apply(decision, grown, pseudonym_secret=PSEUDONYM_SECRET)
    assert "do-not-send" not in repr(out.footprint)


def test_generalisation_without_a_region_sends_nothing(
    policy: Policy, counters: CounterState
) -> None:
    record = battery_record()
    facility = record["extensions"][0]["data"]["lineage"]["facility"]
    del facility["subdivision"], facility["country"]
    record["pcf"].pop("geographyCountrySubdivision")
    out = outbound_for(policy, counters, OEM, PURPOSE, record)
    assert "city" not in lineage(out.footprint)["facility"]


def test_intensity_without_denominator_sends_nothing(
    policy: Policy, counters: CounterState
) -> None:
    record = battery_record()
    record["extensions"][0]["data"]["lineage"]["facility"]["productionVolume"]["quantity"] = "0"
    facility = lineage(outbound_for(policy, counters, OEM, PURPOSE, record).footprint)["facility"]
    assert all("quantity" not in e for e in facility["energy"])


def test_short_secret_is_refused(policy: Policy, counters: CounterState) -> None:
    record = battery_record()
    decision = evaluate(policy, record, OEM, PURPOSE, counters, NOW)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        apply(decision, record, pseudonym_secret=b"short")


def test_input_record_is_not_modified(policy: Policy, counters: CounterState) -> None:
    record = battery_record()
    outbound_for(policy, counters, "cn-carbon-label-body", "carbon-label-certification", record)
    assert record == battery_record()
