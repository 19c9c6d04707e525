"""Who the gateway trusts in broker tests: the operator, the streams' service key, officers.

:class:`Trust` holds real key files (``producers.keys.new_key_pair``, mode 600) and builds the
operator-signed registrations the gateway folds from ``pcf.keys``, and the headers of a signed
``pcf.products`` batch (:func:`contracts.handoff.sign_handoffs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pcf_exchange.contracts import (
    AvroSerde,
    SchemaRegistry,
    SignedSupplierKey,
    SignerRole,
    SupplierKey,
    sign,
)
from pcf_exchange.contracts.handoff import HandoffSigner, sign_handoffs
from pcf_exchange.producers.keys import (
    KeyRole,
    key_id_of,
    load_private_key,
    new_key_pair,
    raw_public_key,
)

OPERATOR = "operator"
SERVICE = "pcfx-streams"
OFFICER = "alice"
COMPANY = "catl-cn"


@dataclass
class Party:
    owner: str
    key_file: Path
    public_file: Path
    private_key: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id_of(self.private_key.public_key())

    @property
    def signer(self) -> HandoffSigner:
        return HandoffSigner(self.private_key, self.owner, self.key_id)


@dataclass
class Trust:
    """The operator and the parties it registers (keys created in *keydir*)."""

    keydir: Path
    parties: dict[str, Party] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.operator = self._new(OPERATOR, KeyRole.OPERATOR)

    def _new(self, owner: str, role: KeyRole = KeyRole.SUPPLIER) -> Party:
        files = new_key_pair(owner, self.keydir, role=role)
        return Party(
            owner, files.private_key, files.public_key, load_private_key(files.private_key)
        )

    def party(self, owner: str) -> Party:
        """*owner*'s key (created on first use; not registered until :meth:`registration`)."""
        if owner not in self.parties:
            self.parties[owner] = self._new(owner)
        return self.parties[owner]

    @property
    def operator_keys(self) -> dict[str, Ed25519PublicKey]:
        return {self.operator.key_id: self.operator.private_key.public_key()}

    def registration(
        self, owner: str, role: SignerRole, *, revoked_at: datetime | None = None
    ) -> SignedSupplierKey:
        """The operator's registration of *owner*'s key with *role* (next sequence)."""
        party = self.party(owner)
        subject = f"{owner}/{party.key_id}"
        self.sequences[subject] = self.sequences.get(subject, 0) + 1
        record = SupplierKey(
            supplier_id=owner,
            key_id=party.key_id,
            public_key=raw_public_key(party.private_key.public_key()),
            valid_from=datetime(2020, 1, 1, tzinfo=UTC),
            revoked_at=revoked_at,
            registered_by=OPERATOR,
            role=role,
        )
        signed = sign(
            self.operator.private_key,
            record,
            supplier_id=OPERATOR,
            key_id=self.operator.key_id,
            sequence=self.sequences[subject],
        )
        assert isinstance(signed, SignedSupplierKey)
        return signed

    def register(
        self,
        bootstrap: str,
        registry: SchemaRegistry,
        topic: str,
        registrations: Sequence[SignedSupplierKey],
    ) -> None:
        """Publish operator-signed registrations to the key topic *topic*."""
        serde = AvroSerde(registry)
        producer = Producer({"bootstrap.servers": bootstrap})
        for signed in registrations:
            key = f"{signed.key.supplier_id}/{signed.key.key_id}".encode()
            producer.produce(topic, key=key, value=serde.encode(topic, signed))
        assert producer.flush(30) == 0


def signed_batch(
    signer: HandoffSigner, records: Sequence[tuple[bytes | None, bytes]]
) -> list[list[tuple[str, bytes]]]:
    """The headers of *records* signed as one batch (as a streams worker signs them)."""
    return sign_handoffs(signer, records)
