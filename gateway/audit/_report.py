"""``pcfx audit report``: a self-contained HTML compliance report from the audit logs.

What went out, to whom, under which legal mechanism and policy version, what was done to each
field, how many transfers were held, released after approval, denied or blocked and why, who
approved and on what grounds, and whether every log verified. Pure: takes the logs and their
verifications, returns one HTML string (inline CSS and an inline SVG chart, no scripts, no
external resources). Every value is escaped: audit data is evidence, never markup.

The numbers come from the console's view model (:mod:`gateway.console._views`), so the report
and the console agree:

- a held transfer is one row for its whole life: approved and sent, it reads *released
  (approved by X)* with the approver and the reason, and it is counted once, as released;
- entries that fail verification (altered, forged, appended by another writer, or after the
  first bad entry of their log) are listed, marked *not proven*, and counted in no total;
- the per-field table folds paths that differ only in list indexes and groups them by parent,
  so 60 lineage paths are a few readable rows;
- ``since``/``until`` (inclusive days, UTC) narrow every section but the verification, which is
  always about the whole log.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Final

from pcf_exchange.gateway.audit import AuditEntry, AuditVerification
from pcf_exchange.gateway.console._svg import render_chart
from pcf_exchange.gateway.console._views import (
    COUNTED,
    Filters,
    Status,
    TransferView,
    build_transfers,
    field_groups,
    filter_transfers,
    first_unproven,
    timeline,
    totals,
)

__all__ = ["AUDIT_ENTRY_COLUMNS", "audit_entry_cells", "render_report"]

AUDIT_ENTRY_COLUMNS: Final = (
    "log",
    "seq",
    "recorded",
    "kind",
    "outcome",
    "recipient",
    "purpose",
    "footprint",
    "policy",
)
"""The columns an audit entry is listed under, here and in ``pcfx audit list`` (each adds its
own after them: the approval and proof here, the disclosed fields there)."""


def audit_entry_cells(log_id: str, entry: AuditEntry) -> tuple[str, ...]:
    """*entry*'s cells under :data:`AUDIT_ENTRY_COLUMNS` (empty where it has nothing)."""
    return (
        log_id,
        str(entry.seq),
        entry.recorded_at,
        entry.kind,
        entry.outcome or "",
        entry.recipient_id or "",
        entry.purpose or "",
        entry.record_pf_id or "",
        entry.policy_version or "",
    )


_INDEX = re.compile(r"\[\d+\]")
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1b1f24}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}.ok{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.num{text-align:right}code{font-size:.8rem}.muted{color:#57606a}
tr.not-proven td{background:#ffebe9}
svg.chart .grid{stroke:#d0d7de}svg.chart .tick,svg.chart .legend{font-size:10px;fill:#57606a}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    numeric: frozenset[int] = frozenset(),
    row_classes: Sequence[str] | None = None,
) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        (f'<tr class="{row_classes[r]}">' if row_classes and row_classes[r] else "<tr>")
        + "".join(
            f'<td class="num">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for r, row in enumerate(rows)
    )
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="muted">none</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _in(entry: AuditEntry, since: date | None, until: date | None) -> bool:
    try:
        day = datetime.fromisoformat(entry.recorded_at.replace("Z", "+00:00")).date()
    except ValueError:
        return True  # an unreadable time is shown rather than hidden
    return (since is None or day >= since) and (until is None or day <= until)


def render_report(
    logs: Mapping[str, Sequence[AuditEntry]],
    verifications: Mapping[str, AuditVerification],
    *,
    source: str,
    unreadable: Sequence[str] = (),
    generated_at: datetime | None = None,
    max_rows: int = 2000,
    since: date | None = None,
    until: date | None = None,
    rule_basis: Mapping[str, str] | None = None,
) -> str:
    """The report as one HTML document (see the module docstring)."""
    generated = (generated_at or datetime.now(UTC)).isoformat(timespec="seconds")
    period = Filters(since=since, until=until)
    rows = filter_transfers(build_transfers(logs, verifications), period)
    counted = [r for r in rows if r.counted]
    total = totals(rows)
    intact = bool(verifications) and all(v.ok for v in verifications.values()) and not unreadable
    span = (
        f" Period {since.isoformat() if since else 'start'} to"
        f" {until.isoformat() if until else 'end'} (UTC days, inclusive)."
        if since or until
        else ""
    )
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy"'
        " content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        "<title>pcf-exchange gateway compliance report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>pcf-exchange gateway: compliance report</h1>",
        f'<p class="muted">Generated {_e(generated)} from {_e(source)}.{_e(span)}</p>',
        "<h2>Verification</h2>",
        f'<p class="{"ok" if intact else "fail"}">'
        + (
            "Every audit log verified: chain intact, every checkpoint valid."
            if intact
            else "NOT INTACT: see below. Entries that fail verification are marked"
            " 'not proven' and are not counted in any total."
        )
        + "</p>",
    ]
    parts.append(
        _table(
            [
                "log",
                "entries",
                "checkpoints",
                "sealed through",
                "unsealed",
                "status",
                "first bad entry",
                "last signed checkpoint",
                "finding",
            ],
            [
                (
                    log_id,
                    v.entries,
                    v.checkpoints,
                    v.sealed_size,
                    v.unsealed,
                    "OK" if v.ok else "FAIL",
                    "" if v.first_bad_entry is None else v.first_bad_entry,
                    ""
                    if v.anchor is None
                    else f"size {v.anchor.tree_size}, {v.anchor.issued_at}, {v.anchor.key_id}",
                    "" if v.ok else str(v.findings[0]),
                )
                for log_id, v in sorted(verifications.items())
            ],
            frozenset({1, 2, 3, 4}),
        )
    )
    if unreadable:
        parts.append('<p class="fail">Unreadable records:</p><ul>')
        parts += [f"<li><code>{_e(u)}</code></li>" for u in unreadable[:100]]
        parts.append("</ul>")

    # summary: proven transfers only
    parts.append("<h2>Summary</h2>")
    summary: list[tuple[str, int]] = [("transfers that went out", total.went_out)]
    summary += [(f"transfers {s.value}", total.by_status[s]) for s in COUNTED]
    summary.append(("entries not proven (not counted)", total.not_proven))
    approvals = Counter(r.decision.kind for r in counted if r.decision is not None)
    summary += [
        (f"approvals: {kind.replace('approval_', '')}", n) for kind, n in sorted(approvals.items())
    ]
    parts.append(_table(["what", "count"], summary, frozenset({1})))
    parts.append(render_chart(timeline(rows, by="decision", since=since, until=until)))

    # per recipient
    recipients: dict[str, dict[str, object]] = {}
    mechanisms: Counter[tuple[str, str, str, str]] = Counter()
    versions: Counter[tuple[str, str, str]] = Counter()
    for row in counted:
        e = row.entry
        if e.recipient_id is None:
            continue
        line = recipients.setdefault(
            e.recipient_id,
            {
                "jurisdiction": e.jurisdiction,
                "destination": e.destination,
                "type": e.recipient_type,
                "purposes": set(),
                "counts": Counter(),
            },
        )
        counts = line["counts"]
        purposes = line["purposes"]
        assert isinstance(counts, Counter) and isinstance(purposes, set)
        counts[row.status] += 1
        purposes.add(e.purpose or "")
        sent = row.sent_entry
        if sent is not None:
            for m in sent.mechanisms:
                mechanisms[
                    (
                        e.recipient_id,
                        str(m.get("kind")),
                        str(m.get("reference")),
                        str(m.get("expires")),
                    )
                ] += 1
            versions[
                (e.recipient_id, sent.policy_version or "", (sent.policy_digest or "")[:16])
            ] += 1
    parts.append("<h2>Recipients (proven transfers)</h2>")
    parts.append(
        _table(
            ["recipient", "jurisdiction", "destination", "type", "purposes"]
            + [s.value for s in COUNTED],
            [
                (
                    rid,
                    r["jurisdiction"],
                    r["destination"],
                    r["type"],
                    ", ".join(sorted(r["purposes"])),  # type: ignore[call-overload]
                    *(r["counts"][s] for s in COUNTED),  # type: ignore[index]
                )
                for rid, r in sorted(recipients.items())
            ],
            frozenset(range(5, 5 + len(COUNTED))),
        )
    )
    parts.append("<h2>Legal mechanisms relied on (transfers that went out)</h2>")
    parts.append(
        _table(
            ["recipient", "mechanism", "reference", "expires", "transfers"],
            [(*k, n) for k, n in sorted(mechanisms.items())],
            frozenset({4}),
        )
    )
    parts.append("<h2>Policy versions (transfers that went out)</h2>")
    parts.append(
        _table(
            ["recipient", "policy version", "policy digest (prefix)", "transfers"],
            [(*k, n) for k, n in sorted(versions.items())],
            frozenset({3}),
        )
    )

    # per field, grouped
    fields: Counter[tuple[str, str, str, str, str, str]] = Counter()
    for row in counted:
        sent = row.sent_entry
        if sent is None:
            continue
        for g in field_groups(sent, rule_basis, approved=row.status is Status.RELEASED):
            key = (g.category, g.action, g.rule, g.basis, g.parent or "(top level)")
            fields[(*key, ", ".join(g.leaves))] += 1
    parts.append("<h2>Per-field actions (transfers that went out; list indexes folded)</h2>")
    parts.append(
        _table(
            ["what", "action", "rule", "legal basis", "where", "fields", "transfers"],
            [(*k, n) for k, n in sorted(fields.items())],
            frozenset({6}),
        )
    )

    reasons: Counter[tuple[str, str]] = Counter()
    for row in counted:
        if row.status in (Status.BLOCKED, Status.HELD, Status.DENIED, Status.EXPIRED):
            for reason in (row.release or row.entry).reasons:
                code, _, rest = reason.partition("|")
                path, _, rule = rest.partition("|")
                reasons[(row.status.value, f"{code} {_INDEX.sub('[*]', path)} {rule}".strip())] += 1
    parts.append("<h2>Why transfers were held, denied or blocked</h2>")
    parts.append(
        _table(
            ["decision", "reason (code, field, rule)", "count"],
            [(*k, n) for k, n in sorted(reasons.items())],
            frozenset({2}),
        )
    )

    parts.append(f"<h2>Transfers ({len(rows)}; newest {min(len(rows), max_rows)} shown)</h2>")
    shown: list[TransferView] = rows[-max_rows:]
    parts.append(
        _table(
            [
                "transfer",
                "recorded",
                "recipient",
                "purpose",
                "footprint",
                "decision",
                "approver",
                "approval reason",
                "mechanism",
                "not proven because",
            ],
            [
                (
                    r.key,
                    r.entry.recorded_at,
                    r.entry.recipient_id,
                    r.entry.purpose,
                    r.entry.record_pf_id,
                    r.label,
                    r.approver or "",
                    r.approval_reason or "",
                    "; ".join(
                        f"{m.get('kind')} {m.get('reference')}"
                        for m in (r.sent_entry or r.entry).mechanisms
                    ),
                    r.problem or "",
                )
                for r in shown
            ],
            row_classes=["" if r.counted else "not-proven" for r in shown],
        )
    )

    unproven = {log_id: first_unproven(v) for log_id, v in verifications.items()}
    all_entries = [
        (log_id, e) for log_id in sorted(logs) for e in logs[log_id] if _in(e, since, until)
    ]
    tail = all_entries[-max_rows:]
    parts.append(f"<h2>Audit entries (last {len(tail)} of {len(all_entries)})</h2>")
    parts.append(
        _table(
            [
                *AUDIT_ENTRY_COLUMNS,
                "approval",
                "approver",
                "approval reason",
                "outbound sha256",
                "proven",
            ],
            [
                (
                    *audit_entry_cells(log_id, e),
                    (e.approval_id or "")[:8],
                    e.approver,
                    e.approval_reason,
                    (e.outbound_sha256 or "")[:16],
                    "yes" if _proven(log_id, e, unproven) else "NO",
                )
                for log_id, e in tail
            ],
            frozenset({1}),
            row_classes=[
                "" if _proven(log_id, e, unproven) else "not-proven" for log_id, e in tail
            ],
        )
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def _proven(log_id: str, entry: AuditEntry, first_bad: Mapping[str, int | None]) -> bool:
    if log_id not in first_bad:
        return False
    bad = first_bad[log_id]
    return bad is None or entry.seq < bad
