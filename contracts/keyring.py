"""The key registry: one fold of the operator-signed records on ``pcf.keys``, used by all.

``pcf.keys`` carries :class:`~contracts.SignedSupplierKey` records: the platform operator's
registration of one company's (or officer's, or service's) Ed25519 key, keyed
``supplierId/keyId``. A change (new namespaces, a revocation, an expiry) is a newer record of the
same key with a higher sequence. :class:`Keyring` folds those records into the current
registration of each (owner, key id); the streams (ingestion) and the producers (``pcfx keys
list``, the checks before publishing) use it, so that both read the topic the same way.

Pure: decoded records in, typed :class:`KeyringUpdate` out; no Kafka here. For each record the
fold does, in order:

1. the record must be signed by a configured operator key (its ``keyId`` names which one) and the
   signature must verify, else ``REJECTED`` (``unknown_key`` / ``bad_signature``);
2. its sequence must be above the stored one for the same (owner, key id): the same sequence with
   the same content is a redelivery (``DUPLICATE``), anything else at or below is ``REJECTED``
   (``replayed``);
3. the registration replaces the stored one (its namespaces, role, validity, revocation).

A registration answers who may sign what (:class:`KeyRegistration`):
:meth:`~KeyRegistration.usable_at`
(validity window and revocation, judged at the time the broker appended the signed record),
:attr:`~KeyRegistration.role`, and :meth:`~KeyRegistration.owns` (the product-id namespaces, on URN
boundaries: :func:`in_namespace`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pcf_exchange.contracts._envelope import SignedSupplierKey, content_hash, verify
from pcf_exchange.contracts._namespace import in_namespace
from pcf_exchange.contracts._records import SignerRole, SupplierKey
from pcf_exchange.contracts.errors import TrustError

__all__ = [
    "KeyRegistration",
    "Keyring",
    "KeyringOutcome",
    "KeyringUpdate",
    "in_namespace",
]


class KeyringOutcome(StrEnum):
    ACCEPTED = "accepted"
    """Trusted and newer: the registration now in force for its key."""
    DUPLICATE = "duplicate"
    """The registration in force, delivered again: nothing changes."""
    REJECTED = "rejected"
    """Not signed by an operator key, forged, or a replayed/out-of-date sequence."""


_ROLE_HINTS: Mapping[SignerRole, str] = {
    SignerRole.COMPANY: "Sign footprints and BOMs with your company key.",
    SignerRole.OFFICER: "Only a compliance officer's key (registered with --role officer)"
    " decides approvals.",
    SignerRole.SERVICE: "Only the exchange's own services sign what they publish; a company or"
    " officer key cannot vouch for a roll-up.",
}


@dataclass(frozen=True, slots=True)
class KeyRegistration:
    """The registration in force for one key: the operator-signed record and what it grants."""

    signed: SignedSupplierKey
    digest: str
    """sha256 of the record's signed canonical bytes (what the operator signed)."""

    @property
    def key(self) -> SupplierKey:
        return self.signed.key

    @property
    def owner(self) -> str:
        """The company (or officer, or service) the key belongs to."""
        return self.signed.key.supplier_id

    @property
    def key_id(self) -> str:
        return self.signed.key.key_id

    @property
    def sequence(self) -> int:
        return self.signed.sequence

    @property
    def role(self) -> SignerRole:
        return self.signed.key.role

    @property
    def namespaces(self) -> tuple[str, ...]:
        return self.signed.key.namespaces

    @property
    def public_key(self) -> bytes:
        return self.signed.key.public_key

    def owns(self, product_id: str) -> bool:
        """Whether *product_id* is in one of the key's namespaces (:func:`in_namespace`)."""
        return self.signed.key.owns(product_id)

    def usable_at(self, moment: datetime) -> bool:
        """Whether a record the broker appended at *moment* may be accepted under this key."""
        return self.unusable_at(moment) is None

    def unusable_at(self, moment: datetime) -> TrustError | None:
        """Why a record the broker appended at *moment* may not be accepted under this key
        (``key_not_yet_valid``, ``expired_key``, ``revoked_key``), or ``None`` if it may."""
        key = self.signed.key
        usable = (key.revoked_at is None or moment < key.revoked_at) and (
            key.valid_until is None or moment < key.valid_until
        )
        if usable and moment >= key.valid_from:  # every record of a feed: no message built
            return None
        window = f"valid from {key.valid_from.isoformat()}" + (
            f" until {key.valid_until.isoformat()}" if key.valid_until else ""
        )
        if key.revoked_at is not None:
            window += f", revoked at {key.revoked_at.isoformat()}"
        what = f"key {key.key_id!r} of {key.supplier_id!r}"
        if key.revoked_at is not None and moment >= key.revoked_at:
            return TrustError(
                f"{what} was revoked at {key.revoked_at.isoformat()}, before the record was"
                f" appended at {moment.isoformat()} ({window})",
                reason="revoked_key",
                hint="Sign with a key that is not revoked (pcfx keys new; the operator registers"
                " it) and publish again.",
            )
        if key.valid_until is not None and moment >= key.valid_until:
            return TrustError(
                f"{what} expired at {key.valid_until.isoformat()}, before the record was"
                f" appended at {moment.isoformat()} ({window})",
                reason="expired_key",
                hint="Have the operator register a new key for you, sign with it, publish again.",
            )
        if moment < key.valid_from:
            return TrustError(
                f"{what} is not valid before {key.valid_from.isoformat()}, and the record was"
                f" appended at {moment.isoformat()} ({window})",
                reason="key_not_yet_valid",
                hint="Publish again once the key is valid, or have the operator register it"
                " with an earlier --valid-from.",
            )
        return None


@dataclass(frozen=True, slots=True)
class KeyringUpdate:
    """What one ``pcf.keys`` record did to the keyring."""

    outcome: KeyringOutcome
    subject: str
    """``key:<owner>/<key id>`` (what the sequence is monotonic for)."""
    registration: KeyRegistration | None = None
    """The registration now in force (``ACCEPTED``/``DUPLICATE``)."""
    error: TrustError | None = None
    """Why the record was refused (``REJECTED``)."""


def _subject(key: SupplierKey) -> str:
    return f"key:{key.supplier_id}/{key.key_id}"


@dataclass
class Keyring:
    """The registrations in force, folded from ``pcf.keys`` (see the module docstring)."""

    operator_keys: Mapping[str, Ed25519PublicKey]
    """Key id -> public key of the platform operator: the trust anchor, from configuration."""
    registrations: dict[tuple[str, str], KeyRegistration] = field(default_factory=dict)
    """(owner, key id) -> the registration in force."""
    verify_signatures: bool = True
    """Step (1); off only in :meth:`unsafe_unverified`."""

    @classmethod
    def unsafe_unverified(cls) -> Keyring:
        """A keyring that skips step (1): it believes every record, whoever signed it.

        Only for advisory views when no operator key is at hand (``pcfx keys list`` without
        ``--operator-key``); nothing it says may make anything trusted.
        """
        return cls({}, verify_signatures=False)

    def apply(self, signed: SignedSupplierKey) -> KeyringUpdate:
        """Fold one decoded ``pcf.keys`` record (steps 1-3 of the module docstring)."""
        key = signed.key
        subject = _subject(key)
        # (1) signed by a configured operator key
        operator_key = self.operator_keys.get(signed.key_id)
        if not self.verify_signatures:
            digest = content_hash(signed)
        elif operator_key is None:
            return KeyringUpdate(
                KeyringOutcome.REJECTED,
                subject,
                error=TrustError(
                    f"key registration for {key.supplier_id!r} is signed with key "
                    f"{signed.key_id!r}, which is not a configured operator key "
                    f"(known: {sorted(self.operator_keys) or 'none'})",
                    reason="unknown_key",
                    hint="Only the platform operator registers keys: run 'pcfx keys register'"
                    " with the operator key the streams are configured with.",
                ),
            )
        else:
            try:
                digest = verify(operator_key, signed)
            except TrustError as exc:
                return KeyringUpdate(KeyringOutcome.REJECTED, subject, error=exc)
        # (2) sequence
        slot = (key.supplier_id, key.key_id)
        stored = self.registrations.get(slot)
        if stored is not None and signed.sequence <= stored.sequence:
            if signed.sequence == stored.sequence and stored.digest == digest:
                return KeyringUpdate(KeyringOutcome.DUPLICATE, subject, stored)
            return KeyringUpdate(
                KeyringOutcome.REJECTED,
                subject,
                error=TrustError(
                    f"'sequence' must be above {stored.sequence} for {subject} (got "
                    f"{signed.sequence}): a replayed or out-of-date key registration",
                    reason="replayed",
                    hint="Register changes with a higher sequence; pcfx keys register and"
                    " revoke do this for you.",
                ),
            )
        # (3) in force
        registration = KeyRegistration(signed, digest)
        self.registrations[slot] = registration
        return KeyringUpdate(KeyringOutcome.ACCEPTED, subject, registration)

    def lookup(self, owner: str, key_id: str) -> KeyRegistration | None:
        """The registration in force for *owner*'s key *key_id*, if any."""
        return self.registrations.get((owner, key_id))

    def authorize(
        self, owner: str, key_id: str, *, role: SignerRole, at: datetime
    ) -> KeyRegistration | TrustError:
        """The registration under which *owner*'s key *key_id* may sign as *role* a record the
        broker appended *at*; else why not: ``unknown_key`` (not registered), ``wrong_role``,
        or why the key was not usable then (:meth:`KeyRegistration.unusable_at`). The one check
        every consumer of signed records makes (the streams' ingestion, the gateway's hand-offs
        and approvals)."""
        registration = self.lookup(owner, key_id)
        if registration is None:
            others = self.owners_of(key_id)
            return TrustError(
                f"key {key_id!r} of {owner!r} is not registered on pcf.keys (expected a"
                f" {role.value} key the operator registered; this key id is registered for:"
                f" {', '.join(others) or 'nobody'})",
                reason="unknown_key",
                hint=f"The operator registers it: pcfx keys register --role {role.value}"
                " --public-key ... (a record signed before that is refused).",
            )
        if registration.role is not role:
            return TrustError(
                f"key {key_id!r} of {owner!r} is registered with role"
                f" {registration.role.value!r}; this needs role {role.value!r}",
                reason="wrong_role",
                hint=_ROLE_HINTS[role],
            )
        return registration.unusable_at(at) or registration

    def owners_of(self, key_id: str) -> list[str]:
        """Every owner a key id is registered for (sorted): who else uses a key id."""
        return sorted(owner for (owner, kid) in self.registrations if kid == key_id)

    def with_role(self, role: SignerRole) -> list[KeyRegistration]:
        """The registrations of keys with *role* (e.g. every officer's), sorted by owner, key."""
        return [r for _, r in sorted(self.registrations.items()) if r.role is role]

    def __iter__(self) -> Iterator[KeyRegistration]:
        """Every registration in force, sorted by (owner, key id)."""
        return iter([r for _, r in sorted(self.registrations.items())])

    def __len__(self) -> int:
        return len(self.registrations)
