"""Audit logs as JSON lines: what ``pcfx audit export`` writes and ``--file`` reads.

One object per line, ``{"logId": ..., "entry": {...}}`` or ``{"logId": ..., "checkpoint": {...}}``
(the entry/checkpoint in the core's JSON form), the same lines ``JsonLinesAuditStore`` writes
plus the log id; a line without ``logId`` belongs to the log ``default``. Reading is strict: a
line that is not JSON, or not an entry or checkpoint, is reported with its line number.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from pcf_exchange.contracts.canonical import canonical_json
from pcf_exchange.contracts.errors import ContractError, TrustError
from pcf_exchange.gateway.audit import AuditEntry, Checkpoint

__all__ = ["AuditLogs", "read_export", "write_export"]

AuditLogs = tuple[dict[str, list[AuditEntry]], dict[str, list[Checkpoint]], list[str]]
"""Entries and checkpoints per log id, and the records that could not be read."""


class UnreadableInput(ContractError):
    code = "unreadable_input"
    hint = "Check the path and the file's format."


def write_export(
    path: Path,
    entries: Mapping[str, Sequence[AuditEntry]],
    checkpoints: Mapping[str, Sequence[Checkpoint]],
) -> int:
    """Write every log (entries, then checkpoints, per log id); returns the number of lines."""
    lines: list[bytes] = []
    for log_id in sorted(set(entries) | set(checkpoints)):
        lines += [
            canonical_json({"logId": log_id, "entry": e.to_json()}) for e in entries.get(log_id, ())
        ]
        lines += [
            canonical_json({"logId": log_id, "checkpoint": c.to_json()})
            for c in checkpoints.get(log_id, ())
        ]
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return len(lines)


def read_export(path: Path) -> AuditLogs:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableInput(f"cannot read audit export {path}: {exc}") from exc
    entries: dict[str, list[AuditEntry]] = {}
    checkpoints: dict[str, list[Checkpoint]] = {}
    problems: list[str] = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("not a JSON object")
            log_id = str(item.get("logId", "default"))
            if "entry" in item:
                entries.setdefault(log_id, []).append(AuditEntry.from_json(item["entry"]))
            elif "checkpoint" in item:
                checkpoints.setdefault(log_id, []).append(Checkpoint.from_json(item["checkpoint"]))
            else:
                raise ValueError("neither an entry nor a checkpoint")
        except (ValueError, TrustError) as exc:
            problems.append(f"{path}:{number}: {exc}")
    return entries, checkpoints, problems
