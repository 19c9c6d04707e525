"""Properties over random records, policies and recipients (Hypothesis).

1. No field whose action is block or redact (or a hold not released) ever appears in what goes
   out: not in the serialized sealed message, not in the decrypted envelope, not in the field
   vault, and only decided fields appear at all.
2. Pseudonyms are stable per recipient and differ across recipients.
3. Deny by default: unclassified fields and unknown recipients stop the record.
4. Canonical JSON is RFC 8785-style sorted compact JSON; an audit entry's leaf data, built in
   parts, is byte-identical to ``pae(ENTRY_TYPE, canonical_json(body))``.
5. Compiled layouts (cached per recipient, purpose and leaf paths) decide exactly what a fresh
   policy decides, and the transform plan builds exactly what the generic walk builds, for any
   record (also one whose layout differs from the plan's).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pcf_exchange.contracts.canonical import canonical_json, pae, to_canonical_value
from pcf_exchange.gateway import (
    GatewayKey,
    GatewaySecrets,
    KeyRing,
    approve,
    open_message,
    parse_policy,
    prepare_transfer,
)
from pcf_exchange.gateway._sealing import hpke_open
from pcf_exchange.gateway.audit import AuditEntry, ChainHead
from pcf_exchange.gateway.audit._entry import ENTRY_TYPE
from pcf_exchange.gateway.policy import (
    PSEUDONYM_PREFIX,
    Action,
    CounterState,
    Outcome,
    evaluate,
    pseudonym,
    vault_context,
)
from pcf_exchange.gateway.policy._paths import iter_leaves, leaf_paths
from pcf_exchange.gateway.policy._transforms import _ABSENT, _Builder, _compile_plan
from tests.gateway._factories import NOW

SIGNER = GatewayKey.generate()
RING = KeyRing.of(SIGNER.public_key)
SECRETS = GatewaySecrets(SIGNER, b"k" * 32)
KEYS = ["a", "b", "c", "d", "qty", "vol"]
SIMPLE = ["allow", "allow", "encrypt", "pseudonymise", "redact", "redact", "hold", "block"]
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

tree = st.recursive(
    st.none(),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), children, min_size=1, max_size=3),
    ),
    max_leaves=20,
)
skeletons = st.dictionaries(st.sampled_from(KEYS), tree, min_size=1, max_size=4)


def fill(node: Any, tag: str, counter: list[int], key: str = "") -> Any:
    """Replace every placeholder with a unique value (decimals under qty/vol)."""
    if isinstance(node, dict):
        return {k: fill(v, tag, counter, k) for k, v in node.items()}
    if isinstance(node, list):
        return [fill(v, tag, counter, key) for v in node]
    counter[0] += 1
    if key in ("qty", "vol"):
        return (
            f"7{counter[0]:04d}{tag[:5]}.25".replace("a", "1")
            .replace("b", "2")
            .replace("c", "3")
            .replace("d", "4")
            .replace("e", "5")
            .replace("f", "6")
        )
    return f"val-{counter[0]}-{tag}"


action_specs = st.one_of(
    st.sampled_from(SIMPLE),
    st.just({"action": "allow_with_usage_policy", "usage_policy": "u1"}),
    st.sampled_from(["province", "country"]).map(lambda to: {"action": "generalise", "to": to}),
    st.just({"action": "generalise", "to": "intensity", "denominator": "vol"}),
    st.sampled_from(["allow", "pseudonymise", "redact", "encrypt"]).map(
        lambda then: {"action": "hold", "then": then}
    ),
)


@dataclass
class World:
    record: dict[str, Any]
    policy_doc: dict[str, Any]
    keys: dict[str, X25519PrivateKey]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    tag = draw(st.text("0123456789abcdef", min_size=8, max_size=8))
    record = fill(draw(skeletons), tag, [0])
    shapes = sorted({shape for _, shape, _ in iter_leaves(record)})
    n_classes = draw(st.integers(1, 4))
    classes = {
        f"k{i}": {
            "grade": draw(st.sampled_from(["general"] * 6 + ["important", "core"])),
            "personal_information": draw(st.sampled_from(["none", "none", "pi", "sensitive_pi"])),
            "basis": "test",
        }
        for i in range(n_classes)
    }
    names = sorted(classes)
    fields = []
    for shape in shapes:
        if draw(st.integers(0, 29)) > 0:  # ~3 % of shapes stay unclassified
            fields.append(
                {
                    "path": shape,
                    "class": draw(
                        st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)
                    ),
                }
            )
    if draw(st.booleans()):
        fields.append({"path": "**.a", "class": draw(st.sampled_from(names))})
    if not fields:
        fields.append({"path": "zz", "class": names[0]})
    rules = []
    for i, name in enumerate(names):
        for j in range(draw(st.integers(0, 2)) or 1):
            rules.append(
                {
                    "id": f"r{i}-{j}",
                    "when": {"class": name},
                    "actions": {g: draw(action_specs) for g in ("domestic", "eu", "other")},
                    "basis": "test",
                }
            )
    if draw(st.booleans()):
        rules.append(
            {
                "id": "grade",
                "when": {"grade": ["important", "core"]},
                "actions": {g: draw(action_specs) for g in ("domestic", "eu", "other")},
                "basis": "test",
            }
        )
    if not rules:
        rules.append(
            {
                "id": "none",
                "when": {"class": names[0]},
                "actions": {"domestic": "redact", "eu": "redact", "other": "redact"},
                "basis": "test",
            }
        )
    keys = {}
    recipients = []
    for i in range(3):
        rid = f"rcpt-{i}"
        keys[rid] = X25519PrivateKey.generate()
        public = keys[rid].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        mechanisms = [
            {
                "type": kind,
                "reference": f"ref-{kind}",
                "expires": draw(st.sampled_from(["2025-01-01"] + ["2030-01-01"] * 3)),
                **({"basis": "international_trade"} if kind == "exemption" else {}),
            }
            for kind in draw(
                st.lists(
                    st.sampled_from(["exemption", "standard_contract", "security_assessment"]),
                    min_size=1,
                    max_size=3,
                    unique=True,
                )
            )
        ]
        recipients.append(
            {
                "id": rid,
                "name": rid,
                "jurisdiction": draw(st.sampled_from(["CN", "CN", "DE", "DE", "US", "US", "BR"])),
                "type": draw(st.sampled_from(["customer", "certification_body"])),
                "encryption_key": "x25519:" + base64.b64encode(public).decode(),
                "verify_key": f"ed25519:{rid}",
                "purposes": ["p"],
                "mechanisms": mechanisms,
                "usage_policies_accepted": draw(st.sampled_from([[], ["u1"], ["u1"], ["u1"]])),
            }
        )
    doc = {
        "schema_version": 1,
        "policy": {"id": "random", "version": "1.0.0"},
        "exporter": {"name": "E"},
        "destinations": {"eu": ["DE"], "other": ["US"]},
        "classes": classes,
        "fields": fields,
        "rules": rules,
        "usage_policies": {"u1": {"@type": "Set"}},
        "recipients": recipients,
        "mechanism_requirements": [
            {
                "id": "m-imp",
                "when": {"exports_grade": "important"},
                "requires_any": ["security_assessment"],
                "basis": "test",
            },
        ],
    }
    return World(record, doc, keys)


def withheld(decision: Any, released: bool) -> list[str]:
    """Values of every field the recipient must not receive in any form."""
    values = {path: value for path, _, value in iter_leaves(decision_record(decision))}
    out = []
    for f in decision.fields:
        v = f.verdict
        action = v.action
        if action is Action.HOLD:
            action = v.release.action if released and v.release else Action.REDACT
        if action in (Action.REDACT, Action.BLOCK):
            out.append(str(values[f.path]))
    return out


_RECORDS: dict[str, dict[str, Any]] = {}


def decision_record(decision: Any) -> dict[str, Any]:
    return _RECORDS[decision.record_ref.sha256]


@settings(PROPERTY_SETTINGS, max_examples=300)
@given(worlds())
def test_withheld_fields_never_leave(world: World) -> None:
    policy = parse_policy(yaml.safe_dump(world.policy_doc, allow_unicode=True))
    record = world.record
    counters = CounterState.empty(2026, b"s")
    for rid, key in world.keys.items():
        prepared = prepare_transfer(
            policy,
            record,
            recipient=rid,
            purpose="p",
            counters=counters,
            head=ChainHead(),
            secrets=SECRETS,
            now=NOW,
        )
        decision = prepared.decision
        _RECORDS[decision.record_ref.sha256] = record
        released = False
        if decision.outcome is Outcome.HELD and prepared.approval is not None:
            approved = approve(
                prepared.approval, approver="officer", reason="test", now=NOW + timedelta(minutes=1)
            )
            prepared = prepare_transfer(
                policy,
                record,
                recipient=rid,
                purpose="p",
                counters=counters,
                head=ChainHead(),
                secrets=SECRETS,
                now=NOW + timedelta(minutes=2),
                approval=approved,
            )
            decision = prepared.decision
            released = prepared.outbound is not None
        event(f"outcome: {decision.outcome.value}{' (released)' if released else ''}")
        if decision.outcome is Outcome.BLOCKED or prepared.outbound is None:
            assert prepared.outbound is None
            continue
        wire = prepared.outbound.to_bytes()
        opened = open_message(prepared.outbound, recipient_id=rid, private_key=key, trusted=RING)
        vault = b""
        if "fieldVault" in opened.envelope:
            vault = hpke_open(
                key,
                base64.b64decode(opened.envelope["fieldVault"]),
                vault_context(rid, decision.decision_id),
            )
        hidden = withheld(decision, released)
        event(f"withheld values checked: {min(len(hidden), 5)}{'+' if len(hidden) >= 5 else ''}")
        for value in hidden:
            assert value.encode() not in wire, value
            assert value.encode() not in opened.plaintext, value
            assert value.encode() not in vault, value
        # every generated value that appears belongs to a field decided as disclosed
        values = {path: value for path, _, value in iter_leaves(record)}
        disclosed = {str(values[f.path]) for f in decision.fields if f.verdict.discloses}
        for _, _, value in iter_leaves(opened.footprint):
            if isinstance(value, str) and (value.startswith("val-") or value.endswith(".25")):
                assert value in disclosed, value


@PROPERTY_SETTINGS
@given(worlds())
def test_deny_by_default(world: World) -> None:
    policy = parse_policy(yaml.safe_dump(world.policy_doc, allow_unicode=True))
    counters = CounterState.empty(2026, b"s")
    unknown = evaluate(policy, world.record, "not-declared", "p", counters, NOW)
    assert unknown.outcome is Outcome.BLOCKED
    for rid in world.keys:
        d = evaluate(policy, world.record, rid, "p", counters, NOW)
        unclassified = [f.path for f in d.fields if not f.verdict.classes]
        if unclassified and d.destination is not None:
            assert d.outcome is Outcome.BLOCKED
            assert {r.path for r in d.reasons if r.code == "unknown_field"} >= set(unclassified)
        if d.recipient is not None and d.recipient.jurisdiction == "BR":
            assert d.outcome is Outcome.BLOCKED
        assert evaluate(policy, world.record, rid, "other-purpose", counters, NOW).outcome is (
            Outcome.BLOCKED
        )


@given(
    st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=5, unique=True),
    st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=4, unique=True),
)
def test_pseudonyms_stable_per_recipient_distinct_across(
    values: list[str], rids: list[str]
) -> None:
    secret = b"s" * 32
    for value in values:
        per_recipient = [pseudonym(secret, rid, value) for rid in rids]
        assert per_recipient == [pseudonym(secret, rid, value) for rid in rids]
        assert len(set(per_recipient)) == len(rids)
        # nothing of the value shows: the prefix, then 128 bits of HMAC in hex
        assert all(
            re.fullmatch(re.escape(PSEUDONYM_PREFIX) + "[0-9a-f]{32}", p) for p in per_recipient
        )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@given(json_values)
def test_canonical_json_is_sorted_compact_json(value: Any) -> None:
    reference = json.dumps(
        to_canonical_value(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert canonical_json(value) == reference


texts = st.text(max_size=12)
maybe = st.none() | texts


@given(
    st.builds(
        AuditEntry,
        seq=st.integers(0, 2**40),
        prev_hash=texts,
        kind=texts,
        recorded_at=texts,
        decision_id=maybe,
        record_pf_id=maybe,
        recipient_id=maybe,
        purpose=maybe,
        mechanisms=st.lists(st.dictionaries(texts, texts, max_size=3), max_size=2).map(tuple),
        field_actions=st.lists(
            st.tuples(texts, texts, st.lists(texts, max_size=4).map(tuple)), max_size=4
        ).map(tuple),
        reasons=st.lists(texts, max_size=3).map(tuple),
        approval_id=maybe,
        approval_reason=maybe,
        message_id=maybe,
        pi_individuals_added=st.integers(0, 10),
    )
)
def test_entry_leaf_data_is_the_canonical_body(entry: AuditEntry) -> None:
    assert entry.canonical_bytes() == pae(ENTRY_TYPE, canonical_json(entry.body()))
    assert AuditEntry.from_json(entry.to_json()) == entry


def test_entry_leaf_data_off_the_fast_path_is_still_the_canonical_body() -> None:
    # the one-pass encoding hands odd entries to the general encoder: an integer beyond 64 bits
    # (orjson refuses it), a str subclass, a Mapping that is not a dict, a list of reasons
    from collections import OrderedDict
    from decimal import Decimal
    from types import MappingProxyType

    class Text(str):
        pass

    odd = [
        AuditEntry(seq=2**70, prev_hash="p", kind="k", recorded_at="t"),
        AuditEntry(seq=1, prev_hash=Text("p"), kind="k", recorded_at="t"),
        AuditEntry(1, "p", "k", "t", mechanisms=(MappingProxyType({"kind": "x"}),)),
        AuditEntry(1, "p", "k", "t", mechanisms=(OrderedDict(kind="x"),)),
        AuditEntry(1, "p", "k", "t", reasons=["a", "b"]),  # type: ignore[arg-type]
        AuditEntry(1, "p", "k", "t", purpose=Decimal("1.5")),  # type: ignore[arg-type]
    ]
    for entry in odd:
        assert entry.canonical_bytes() == pae(ENTRY_TYPE, canonical_json(entry.body()))


def test_entry_with_a_binary_float_has_no_leaf_data() -> None:
    # refused on both paths, as canonical JSON refuses it
    for entry in (
        AuditEntry(1, "p", "k", "t", purpose=1.5),  # type: ignore[arg-type]
        AuditEntry(1, "p", "k", "t", mechanisms=({"kind": 1.5},)),  # type: ignore[dict-item]
    ):
        with pytest.raises(TypeError, match="binary float"):
            entry.canonical_bytes()


def _decided(decision: Any) -> tuple[Any, ...]:
    """A decision without its verdict objects' identities (fresh policies have fresh ones)."""
    return (
        decision.outcome,
        decision.decision_id,
        decision.reasons,
        decision.record_grade,
        tuple(
            (f.path, f.action, f.rule_id, f.verdict.spec, f.verdict.grade) for f in decision.fields
        ),
        decision.field_actions(),
        dict(decision.usage_policies),
        decision.counter_delta,
        decision.mechanisms,
        decision.hold_fingerprint,
    )


@PROPERTY_SETTINGS
@given(worlds(), skeletons)
def test_compiled_layouts_decide_and_build_as_the_walk_does(world: World, other: Any) -> None:
    text = yaml.safe_dump(world.policy_doc, allow_unicode=True)
    policy = parse_policy(text)
    counters = CounterState.empty(2026, b"s")
    twin = fill(_skeleton(world.record), "fedcba98", [0])
    assert _paths(twin) == _paths(world.record)
    stranger = fill(other, "01234567", [0])
    for rid in world.keys:
        evaluate(policy, world.record, rid, "p", counters, NOW)  # compiles the layout
        cached = evaluate(policy, twin, rid, "p", counters, NOW)  # same paths: reuses it
        fresh = evaluate(parse_policy(text), twin, rid, "p", counters, NOW)
        assert _decided(cached) == _decided(fresh)
        if cached.layout is None:  # no destination group: nothing compiled, all blocked
            assert cached.destination is None and cached.outcome is Outcome.BLOCKED
            continue
        # one plan for the layout, as the gateway keeps it (its code is generated once per plan)
        plan = cached.layout.plan or _compile_plan(cached.fields)
        for release in (False, True):
            for record in (twin, stranger, world.record):
                planned = _Builder(cached, record, SECRETS.pseudonym_secret, release)
                walked = _Builder(cached, record, SECRETS.pseudonym_secret, release)
                expected = walked.build_root(record)
                assert planned.replay(plan, record) == expected
                assert planned.vault == walked.vault
                # the interpreted plan (for plans too deep to generate) builds the same
                interpreted = _Builder(cached, record, SECRETS.pseudonym_secret, release)
                ran = interpreted._run(plan, record)
                assert (ran if ran is not _ABSENT else {}) == expected
                assert interpreted.vault == walked.vault


def _paths(record: dict[str, Any]) -> list[str]:
    walked = leaf_paths(record)
    assert walked is not None
    return walked[0]


def _skeleton(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _skeleton(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_skeleton(v) for v in node]
    return None


@settings(max_examples=200)
@given(st.text())
def test_decision_ids_are_uuid5_of_the_decision_namespace(name: str) -> None:
    import uuid

    from pcf_exchange.gateway.policy._evaluate import _DECISION_NAMESPACE, decision_uuid

    assert decision_uuid(name) == str(uuid.uuid5(_DECISION_NAMESPACE, name))
