"""What the compliance console and the offline report show, computed from the audit logs. Pure.

The audit log is a list of events per chain; an officer thinks in *transfers*. This module folds
the events into :class:`TransferView` rows, one per transfer decision, and everything the pages
draw from them (totals, the timeline, the field-by-field table). Both the console
(``gateway.console``) and ``pcfx audit report`` (``gateway.audit._report``) use it, so the two
never disagree.

How entries become transfers:

1. **Only proven entries count.** An entry is *proven* when its log's verification
   (:func:`gateway.audit.check_audit_log`, strict: seals and checkpoints) names no bad entry at
   or before it. Every later entry, and every entry a finding names, is *not proven*: it is
   shown (marked, with the finding) and never counted in a total, never linked to another.
   A forged recipient appended to a log therefore cannot inflate what "went out".
2. **A held transfer is one row for its whole life.** ``transfer_held`` opens approval *A*;
   ``approval_approved|denied|expired`` with *A* records the officer's decision (approver,
   reason); the ``transfer`` (or ``transfer_blocked``) entry with *A* is the release. The row's
   status is the latest of those: *released (approved by X)*, *denied by X*, *expired*,
   *blocked after approval*, or *held*. The release is not a second transfer.
3. A ``transfer`` without an approval is *sent*; a ``transfer_blocked`` without one is *blocked*.

Field-by-field: an entry's ``fieldActions`` list every path with its action and rule. Paths
differ only in list indexes (``lineage[0].supplierId``, ``lineage[1].supplierId``, ...), so
:func:`field_groups` folds them by shape (``[*]``) and parent, and names the category an
officer asks about: *sent*, *transformed* or *withheld*.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from pcf_exchange.contracts.errors import ValidationFailed, Violation
from pcf_exchange.gateway._sealing import KeyRing
from pcf_exchange.gateway.audit import (
    AuditEntry,
    AuditVerification,
    Checkpoint,
    EntryKind,
    Finding,
    check_audit_log,
)

__all__ = [
    "ChainStatus",
    "Chart",
    "FieldGroup",
    "Filters",
    "Series",
    "Status",
    "Totals",
    "TransferView",
    "build_transfers",
    "chain_statuses",
    "field_groups",
    "filter_transfers",
    "first_unproven",
    "timeline",
    "totals",
    "verify_logs",
]

_INDEX = re.compile(r"\[\d+\]")

_SENT = EntryKind.TRANSFER.value
_BLOCKED = EntryKind.TRANSFER_BLOCKED.value
_HELD = EntryKind.TRANSFER_HELD.value
_DECISIONS = {
    EntryKind.APPROVAL_APPROVED.value,
    EntryKind.APPROVAL_DENIED.value,
    EntryKind.APPROVAL_EXPIRED.value,
}
_REFUSED = EntryKind.APPROVAL_REFUSED.value
_TRANSFER_KINDS = {_SENT, _BLOCKED, _HELD}


class Status(enum.Enum):
    """Where a transfer stands. Declared in the order pages list them."""

    SENT = "sent"
    RELEASED = "released"
    """Held, approved by an officer, then sent."""
    HELD = "held"
    """Waiting for an officer (or approved, with the release still to come)."""
    BLOCKED = "blocked"
    DENIED = "denied"
    EXPIRED = "expired"
    NOT_PROVEN = "not_proven"
    """The entry fails verification (forged, altered, after the first bad entry): never counted."""

    @property
    def went_out(self) -> bool:
        return self in (Status.SENT, Status.RELEASED)


COUNTED = tuple(s for s in Status if s is not Status.NOT_PROVEN)
"""The statuses totals are made of."""


@dataclass(frozen=True)
class TransferView:
    """One transfer decision and what became of it (see the module docstring)."""

    log_id: str
    entry: AuditEntry
    """The entry that opened it: ``transfer``, ``transfer_blocked`` or ``transfer_held``."""
    status: Status
    label: str
    """What an officer reads: ``sent (transformed)``, ``released (approved by alice)``, ..."""
    decision: AuditEntry | None = None
    """The officer's decision entry (approved, denied, expired), for a held transfer."""
    release: AuditEntry | None = None
    """The ``transfer``/``transfer_blocked`` entry that acted on the approval."""
    history: tuple[AuditEntry, ...] = ()
    """Every proven entry of this transfer, in log order (held, refusals, decision, release)."""
    problem: str | None = None
    """Why the row is not proven (the finding), else ``None``."""

    @property
    def key(self) -> str:
        """``LOG:SEQ`` of the opening entry: the transfer's id in URLs and tables."""
        return f"{self.log_id}:{self.entry.seq}"

    @property
    def short_id(self) -> str:
        """The first 8 characters of the decision id (or the key when there is none)."""
        return (self.entry.decision_id or self.key)[:8]

    @property
    def counted(self) -> bool:
        return self.status is not Status.NOT_PROVEN

    @property
    def approver(self) -> str | None:
        return self.decision.approver if self.decision is not None else None

    @property
    def approval_reason(self) -> str | None:
        return self.decision.approval_reason if self.decision is not None else None

    @property
    def recorded_at(self) -> datetime:
        return _parse_time(self.entry.recorded_at)

    @property
    def sent_entry(self) -> AuditEntry | None:
        """The entry whose field actions describe what went out (the release, for a held one)."""
        if self.release is not None and self.release.kind == _SENT:
            return self.release
        return self.entry if self.entry.kind == _SENT else None


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def first_unproven(verification: AuditVerification | None) -> int | None:
    """The lowest sequence number of a log that is not proven (``None``: all are).

    The verification's first bad entry; when its findings name no entry (a forged checkpoint,
    a pin), only what a valid checkpoint covers is proven; without a verification, nothing.
    """
    if verification is None:
        return 0
    if not verification.ok and verification.first_bad_entry is None:
        return verification.sealed_size
    return verification.first_bad_entry


def _unproven(verification: AuditVerification | None) -> tuple[int | None, dict[int, Finding]]:
    """:func:`first_unproven`, and the first finding per entry the findings name."""
    named: dict[int, Finding] = {}
    for finding in verification.findings if verification is not None else ():
        if finding.entry is not None:
            named.setdefault(finding.entry, finding)
    return first_unproven(verification), named


def _why(seq: int, first_bad: int | None, named: Mapping[int, Finding]) -> str:
    own = named.get(seq)
    if own is not None:
        return f"fails verification: {own.message}"
    return f"not proven: follows entry {first_bad}, the first entry that fails verification"


def build_transfers(
    logs: Mapping[str, Sequence[AuditEntry]],
    verifications: Mapping[str, AuditVerification],
) -> list[TransferView]:
    """Every transfer in *logs*, oldest first (see the module docstring for the rules).

    A log without a verification is not proven at all (nothing in it counts).
    """
    proven: list[tuple[str, AuditEntry]] = []
    rows: list[TransferView] = []
    for log_id in sorted(logs):
        first_bad, named = _unproven(verifications.get(log_id))
        for entry in logs[log_id]:
            if first_bad is None or entry.seq < first_bad:
                proven.append((log_id, entry))
            elif entry.kind in _TRANSFER_KINDS:
                rows.append(
                    TransferView(
                        log_id,
                        entry,
                        Status.NOT_PROVEN,
                        f"NOT PROVEN: {entry.kind} ({entry.outcome})",
                        problem=_why(entry.seq, first_bad, named),
                    )
                )
    # the proven entries about each approval, in log order
    about: dict[str, list[AuditEntry]] = {}
    for _, entry in proven:
        if entry.approval_id is not None:
            about.setdefault(entry.approval_id, []).append(entry)
    opened = {e.approval_id for _, e in proven if e.kind == _HELD and e.approval_id is not None}
    for log_id, entry in proven:
        if entry.kind == _HELD:
            rows.append(_held_row(log_id, entry, about.get(entry.approval_id or "", [])))
        elif entry.kind == _SENT and entry.approval_id not in opened:
            via = f"; approval {entry.approval_id[:8]}" if entry.approval_id else ""
            rows.append(
                TransferView(
                    log_id, entry, Status.SENT, f"sent ({entry.outcome}{via})", history=(entry,)
                )
            )
        elif entry.kind == _BLOCKED and entry.approval_id not in opened:
            rows.append(TransferView(log_id, entry, Status.BLOCKED, "blocked", history=(entry,)))
    rows.sort(key=lambda r: (r.recorded_at, r.log_id, r.entry.seq))
    return rows


def _held_row(log_id: str, held: AuditEntry, events: Sequence[AuditEntry]) -> TransferView:
    later = [e for e in events if e is not held]
    decision = next((e for e in reversed(later) if e.kind in _DECISIONS), None)
    release = next((e for e in reversed(later) if e.kind in (_SENT, _BLOCKED)), None)
    by = decision.approver if decision is not None and decision.approver else "an officer"
    history = (held, *later)
    if release is not None and release.kind == _SENT:
        return TransferView(
            log_id,
            held,
            Status.RELEASED,
            f"released (approved by {by})",
            decision,
            release,
            history,
        )
    if release is not None:
        why = release.approval_reason or "the policy blocked the release"
        return TransferView(
            log_id,
            held,
            Status.BLOCKED,
            f"blocked after approval by {by}: {why}",
            decision,
            release,
            history,
        )
    if decision is not None and decision.kind == EntryKind.APPROVAL_DENIED.value:
        return TransferView(log_id, held, Status.DENIED, f"denied by {by}", decision, None, history)
    if decision is not None and decision.kind == EntryKind.APPROVAL_EXPIRED.value:
        return TransferView(
            log_id,
            held,
            Status.EXPIRED,
            "expired (nobody decided in time)",
            decision,
            None,
            history,
        )
    if decision is not None:
        return TransferView(
            log_id,
            held,
            Status.HELD,
            f"approved by {by}; release pending",
            decision,
            None,
            history,
        )
    return TransferView(log_id, held, Status.HELD, "held for approval", None, None, history)


# ----------------------------------------------------------------------------------------------
# filters


def _day(name: str, value: str | None) -> date | None:
    if value is None or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValidationFailed(
            [Violation.of(name, "date", "must be a date YYYY-MM-DD", value)], subject="filter"
        ) from None


@dataclass(frozen=True)
class Filters:
    """What the officer narrowed the view to; ``None`` means "any". Dates are inclusive, UTC."""

    recipient: str | None = None
    jurisdiction: str | None = None
    product: str | None = None
    """A footprint id, or part of one."""
    decision: Status | None = None
    since: date | None = None
    until: date | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str | None]) -> Filters:
        """From query parameters (``recipient``, ``jurisdiction``, ``product``, ``decision``,
        ``since``, ``until``); empty values mean "any". Raises :class:`ValidationFailed` naming
        every bad parameter, what was expected and what came in."""
        problems: list[Violation] = []

        def text(name: str) -> str | None:
            value = query.get(name)
            return value.strip() if value and value.strip() else None

        decision: Status | None = None
        raw = text("decision")
        if raw is not None:
            try:
                decision = Status(raw)
            except ValueError:
                problems.append(
                    Violation.of(
                        "decision",
                        "enum",
                        f"must be one of {', '.join(s.value for s in Status)}",
                        raw,
                    )
                )
        days: dict[str, date | None] = {}
        for name in ("since", "until"):
            try:
                days[name] = _day(name, query.get(name))
            except ValidationFailed as exc:
                problems.extend(exc.violations)
                days[name] = None
        since, until = days["since"], days["until"]
        if since is not None and until is not None and until < since:
            problems.append(
                Violation.of("until", "range", f"must not be before since ({since})", str(until))
            )
        if problems:
            raise ValidationFailed(problems, subject="filter")
        return cls(
            recipient=text("recipient"),
            jurisdiction=text("jurisdiction"),
            product=text("product"),
            decision=decision,
            since=since,
            until=until,
        )

    def query(self) -> dict[str, str]:
        """The non-empty parameters, for links that keep the filter."""
        values = {
            "recipient": self.recipient,
            "jurisdiction": self.jurisdiction,
            "product": self.product,
            "decision": self.decision.value if self.decision else None,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }
        return {k: v for k, v in values.items() if v is not None}

    def matches(self, row: TransferView) -> bool:
        e = row.entry
        day = row.recorded_at.astimezone(UTC).date()
        return (
            (self.recipient is None or e.recipient_id == self.recipient)
            and (self.jurisdiction is None or e.jurisdiction == self.jurisdiction)
            and (self.product is None or self.product in (e.record_pf_id or ""))
            and (self.decision is None or row.status is self.decision)
            and (self.since is None or day >= self.since)
            and (self.until is None or day <= self.until)
        )


def filter_transfers(rows: Iterable[TransferView], filters: Filters) -> list[TransferView]:
    return [r for r in rows if filters.matches(r)]


# ----------------------------------------------------------------------------------------------
# totals and the timeline


@dataclass(frozen=True)
class Totals:
    """Counts of proven transfers by status, and how many rows were not proven (not counted)."""

    by_status: Mapping[Status, int]
    not_proven: int

    @property
    def went_out(self) -> int:
        return self.by_status.get(Status.SENT, 0) + self.by_status.get(Status.RELEASED, 0)

    @property
    def counted(self) -> int:
        return sum(self.by_status.values())


def totals(rows: Iterable[TransferView]) -> Totals:
    counts: Counter[Status] = Counter()
    not_proven = 0
    for row in rows:
        if row.counted:
            counts[row.status] += 1
        else:
            not_proven += 1
    return Totals({s: counts.get(s, 0) for s in COUNTED}, not_proven)


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[int, ...]


@dataclass(frozen=True)
class Chart:
    """Stacked bars: one bucket (a day) per bar, one series per stack layer."""

    title: str
    buckets: tuple[str, ...]
    series: tuple[Series, ...]

    @property
    def peak(self) -> int:
        return max(
            (sum(col) for col in zip(*(s.values for s in self.series), strict=True)), default=0
        )


def timeline(
    rows: Sequence[TransferView], *, by: str, since: date | None = None, until: date | None = None
) -> Chart:
    """Proven transfers per day, stacked by ``by="decision"`` (status) or ``"destination"``
    (the recipient's jurisdiction, a country code; the destination group when none is recorded).

    Days run from *since* (else the first transfer) to *until* (else the last), at most 366.
    Only non-empty series are kept; not-proven rows are never drawn.
    """
    counted = [r for r in rows if r.counted]
    days = [r.recorded_at.astimezone(UTC).date() for r in counted]
    if not days and (since is None or until is None):
        return Chart(_title(by), (), ())
    start = since or min(days)
    end = until or max(days)
    if (end - start).days > 365:
        start = end - timedelta(days=365)
    buckets = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    index = {d: i for i, d in enumerate(buckets)}
    layers: dict[str, list[int]] = {}
    order: list[str] = []
    if by == "decision":
        order = [s.value for s in COUNTED]
    for row, day in zip(counted, days, strict=True):
        if day not in index:
            continue
        name = (
            row.status.value
            if by == "decision"
            else (row.entry.jurisdiction or row.entry.destination or "unknown")
        )
        if name not in layers:
            layers[name] = [0] * len(buckets)
            if name not in order:
                order.append(name)
        layers[name][index[day]] += 1
    series = tuple(Series(n, tuple(layers[n])) for n in order if n in layers)
    return Chart(_title(by), tuple(d.isoformat() for d in buckets), series)


def _title(by: str) -> str:
    if by not in ("decision", "destination"):
        raise ValueError(f"timeline 'by' must be 'decision' or 'destination' (got {by!r})")
    return f"Transfers per day by {by}"


# ----------------------------------------------------------------------------------------------
# field by field

_CATEGORY = {
    "allow": "sent",
    "allow_with_usage_policy": "sent",
    "encrypt": "sent",
    "generalise": "transformed",
    "pseudonymise": "transformed",
    "hold": "withheld",
    "redact": "withheld",
    "block": "withheld",
}
_CATEGORY_ORDER = {"sent": 0, "sent on approval": 1, "transformed": 2, "withheld": 3}


@dataclass(frozen=True)
class FieldGroup:
    """Fields with one action under one rule, folded by parent path (indexes as ``[*]``)."""

    category: str
    """``sent``, ``sent on approval``, ``transformed`` or ``withheld`` (or ``other`` for an
    action this build does not know)."""
    action: str
    rule: str
    basis: str
    """The rule's legal basis from the policy, when the caller knows it."""
    parent: str
    """``extensions[*].data.lineage[*]``; empty for top-level fields."""
    leaves: tuple[str, ...]
    paths: int
    """How many concrete paths the group stands for."""
    examples: tuple[str, ...] = field(default=())
    """Up to three concrete paths, for the officer who wants to see one."""


def _split(shape: str) -> tuple[str, str]:
    parent, dot, leaf = shape.rpartition(".")
    if not dot:
        return "", shape
    return parent, leaf


def field_groups(
    entry: AuditEntry, basis: Mapping[str, str] | None = None, *, approved: bool = False
) -> list[FieldGroup]:
    """The entry's field actions, grouped for reading (see the module docstring).

    With *approved* (the entry released a held transfer), ``hold`` fields went out on the
    officer's approval: their category is ``sent on approval``, not ``withheld``.
    """
    found: dict[tuple[str, str, str], tuple[set[str], list[str]]] = {}
    for action, rule, paths in entry.field_actions:
        for path in paths:
            parent, leaf = _split(_INDEX.sub("[*]", path))
            leaves, concrete = found.setdefault((action, rule, parent), (set(), []))
            leaves.add(leaf)
            concrete.append(path)
    groups = [
        FieldGroup(
            category=(
                "sent on approval"
                if approved and action == "hold"
                else _CATEGORY.get(action, "other")
            ),
            action=action,
            rule=rule,
            basis=(basis or {}).get(rule, ""),
            parent=parent,
            leaves=tuple(sorted(leaves)),
            paths=len(concrete),
            examples=tuple(concrete[:3]),
        )
        for (action, rule, parent), (leaves, concrete) in found.items()
    ]
    groups.sort(key=lambda g: (_CATEGORY_ORDER.get(g.category, 4), g.parent, g.action, g.rule))
    return groups


# ----------------------------------------------------------------------------------------------
# the chains


@dataclass(frozen=True)
class ChainStatus:
    """One log's verification, as the status panel shows it."""

    log_id: str
    verification: AuditVerification

    @property
    def ok(self) -> bool:
        return self.verification.ok

    @property
    def last_checkpoint(self) -> str:
        anchor = self.verification.anchor
        if anchor is None:
            return "none"
        return (
            f"size {anchor.tree_size}, root {anchor.root_hash[:16]}…, signed"
            f" {anchor.issued_at} by {anchor.key_id}"
        )

    @property
    def finding(self) -> str:
        return "" if self.ok else str(self.verification.findings[0])


def chain_statuses(verifications: Mapping[str, AuditVerification]) -> list[ChainStatus]:
    return [ChainStatus(log_id, v) for log_id, v in sorted(verifications.items())]


def verify_logs(
    entries: Mapping[str, Sequence[AuditEntry]],
    checkpoints: Mapping[str, Sequence[Checkpoint]],
    keys: KeyRing,
) -> dict[str, AuditVerification]:
    """Every log checked as ``pcfx audit verify --strict`` does: chain, checkpoints, and every
    entry vouched for by a checkpoint or a batch seal of a trusted gateway key."""
    return {
        log_id: check_audit_log(
            entries.get(log_id, []),
            checkpoints.get(log_id, []),
            keys,
            log_id=log_id,
            require_vouched=True,
        )
        for log_id in sorted(set(entries) | set(checkpoints))
    }
