"""``pcfx audit show`` as a table: the columns it shares with the offline report
(:data:`gateway.runtime._report.AUDIT_ENTRY_COLUMNS`), then the disclosed fields. No broker:
the command's audit read is replaced by two entries of two logs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from pcf_exchange.gateway.audit import AuditEntry, format_time
from pcf_exchange.gateway.audit._report import AUDIT_ENTRY_COLUMNS, audit_entry_cells
from pcf_exchange.pcfx.cli import app
from tests.gateway._factories import NOW


def _entry(seq: int, **changes: Any) -> AuditEntry:
    fields: dict[str, Any] = {
        "seq": seq,
        "prev_hash": "",
        "kind": "transfer",
        "recorded_at": format_time(NOW + timedelta(seconds=seq)),
        "decision_id": f"d-{seq}",
        "record_pf_id": f"pf-{seq}",
        "record_sha256": f"{seq:064x}",
        "recipient_id": "eu-oem",
        "jurisdiction": "DE",
        "outcome": "transformed",
        "field_actions": (("allow", "R03", ("pcf.dqi.temporalDQR",)),),
        "reasons": (),
    }
    return AuditEntry(**{**fields, **changes})


def test_the_table_lists_the_shared_columns_then_the_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pcf_exchange.pcfx.commands.gateway_audit as audit

    logs = {"gateway-p0": [_entry(0)], "gateway-p1": [_entry(1, recipient_id=None, outcome=None)]}
    monkeypatch.setattr(audit, "_audit_logs", lambda *_a, **_k: (logs, {}, [], "topic"))
    result = CliRunner().invoke(app, ["audit", "show"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "recorded" in line)
    names = [*AUDIT_ENTRY_COLUMNS, "fields"]
    assert [header.index(name) for name in names] == sorted(header.index(n) for n in names)
    assert "pf-0" in result.output and "pf-1" in result.output
    # what an entry does not have is an empty cell, not "None"
    assert audit_entry_cells("gateway-p1", logs["gateway-p1"][0])[4:6] == ("", "")
    assert "None" not in result.output
