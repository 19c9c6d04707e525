"""The key registry as the producers see it: what ``pcf.keys`` says about a key.

The operator publishes ``SignedSupplierKey`` records to ``pcf.keys`` (keyed
``supplierId/keyId``; a revocation is a newer record of the same key with ``revokedAt``). The
streams trust those records only under the operator key they are configured with; producers read
the topic (a) before publishing, to refuse a key registered to another supplier, revoked or
expired, and (b) for ``pcfx keys revoke``/``list``. The records are folded by the one fold of
the key registry, :class:`contracts.Keyring` (the streams use the same). With ``operator_key``
given, records not signed by it are skipped; without it the view is advisory
(:meth:`~contracts.Keyring.unsafe_unverified`: a refusal here never makes the streams accept
anything).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts import AvroSerde, KeyRegistration, Keyring, KeyringOutcome, SignedSupplierKey
from contracts.errors import BrokerError, PcfError
from contracts.kafka_client import librdkafka_config
from producers.delivery import KAFKA_LOGGER
from producers.keys import key_id_of

__all__ = ["KeyDirectory", "KeyState", "KeyStatus"]


class KeyState(StrEnum):
    ACTIVE = "active"
    UNKNOWN = "unknown"
    """No registration of this key id (for anyone)."""
    OTHER_SUPPLIER = "other_supplier"
    """The key id is registered, but for another supplier."""
    REVOKED = "revoked"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"


@dataclass(frozen=True, slots=True)
class KeyStatus:
    state: KeyState
    registration: SignedSupplierKey | None = None
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.state is KeyState.ACTIVE


class KeyDirectory:
    """Every verified registration on the key topic, latest sequence per (supplier, key id)."""

    def __init__(
        self,
        registrations: dict[tuple[str, str], SignedSupplierKey],
        *,
        skipped: int = 0,
        topic_found: bool = True,
        keyring: Keyring | None = None,
    ) -> None:
        self.registrations = registrations
        self.keyring = keyring
        """The fold the registrations come from (``None`` when built from a plain dict)."""
        self.skipped = skipped
        """Records that did not decode or were not signed by the operator key."""
        self.topic_found = topic_found

    @classmethod
    def read(
        cls,
        bootstrap: str,
        serde: AvroSerde,
        *,
        topic: str = "pcf.keys",
        operator_key: Ed25519PublicKey | None = None,
        timeout_s: float = 15.0,
    ) -> KeyDirectory:
        """Read *topic* from the beginning to its current end."""
        keyring = (
            Keyring({key_id_of(operator_key): operator_key})
            if operator_key is not None
            else Keyring.unsafe_unverified()
        )
        skipped = 0
        consumer = Consumer(
            {
                **librdkafka_config(),
                "bootstrap.servers": bootstrap,
                "group.id": f"pcfx-keys-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "logger": KAFKA_LOGGER,
            }
        )
        try:
            try:
                metadata = consumer.list_topics(topic, timeout=timeout_s)
            except KafkaException as exc:
                raise BrokerError(
                    f"cannot read key topic '{topic}' at {bootstrap}: {exc.args[0]}"
                ) from exc
            described = metadata.topics.get(topic)
            if described is None or described.error is not None or not described.partitions:
                return cls({}, topic_found=False)
            for value in _values(consumer, topic, sorted(described.partitions), timeout_s):
                try:
                    record = serde.decode(value, SignedSupplierKey)
                except PcfError:
                    skipped += 1
                    continue
                if keyring.apply(record).outcome is KeyringOutcome.REJECTED:
                    skipped += 1
        finally:
            consumer.close()
        found = {slot: r.signed for slot, r in keyring.registrations.items()}
        return cls(found, skipped=skipped, keyring=keyring)

    def registration(self, supplier_id: str, key_id: str) -> KeyRegistration | None:
        """The registration in force (role, namespaces, validity) for a key, if any."""
        return None if self.keyring is None else self.keyring.lookup(supplier_id, key_id)

    def lookup(self, supplier_id: str, key_id: str) -> SignedSupplierKey | None:
        return self.registrations.get((supplier_id, key_id))

    def status(self, supplier_id: str, key_id: str, at: datetime | None = None) -> KeyStatus:
        """Whether *supplier_id* may sign with *key_id* at *at* (now by default)."""
        moment = at or datetime.now(UTC)
        record = self.lookup(supplier_id, key_id)
        if record is None:
            others = sorted(s for (s, k) in self.registrations if k == key_id)
            if others:
                return KeyStatus(
                    KeyState.OTHER_SUPPLIER,
                    self.registrations[(others[0], key_id)],
                    f"key {key_id} is registered for '{others[0]}', not for '{supplier_id}'",
                )
            return KeyStatus(
                KeyState.UNKNOWN,
                None,
                f"key {key_id} of '{supplier_id}' is not registered on the key topic"
                + ("" if self.topic_found else " (the topic does not exist yet)"),
            )
        key = record.key
        if key.revoked_at is not None and moment >= key.revoked_at:
            return KeyStatus(
                KeyState.REVOKED,
                record,
                f"key {key_id} was revoked at {key.revoked_at.isoformat()}",
            )
        if key.valid_until is not None and moment >= key.valid_until:
            return KeyStatus(
                KeyState.EXPIRED, record, f"key {key_id} expired at {key.valid_until.isoformat()}"
            )
        if moment < key.valid_from:
            return KeyStatus(
                KeyState.NOT_YET_VALID,
                record,
                f"key {key_id} is valid only from {key.valid_from.isoformat()}",
            )
        return KeyStatus(KeyState.ACTIVE, record, f"key {key_id} is registered for '{supplier_id}'")


def _values(
    consumer: Consumer, topic: str, partitions: list[int], timeout_s: float
) -> Iterator[bytes]:
    """Every value of *topic* up to the end offsets read at the start."""
    ends: dict[int, int] = {}
    for partition in partitions:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s
        )
        if high > low:
            ends[partition] = high
    if not ends:
        return
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
    deadline = time.monotonic() + timeout_s
    remaining = dict(ends)
    while remaining:
        if time.monotonic() > deadline:
            raise BrokerError(
                f"key topic '{topic}' was not read to its end within {timeout_s:.0f} s"
            )
        message = consumer.poll(0.5)
        if message is None:
            continue
        partition = message.partition() or 0
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                remaining.pop(partition, None)
            continue
        value = message.value()
        if value is not None:
            yield value
        if (message.offset() or 0) + 1 >= remaining.get(partition, 0):
            remaining.pop(partition, None)
