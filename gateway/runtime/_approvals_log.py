"""The approvals queue on ``pcf.approvals``: a book rebuilt from its events, and what they mean.

Events (``ApprovalEvent``, key = approval id), in topic order:

- ``requested``: the gateway held a transfer (same transaction as its ``transfer_held`` entry);
- ``decided``: a compliance officer approved or denied it (``pcfx approvals approve|deny``);
- ``resolved``: the gateway acted on it (released, blocked, denied or expired), in the same
  transaction as the audit entries that record it.

The gateway re-checks every decision with the core's guards (four eyes, reason, before expiry):
a decision that fails them is ignored and the approval expires.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway._approvals import Approval, approve, deny, expire
from gateway._errors import ApprovalStateError
from gateway.runtime._codec import HeldSource, approval_from_request

__all__ = ["ApprovalBook", "ApprovalRow", "RowStatus"]


class RowStatus(enum.Enum):
    PENDING = "pending"
    """Waiting for a decision."""
    APPROVED = "approved"
    """Approved; the gateway has not released it yet."""
    DENIED = "denied"
    """Denied; the gateway has not recorded it yet."""
    OVERDUE = "overdue"
    """Pending past its expiry; the gateway will record it as expired."""
    RELEASED = "released"
    BLOCKED = "blocked"
    """Approved, but the policy blocked the release (changed record, policy or expiry)."""
    CLOSED_DENIED = "closed_denied"
    EXPIRED = "expired"


_RESOLVED = {
    "released": RowStatus.RELEASED,
    "blocked": RowStatus.BLOCKED,
    "denied": RowStatus.CLOSED_DENIED,
    "expired": RowStatus.EXPIRED,
}


@dataclass
class ApprovalRow:
    approval: Approval
    """The approval as requested (pending)."""
    source: HeldSource
    decision: Mapping[str, Any] | None = None
    decided_at: str | None = None
    resolution: Mapping[str, Any] | None = None

    def status(self, now: datetime) -> RowStatus:
        if self.resolution is not None:
            return _RESOLVED.get(str(self.resolution["outcome"]), RowStatus.EXPIRED)
        if self.decision is not None:
            return RowStatus.APPROVED if self.decision["state"] == "approved" else RowStatus.DENIED
        if now >= self.approval.expires_at:
            return RowStatus.OVERDUE
        return RowStatus.PENDING

    def decided(self) -> Approval | None:
        """The approval moved to approved/denied, re-checked by the core's guards (else None)."""
        if self.decision is None or self.decided_at is None:
            return None
        d = self.decision
        try:
            at = datetime.fromisoformat(self.decided_at)
            if d["state"] == "approved":
                return approve(
                    self.approval,
                    approver=d["approver"],
                    reason=d["reason"],
                    now=at,
                    mechanism_ref=d.get("mechanismRef"),
                    conditions=tuple(d.get("conditions") or ()),
                )
            if d["state"] == "denied":
                return deny(self.approval, approver=d["approver"], reason=d["reason"], now=at)
        except (ApprovalStateError, KeyError, ValueError):
            return None
        return None

    def expired(self, now: datetime) -> Approval:
        return expire(self.approval, now=now)


class ApprovalBook:
    """Every approval seen on the topic, by id. ``problems`` lists events that made no sense."""

    def __init__(self) -> None:
        self.rows: dict[str, ApprovalRow] = {}
        self.problems: list[str] = []
        self._open: set[str] = set()
        """Ids not resolved yet (what the gateway scans each loop)."""

    def apply(self, datum: Mapping[str, Any]) -> None:
        approval_id = str(datum.get("approvalId"))
        event = datum.get("event")
        row = self.rows.get(approval_id)
        if event == "requested" and datum.get("request") is not None:
            if row is None:
                approval, source = approval_from_request(datum)
                self.rows[approval_id] = ApprovalRow(approval, source)
                self._open.add(approval_id)
            return
        if row is None:
            self.problems.append(f"{event} event for unknown approval {approval_id}")
            return
        if event == "decided" and datum.get("decision") is not None:
            if row.decision is None:  # the first decision counts; later ones are ignored
                row.decision = datum["decision"]
                row.decided_at = str(datum["at"])
            else:
                self.problems.append(f"approval {approval_id} was decided twice; first one kept")
        elif event == "resolved" and datum.get("resolution") is not None:
            row.resolution = datum["resolution"]
            self._open.discard(approval_id)
        else:
            self.problems.append(f"malformed {event} event for approval {approval_id}")

    @property
    def has_open(self) -> bool:
        return bool(self._open)

    def extend(self, data: Iterable[Mapping[str, Any]]) -> None:
        for datum in data:
            self.apply(datum)

    def actionable(
        self, log_ids: Iterable[str], now: datetime
    ) -> list[tuple[ApprovalRow, Approval]]:
        """Unresolved approvals of these chains that the gateway must act on now.

        Returns ``(row, approval)`` with the approval approved, denied or expired; a decision
        the guards refuse is dropped, and the row expires in its time.
        """
        wanted = set(log_ids)
        out: list[tuple[ApprovalRow, Approval]] = []
        for approval_id in sorted(self._open):
            row = self.rows[approval_id]
            if row.resolution is not None or row.source.log_id not in wanted:
                continue
            decided = row.decided()
            if decided is not None:
                out.append((row, decided))
            elif now >= row.approval.expires_at:
                out.append((row, row.expired(now)))
        return out
