"""Approvals for held transfers: pending → approved / denied / expired, with guards.

Each transition names who decided and why, and returns a new frozen :class:`Approval`; the pipeline
turns each one into an audit entry. An approval binds to the decision's hold fingerprint.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pcf_exchange.gateway._errors import ApprovalStateError
from pcf_exchange.gateway.policy._decision import Outcome, PolicyDecision, RecordRef

__all__ = [
    "Approval",
    "ApprovalState",
    "approve",
    "deny",
    "expire",
    "request_approval",
]

_NAMESPACE = uuid.UUID("0e1c6f0a-8d3b-4c4e-b2a4-3e8f8f6c9d21")


class ApprovalState(enum.Enum):
    PENDING = "pending"
    """Waiting for a compliance officer; the transfer is held."""
    APPROVED = "approved"
    """Released: the held fields go with their release action, until ``expires_at``."""
    DENIED = "denied"
    """Refused: the record does not go."""
    EXPIRED = "expired"
    """Nobody decided before ``expires_at``: as good as denied."""


@dataclass(frozen=True)
class Approval:
    """A request to release a held transfer, and (once decided) who decided what and why."""

    approval_id: str
    decision_id: str
    hold_fingerprint: str
    record_ref: RecordRef
    recipient_id: str
    purpose: str
    policy_version: str
    held: tuple[tuple[str, str], ...]
    """``(field path, rule id)`` of every held field."""
    reasons: tuple[str, ...]
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    state: ApprovalState = ApprovalState.PENDING
    approver: str | None = None
    reason: str | None = None
    decided_at: datetime | None = None
    mechanism_ref: str | None = None
    """E.g. the security-assessment approval number the approver relied on."""
    conditions: tuple[str, ...] = ()

    def problem_for(self, decision: PolicyDecision) -> str | None:
        """Why this approval cannot release *decision* (``None`` if it can)."""
        if self.state is not ApprovalState.APPROVED:
            return f"approval {self.approval_id} is {self.state.value}, not approved"
        if decision.hold_fingerprint != self.hold_fingerprint:
            return (
                f"approval {self.approval_id} was given for another record, recipient, purpose,"
                " policy or set of held fields"
            )
        if decision.decided_at >= self.expires_at:
            return f"approval {self.approval_id} expired at {self.expires_at.isoformat()}"
        return None


def _aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("'now' must be timezone-aware (got a naive datetime)")


def request_approval(
    decision: PolicyDecision,
    *,
    requested_by: str,
    now: datetime,
    ttl: timedelta = timedelta(days=7),
) -> Approval:
    """Open a pending approval for a held decision."""
    _aware(now)
    if decision.outcome is not Outcome.HELD or decision.hold_fingerprint is None:
        raise ApprovalStateError(
            f"decision {decision.decision_id} is {decision.outcome.value}; only a held decision"
            " needs an approval"
        )
    if not requested_by.strip():
        raise ApprovalStateError("an approval request needs the requester's identity")
    if ttl <= timedelta(0):
        raise ApprovalStateError(f"approval ttl must be positive (got {ttl})")
    return Approval(
        approval_id=str(uuid.uuid5(_NAMESPACE, f"{decision.decision_id}|{now.isoformat()}")),
        decision_id=decision.decision_id,
        hold_fingerprint=decision.hold_fingerprint,
        record_ref=decision.record_ref,
        recipient_id=decision.recipient_id,
        purpose=decision.purpose,
        policy_version=decision.policy_version,
        held=tuple((f.path, f.rule_id) for f in decision.held_fields),
        reasons=tuple(str(r) for r in decision.reasons),
        requested_by=requested_by,
        requested_at=now,
        expires_at=now + ttl,
    )


def _decide_guard(approval: Approval, verb: str, approver: str, reason: str, now: datetime) -> None:
    _aware(now)
    if approval.state is not ApprovalState.PENDING:
        raise ApprovalStateError(
            f"approval {approval.approval_id} is {approval.state.value}; only a pending approval"
            f" can be {verb}"
        )
    if now >= approval.expires_at:
        raise ApprovalStateError(
            f"approval {approval.approval_id} expired at {approval.expires_at.isoformat()}"
            f" (now {now.isoformat()}); it can only be marked expired"
        )
    if now < approval.requested_at:
        raise ApprovalStateError(
            f"approval {approval.approval_id} cannot be {verb} before it was requested"
            f" ({approval.requested_at.isoformat()})"
        )
    if not approver.strip():
        raise ApprovalStateError(
            f"approval {approval.approval_id}: the approver's identity is required"
        )
    if not reason.strip():
        raise ApprovalStateError(f"approval {approval.approval_id}: a reason is required")
    if approver == approval.requested_by:
        raise ApprovalStateError(
            f"approval {approval.approval_id}: '{approver}' requested it and cannot also decide it"
            " (four eyes)"
        )


def approve(
    approval: Approval,
    *,
    approver: str,
    reason: str,
    now: datetime,
    mechanism_ref: str | None = None,
    conditions: tuple[str, ...] = (),
) -> Approval:
    """pending → approved (before expiry, by someone other than the requester, with a reason)."""
    _decide_guard(approval, "approved", approver, reason, now)
    return replace(
        approval,
        state=ApprovalState.APPROVED,
        approver=approver,
        reason=reason,
        decided_at=now,
        mechanism_ref=mechanism_ref,
        conditions=conditions,
    )


def deny(approval: Approval, *, approver: str, reason: str, now: datetime) -> Approval:
    """pending → denied (before expiry, by someone other than the requester, with a reason)."""
    _decide_guard(approval, "denied", approver, reason, now)
    return replace(
        approval, state=ApprovalState.DENIED, approver=approver, reason=reason, decided_at=now
    )


def expire(approval: Approval, *, now: datetime) -> Approval:
    """pending → expired, once ``expires_at`` has passed."""
    _aware(now)
    if approval.state is not ApprovalState.PENDING:
        raise ApprovalStateError(
            f"approval {approval.approval_id} is {approval.state.value}; only a pending approval"
            " can expire"
        )
    if now < approval.expires_at:
        raise ApprovalStateError(
            f"approval {approval.approval_id} does not expire until"
            f" {approval.expires_at.isoformat()} (now {now.isoformat()})"
        )
    return replace(
        approval,
        state=ApprovalState.EXPIRED,
        reason=f"not decided before {approval.expires_at.isoformat()}",
        decided_at=now,
    )
