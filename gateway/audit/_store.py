"""The audit log's storage seam: an append-only store of entries and checkpoints.

``AuditStore`` is the interface (a Kafka-topic store comes later); ``InMemoryAuditStore`` serves
tests; ``JsonLinesAuditStore`` appends one JSON object per line and fsyncs each batch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from pcf_exchange.contracts.canonical import canonical_json
from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.gateway._errors import AuditStoreError
from pcf_exchange.gateway.audit._entry import AuditEntry, Checkpoint

__all__ = ["AuditStore", "InMemoryAuditStore", "JsonLinesAuditStore"]


@runtime_checkable
class AuditStore(Protocol):
    """Append-only storage. ``append`` writes the whole batch or raises having written nothing
    a reader would accept (a torn last line is reported by the reader, never skipped)."""

    def append(
        self, entries: Sequence[AuditEntry], checkpoints: Sequence[Checkpoint] = ()
    ) -> None: ...

    def entries(self) -> list[AuditEntry]: ...

    def checkpoints(self) -> list[Checkpoint]: ...


class InMemoryAuditStore:
    """A list in memory (tests, dry runs). ``fail_next`` makes the next append raise."""

    def __init__(self) -> None:
        self._entries: list[AuditEntry] = []
        self._checkpoints: list[Checkpoint] = []
        self.fail_next: Exception | None = None

    def append(self, entries: Sequence[AuditEntry], checkpoints: Sequence[Checkpoint] = ()) -> None:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        self._entries.extend(entries)
        self._checkpoints.extend(checkpoints)

    def entries(self) -> list[AuditEntry]:
        return list(self._entries)

    def checkpoints(self) -> list[Checkpoint]:
        return list(self._checkpoints)


class JsonLinesAuditStore:
    """``{"entry": {...}}`` / ``{"checkpoint": {...}}`` per line, opened in append mode only."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, entries: Sequence[AuditEntry], checkpoints: Sequence[Checkpoint] = ()) -> None:
        lines = [canonical_json({"entry": e.to_json()}) for e in entries]
        lines += [canonical_json({"checkpoint": c.to_json()}) for c in checkpoints]
        if not lines:
            return
        data = b"\n".join(lines) + b"\n"
        try:
            with self.path.open("ab") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise AuditStoreError(f"cannot append to audit log {self.path}: {exc}") from exc

    def _read(self) -> tuple[list[AuditEntry], list[Checkpoint]]:
        entries: list[AuditEntry] = []
        checkpoints: list[Checkpoint] = []
        if not self.path.exists():
            return entries, checkpoints
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            raise TrustError(
                f"{self.path}: the last line is incomplete (a torn write); the batch it belongs"
                " to was never committed: truncate it after review",
                reason="audit_store_corrupt",
            )
        for number, line in enumerate(data.splitlines(), start=1):
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise TrustError(
                    f"{self.path}:{number}: not JSON ({exc})", reason="audit_store_corrupt"
                ) from exc
            if isinstance(item, dict) and "entry" in item:
                entries.append(AuditEntry.from_json(item["entry"]))
            elif isinstance(item, dict) and "checkpoint" in item:
                checkpoints.append(Checkpoint.from_json(item["checkpoint"]))
            else:
                raise TrustError(
                    f"{self.path}:{number}: neither an entry nor a checkpoint",
                    reason="audit_store_corrupt",
                )
        return entries, checkpoints

    def entries(self) -> list[AuditEntry]:
        return self._read()[0]

    def checkpoints(self) -> list[Checkpoint]:
        return self._read()[1]
