"""``keys list`` and ``approvals list`` stay readable at 80 and 120 columns: no line wider
than the terminal, every id shown whole as its unique prefix (never folded), and the prefix
names exactly one row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from pcf_exchange.gateway._approvals import Approval
from pcf_exchange.gateway._approvals_log import ApprovalBook, ApprovalRow
from pcf_exchange.gateway._codec import HeldSource
from pcf_exchange.gateway.policy._decision import RecordRef
from pcf_exchange.gateway.runtime._officer import find_row as find_approval
from pcf_exchange.pcfx.tables import WIDE, approvals_table, keys_table, short_time, unique_prefixes

NOW = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
SUPPLIER = "urn:pact:company:customcode:vendor-assigned:example-cells-and-modules-co-ltd"


def render(table: Any, width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(table)
    return console.export_text().splitlines()


def key_rows(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        kid = f"{'ab' * 6}{i:04x}{uuid.UUID(int=i * 7919).hex[:16]}"
        rows.append(
            {
                "supplierId": SUPPLIER if i % 2 else "operator",
                "keyId": kid,
                "state": "revoked" if i == 1 else "active",
                "validFrom": "2026-01-01T00:00:00+00:00",
                "validUntil": None if i % 3 else "2027-01-01T00:00:00+00:00",
                "revokedAt": "2026-03-01T10:00:00+00:00" if i == 1 else None,
                "role": "supplier",
                "namespaces": ["urn:pact:example-cells.cn"],
                "registeredBy": "operator",
                "signedBy": f"operator/{'cd' * 16}",
                "sequence": i + 1,
            }
        )
    return rows


def approval_rows(n: int) -> list[ApprovalRow]:
    rows = []
    for i in range(n):
        approval = Approval(
            approval_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"approval-{i}")),
            decision_id=f"d{i}",
            hold_fingerprint="f",
            record_ref=RecordRef(pf_id=None, sha256="0" * 64),
            recipient_id="eu-importer-gmbh-battery-passport-service",
            purpose="battery_passport",
            policy_version="1",
            held=(("pcf.geographyCountry", "R12"), ("pcf.productionSite", "R22")),
            reasons=(),
            requested_by="gateway",
            requested_at=NOW,
            expires_at=NOW + timedelta(days=2),
        )
        source = HeldSource(
            "chain", "pcf.products", 0, i, "urn:pact:zz-bus.cn:product-id:E-BUS-12M"
        )
        rows.append(ApprovalRow(approval, source))
    return rows


@pytest.mark.parametrize("width", [80, 100, 120])
def test_keys_list_fits_and_shows_unique_prefixes(width: int) -> None:
    rows = key_rows(6)
    lines = render(keys_table(rows, width), width)
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    prefixes = unique_prefixes(r["keyId"] for r in rows)
    for row in rows:
        prefix = prefixes[row["keyId"]]
        assert prefix in text, "an id is shown whole on one line"
        assert [r["keyId"] for r in rows if r["keyId"].startswith(prefix)] == [row["keyId"]]
    assert ("namespaces" in text) == (width >= WIDE)
    for header in ("supplier", "key id", "state", "valid until"):
        assert header in text, "no header is broken"
    assert "revoked" in text and "2026-03-01" in text, "a revocation shows when"


@pytest.mark.parametrize("width", [80, 120])
def test_approvals_list_fits_and_prefixes_resolve(width: int) -> None:
    rows = approval_rows(4)
    lines = render(approvals_table(rows, NOW, width), width)
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    book = ApprovalBook()
    book.rows.update({r.approval.approval_id: r for r in rows})
    prefixes = unique_prefixes(r.approval.approval_id for r in rows)
    for row in rows:
        prefix = prefixes[row.approval.approval_id]
        assert prefix in text
        assert find_approval(book, prefix, "pcf.approvals") is row
    assert ("purpose" in text) == (width >= WIDE)
    for header in ("approval", "status", "recipient", "product", "expires"):
        assert header in text, "no header is broken"


def test_an_ambiguous_prefix_is_refused_naming_the_count() -> None:
    from pcf_exchange.gateway._errors import ApprovalStateError

    rows = approval_rows(3)
    book = ApprovalBook()
    book.rows.update({r.approval.approval_id: r for r in rows})
    shared = "0abcdef0-"
    for row in rows:
        book.rows[shared + row.approval.approval_id] = row
    with pytest.raises(ApprovalStateError, match="3 matches"):
        find_approval(book, shared, "pcf.approvals")
    with pytest.raises(ApprovalStateError, match="no match"):
        find_approval(book, "", "pcf.approvals")
    with pytest.raises(ApprovalStateError, match="no match"):
        find_approval(book, "zzzz", "pcf.approvals")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="0123456789abcdef", min_size=1, max_size=12), max_size=12))
def test_unique_prefixes_are_unique_prefixes(ids: list[str]) -> None:
    shortest = unique_prefixes(ids, minimum=3)
    assert set(shortest) == set(ids)
    for full, prefix in shortest.items():
        assert full.startswith(prefix) and len(prefix) >= min(3, len(full))
        others = [i for i in set(ids) if i != full and i.startswith(prefix)]
        assert others == [] or prefix == full  # an id that prefixes another shows whole


def test_short_time() -> None:
    assert short_time("2026-05-01T08:30:59+00:00") == "2026-05-01 08:30"
    assert short_time(None) == "" and short_time(NOW) == "2026-05-01 08:30"


def test_resolve_id_takes_the_whole_id_or_a_unique_prefix() -> None:
    import typer

    from pcf_exchange.pcfx.tables import resolve_id

    ids = ["CQC-2026-0001", "CQC-2026-0002", "CQC-2026-00021", "TUV-1"]
    assert resolve_id("TUV", ids, "certificate") == "TUV-1"
    assert resolve_id("CQC-2026-0001", ids, "certificate") == "CQC-2026-0001"
    assert resolve_id("CQC-2026-0002", ids, "certificate") == "CQC-2026-0002", "exact wins"
    assert resolve_id("nope", ids, "certificate") == "nope", "the command names the unknown"
    with pytest.raises(typer.BadParameter, match="start of 3 certificates"):
        resolve_id("CQC", ids, "certificate")
