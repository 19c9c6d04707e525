"""Approvals: pending → approved / denied / expired, guards with clear messages, audit entries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from pcf_exchange.gateway import (
    Approval,
    ApprovalState,
    ApprovalStateError,
    Policy,
    approve,
    deny,
    expire,
    prepare_approval_event,
    request_approval,
)
from pcf_exchange.gateway.audit import ChainHead, EntryKind
from pcf_exchange.gateway.policy import CounterState, evaluate
from tests.gateway._factories import NOW, battery_record

CBAM = ("eu-cbam-importer-nl", "cbam-reporting")


@pytest.fixture
def pending(policy: Policy, counters: CounterState) -> Approval:
    decision = evaluate(policy, battery_record(), *CBAM, counters, NOW)
    return request_approval(decision, requested_by="gateway", now=NOW, ttl=timedelta(hours=4))


def test_request(pending: Approval) -> None:
    assert pending.state is ApprovalState.PENDING
    assert pending.held == (
        ("extensions[0].data.lineage.facility.unLocode", "R10b-facility-locode-cbam"),
    )
    assert pending.expires_at == NOW + timedelta(hours=4)
    assert pending.reasons and "held for approval" in pending.reasons[0]


def test_only_held_decisions_need_approval(policy: Policy, counters: CounterState) -> None:
    decision = evaluate(
        policy, battery_record(), "eu-battery-oem-de", "battery-regulation-art7", counters, NOW
    )
    with pytest.raises(ApprovalStateError, match="is transformed; only a held decision"):
        request_approval(decision, requested_by="gateway", now=NOW)


def test_approve(pending: Approval) -> None:
    later = NOW + timedelta(hours=1)
    done = approve(
        pending,
        approver="officer.zhang",
        reason="CBAM report Q2, LOCODE only",
        now=later,
        mechanism_ref="SA-2026-009",
    )
    assert done.state is ApprovalState.APPROVED
    assert (done.approver, done.decided_at, done.mechanism_ref) == (
        "officer.zhang",
        later,
        "SA-2026-009",
    )
    assert pending.state is ApprovalState.PENDING  # frozen: a new object each transition


def test_deny(pending: Approval) -> None:
    done = deny(pending, approver="officer.zhang", reason="no CBAM goods", now=NOW)
    assert done.state is ApprovalState.DENIED and done.reason == "no CBAM goods"


def test_expire(pending: Approval) -> None:
    with pytest.raises(ApprovalStateError, match="does not expire until"):
        expire(pending, now=NOW + timedelta(hours=1))
    done = expire(pending, now=NOW + timedelta(hours=4))
    assert done.state is ApprovalState.EXPIRED and done.approver is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"approver": " ", "reason": "ok"}, "approver's identity is required"),
        ({"approver": "officer", "reason": ""}, "a reason is required"),
        ({"approver": "gateway", "reason": "ok"}, "four eyes"),
    ],
)
def test_guards(pending: Approval, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ApprovalStateError, match=message):
        approve(pending, now=NOW, **kwargs)


def test_no_decision_after_expiry(pending: Approval) -> None:
    with pytest.raises(ApprovalStateError, match=r"expired at .* it can only be marked expired"):
        approve(pending, approver="officer", reason="late", now=NOW + timedelta(hours=5))


def test_no_second_decision(pending: Approval) -> None:
    approved = approve(pending, approver="officer", reason="ok", now=NOW)
    transitions: list[Callable[[Approval], Approval]] = [
        lambda a: approve(a, approver="other", reason="again", now=NOW),
        lambda a: deny(a, approver="other", reason="changed my mind", now=NOW),
        lambda a: expire(a, now=NOW + timedelta(days=1)),
    ]
    for transition in transitions:
        with pytest.raises(ApprovalStateError, match="is approved; only a pending approval"):
            transition(approved)


def test_naive_times_are_refused(pending: Approval) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        approve(pending, approver="officer", reason="ok", now=datetime(2026, 5, 4))


def test_approval_binds_to_its_hold(
    policy: Policy, counters: CounterState, pending: Approval
) -> None:
    approved = approve(pending, approver="officer", reason="ok", now=NOW)
    same = evaluate(policy, battery_record(), *CBAM, counters, NOW + timedelta(minutes=5))
    assert approved.problem_for(same) is None  # a re-evaluation of the same hold
    other = battery_record()
    other["pcf"]["pcfExcludingBiogenicUptake"] = "70.00"
    changed = evaluate(policy, other, *CBAM, counters, NOW)
    assert "another record" in (approved.problem_for(changed) or "")
    late = evaluate(policy, battery_record(), *CBAM, counters, NOW + timedelta(hours=5))
    assert "expired" in (approved.problem_for(late) or "")
    assert "is pending" in (pending.problem_for(same) or "")


@pytest.mark.parametrize(
    ("transition", "kind"),
    [
        (
            lambda a: approve(a, approver="officer", reason="ok", now=NOW),
            EntryKind.APPROVAL_APPROVED,
        ),
        (lambda a: deny(a, approver="officer", reason="no", now=NOW), EntryKind.APPROVAL_DENIED),
        (lambda a: expire(a, now=NOW + timedelta(hours=4)), EntryKind.APPROVAL_EXPIRED),
    ],
)
def test_every_outcome_is_an_audit_entry(
    pending: Approval, transition: Any, kind: EntryKind
) -> None:
    decided = transition(pending)
    entry, head = prepare_approval_event(decided, head=ChainHead(), now=NOW)
    assert entry.kind == kind.value and head.size == 1
    assert entry.approval_id == pending.approval_id
    assert entry.approver == decided.approver and entry.approval_reason == decided.reason
    assert entry.field_actions == (
        ("hold", "R10b-facility-locode-cbam", ("extensions[0].data.lineage.facility.unLocode",)),
    )


def test_pending_is_not_an_outcome(pending: Approval) -> None:
    with pytest.raises(ValueError, match="still pending"):
        prepare_approval_event(pending, head=ChainHead(), now=NOW)
