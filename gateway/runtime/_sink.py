"""The core's two seams on Kafka: ``KafkaTransferSink`` (one transaction) and ``KafkaAuditStore``.

One :class:`KafkaTransferSink` is one transactional producer and the only writer of one audit
chain (``log_id``). :meth:`KafkaTransferSink.commit` runs, in this order:

1. ``begin_transaction``;
2. produce the outbound messages (``pcf.outbound.<recipient>``);
3. produce their audit entries (``pcf.audit``, key = log id, one partition per chain), the
   last one carrying the writer's batch seal (``gateway.audit.BatchSeal``) when it has a signer;
4. produce the checkpoints (``pcf.audit.checkpoints``) and any other records of the unit
   (approval events, PI counter entries, rejections);
5. ``send_offsets_to_transaction``: the consumed input offsets, with the group's metadata;
6. ``commit_transaction``: all of it becomes visible to ``read_committed`` readers, or none.

Any failure in 1-6 aborts the transaction and raises :class:`CommitFailed`: nothing of the unit
is visible, the offsets did not move, the caller rewinds and processes the records again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from pcf_exchange.contracts.errors import BrokerError, TrustError
from pcf_exchange.gateway._codec import (
    checkpoint_from_datum,
    checkpoint_to_datum,
    entry_from_datum,
    sealed_to_datum,
)
from pcf_exchange.gateway._errors import AuditStoreError, CommitFailed
from pcf_exchange.gateway._sealing import GatewayKey, SealedMessage
from pcf_exchange.gateway._topics import Topics
from pcf_exchange.gateway.audit import AuditEntry, Checkpoint, seal_entry
from pcf_exchange.gateway.runtime._avro import GatewaySerde
from pcf_exchange.gateway.runtime._kafka import producer_config, read_to_end

__all__ = ["KafkaAuditStore", "KafkaTransferSink", "Produced", "read_audit_logs"]

Fault = Callable[[str], None]
"""Test hook: called with a stage name (``after_outbound``, ``after_audit``, ``before_commit``)."""


@dataclass(frozen=True)
class Produced:
    """A record already encoded, to be written in the same transaction."""

    topic: str
    value: bytes
    key: bytes | None = None
    partition: int | None = None


class KafkaTransferSink:
    """A ``TransferSink`` on one Kafka transaction; the single writer of audit chain ``log_id``.

    ``transactional_id`` must be stable for the chain (the runtime uses group + input
    partition): opening a new sink with it fences any older producer (a zombie instance) and
    aborts its open transaction before :meth:`open` returns. With a *signer* (the gateway key)
    the last entry of every commit is sealed, so the writer's own tail can be told apart from
    entries anyone else appends to ``pcf.audit``.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topics: Topics,
        serde: GatewaySerde,
        log_id: str,
        transactional_id: str,
        audit_partition: int = 0,
        checkpoint_partition: int = 0,
        timeout_s: float = 30.0,
        fault: Fault | None = None,
        overrides: Mapping[str, Any] | None = None,
        signer: GatewayKey | None = None,
    ) -> None:
        self.topics = topics
        self.signer = signer
        self.serde = serde
        self.log_id = log_id
        self.audit_partition = audit_partition
        self.checkpoint_partition = checkpoint_partition
        self.timeout_s = timeout_s
        self.fault = fault
        self._key = log_id.encode()
        self._producer = Producer(
            producer_config(
                bootstrap,
                **{
                    "transactional.id": transactional_id,
                    "transaction.timeout.ms": max(int(timeout_s * 2000), 10_000),
                    "client.id": f"pcfx-gateway-{log_id}",
                    **dict(overrides or {}),
                },
            )
        )
        self.fenced = False
        self._opened = False

    def open(self) -> None:
        """``init_transactions``: fence older producers of this chain, finish their transaction."""
        try:
            self._producer.init_transactions(self.timeout_s)
        except KafkaException as exc:
            raise BrokerError(
                f"cannot open the transactional writer of {self.log_id}: {exc}"
            ) from exc
        self._opened = True

    def close(self) -> None:
        with contextlib.suppress(KafkaException, RuntimeError):
            self._producer.flush(1.0)

    def _produce(self, topic: str, value: bytes, key: bytes | None, partition: int | None) -> None:
        kwargs: dict[str, Any] = {"value": value, "key": key}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                return
            except BufferError:
                self._producer.poll(0.05)

    def commit(
        self,
        outbound: Sequence[SealedMessage],
        entries: Sequence[AuditEntry],
        checkpoints: Sequence[Checkpoint] = (),
        *,
        keys: Mapping[str, bytes] | None = None,
        extra: Sequence[Produced] = (),
        offsets: Sequence[TopicPartition] = (),
        group_metadata: Any = None,
    ) -> None:
        """Steps 1-6 of the module docstring; :class:`CommitFailed` if anything fails."""
        if not self._opened:
            raise CommitFailed(f"the writer of {self.log_id} was not opened")
        if self.fenced:
            raise CommitFailed(f"the writer of {self.log_id} was fenced by a newer instance")
        fault = self.fault
        topics = self.topics
        encode = self.serde.encode
        began = False
        try:
            # (1)
            self._producer.begin_transaction()
            began = True
            # (2) outbound messages
            named: dict[str, str] = {}  # a recipient's topic, checked once per commit
            for message in outbound:
                topic = named.get(message.recipient_id) or named.setdefault(
                    message.recipient_id, topics.outbound(message.recipient_id)
                )
                key = keys.get(message.message_id) if keys else None
                self._produce(
                    topic, encode(topic, "SealedMessage", sealed_to_datum(message)), key, None
                )
            if fault is not None:
                fault("after_outbound")
            # (3) their audit entries, in chain order, on the chain's one partition; the last
            # one sealed by the writer
            audit = topics.audit
            if entries and self.signer is not None:
                entries = [
                    *entries[:-1],
                    seal_entry(entries[-1], log_id=self.log_id, signer=self.signer),
                ]
            for entry in entries:
                value = self.serde.encode_entry(audit, entry, self.log_id)
                self._produce(audit, value, self._key, self.audit_partition)
            if fault is not None:
                fault("after_audit")
            # (4) checkpoints and the unit's other records
            for checkpoint in checkpoints:
                value = encode(
                    topics.checkpoints, "AuditLogCheckpoint", checkpoint_to_datum(checkpoint)
                )
                self._produce(topics.checkpoints, value, self._key, self.checkpoint_partition)
            for record in extra:
                self._produce(record.topic, record.value, record.key, record.partition)
            # (5) the consumed offsets commit with the writes
            if offsets:
                self._producer.send_offsets_to_transaction(
                    list(offsets), group_metadata, self.timeout_s
                )
            if fault is not None:
                fault("before_commit")
            # (6)
            self._producer.commit_transaction(self.timeout_s)
        except Exception as exc:  # the seam: whatever failed, abort and report CommitFailed
            if began:
                self._abort(exc)
            raise CommitFailed(
                f"transaction of {self.log_id} aborted ({type(exc).__name__}: {exc});"
                f" {len(outbound)} outbound message(s) and {len(entries)} audit entries discarded"
            ) from exc

    def _abort(self, cause: BaseException) -> None:
        error = cause.args[0] if isinstance(cause, KafkaException) and cause.args else None
        if isinstance(error, KafkaError) and (error.fatal() or error.code() == KafkaError._FENCED):
            self.fenced = True
            return
        try:
            self._producer.abort_transaction(self.timeout_s)
        except KafkaException as exc:
            inner = exc.args[0] if exc.args else None
            if isinstance(inner, KafkaError) and inner.fatal():
                self.fenced = True
                return
            # a producer that can neither commit nor abort is unusable: treat as fenced
            self.fenced = True


def read_audit_logs(
    bootstrap: str,
    topics: Topics,
    serde: GatewaySerde,
    *,
    log_ids: Sequence[str] | None = None,
    partitions: Sequence[int] | None = None,
    timeout_s: float = 120.0,
    offsets: dict[str, list[int]] | None = None,
) -> tuple[dict[str, list[AuditEntry]], dict[str, list[Checkpoint]], list[str]]:
    """Every committed entry and checkpoint, per log id, in log order; plus unreadable records.

    A record that does not decode is not skipped silently: it is listed in the third value
    (``topic[partition]@offset: why``) and the caller decides (``audit verify`` fails on it).
    When *offsets* is given it receives, per log id, the ``pcf.audit`` offset of each entry.
    """
    from pcf_exchange.gateway.runtime._kafka import partition_count

    wanted = set(log_ids) if log_ids is not None else None
    problems: list[str] = []
    entries: dict[str, list[AuditEntry]] = {}
    checkpoints: dict[str, list[Checkpoint]] = {}
    for topic, name in (
        (topics.audit, "AuditLogEntry"),
        (topics.checkpoints, "AuditLogCheckpoint"),
    ):
        count = partition_count(bootstrap, topic)
        parts = [p for p in range(count) if partitions is None or p in partitions]
        for message in read_to_end(bootstrap, [(topic, p) for p in parts], timeout_s=timeout_s):
            key = (message.key() or b"").decode("utf-8", "replace")
            if wanted is not None and key not in wanted:
                continue
            where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
            try:
                datum = serde.decode(message.value() or b"", name)
                if name == "AuditLogEntry":
                    log_id, entry = entry_from_datum(datum)
                    if log_id != key:
                        problems.append(f"{where}: entry of log '{log_id}' under key '{key}'")
                        continue
                    entries.setdefault(log_id, []).append(entry)
                    if offsets is not None:
                        offsets.setdefault(log_id, []).append(message.offset() or 0)
                else:
                    cp = checkpoint_from_datum(datum)
                    if cp.log_id != key:
                        problems.append(
                            f"{where}: checkpoint of log '{cp.log_id}' under key '{key}'"
                        )
                        continue
                    checkpoints.setdefault(cp.log_id, []).append(cp)
            except Exception as exc:  # listed in problems, never skipped silently
                problems.append(f"{where}: {type(exc).__name__}: {exc}")
    return entries, checkpoints, problems


class KafkaAuditStore:
    """The ``AuditStore`` seam on ``pcf.audit``: one chain (``log_id``).

    Reading is open to anyone; appending goes through the chain's one writer (*writer*), so a
    second process can never fork the chain. Without a writer the store is read-only.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topics: Topics,
        serde: GatewaySerde,
        log_id: str,
        writer: KafkaTransferSink | None = None,
        partition: int | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        if writer is not None and writer.log_id != log_id:
            raise ValueError(f"writer is for log '{writer.log_id}', not '{log_id}'")
        self.bootstrap = bootstrap
        self.topics = topics
        self.serde = serde
        self.log_id = log_id
        self.writer = writer
        self.partition = partition
        self.timeout_s = timeout_s

    def _read(self) -> tuple[list[AuditEntry], list[Checkpoint]]:
        entries, checkpoints, problems = read_audit_logs(
            self.bootstrap,
            self.topics,
            self.serde,
            log_ids=[self.log_id],
            partitions=None if self.partition is None else [self.partition],
            timeout_s=self.timeout_s,
        )
        if problems:
            raise TrustError(
                f"audit log {self.log_id} holds unreadable records: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                reason="audit_store_corrupt",
            )
        return entries.get(self.log_id, []), checkpoints.get(self.log_id, [])

    def entries(self) -> list[AuditEntry]:
        return self._read()[0]

    def checkpoints(self) -> list[Checkpoint]:
        return self._read()[1]

    def append(self, entries: Sequence[AuditEntry], checkpoints: Sequence[Checkpoint] = ()) -> None:
        if self.writer is None:
            raise AuditStoreError(
                f"audit log {self.log_id} is read-only here: only its gateway writer appends"
            )
        try:
            self.writer.commit([], entries, checkpoints)
        except CommitFailed as exc:
            raise AuditStoreError(str(exc)) from exc
