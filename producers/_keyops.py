"""Supplier-key records the operator publishes: registration and revocation.

A registration is a :class:`~contracts.SupplierKey` (the supplier's raw Ed25519 public key, its
key id, the validity window, who registered it) signed by the operator key and published to
``pcf.keys`` keyed ``supplierId/keyId``, with the product-id namespaces the supplier may declare
and the key's role. A revocation is the same record again with ``revokedAt`` and a higher
sequence (namespaces and role kept): records appended from that moment on are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pcf_exchange.contracts import SignedSupplierKey, SignerRole, SupplierKey, parse
from pcf_exchange.producers.keys import key_id_of, raw_public_key

__all__ = ["registration", "revocation"]


def registration(
    supplier_id: str,
    public_key: Ed25519PublicKey,
    *,
    registered_by: str,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    namespaces: Sequence[str] = (),
    role: SignerRole = SignerRole.COMPANY,
) -> SupplierKey:
    """The record that registers *public_key* for *supplier_id* (validated): the product-id
    *namespaces* it may declare (URN prefixes) and its *role*, what else the key may sign
    (``officer``: approvals; ``service``: the streams' results)."""
    return parse(
        SupplierKey,
        {
            "supplierId": supplier_id,
            "keyId": key_id_of(public_key),
            "publicKey": raw_public_key(public_key),
            "validFrom": valid_from or datetime.now(UTC),
            "validUntil": valid_until,
            "registeredBy": registered_by,
            "namespaces": list(namespaces),
            "role": role.value,
        },
    )


def revocation(
    current: SupplierKey | SignedSupplierKey, *, at: datetime | None, revoked_by: str
) -> SupplierKey:
    """*current* revoked from *at* on (now by default); everything else kept."""
    key = current.key if isinstance(current, SignedSupplierKey) else current
    return key.model_copy(
        update={"revoked_at": at or datetime.now(UTC), "registered_by": revoked_by}
    )
