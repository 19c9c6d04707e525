"""evaluate(): per-field actions with rule ids and bases, record outcomes, deny by default."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest
import yaml

from pcf_exchange.gateway import Policy, parse_policy
from pcf_exchange.gateway.policy import (
    Action,
    CounterMetric,
    CounterState,
    DestinationGroup,
    ExemptionBasis,
    Grade,
    Mechanism,
    MechanismType,
    Outcome,
    RecipientType,
    evaluate,
)
from tests.gateway._factories import NOW, battery_record

LINEAGE = "extensions[0].data.lineage"
OEM, PURPOSE = "eu-battery-oem-de", "battery-regulation-art7"


def with_recipient(policy: Policy, rid: str, **changes: Any) -> Policy:
    recipients = {**policy.recipients, rid: replace(policy.recipients[rid], **changes)}
    return replace(policy, recipients=recipients)


def codes(decision: Any) -> list[str]:
    return [r.code for r in decision.reasons]


# ---------------------------------------------------------------------------------------------
# the shipped policy, row by row (regulation.md §6.1)


def test_eu_battery_customer(policy: Policy, counters: CounterState) -> None:
    d = evaluate(policy, battery_record(), OEM, PURPOSE, counters, NOW)
    assert d.outcome is Outcome.TRANSFORMED
    assert d.destination is DestinationGroup.EU
    expect = {
        "pcf.pcfExcludingBiogenicUptake": (Action.ALLOW_WITH_USAGE_POLICY, "R01-footprint-values"),
        "pcf.geographyCountrySubdivision": (Action.ALLOW, "R08-facility-region"),
        "comment": (Action.REDACT, "R04-free-text"),
        f"{LINEAGE}.inputs[0].supplierId": (Action.PSEUDONYMISE, "R06-sub-tier-identity"),
        f"{LINEAGE}.inputs[0].inputs[0].supplierName": (
            Action.PSEUDONYMISE,
            "R06-sub-tier-identity",
        ),
        f"{LINEAGE}.contacts[0].email": (Action.REDACT, "R07a-contact-person"),
        f"{LINEAGE}.facility.city": (Action.GENERALISE, "R09-facility-address"),
        f"{LINEAGE}.facility.latitude": (Action.REDACT, "R10a-facility-coordinates"),
        f"{LINEAGE}.facility.productionVolume.quantity": (Action.REDACT, "R11-production-volume"),
        f"{LINEAGE}.facility.energy[0].quantity": (Action.GENERALISE, "R12-energy-absolute"),
        f"{LINEAGE}.facility.processParameters.dryRoomDewPointC": (
            Action.REDACT,
            "R14-process-parameters",
        ),
        f"{LINEAGE}.inputs[0].massShare": (Action.REDACT, "R15-bom-composition"),
        f"{LINEAGE}.inputs[0].inputs[0].backgroundDataset.value": (
            Action.REDACT,
            "R16-licensed-background",
        ),
        f"{LINEAGE}.inputs[0].inputs[0].backgroundDataset.name": (Action.ALLOW, "R03-methodology"),
    }
    for path, (action, rule) in expect.items():
        field = d.field(path)
        assert (field.action, field.rule_id) == (action, rule), path
        assert field.basis.startswith("regulation.md §6.1")
    assert [m.kind for m in d.mechanisms] == ["exemption/international_trade"]
    assert set(d.usage_policies) == {"cx-pcf-base"}
    assert d.record_grade is Grade.GENERAL


def test_other_jurisdiction_is_stricter(policy: Policy, counters: CounterState) -> None:
    d = evaluate(policy, battery_record(), "uk-customer-gb", "pcf-exchange", counters, NOW)
    assert d.destination is DestinationGroup.OTHER
    assert d.field(f"{LINEAGE}.inputs[0].supplierId").action is Action.REDACT
    city = d.field(f"{LINEAGE}.facility.city").verdict.spec
    assert city.to is not None and city.to.value == "country"


def test_domestic_combination_raises_grade(policy: Policy, counters: CounterState) -> None:
    d = evaluate(
        policy,
        battery_record(),
        "cn-carbon-label-body",
        "carbon-label-certification",
        counters,
        NOW,
    )
    assert d.destination is DestinationGroup.DOMESTIC
    assert d.record_grade is Grade.IMPORTANT
    city = d.field(f"{LINEAGE}.facility.city")
    assert (city.action, city.rule_id) == (Action.ENCRYPT, "R17-important")
    assert city.verdict.raised_by == "C01-facility-scale"
    assert "reclassified" in codes(d)
    assert d.mechanisms == ()  # nothing crosses the border


def test_combination_does_not_fire_when_not_precise(policy: Policy, counters: CounterState) -> None:
    # Abroad the address is generalised and volumes redacted: the combination is not disclosed.
    d = evaluate(policy, battery_record(), OEM, PURPOSE, counters, NOW)
    assert "reclassified" not in codes(d)


def test_cbam_locode_is_held(policy: Policy, counters: CounterState) -> None:
    d = evaluate(policy, battery_record(), "eu-cbam-importer-nl", "cbam-reporting", counters, NOW)
    assert d.outcome is Outcome.HELD
    locode = d.field(f"{LINEAGE}.facility.unLocode")
    assert locode.action is Action.HOLD and locode.verdict.release is not None
    assert locode.verdict.release.action is Action.ALLOW
    assert d.hold_fingerprint is not None
    assert codes(d) == ["field_held"]


# ---------------------------------------------------------------------------------------------
# deny by default


def test_unknown_recipient(policy: Policy, counters: CounterState) -> None:
    d = evaluate(policy, battery_record(), "nobody", PURPOSE, counters, NOW)
    assert d.outcome is Outcome.BLOCKED
    assert codes(d) == ["unknown_recipient"]
    assert all(f.action is Action.BLOCK for f in d.fields)


def test_unknown_jurisdiction(policy: Policy, counters: CounterState) -> None:
    moved = with_recipient(policy, OEM, jurisdiction="BR")
    d = evaluate(moved, battery_record(), OEM, PURPOSE, counters, NOW)
    assert d.outcome is Outcome.BLOCKED
    assert "unknown_jurisdiction" in codes(d)
    assert "'BR'" in d.reasons[0].message


def test_purpose_not_allowed(policy: Policy, counters: CounterState) -> None:
    d = evaluate(policy, battery_record(), OEM, "marketing", counters, NOW)
    assert d.outcome is Outcome.BLOCKED
    assert "purpose_not_allowed" in codes(d)


def test_unknown_fields_block_and_are_all_named(policy: Policy, counters: CounterState) -> None:
    record = battery_record()
    record["pcf"]["otherOperatorName"] = "TfS"  # PACT v3 example-1's known defect
    record["extensions"][0]["data"]["lineage"]["facility"]["shiftPattern"] = "3x8"
    d = evaluate(policy, record, OEM, PURPOSE, counters, NOW)
    assert d.outcome is Outcome.BLOCKED
    unknown = [r.path for r in d.reasons if r.code == "unknown_field"]
    assert unknown == ["pcf.otherOperatorName", f"{LINEAGE}.facility.shiftPattern"]
    # the other fields are still decided, each with its rule
    assert d.field("pcf.fossilGhgEmissions").rule_id == "R01-footprint-values"


def test_odd_keys_and_floats_are_denied(policy: Policy, counters: CounterState) -> None:
    record = battery_record()
    record["pcf"]["fossilGhgEmissions"] = 60.9  # a binary float, not a decimal string
    record["pcf"][3] = "x"
    d = evaluate(policy, record, OEM, PURPOSE, counters, NOW)
    assert d.outcome is Outcome.BLOCKED
    rules = {r.rule_id for r in d.reasons if r.effect is Outcome.BLOCKED}
    assert {"decimal-as-string", "deny-by-default"} <= rules


def test_expired_mechanism_blocks(policy: Policy, counters: CounterState) -> None:
    # valid through the whole expiry day in Beijing time (2027-03-31 23:59 CST = 15:59 UTC)
    last_minute = datetime(2027, 3, 31, 15, 59, tzinfo=UTC)
    assert evaluate(policy, battery_record(), OEM, PURPOSE, counters, last_minute).outcome is (
        Outcome.TRANSFORMED
    )
    after = datetime(2027, 3, 31, 16, 0, tzinfo=UTC)
    d = evaluate(policy, battery_record(), OEM, PURPOSE, counters, after)
    assert d.outcome is Outcome.BLOCKED
    expired = next(r for r in d.reasons if r.code == "mechanism_expired")
    assert "expired on 2027-03-31" in expired.message and "SA-2026-004" in expired.message


def test_every_reason_is_kept(policy: Policy, counters: CounterState) -> None:
    record = battery_record()
    record["pcf"]["newField"] = "1"
    later = datetime(2028, 1, 1, tzinfo=UTC)
    d = evaluate(policy, record, OEM, "marketing", counters, later)
    assert {"purpose_not_allowed", "unknown_field", "mechanism_expired"} <= set(codes(d))


def test_foreign_judicial_authority_is_blocked(policy: Policy, counters: CounterState) -> None:
    court = with_recipient(policy, "uk-customer-gb", type=RecipientType.JUDICIAL_AUTHORITY)
    d = evaluate(court, battery_record(), "uk-customer-gb", "pcf-exchange", counters, NOW)
    assert d.outcome is Outcome.BLOCKED
    assert d.field("pcf.fossilGhgEmissions").rule_id == "R19-foreign-judicial"


def test_decision_is_pure_and_deterministic(policy: Policy, counters: CounterState) -> None:
    record = battery_record()
    a = evaluate(policy, record, OEM, PURPOSE, counters, NOW)
    b = evaluate(policy, record, OEM, PURPOSE, counters, NOW)
    assert a.decision_id == b.decision_id
    assert a.field_actions() == b.field_actions()
    assert record == battery_record()  # input untouched


def test_naive_time_is_refused(policy: Policy, counters: CounterState) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(policy, battery_record(), OEM, PURPOSE, counters, datetime(2026, 1, 1))


# ---------------------------------------------------------------------------------------------
# most restrictive wins, restriction-only rules, important and core data

KEY = "x25519:5b1lxe+9XPPpoWJ/FZ7B+b+7rCRwfshPEmswxCwdKVw="


def rule(
    rid: str, when: dict[str, Any], eu: Any, domestic: Any = "allow", other: Any = "allow"
) -> dict[str, Any]:
    return {
        "id": rid,
        "when": when,
        "basis": "t",
        "actions": {"domestic": domestic, "eu": eu, "other": other},
    }


def small_policy(
    rules: list[dict[str, Any]],
    classes: dict[str, dict[str, Any]] | None = None,
    **extra: Any,
) -> Policy:
    """Classes a and b on fields x and y, one EU recipient 'de' (SA expired), *rules* on top."""
    doc = {
        "schema_version": 1,
        "policy": {"id": "t", "version": "1.0.0"},
        "exporter": {"name": "E"},
        "destinations": {"eu": ["DE"], "other": ["US"]},
        "classes": {
            "a": {"grade": "general", "basis": "t"},
            "b": {"grade": "general", "basis": "t"},
            **(classes or {}),
        },
        "fields": [{"path": "x", "class": "a"}, {"path": "y", "class": "b"}],
        "rules": [rule("RB", {"class": "b"}, "allow"), *rules],
        "recipients": [
            {
                "id": "de",
                "name": "D",
                "jurisdiction": "DE",
                "type": "customer",
                "encryption_key": KEY,
                "verify_key": "ed25519:d",
                "purposes": ["p"],
                "mechanisms": [
                    {
                        "type": "exemption",
                        "basis": "international_trade",
                        "reference": "r",
                        "expires": "2030-01-01",
                    },
                    {"type": "security_assessment", "reference": "SA-1", "expires": "2026-01-01"},
                ],
            }
        ],
        **extra,
    }
    return parse_policy(yaml.safe_dump(doc))


def decide(policy: Policy, record: dict[str, Any], state: CounterState | None = None) -> Any:
    return evaluate(policy, record, "de", "p", state or CounterState.empty(2026), NOW)


A = {"class": "a"}


def test_most_restrictive_wins() -> None:
    policy = small_policy(
        [rule("R1", A, "allow"), rule("R2", A, "redact"), rule("R3", A, "encrypt")]
    )
    x = decide(policy, {"x": "1", "y": "2"}).field("x")
    assert (x.action, x.rule_id) == (Action.REDACT, "R2")
    assert x.verdict.matched == ("R1", "R2", "R3")


def test_generalisations_merge_to_the_coarsest() -> None:
    policy = small_policy(
        [
            rule("R1", A, {"action": "generalise", "to": "province"}),
            rule("R2", A, {"action": "generalise", "to": "country"}),
        ]
    )
    assert decide(policy, {"x": "CN-GD", "y": "2"}).field("x").rule_id == "R2"


def test_hold_releases_with_the_most_restrictive_other_action() -> None:
    policy = small_policy([rule("R1", A, "pseudonymise"), rule("R2", A, "hold")])
    d = decide(policy, {"x": "1", "y": "2"})
    x = d.field("x")
    assert x.action is Action.HOLD
    assert x.verdict.release is not None and x.verdict.release.action is Action.PSEUDONYMISE
    assert d.outcome is Outcome.HELD


def test_restriction_only_rule_cannot_grant() -> None:
    policy = small_policy([rule("R9", {"recipient_type": "customer"}, "allow")])
    d = decide(policy, {"x": "1", "y": "2"})
    x = d.field("x")
    assert (x.action, x.rule_id) == (Action.BLOCK, "deny-by-default")
    assert "no rule grants class a" in x.basis
    assert d.outcome is Outcome.BLOCKED


def test_important_data_needs_a_valid_security_assessment() -> None:
    policy = small_policy(
        [rule("R1", A, "allow"), rule("R17", {"grade": "important"}, "hold", "encrypt", "hold")],
        {"a": {"grade": "important", "basis": "t"}},
        mechanism_requirements=[
            {
                "id": "M03",
                "when": {"exports_grade": "important"},
                "requires_any": ["security_assessment"],
                "basis": "t",
            }
        ],
    )
    expired = decide(policy, {"x": "1", "y": "2"})
    assert expired.outcome is Outcome.BLOCKED
    assert any(r.code == "mechanism_expired" and r.rule_id == "M03" for r in expired.reasons)
    renewed = with_recipient(
        policy,
        "de",
        mechanisms=(Mechanism(MechanismType.SECURITY_ASSESSMENT, "SA-2", date(2029, 1, 1)),),
    )
    d = decide(renewed, {"x": "1", "y": "2"})
    assert d.outcome is Outcome.HELD  # approval still needed (row 17: APR)
    assert d.record_grade is Grade.IMPORTANT
    assert [m.reference for m in d.mechanisms] == ["SA-2"]


def test_core_data_never_leaves() -> None:
    policy = small_policy(
        [rule("R1", A, "allow"), rule("R18", {"grade": "core"}, "block", "encrypt", "block")],
        {"a": {"grade": "core", "basis": "t"}},
    )
    d = decide(policy, {"x": "1", "y": "2"})
    assert d.outcome is Outcome.BLOCKED
    assert d.field("x").rule_id == "R18"


# ---------------------------------------------------------------------------------------------
# PI counters (Provisions 2024 thresholds)

ALL_FORMAL = ["standard_contract", "certification", "security_assessment"]


def pi_policy(*mechanisms: Mechanism) -> Policy:
    policy = small_policy(
        [rule("RA", A, "allow")],
        {
            "a": {"grade": "general", "personal_information": "pi", "basis": "t"},
            "b": {"grade": "general", "personal_information": "sensitive_pi", "basis": "t"},
        },
        mechanism_requirements=[
            {
                "id": "M01",
                "when": {"exports_personal_information": True},
                "requires_any": ["exemption/pi_de_minimis", *ALL_FORMAL],
                "basis": "t",
            },
            {
                "id": "M02",
                "when": {"exports_sensitive_personal_information": True},
                "requires_any": ALL_FORMAL,
                "basis": "t",
            },
        ],
        counters=[
            {
                "id": "K01",
                "metric": "pi_individuals",
                "at_least": 100000,
                "requires_any": ALL_FORMAL,
                "basis": "t",
            },
            {
                "id": "K03",
                "metric": "sensitive_pi_individuals",
                "at_least": 10001,
                "requires_any": ["security_assessment"],
                "basis": "t",
            },
        ],
    )
    return with_recipient(policy, "de", mechanisms=mechanisms)


DE_MINIMIS = Mechanism(
    MechanismType.EXEMPTION, "de minimis", date(2030, 1, 1), basis=ExemptionBasis.PI_DE_MINIMIS
)
SCC = Mechanism(MechanismType.STANDARD_CONTRACT, "SCC-1", date(2030, 1, 1))


def state_with(count: int, metric: CounterMetric = CounterMetric.PI_INDIVIDUALS) -> CounterState:
    return CounterState(
        year=2026, salt=b"s", seen={metric: frozenset(f"k{i}" for i in range(count))}
    )


def test_pi_below_threshold_rides_on_de_minimis() -> None:
    d = decide(pi_policy(DE_MINIMIS), {"x": "Li Wei"}, state_with(99_998))
    assert d.outcome is Outcome.ALLOWED
    assert d.counter_delta is not None
    assert d.counter_delta.added_count(CounterMetric.PI_INDIVIDUALS) == 1
    assert d.counter_delta.counts_after[CounterMetric.PI_INDIVIDUALS] == 99_999


def test_pi_at_100k_needs_a_standard_contract() -> None:
    d = decide(pi_policy(DE_MINIMIS), {"x": "Li Wei"}, state_with(99_999))
    assert d.outcome is Outcome.BLOCKED
    missing = next(r for r in d.reasons if r.code == "mechanism_missing")
    assert missing.rule_id == "K01" and "100000 pi_individuals" in (missing.basis or "")
    assert decide(pi_policy(DE_MINIMIS, SCC), {"x": "Li Wei"}, state_with(99_999)).outcome is (
        Outcome.ALLOWED
    )


def test_sensitive_pi_is_outside_de_minimis() -> None:
    d = decide(pi_policy(DE_MINIMIS), {"y": "blood type B"}, state_with(0))
    assert any(r.rule_id == "M02" for r in d.reasons)
    many = state_with(10_000, CounterMetric.SENSITIVE_PI_INDIVIDUALS)
    assert any(
        r.rule_id == "K03" for r in decide(pi_policy(SCC), {"y": "blood type B"}, many).reasons
    )


def test_counted_individuals_are_distinct_and_per_year() -> None:
    policy = pi_policy(DE_MINIMIS)
    state = CounterState.empty(2026, salt=b"s")
    first = decide(policy, {"x": "Li Wei"}, state)
    assert first.counter_delta is not None
    state = state.apply(first.counter_delta)
    again = decide(policy, {"x": "Li Wei"}, state)
    assert again.counter_delta is not None
    assert again.counter_delta.added_count(CounterMetric.PI_INDIVIDUALS) == 0
    assert state.count(CounterMetric.PI_INDIVIDUALS) == 1
    # 1 January, Beijing time, the count starts again
    new_year = datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    rolled = evaluate(policy, {"x": "Li Wei"}, "de", "p", state, new_year)
    assert rolled.counter_delta is not None and rolled.counter_delta.year == 2027
    assert rolled.counter_delta.added_count(CounterMetric.PI_INDIVIDUALS) == 1


def test_domestic_transfers_are_not_counted(policy: Policy, counters: CounterState) -> None:
    d = evaluate(
        policy,
        battery_record(),
        "cn-carbon-label-body",
        "carbon-label-certification",
        counters,
        NOW,
    )
    assert d.counter_delta is not None and d.counter_delta.empty


def test_notified_body_counts_contacts(policy: Policy, counters: CounterState) -> None:
    d = evaluate(
        policy, battery_record(), "eu-notified-body-fr", "battery-cf-verification", counters, NOW
    )
    assert d.outcome is Outcome.HELD
    assert d.counter_delta is not None
    assert d.counter_delta.added_count(CounterMetric.PI_INDIVIDUALS) == 1
    assert [m.kind for m in d.mechanisms] == ["standard_contract"]


def test_a_changed_copy_of_a_policy_has_its_own_caches(
    policy: Policy, counters: CounterState
) -> None:
    # Regression: dataclasses.replace once copied the evaluation caches into the new policy.
    assert evaluate(policy, battery_record(), OEM, PURPOSE, counters, NOW).outcome is (
        Outcome.TRANSFORMED
    )
    expired = with_recipient(
        policy,
        OEM,
        mechanisms=(Mechanism(MechanismType.SECURITY_ASSESSMENT, "old", date(2020, 1, 1)),),
    )
    assert evaluate(expired, battery_record(), OEM, PURPOSE, counters, NOW).outcome is (
        Outcome.BLOCKED
    )
