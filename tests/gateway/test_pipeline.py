"""The ordered core (decide → transform → sign → encrypt → audit) and the commit seam."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pcf_exchange.gateway import (
    CommitFailed,
    Gateway,
    GatewaySecrets,
    InMemoryTransferSink,
    KeyRing,
    Policy,
    approve,
    deny,
    open_message,
    prepare_transfer,
)
from pcf_exchange.gateway.audit import (
    ChainHead,
    EntryKind,
    InMemoryAuditStore,
    JsonLinesAuditStore,
    verify_audit_log,
)
from pcf_exchange.gateway.policy import CounterMetric, CounterState
from tests.gateway._factories import NOW, battery_record

OEM, PURPOSE = "eu-battery-oem-de", "battery-regulation-art7"


@pytest.fixture
def gateway(policy: Policy, secrets: GatewaySecrets, counters: CounterState) -> Gateway:
    return Gateway(policy, secrets, InMemoryTransferSink(), counters=counters)


def sink_of(gw: Gateway) -> InMemoryTransferSink:
    assert isinstance(gw.sink, InMemoryTransferSink)
    return gw.sink


def test_transfer_commits_message_and_audit_together(
    gateway: Gateway, recipient_keys: dict[str, X25519PrivateKey], keyring: KeyRing
) -> None:
    prepared = gateway.process(battery_record(), recipient=OEM, purpose=PURPOSE, now=NOW)
    sink = sink_of(gateway)
    assert sink.sent == [prepared.outbound]
    (entry,) = sink.audit.entries()
    assert entry.kind == EntryKind.TRANSFER.value
    assert prepared.outbound is not None
    assert (entry.message_id, entry.outbound_sha256) == (
        prepared.outbound.message_id,
        prepared.outbound.ciphertext_sha256,
    )
    assert entry.mechanisms[0]["kind"] == "exemption/international_trade"
    assert entry.policy_version == "2026.1.0" and entry.jurisdiction == "DE"
    assert sum(len(paths) for _, _, paths in entry.field_actions) == len(prepared.decision.fields)
    opened = open_message(
        prepared.outbound, recipient_id=OEM, private_key=recipient_keys[OEM], trusted=keyring
    )
    assert opened.envelope["decisionId"] == prepared.decision.decision_id
    assert opened.envelope["usagePolicies"]["cx-pcf-base"]["@type"] == "Set"
    assert gateway.head.size == 1


def test_audit_failure_means_nothing_goes_out(gateway: Gateway, counters: CounterState) -> None:
    sink = sink_of(gateway)
    assert isinstance(sink.audit, InMemoryAuditStore)
    before = gateway.head
    sink.audit.fail_next = OSError("disk full")
    with pytest.raises(CommitFailed, match=r"disk full.*1 outbound message\(s\) discarded"):
        gateway.process(battery_record(), recipient=OEM, purpose=PURPOSE, now=NOW)
    sink.audit.fail_next = OSError("disk full")  # a held record: no approval request survives
    with pytest.raises(CommitFailed):
        gateway.process(
            battery_record(),
            recipient="eu-notified-body-fr",
            purpose="battery-cf-verification",
            now=NOW,
        )
    assert sink.sent == [] and sink.audit.entries() == []
    assert gateway.head == before and gateway.counters == counters and gateway.pending == {}
    # the store recovers: the same record goes through, chained from the same head
    prepared = gateway.process(battery_record(), recipient=OEM, purpose=PURPOSE, now=NOW)
    assert sink.sent == [prepared.outbound] and prepared.entries[0].seq == 0


def test_unwritable_file_store_sends_nothing(
    policy: Policy, secrets: GatewaySecrets, counters: CounterState, tmp_path: Path
) -> None:
    store = JsonLinesAuditStore(tmp_path / "missing-dir" / "audit.jsonl")
    sink = InMemoryTransferSink(audit=store)
    gw = Gateway(policy, secrets, sink, counters=counters)
    with pytest.raises(CommitFailed, match="cannot append to audit log"):
        gw.process(battery_record(), recipient=OEM, purpose=PURPOSE, now=NOW)
    assert sink.sent == []


def test_blocked_record_is_audited_not_sent(gateway: Gateway) -> None:
    record = battery_record()
    record["pcf"]["undeclared"] = "x"
    prepared = gateway.process(record, recipient=OEM, purpose=PURPOSE, now=NOW)
    assert prepared.outbound is None and sink_of(gateway).sent == []
    (entry,) = sink_of(gateway).audit.entries()
    assert entry.kind == EntryKind.TRANSFER_BLOCKED.value
    assert "unknown_field|pcf.undeclared|deny-by-default" in entry.reasons


def test_blocked_never_reaches_the_transforms(
    policy: Policy, secrets: GatewaySecrets, counters: CounterState, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pcf_exchange.gateway._pipeline as pipeline

    def explode(*_: Any, **__: Any) -> Any:
        raise AssertionError("transform ran for a blocked record")

    monkeypatch.setattr(pipeline, "apply", explode)
    monkeypatch.setattr(pipeline, "OutboundBatch", explode)
    prepared = prepare_transfer(
        policy,
        battery_record(),
        recipient="nobody",
        purpose=PURPOSE,
        counters=counters,
        head=ChainHead(),
        secrets=secrets,
        now=NOW,
    )
    assert prepared.outbound is None and prepared.entries[0].kind == "transfer_blocked"


def test_hold_approve_release(
    gateway: Gateway, keyring: KeyRing, recipient_keys: dict[str, X25519PrivateKey]
) -> None:
    rid, purpose = "eu-notified-body-fr", "battery-cf-verification"
    held = gateway.process(battery_record(), recipient=rid, purpose=purpose, now=NOW)
    assert held.outbound is None and held.approval is not None
    assert gateway.pending == {held.approval.approval_id: held.approval}
    assert gateway.counters.count(CounterMetric.PI_INDIVIDUALS) == 0  # nothing left yet
    later = NOW + timedelta(hours=2)
    approved = approve(
        held.approval,
        approver="officer.zhang",
        reason="Art. 39 consent on file; verification audit",
        now=later,
    )
    gateway.record_approval(approved, now=later)
    released = gateway.process(
        battery_record(), recipient=rid, purpose=purpose, now=later, approval=approved
    )
    assert released.outbound is not None and gateway.pending == {}
    opened = open_message(
        released.outbound, recipient_id=rid, private_key=recipient_keys[rid], trusted=keyring
    )
    contact = opened.footprint["extensions"][0]["data"]["lineage"]["contacts"][0]
    assert contact["email"] == "li.wei@example.cn"
    assert opened.envelope["approvalId"] == approved.approval_id
    assert gateway.counters.count(CounterMetric.PI_INDIVIDUALS) == 1
    kinds = [e.kind for e in sink_of(gateway).audit.entries()]
    assert kinds == ["transfer_held", "approval_approved", "transfer"]
    cp = gateway.checkpoint(now=later)
    sink = sink_of(gateway)
    assert (
        verify_audit_log(sink.audit.entries(), sink.audit.checkpoints(), keyring).sealed_size == 3
    )
    assert cp.tree_size == 3


def test_denied_approval_blocks(gateway: Gateway) -> None:
    rid, purpose = "eu-notified-body-fr", "battery-cf-verification"
    held = gateway.process(battery_record(), recipient=rid, purpose=purpose, now=NOW)
    assert held.approval is not None
    denied = deny(held.approval, approver="officer.zhang", reason="no consent", now=NOW)
    gateway.record_approval(denied, now=NOW)
    again = gateway.process(
        battery_record(), recipient=rid, purpose=purpose, now=NOW, approval=denied
    )
    assert again.outbound is None
    last = sink_of(gateway).audit.entries()[-1]
    assert last.kind == "transfer_blocked" and "is denied" in (last.approval_reason or "")
    assert gateway.pending == {}


def test_many_transfers_form_one_verifiable_chain(gateway: Gateway, keyring: KeyRing) -> None:
    for i in range(12):
        rid, purpose = [(OEM, PURPOSE), ("uk-customer-gb", "pcf-exchange"), ("nobody", "x")][i % 3]
        gateway.process(
            battery_record(), recipient=rid, purpose=purpose, now=NOW + timedelta(seconds=i)
        )
        if i % 5 == 4:
            gateway.checkpoint(now=NOW + timedelta(seconds=i))
    sink = sink_of(gateway)
    result = verify_audit_log(sink.audit.entries(), sink.audit.checkpoints(), keyring)
    assert (result.entries, result.sealed_size, result.unsealed) == (12, 10, 2)
    assert len(sink.sent) == 8


def test_message_ids_are_random_version_4_uuids() -> None:
    import uuid

    from pcf_exchange.gateway._pipeline import new_message_id

    ids = [new_message_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_mechanism_dicts_are_fresh_per_entry() -> None:
    from datetime import date

    from pcf_exchange.gateway._pipeline import _mechanism_dicts
    from pcf_exchange.gateway.policy._model import Mechanism, MechanismType

    mechanisms = (Mechanism(MechanismType.STANDARD_CONTRACT, "SCC-1", date(2027, 1, 1)),)
    first, second = _mechanism_dicts(mechanisms), _mechanism_dicts(mechanisms)
    assert first == second == tuple(m.to_dict() for m in mechanisms)
    first[0]["reference"] = "changed"
    assert _mechanism_dicts(mechanisms)[0]["reference"] == "SCC-1"
    assert _mechanism_dicts(()) == ()


def test_a_transfer_that_adds_no_one_leaves_the_counters_as_they_are() -> None:
    from pcf_exchange.gateway.policy._counters import CounterDelta

    state = CounterState.empty(2026, b"s" * 32).apply(
        CounterDelta(2026, added={CounterMetric.PI_INDIVIDUALS: frozenset({"a"})})
    )
    assert state.apply(CounterDelta(2026)) is state
    nobody = CounterDelta(2026, added={CounterMetric.PI_INDIVIDUALS: frozenset()})
    assert state.apply(nobody) is state
    # a new year restarts counting even when the transfer adds no one
    assert state.apply(CounterDelta(2027)).count(CounterMetric.PI_INDIVIDUALS) == 0
    grown = state.apply(CounterDelta(2026, added={CounterMetric.PI_INDIVIDUALS: frozenset("b")}))
    assert grown.count(CounterMetric.PI_INDIVIDUALS) == 2
