"""The approvals queue on ``pcf.approvals``: a book rebuilt from its events, and what they mean.

Events (``ApprovalEvent``, key = approval id), in topic order:

- ``requested``: the gateway held a transfer (same transaction as its ``transfer_held`` entry);
- ``decided``: a compliance officer approved or denied it (``pcfx approvals approve|deny --key``),
  signed with the officer's registered key (:mod:`gateway._decision_signing`);
- ``refused``: the gateway did not trust a ``decided`` event (unsigned, unknown or revoked key,
  not an officer's, forged, for another request, or refused by the guards) and audited that, in
  the same transaction (``resolution.decisionOffset`` names the refused event);
- ``resolved``: the gateway acted on it (released, blocked, denied or expired), in the same
  transaction as the audit entries that record it.

Anyone who can write to the topic can append a ``decided`` event, so the book keeps every one as
a *candidate*, unjudged: it never lets a decision change a row's status. The gateway judges the
candidates in topic order when it acts (:meth:`ApprovalBook.actionable` with a *judge*): the
first one that verifies decides, each one before it that does not is refused and audited. A
forged decision therefore can neither release a held transfer nor block the real officer's
decision behind it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.gateway._approvals import Approval, expire
from pcf_exchange.gateway._codec import HeldSource, approval_from_request

__all__ = ["ApprovalBook", "ApprovalRow", "Candidate", "Judge", "Refusal", "RowStatus"]


class RowStatus(enum.Enum):
    PENDING = "pending"
    """Waiting for a decision the gateway trusts (untrusted candidates do not change it)."""
    APPROVED = "approved"
    """(Kept for readers of older listings; the book no longer reports it.)"""
    DENIED = "denied"
    """(Kept for readers of older listings; the book no longer reports it.)"""
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


@dataclass(frozen=True)
class Candidate:
    """One ``decided`` event, not trusted until the gateway judged it."""

    offset: int
    """Its offset on ``pcf.approvals`` (negative and unique per row when not read from Kafka)."""
    at: str
    """The event's ``at`` (part of what the officer signed)."""
    verdict: Mapping[str, Any]
    appended_at: datetime | None = None
    """When the broker appended it: the time the officer key's validity is judged at."""


@dataclass(frozen=True)
class Refusal:
    """A candidate the gateway did not trust, and why."""

    candidate: Candidate
    error: TrustError


Judge = Callable[["ApprovalRow", Candidate], "Approval | TrustError"]
"""Judges a candidate for its row: the approval it moves to (approved/denied), or why not."""


@dataclass
class ApprovalRow:
    approval: Approval
    """The approval as requested (pending)."""
    source: HeldSource
    candidates: list[Candidate] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    """Offset of a refused candidate -> what the gateway recorded about it."""
    resolution: Mapping[str, Any] | None = None

    def status(self, now: datetime) -> RowStatus:
        if self.resolution is not None:
            return _RESOLVED.get(str(self.resolution["outcome"]), RowStatus.EXPIRED)
        if now >= self.approval.expires_at:
            return RowStatus.OVERDUE
        return RowStatus.PENDING

    def untried(self) -> list[Candidate]:
        """The candidates not refused yet, in topic order."""
        return [c for c in self.candidates if c.offset not in self.refused]

    @property
    def decision(self) -> Mapping[str, Any] | None:
        """The first candidate not refused: what someone *claims* was decided (unverified)."""
        untried = self.untried()
        return untried[0].verdict if untried else None

    def expired(self, now: datetime) -> Approval:
        return expire(self.approval, now=now)


class ApprovalBook:
    """Every approval seen on the topic, by id. ``problems`` lists events that made no sense."""

    def __init__(self) -> None:
        self.rows: dict[str, ApprovalRow] = {}
        self.problems: list[str] = []
        self._open: set[str] = set()
        """Ids not resolved yet (what the gateway scans each loop)."""

    def apply(
        self,
        datum: Mapping[str, Any],
        *,
        offset: int | None = None,
        appended_at: datetime | None = None,
    ) -> None:
        """Fold one event; *offset* and *appended_at* are the record's on ``pcf.approvals``."""
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
            at = -(len(row.candidates) + 1) if offset is None else offset
            if all(c.offset != at for c in row.candidates):  # (a redelivery is the same one)
                row.candidates.append(
                    Candidate(at, str(datum["at"]), datum["decision"], appended_at)
                )
        elif event == "refused" and datum.get("resolution") is not None:
            resolution = datum["resolution"]
            refused = resolution.get("decisionOffset")
            if refused is None:
                self.problems.append(f"refused event for approval {approval_id} names no decision")
            else:
                row.refused[int(refused)] = str(resolution.get("detail") or "refused")
        elif event == "resolved" and datum.get("resolution") is not None:
            row.resolution = datum["resolution"]
            self._open.discard(approval_id)
        else:
            self.problems.append(f"malformed {event} event for approval {approval_id}")

    @property
    def has_open(self) -> bool:
        return bool(self._open)

    @property
    def pending(self) -> int:
        """How many approvals are not resolved yet (the ``pcfx_approvals_pending`` gauge)."""
        return len(self._open)

    def extend(self, data: Iterable[Mapping[str, Any]]) -> None:
        for datum in data:
            self.apply(datum)

    def actionable(
        self, log_ids: Iterable[str], now: datetime, judge: Judge
    ) -> list[tuple[ApprovalRow, Approval | None, list[Refusal]]]:
        """Unresolved approvals of these chains that the gateway must act on now.

        For each: the approval to act on (the first candidate *judge* accepts, approved or
        denied; else expired once overdue; else ``None``) and the candidates before it that
        *judge* refused (the gateway audits each). Rows with nothing to do are left out.
        """
        wanted = set(log_ids)
        out: list[tuple[ApprovalRow, Approval | None, list[Refusal]]] = []
        for approval_id in sorted(self._open):
            row = self.rows[approval_id]
            if row.resolution is not None or row.source.log_id not in wanted:
                continue
            decided: Approval | None = None
            refusals: list[Refusal] = []
            for candidate in row.untried():
                result = judge(row, candidate)
                if isinstance(result, TrustError):
                    refusals.append(Refusal(candidate, result))
                    continue
                decided = result
                break
            if decided is None and now >= row.approval.expires_at:
                decided = row.expired(now)
            if decided is not None or refusals:
                out.append((row, decided, refusals))
        return out
