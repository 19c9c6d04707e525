"""Policy files: the shipped example loads; broken files are refused with path, line and reason."""

from __future__ import annotations

import textwrap

import pytest

from pcf_exchange.gateway import PolicyFileInvalid, default_policy_path, load_policy, parse_policy
from pcf_exchange.gateway.policy import Action, DestinationGroup, GeneraliseTo, Grade, MechanismType

KEY = "x25519:5b1lxe+9XPPpoWJ/FZ7B+b+7rCRwfshPEmswxCwdKVw="

MINIMAL = textwrap.dedent(
    f"""\
    schema_version: 1
    policy: {{id: test, version: 1.0.0}}
    exporter: {{name: Exporter}}
    destinations:
      eu: [DE]
      other: [US, NO]
    classes:
      values: {{grade: general, basis: test}}
    fields:
      - {{path: "pcf.*", class: values}}
    rules:
      - id: R1
        when: {{class: values}}
        actions:
          domestic: allow
          eu: allow
          other: allow
        basis: test
    recipients:
      - id: de
        name: DE customer
        jurisdiction: DE
        type: customer
        encryption_key: "{KEY}"
        verify_key: "ed25519:de"
        purposes: [p]
        mechanisms:
          - type: exemption
            basis: international_trade
            reference: ref
            expires: "2030-01-01"
      - id: cn
        name: CN body
        jurisdiction: CN
        type: certification_body
        encryption_key: "{KEY}"
        verify_key: "ed25519:cn"
        purposes: [p]
    """
)


def refused(text: str) -> PolicyFileInvalid:
    with pytest.raises(PolicyFileInvalid) as info:
        parse_policy(text, source="test.yaml")
    return info.value


def by_path(error: PolicyFileInvalid) -> dict[str, object]:
    return {v.path: v for v in error.violations}


def test_minimal_policy_loads() -> None:
    policy = parse_policy(MINIMAL)
    assert policy.id == "test" and policy.version == "1.0.0"
    assert policy.destination_of("DE") is DestinationGroup.EU
    assert policy.destination_of("CN") is DestinationGroup.DOMESTIC
    assert policy.destination_of("BR") is None
    assert len(policy.digest) == 64


def test_shipped_policy_loads_and_covers_regulation_rows() -> None:
    policy = load_policy(default_policy_path())
    rule_ids = {r.id for r in policy.rules}
    for row in ("R01", "R06", "R07a", "R09", "R10a", "R12", "R14", "R17", "R18", "R19"):
        assert any(r.startswith(row) for r in rule_ids), row
    oem = policy.recipients["eu-battery-oem-de"]
    assert oem.mechanisms[0].type is MechanismType.EXEMPTION
    assert policy.recipients["cn-carbon-label-body"].mechanisms == ()
    r12 = next(r for r in policy.rules if r.id.startswith("R12"))
    assert r12.actions[DestinationGroup.EU].to is GeneraliseTo.INTENSITY
    assert any(c.raise_to is Grade.IMPORTANT for c in policy.combinations)


def test_norway_stays_norway_and_dates_stay_strings() -> None:
    # YAML 1.1 reads NO as false and 2030-01-01 as a date: both are switched off.
    policy = parse_policy(MINIMAL)
    assert policy.destination_of("NO") is DestinationGroup.OTHER
    assert str(policy.recipients["de"].mechanisms[0].expires) == "2030-01-01"


def test_wrong_type_names_path_and_line() -> None:
    error = refused(MINIMAL.replace("eu: [DE]", "eu: DE"))
    violation = by_path(error)["destinations.eu"]
    assert violation.code == "type"  # type: ignore[attr-defined]
    assert "must be a list" in str(violation)
    assert error.lines["destinations.eu"] == 5
    assert "[line 5]" in str(error)


def test_unknown_action_names_the_actions() -> None:
    error = refused(MINIMAL.replace("eu: allow", "eu: alow"))
    violation = by_path(error)["rules[0].actions.eu"]
    assert violation.code == "unknown_action"  # type: ignore[attr-defined]
    assert "not a known action" in str(violation) and "pseudonymise" in str(violation)
    assert "(got 'alow')" in str(violation)


def test_unknown_action_in_a_mapping() -> None:
    error = refused(MINIMAL.replace("eu: allow", "eu: {action: shred}"))
    assert by_path(error)["rules[0].actions.eu.action"].code == "unknown_action"  # type: ignore[attr-defined]


def test_action_needing_parameters_says_so() -> None:
    error = refused(MINIMAL.replace("eu: allow", "eu: generalise"))
    assert "needs parameters" in str(by_path(error)["rules[0].actions.eu"])
    error = refused(MINIMAL.replace("eu: allow", "eu: {action: generalise}"))
    assert by_path(error)["rules[0].actions.eu.to"].code == "required"  # type: ignore[attr-defined]


def test_missing_recipient_mechanism() -> None:
    broken = MINIMAL.replace(
        """    mechanisms:
      - type: exemption
        basis: international_trade
        reference: ref
        expires: "2030-01-01"
""",
        "",
    )
    error = refused(broken)
    violation = by_path(error)["recipients[0].mechanisms"]
    assert violation.code == "required"  # type: ignore[attr-defined]
    assert "missing legal mechanism" in str(violation)
    assert error.lines["recipients[0].mechanisms"] == 20  # the recipient's line


def test_domestic_recipient_needs_no_mechanism() -> None:
    assert parse_policy(MINIMAL).recipients["cn"].mechanisms == ()


def test_exemption_needs_its_basis() -> None:
    error = refused(MINIMAL.replace("        basis: international_trade\n", ""))
    assert by_path(error)["recipients[0].mechanisms[0].basis"].code == "required"  # type: ignore[attr-defined]


def test_every_problem_is_reported_at_once() -> None:
    broken = MINIMAL.replace("eu: allow", "eu: alow").replace("eu: [DE]", "eu: DE")
    broken = broken.replace("type: customer", "type: client")
    paths = set(by_path(refused(broken)))
    assert {"rules[0].actions.eu", "destinations.eu", "recipients[0].type"} <= paths


@pytest.mark.parametrize(
    ("change", "path", "code"),
    [
        (("class: values}", "class: valeus}"), "fields[0].class", "unknown_class"),
        (("when: {class: values}", "when: {class: nope}"), "rules[0].when.class", "unknown_class"),
        (("schema_version: 1", "schema_version: 1\nextra: 1"), "extra", "unknown_key"),
        (
            ('expires: "2030-01-01"', 'expires: "2030-02-30"'),
            "recipients[0].mechanisms[0].expires",
            "date",
        ),
        (
            ('expires: "2030-01-01"', "expires: 2030-01-01T00:00"),
            "recipients[0].mechanisms[0].expires",
            "pattern",
        ),
        (
            (f'encryption_key: "{KEY}"', 'encryption_key: "x25519:short"'),
            "recipients[0].encryption_key",
            "pattern",
        ),
        (('path: "pcf.*"', 'path: "pcf..x"'), "fields[0].path", "pattern"),
        (("jurisdiction: DE", "jurisdiction: Germany"), "recipients[0].jurisdiction", "pattern"),
        (("other: [US, NO]", "other: [US, CN]"), "destinations", "domestic_listed"),
        (("other: [US, NO]", "other: [US, DE]"), "destinations.other", "ambiguous_destination"),
        (("  - id: cn", "  - id: de"), "recipients[1].id", "duplicate_id"),
        (("eu: allow\n", "eu: allow\n      eu: block\n"), "rules[0].actions.eu", "duplicate_key"),
        (
            ("eu: allow", "eu: {action: allow_with_usage_policy, usage_policy: missing}"),
            "rules[0].actions.eu.usage_policy",
            "unknown_usage_policy",
        ),
        (("eu: allow", "eu: {action: redact, then: allow}"), "rules[0].actions.eu.then", "then"),
        (("eu: allow", "eu: {action: hold, then: block}"), "rules[0].actions.eu.then", "then"),
    ],
)
def test_named_bad_inputs(change: tuple[str, str], path: str, code: str) -> None:
    old, new = change
    assert old in MINIMAL
    violation = by_path(refused(MINIMAL.replace(old, new, 1)))[path]
    assert violation.code == code  # type: ignore[attr-defined]


def test_yaml_syntax_error_has_a_line() -> None:
    error = refused(MINIMAL.replace('path: "pcf.*"', "path: pcf[*]"))
    assert error.violations[0].code == "yaml"
    assert "[line 10]" in error.violations[0].message


def test_hold_then_release_is_parsed() -> None:
    policy = parse_policy(MINIMAL.replace("eu: allow", "eu: {action: hold, then: encrypt}"))
    spec = policy.rules[0].actions[DestinationGroup.EU]
    assert spec.action is Action.HOLD and spec.then is not None
    assert spec.then.action is Action.ENCRYPT


def test_error_carries_hint_and_dict_form() -> None:
    error = refused(MINIMAL.replace("eu: allow", "eu: alow"))
    data = error.to_dict()
    assert data["code"] == "policy_invalid"
    assert data["violations"][0]["path"] == "rules[0].actions.eu"
    assert "Fix the policy file" in error.diagnostics()
