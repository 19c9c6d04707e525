"""Tables that stay readable from 80 to 120 columns, and short ids that stay unique.

A 32-hex key id or a UUID approval id takes a third of an 80-column terminal; rich then folds
every other column into one-word lines. So a table built here:

* shows an id as its shortest unique prefix (:func:`unique_prefixes`, at least 8 characters),
  never folded; every command that takes that id accepts the prefix back;
* folds long free text (URNs, names) instead of truncating it, so nothing is hidden;
* drops low-value columns below :data:`WIDE` columns, and always the ones nobody reads in a
  terminal (a key's start of validity, an approval's request time); all stay in ``--json``.

The builders are pure (rows in, :class:`rich.table.Table` out, for a given width), so tests
render them with ``Console(width=80)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import typer
from rich.table import Table

__all__ = [
    "WIDE",
    "Match",
    "approvals_table",
    "ends_with_part",
    "keys_table",
    "resolve_id",
    "short_time",
    "unique_prefixes",
]

WIDE = 110
"""At this width and above, tables show their secondary columns."""


def unique_prefixes(ids: Iterable[str], minimum: int = 8) -> dict[str, str]:
    """Each id's shortest prefix, at least *minimum* characters, that no other id shares."""
    unique = sorted(set(ids))
    shortest: dict[str, str] = {}
    for i, this in enumerate(unique):
        length = min(minimum, len(this))
        for other in (unique[i - 1] if i else "", unique[i + 1] if i + 1 < len(unique) else ""):
            common = 0
            while common < min(len(this), len(other)) and this[common] == other[common]:
                common += 1
            length = max(length, min(common + 1, len(this)))
        shortest[this] = this[:length]
    return shortest


Match = Callable[[str, str], bool]
"""``match(id, wanted)``: whether *wanted* names *id* by some rule other than a prefix."""


def ends_with_part(separator: str) -> Match:
    """A rule for ids made of parts (``topic/partition/offset``, a URN): *wanted* is the id's
    last parts, whole (``0/12`` or ``12`` for ``pcf.review/0/12``; never ``2``)."""
    return lambda pid, wanted: pid.endswith(separator + wanted)


def resolve_id(
    wanted: str,
    ids: Iterable[str],
    what: str,
    *,
    also: Sequence[Match] = (),
    param_hint: str | None = None,
) -> str:
    """The id *wanted* names among *ids*, the one helper every command that takes an id uses.

    Tried in order: the id itself; the one id it is a prefix of; then each rule of *also*
    (e.g. :func:`ends_with_part`), the first rule that finds anything deciding. An ambiguous
    prefix (or rule) is a usage error (exit 2, :class:`typer.BadParameter`) listing the first
    candidates; a prefix of nothing is returned as given, so that the command's own "unknown"
    error (exit 1) names it and says where to list the ids."""
    known = sorted(set(ids))
    if wanted in known:
        return wanted
    rules: list[Match] = [lambda pid, w: pid.startswith(w), *also]
    for rule in rules:
        found = [i for i in known if wanted and rule(i, wanted)]
        if len(found) == 1:
            return found[0]
        if found:
            shown = ", ".join(found[:5]) + (", …" if len(found) > 5 else "")
            raise typer.BadParameter(
                f"{wanted!r} is the start of {len(found)} {what}s ({shown}): give more of the id"
                if rule is rules[0]
                else f"{wanted!r} matches {len(found)} {what}s ({shown}): give more of the id",
                param_hint=param_hint,
            )
    return wanted


def short_time(value: str | datetime | None) -> str:
    """``2026-05-01 08:30`` from an ISO timestamp (UTC kept as written), ``""`` for none."""
    if value is None or value == "":
        return ""
    text = value.isoformat() if isinstance(value, datetime) else value
    return text[:16].replace("T", " ")


def _table(title: str | None, columns: Sequence[tuple[str, dict[str, Any]]]) -> Table:
    table = Table(title=title)
    for header, options in columns:
        table.add_column(header, **options)
    return table


ID = {"no_wrap": True}
FOLD = {"overflow": "fold", "min_width": 12}
"""Free text folds, but never into a column so thin that its header breaks."""


def keys_table(rows: Sequence[Mapping[str, Any]], width: int) -> Table:
    """``pcfx keys list``: one row per registered key (the ``--json`` rows)."""
    wide = width >= WIDE
    kid = unique_prefixes(row["keyId"] for row in rows)
    signers = unique_prefixes(str(row["signedBy"]).rpartition("/")[2] for row in rows)
    columns: list[tuple[str, dict[str, Any]]] = [
        ("supplier", FOLD),
        ("key id", ID),
        ("role", {}),
        ("state", {}),
        ("valid until", ID),
    ]
    if wide:
        columns += [("namespaces", FOLD), ("signed by", FOLD)]
    table = _table(f"{len(rows)} keys", columns)
    for row in rows:
        state = row["state"]
        if row.get("revokedAt"):
            state = f"{state} {short_time(row['revokedAt'])}"
        cells = [
            row["supplierId"],
            kid[row["keyId"]],
            row["role"],
            state,
            short_time(row.get("validUntil")) or "—",
        ]
        if wide:
            owner, _, signing_key = str(row["signedBy"]).rpartition("/")
            cells += [
                "\n".join(row["namespaces"]) or "(none)",
                f"{owner}/{signers.get(signing_key, signing_key)}",
            ]
        table.add_row(*cells)
    return table


def approvals_table(rows: Sequence[Any], now: datetime, width: int) -> Table:
    """``pcfx approvals list``: one row per held transfer (:class:`ApprovalRow`)."""
    wide = width >= WIDE
    ids = unique_prefixes(r.approval.approval_id for r in rows)
    columns: list[tuple[str, dict[str, Any]]] = [
        ("approval", ID),
        ("status", {}),
        ("recipient", FOLD),
        ("product", FOLD),
        ("held", {}),
        ("expires", ID),
    ]
    if wide:
        columns[3:3] = [("purpose", FOLD)]
    table = _table(f"{len(rows)} approvals", columns)
    for r in rows:
        held_rules = sorted({rule for _, rule in r.approval.held})
        held = (
            f"{len(r.approval.held)} ({', '.join(held_rules)})"
            if wide
            else f"{len(r.approval.held)}"
        )
        product = r.source.product_id or ""
        cells = [
            ids[r.approval.approval_id],
            r.status(now).value,
            r.approval.recipient_id,
            product if wide else product.rpartition(":")[2] or product,
            held,
            short_time(r.approval.expires_at),
        ]
        if wide:
            cells[3:3] = [r.approval.purpose]
        table.add_row(*cells)
    return table
