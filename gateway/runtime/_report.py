"""``pcfx audit report``: a self-contained HTML compliance report from the audit logs.

What went out, to whom, under which legal mechanism and policy version, what was done to each
field, how many transfers were held or blocked and why, and whether every log verified. Pure:
takes the logs and their verifications, returns one HTML string (inline CSS, no scripts, no
external resources). Every value is escaped: audit data is evidence, never markup.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from gateway.audit import AuditEntry, AuditVerification, EntryKind

__all__ = ["render_report"]

_INDEX = re.compile(r"\[\d+\]")
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1b1f24}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}.ok{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.num{text-align:right}code{font-size:.8rem}.muted{color:#57606a}
"""

_SENT = EntryKind.TRANSFER.value
_BLOCKED = EntryKind.TRANSFER_BLOCKED.value
_HELD = EntryKind.TRANSFER_HELD.value


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], numeric: frozenset[int] = frozenset()
) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="muted">none</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(
    logs: Mapping[str, Sequence[AuditEntry]],
    verifications: Mapping[str, AuditVerification],
    *,
    source: str,
    unreadable: Sequence[str] = (),
    generated_at: datetime | None = None,
    max_rows: int = 2000,
) -> str:
    """The report as one HTML document (see the module docstring)."""
    generated = (generated_at or datetime.now(UTC)).isoformat(timespec="seconds")
    all_entries = [(log_id, e) for log_id in sorted(logs) for e in logs[log_id]]
    kinds = Counter(e.kind for _, e in all_entries)
    intact = all(v.ok for v in verifications.values()) and not unreadable
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy"'
        " content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        "<title>pcf-exchange gateway compliance report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>pcf-exchange gateway: compliance report</h1>",
        f'<p class="muted">Generated {_e(generated)} from {_e(source)}.</p>',
        "<h2>Verification</h2>",
        f'<p class="{"ok" if intact else "fail"}">'
        + (
            "Every audit log verified: chain intact, every checkpoint valid."
            if intact
            else "NOT INTACT: see below."
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

    parts.append("<h2>Summary</h2>")
    parts.append(
        _table(
            ["what", "count"],
            [
                ("transfers sent", kinds.get(_SENT, 0)),
                ("transfers blocked", kinds.get(_BLOCKED, 0)),
                ("transfers held for approval", kinds.get(_HELD, 0)),
                ("approvals approved", kinds.get(EntryKind.APPROVAL_APPROVED.value, 0)),
                ("approvals denied", kinds.get(EntryKind.APPROVAL_DENIED.value, 0)),
                ("approvals expired", kinds.get(EntryKind.APPROVAL_EXPIRED.value, 0)),
                ("audit entries", len(all_entries)),
            ],
            frozenset({1}),
        )
    )

    # per recipient
    recipients: dict[str, dict[str, object]] = {}
    mechanisms: Counter[tuple[str, str, str, str]] = Counter()
    versions: Counter[tuple[str, str, str]] = Counter()
    for _, e in all_entries:
        if e.recipient_id is None or e.kind not in (_SENT, _BLOCKED, _HELD):
            continue
        row = recipients.setdefault(
            e.recipient_id,
            {
                "jurisdiction": e.jurisdiction,
                "destination": e.destination,
                "type": e.recipient_type,
                "purposes": set(),
                _SENT: 0,
                _BLOCKED: 0,
                _HELD: 0,
            },
        )
        row[e.kind] = int(row[e.kind]) + 1  # type: ignore[call-overload]
        purposes = row["purposes"]
        assert isinstance(purposes, set)
        purposes.add(e.purpose or "")
        if e.kind == _SENT:
            for m in e.mechanisms:
                mechanisms[
                    (
                        e.recipient_id,
                        str(m.get("kind")),
                        str(m.get("reference")),
                        str(m.get("expires")),
                    )
                ] += 1
            versions[(e.recipient_id, e.policy_version or "", (e.policy_digest or "")[:16])] += 1
    parts.append("<h2>Recipients</h2>")
    parts.append(
        _table(
            [
                "recipient",
                "jurisdiction",
                "destination",
                "type",
                "purposes",
                "sent",
                "blocked",
                "held",
            ],
            [
                (
                    rid,
                    r["jurisdiction"],
                    r["destination"],
                    r["type"],
                    ", ".join(sorted(r["purposes"])),  # type: ignore[call-overload]
                    r[_SENT],
                    r[_BLOCKED],
                    r[_HELD],
                )
                for rid, r in sorted(recipients.items())
            ],
            frozenset({5, 6, 7}),
        )
    )
    parts.append("<h2>Legal mechanisms relied on (transfers sent)</h2>")
    parts.append(
        _table(
            ["recipient", "mechanism", "reference", "expires", "transfers"],
            [(*k, n) for k, n in sorted(mechanisms.items())],
            frozenset({4}),
        )
    )
    parts.append("<h2>Policy versions (transfers sent)</h2>")
    parts.append(
        _table(
            ["recipient", "policy version", "policy digest (prefix)", "transfers"],
            [(*k, n) for k, n in sorted(versions.items())],
            frozenset({3}),
        )
    )

    # per field
    actions: Counter[tuple[str, str, str]] = Counter()
    for _, e in all_entries:
        if e.kind != _SENT:
            continue
        for action, rule, paths in e.field_actions:
            for shape in {_INDEX.sub("[*]", p) for p in paths}:
                actions[(shape, action, rule)] += 1
    parts.append("<h2>Per-field actions (transfers sent)</h2>")
    parts.append(
        _table(
            ["field", "action", "rule", "transfers"],
            [(*k, n) for k, n in sorted(actions.items())],
            frozenset({3}),
        )
    )

    reasons: Counter[tuple[str, str]] = Counter()
    for _, e in all_entries:
        if e.kind in (_BLOCKED, _HELD):
            for reason in e.reasons:
                code, _, rest = reason.partition("|")
                path, _, rule = rest.partition("|")
                reasons[(e.kind, f"{code} {_INDEX.sub('[*]', path)} {rule}".strip())] += 1
    parts.append("<h2>Why transfers were held or blocked</h2>")
    parts.append(
        _table(
            ["outcome", "reason (code, field, rule)", "count"],
            [(*k, n) for k, n in sorted(reasons.items())],
            frozenset({2}),
        )
    )

    shown = all_entries[-max_rows:]
    parts.append(f"<h2>Audit entries (last {len(shown)} of {len(all_entries)})</h2>")
    parts.append(
        _table(
            [
                "log",
                "seq",
                "recorded",
                "kind",
                "outcome",
                "recipient",
                "purpose",
                "footprint",
                "policy",
                "mechanism",
                "approval",
                "message",
                "outbound sha256",
            ],
            [
                (
                    log_id,
                    e.seq,
                    e.recorded_at,
                    e.kind,
                    e.outcome,
                    e.recipient_id,
                    e.purpose,
                    e.record_pf_id,
                    e.policy_version,
                    "; ".join(f"{m.get('kind')} {m.get('reference')}" for m in e.mechanisms),
                    e.approval_id,
                    e.message_id,
                    (e.outbound_sha256 or "")[:16],
                )
                for log_id, e in shown
            ],
            frozenset({1}),
        )
    )
    parts.append("</body></html>")
    return "\n".join(parts)
