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

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pcf_exchange.contracts import (
    AvroSerde,
    KeyRegistration,
    Keyring,
    KeyringOutcome,
    SignedSupplierKey,
)
from pcf_exchange.contracts.errors import PcfError
from pcf_exchange.contracts.kafka_client import read_to_end, topic_exists
from pcf_exchange.producers.delivery import KAFKA_LOGGER
from pcf_exchange.producers.keys import key_id_of

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
        messages = read_to_end(
            bootstrap, topic, timeout_s=timeout_s, group_prefix="pcfx-keys-", logger=KAFKA_LOGGER
        )
        found_topic = False
        for message in messages:
            found_topic = True
            value = message.value()
            if value is None:
                continue
            try:
                record = serde.decode(value, SignedSupplierKey)
            except PcfError:
                skipped += 1
                continue
            if keyring.apply(record).outcome is KeyringOutcome.REJECTED:
                skipped += 1
        if not found_topic and not topic_exists(bootstrap, topic, timeout_s):
            return cls({}, topic_found=False)
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
