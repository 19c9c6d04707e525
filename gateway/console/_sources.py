"""Where the console reads from and writes to: the audit logs and the approvals queue.

Two seams, each with a Kafka implementation and one for files or memory (tests, a laptop):

- :class:`AuditSource` loads every log's entries and checkpoints through the existing readers
  (``gateway.audit._export.read_export`` for a JSON-lines export or the gateway's own audit
  file, ``gateway.runtime._sink.read_audit_logs`` for the audit topics). Nothing is re-parsed
  here, and unreadable records are passed on, never skipped.
- :class:`ApprovalQueue` gives the book of ``pcf.approvals`` (``ApprovalBook``) and takes an
  officer's signed ``decided`` event. The Kafka queue writes it to the topic exactly as
  ``pcfx approvals approve`` does (:mod:`gateway.runtime._officer`); the gateway judges it there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pcf_exchange.gateway._approvals_log import ApprovalBook
from pcf_exchange.gateway.audit import AuditEntry, Checkpoint

__all__ = [
    "ApprovalQueue",
    "AuditSnapshot",
    "AuditSource",
    "FileAuditSource",
    "InMemoryApprovalQueue",
    "KafkaApprovalQueue",
    "KafkaAuditSource",
]


@dataclass(frozen=True)
class AuditSnapshot:
    entries: Mapping[str, list[AuditEntry]]
    checkpoints: Mapping[str, list[Checkpoint]]
    problems: tuple[str, ...]
    """Records that could not be read (where and why); the chain status shows them."""
    source: str


class AuditSource(Protocol):
    def load(self) -> AuditSnapshot: ...


class FileAuditSource:
    """A JSON-lines audit file (``pcfx audit export``, or a gateway's own audit file). Read
    again whenever its size or modification time changes, else the last snapshot is returned
    (the same object, so the console reuses its verification too)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, int], AuditSnapshot] | None = None

    def load(self) -> AuditSnapshot:
        from pcf_exchange.gateway.audit._export import read_export

        with self._lock:
            try:
                stat = self.path.stat()
                stamp = (stat.st_size, stat.st_mtime_ns)
            except OSError:
                stamp = (-1, -1)  # read_export reports the missing file
            if self._cached is not None and self._cached[0] == stamp:
                return self._cached[1]
            entries, checkpoints, problems = read_export(self.path)
            # A gateway's own audit file has no log id per line (read_export calls it
            # "default"); its checkpoints name the log, and the strict check binds seals and
            # anchors to it.
            named = {c.log_id for c in checkpoints.get("default", [])}
            if len(named) == 1 and (log_id := named.pop()) not in entries:
                entries = {(log_id if k == "default" else k): v for k, v in entries.items()}
                checkpoints = {(log_id if k == "default" else k): v for k, v in checkpoints.items()}
            snapshot = AuditSnapshot(entries, checkpoints, tuple(problems), str(self.path))
            self._cached = (stamp, snapshot)
            return snapshot


class KafkaAuditSource:
    """The audit and checkpoint topics, read to their end at most every *refresh_s* seconds."""

    def __init__(self, servers: str, topic_prefix: str = "", *, refresh_s: float = 5.0) -> None:
        from pcf_exchange.gateway._topics import Topics

        self.servers = servers
        self.topics = Topics(topic_prefix)
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._cached: tuple[float, AuditSnapshot] | None = None

    def load(self) -> AuditSnapshot:
        from pcf_exchange.contracts import KafkaSchemaRegistry
        from pcf_exchange.gateway.runtime._avro import GatewaySerde
        from pcf_exchange.gateway.runtime._sink import read_audit_logs

        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.refresh_s:
                return self._cached[1]
            registry = KafkaSchemaRegistry(self.servers, prefix=self.topics.prefix)
            try:
                entries, checkpoints, problems = read_audit_logs(
                    self.servers, self.topics, GatewaySerde(registry)
                )
            finally:
                registry.close()
            snapshot = AuditSnapshot(
                entries,
                checkpoints,
                tuple(problems),
                f"{self.topics.audit} + {self.topics.checkpoints} at {self.servers}",
            )
            self._cached = (now, snapshot)
            return snapshot


class ApprovalQueue(Protocol):
    topic: str

    def book(self) -> ApprovalBook: ...

    def submit(self, approval_id: str, datum: Mapping[str, Any]) -> None: ...


@dataclass
class InMemoryApprovalQueue:
    """The approvals topic as a list of events (tests, dry runs): offsets are list positions."""

    events: list[Mapping[str, Any]] = field(default_factory=list)
    topic: str = "pcf.approvals"

    def book(self) -> ApprovalBook:
        book = ApprovalBook()
        for offset, datum in enumerate(self.events):
            book.apply(datum, offset=offset)
        return book

    def submit(self, approval_id: str, datum: Mapping[str, Any]) -> None:
        if datum.get("approvalId") != approval_id:
            raise ValueError(
                f"event is for approval {datum.get('approvalId')!r}, not {approval_id!r}"
            )
        self.events.append(datum)


class KafkaApprovalQueue:
    """``pcf.approvals`` on the broker: the book read to the end, decisions produced to it."""

    def __init__(self, servers: str, topic_prefix: str = "") -> None:
        from pcf_exchange.gateway._topics import Topics

        self.servers = servers
        self.prefix = topic_prefix
        self.topic = Topics(topic_prefix).approvals

    def book(self) -> ApprovalBook:
        from pcf_exchange.contracts import KafkaSchemaRegistry
        from pcf_exchange.gateway.runtime._avro import GatewaySerde
        from pcf_exchange.gateway.runtime._officer import read_approval_book

        registry = KafkaSchemaRegistry(self.servers, prefix=self.prefix)
        try:
            return read_approval_book(self.servers, self.topic, GatewaySerde(registry))
        finally:
            registry.close()

    def submit(self, approval_id: str, datum: Mapping[str, Any]) -> None:
        from pcf_exchange.contracts import KafkaSchemaRegistry
        from pcf_exchange.gateway.runtime._avro import GatewaySerde, kafka_registrar
        from pcf_exchange.gateway.runtime._officer import publish_decision

        registry = KafkaSchemaRegistry(self.servers, prefix=self.prefix)
        try:
            serde = GatewaySerde(
                registry, registrar=kafka_registrar(self.servers, prefix=self.prefix)
            )
            value = serde.encode(self.topic, "ApprovalEvent", dict(datum))
        finally:
            registry.close()
        publish_decision(self.servers, self.topic, approval_id, value)


def rule_basis(policy: Path | None) -> dict[str, str]:
    """Rule id -> legal basis, from *policy* (default: the shipped policy file)."""
    from pcf_exchange.gateway.policy import default_policy_path, load_policy

    loaded = load_policy(policy or Path(default_policy_path()))
    return {
        **{r.id: r.basis for r in loaded.rules},
        **{c.id: c.basis for c in loaded.combinations},
    }
