"""What happened to each record of a publish run, and the run as a whole.

Every input ends in exactly one :class:`RecordOutcome` (nothing is silently dropped): ``sent``
once the broker acknowledged it, ``rejected`` when it was refused before sending (invalid, an
unreadable file, a ledger conflict), ``failed`` when it was sent but not acknowledged, ``valid``
in a dry run, ``skipped`` when an earlier run published it and a newer record followed.
:class:`PublishSummary` counts them and gives the exit code.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pcf_exchange.contracts.errors import Violation

__all__ = ["PublishSummary", "RecordOutcome", "Status"]


class Status(StrEnum):
    SENT = "sent"
    """The broker acknowledged the record (acks=all): it is on the topic."""
    VALID = "valid"
    """Dry run: validated, signed and encoded, not sent."""
    SKIPPED = "skipped"
    """Acknowledged in an earlier run, and a newer record for the same key followed since:
    sending it again would only make the streams refuse it as a replay (see ``note``)."""
    REJECTED = "rejected"
    """Refused before sending; nothing of it reached the broker."""
    FAILED = "failed"
    """Sent but not acknowledged (broker down, timeout): it may or may not be on the topic;
    publishing it again is harmless (same sequence)."""


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    """One input record's fate. ``ref`` names it as the user knows it: ``file#index``
    (``file:line`` for CSV rows)."""

    ref: str
    status: Status
    kind: str = ""
    """``footprint``, ``bom``, ``factor`` or ``key``."""
    file: str | None = None
    index: int | None = None
    line: int | None = None
    record_id: str | None = None
    """Footprint id, factor id, the product of a BOM, or the key id."""
    key: str | None = None
    """The Kafka key (product id, factor id, ...)."""
    sequence: int | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    content_hash: str | None = None
    error_code: str | None = None
    """Why it was not sent: a rule code such as ``decimal_pattern``, or ``unreadable``,
    ``immutable_footprint``, ``not_acknowledged``..."""
    message: str | None = None
    violations: tuple[Violation, ...] = ()
    warnings: tuple[Violation, ...] = ()
    note: str | None = None
    """What the producer did to the record on the way, e.g. ``deprecated (superseded by ...)``."""

    @property
    def ok(self) -> bool:
        return self.status in (Status.SENT, Status.VALID, Status.SKIPPED)

    def error_kinds(self) -> list[str]:
        """The distinct rule codes of a rejected record (its error code when it has none)."""
        if self.ok:
            return []
        codes = list(dict.fromkeys(v.code for v in self.violations))
        return codes or [self.error_code or "error"]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ref": self.ref,
            "status": self.status.value,
            "kind": self.kind,
            "file": self.file,
            "index": self.index,
            "line": self.line,
            "recordId": self.record_id,
            "key": self.key,
            "sequence": self.sequence,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "contentHash": self.content_hash,
            "errorCode": self.error_code,
            "message": self.message,
            "violations": [_violation(v) for v in self.violations],
            "warnings": [_violation(v) for v in self.warnings],
            "note": self.note,
        }
        return {k: v for k, v in data.items() if v not in (None, [])}


def _violation(v: Violation) -> dict[str, Any]:
    return {"path": v.path, "code": v.code, "message": v.message, "got": v.got}


@dataclass(frozen=True)
class PublishSummary:
    """All outcomes of one run, in input order."""

    outcomes: tuple[RecordOutcome, ...]
    dry_run: bool = False
    unreadable_files: tuple[str, ...] = field(default=())

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status is status)

    @property
    def sent(self) -> int:
        return self.count(Status.SENT)

    @property
    def valid(self) -> int:
        return self.count(Status.VALID)

    @property
    def skipped(self) -> int:
        return self.count(Status.SKIPPED)

    @property
    def rejected(self) -> int:
        return self.count(Status.REJECTED)

    @property
    def failed(self) -> int:
        return self.count(Status.FAILED)

    @property
    def ok(self) -> bool:
        """True when every record was acknowledged (or, in a dry run, is valid)."""
        return all(o.ok for o in self.outcomes) and not self.unreadable_files

    def by_error(self) -> dict[str, int]:
        """Records per error kind (a record with several rule codes counts once for each)."""
        counts: Counter[str] = Counter()
        for outcome in self.outcomes:
            counts.update(outcome.error_kinds())
        return dict(counts.most_common())

    def __add__(self, other: PublishSummary) -> PublishSummary:
        return PublishSummary(
            self.outcomes + other.outcomes,
            self.dry_run or other.dry_run,
            self.unreadable_files + other.unreadable_files,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "ok": self.ok,
            "total": len(self.outcomes),
            "sent": self.sent,
            "valid": self.valid,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "failed": self.failed,
            "byError": self.by_error(),
            "unreadableFiles": list(self.unreadable_files),
            "records": [o.to_dict() for o in self.outcomes],
        }
