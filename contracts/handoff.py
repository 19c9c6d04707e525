"""Signed hand-offs between the exchange's own services: the streams' results on ``pcf.products``.

ARCHITECTURE decision 11: every hand-off is signed by its author. The streams worker signs each
roll-up batch it writes to ``pcf.products`` with its *service* key (registered by the operator on
``pcf.keys`` with role ``service``), and the gateway verifies every record before it releases it.

**Where the signature travels: Kafka headers, not a schema change.** The value stays the Avro
``RolledUpFootprint`` that every reader of ``pcf.products`` already decodes; the signature, the
signer and the record's inclusion proof ride in headers (:data:`HEADER_SIGNER`,
:data:`HEADER_KEY_ID`, :data:`HEADER_ROOT_SIGNATURE`, :data:`HEADER_PROOF`). A schema evolution
would have to sign a canonical form of the record *inside* the record that carries the signature;
signing the exact key and value bytes as they are on the topic leaves no canonicalisation to get
wrong (re-encoding, a newer writer schema, field order): a verifier hashes the bytes it was given.
Headers cannot be forged into validity either: whoever strips or rewrites them only makes the
record ``unsigned`` or ``bad_signature``.

**Per batch, not per record** (decision 12). The signer builds an RFC 6962 Merkle tree
(:mod:`contracts._merkle`) over one leaf per record, ``pae(PAYLOAD_PRODUCT_HANDOFF,
len(key) || key || value)`` (4-byte big-endian key length; an absent key counts as empty), signs
:func:`~contracts._envelope.batch_root_bytes` of the root once with Ed25519, and gives each record
its leaf index, the tree size and its audit path. Verification stays per record and pays one
Ed25519 check per batch (the root check is cached). The leaf's payload type differs from a
supplier batch's, so neither can stand in for the other.

:func:`check_handoff` verifies one record against the :class:`~contracts.keyring.Keyring`, in
order (the reason codes are what the gateway audits and sends to ``pcf.rejected``):

1. the four headers are present and well formed, else ``unsigned`` (none at all, or some missing)
   or ``bad_signature`` (present but malformed);
2. the signer's key is registered (``Keyring.lookup(owner, key id)``), else ``unknown_key``;
3. the registration has the role wanted (``service`` for ``pcf.products``), else ``wrong_role``;
4. the key was usable when the broker appended the record, else ``revoked_key`` /
   ``expired_key`` / ``key_not_yet_valid``;
5. the record's leaf, walked up its audit path, gives a root whose signature verifies under the
   registered key, else ``bad_signature``.

Pure: bytes, headers and a keyring in, a typed :class:`HandoffCheck` out; no Kafka here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcf_exchange.contracts._envelope import _root_signed, batch_root_bytes
from pcf_exchange.contracts._merkle import (
    audit_paths,
    decode_proof,
    encode_proof,
    hash_leaf,
    root_from_path,
)
from pcf_exchange.contracts._records import SignerRole
from pcf_exchange.contracts.canonical import pae
from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.contracts.keyring import KeyRegistration, Keyring

__all__ = [
    "HANDOFF_HEADERS",
    "HEADER_KEY_ID",
    "HEADER_PROOF",
    "HEADER_ROOT_SIGNATURE",
    "HEADER_SIGNER",
    "PAYLOAD_PRODUCT_HANDOFF",
    "HandoffCheck",
    "HandoffSigner",
    "check_handoff",
    "handoff_leaf",
    "sign_handoffs",
    "verify_handoff",
]

PAYLOAD_PRODUCT_HANDOFF: Final = "application/vnd.pcfx.handoff.products"
"""What a leaf of a ``pcf.products`` batch is: one record's exact key and value bytes."""

HEADER_SIGNER: Final = "pcfx-signer"
"""The signer's id (the owner its key is registered for), UTF-8."""
HEADER_KEY_ID: Final = "pcfx-key-id"
"""The signing key's id, UTF-8."""
HEADER_ROOT_SIGNATURE: Final = "pcfx-root-sig"
"""Ed25519 signature (64 bytes) over ``batch_root_bytes(root, tree size, signer, key id)``."""
HEADER_PROOF: Final = "pcfx-proof"
"""``leaf index (8 bytes) || tree size (8 bytes) || audit path (32 bytes each)``, big-endian."""
HANDOFF_HEADERS: Final = (HEADER_SIGNER, HEADER_KEY_ID, HEADER_ROOT_SIGNATURE, HEADER_PROOF)

_KEY_LENGTH: Final = struct.Struct(">I")

Headers = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None
"""Kafka headers as clients give them: ``(name, value)`` pairs or a mapping."""


@dataclass(frozen=True, slots=True)
class HandoffSigner:
    """A service's signing key and whom it signs as (the owner and key id it is registered
    under on ``pcf.keys``); load it with ``producers.keys.load_signer``."""

    private_key: Ed25519PrivateKey
    owner: str
    key_id: str


def handoff_leaf(key: bytes | None, value: bytes) -> bytes:
    """The leaf data of one record: ``pae(PAYLOAD_PRODUCT_HANDOFF, len(key) || key || value)``."""
    k = key or b""
    return pae(PAYLOAD_PRODUCT_HANDOFF, _KEY_LENGTH.pack(len(k)) + k + value)


def sign_handoffs(
    signer: HandoffSigner, records: Sequence[tuple[bytes | None, bytes]]
) -> list[list[tuple[str, bytes]]]:
    """The headers of each of *records* (``(key, value)``, in order): one signature for all.

    Steps: (1) each record's leaf hash; (2) the Merkle root and every audit path; (3) one
    Ed25519 signature over :func:`~contracts._envelope.batch_root_bytes`; (4) per record the
    signer, key id, root signature and proof headers.
    """
    if not records:
        return []
    # (1)-(2)
    root, paths = audit_paths([hash_leaf(handoff_leaf(k, v)) for k, v in records])
    size = len(records)
    # (3)
    signature = signer.private_key.sign(
        batch_root_bytes(root, size, supplier_id=signer.owner, key_id=signer.key_id)
    )
    # (4)
    owner, key_id = signer.owner.encode(), signer.key_id.encode()
    return [
        [
            (HEADER_SIGNER, owner),
            (HEADER_KEY_ID, key_id),
            (HEADER_ROOT_SIGNATURE, signature),
            (HEADER_PROOF, encode_proof(index, size, path)),
        ]
        for index, path in enumerate(paths)
    ]


@dataclass(frozen=True, slots=True)
class HandoffCheck:
    """Outcome of checking one hand-off record; falsy when it must not be trusted."""

    error: TrustError | None
    """Why not (``reason``: ``unsigned``, ``unknown_key``, ``wrong_role``, ``revoked_key``,
    ``expired_key``, ``key_not_yet_valid``, ``bad_signature``); ``None`` when it verified."""
    signer: str | None = None
    """The signer the headers name (``None`` if they name none)."""
    key_id: str | None = None
    registration: KeyRegistration | None = None
    """The registration the record verified under (``None`` unless it verified)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def reason(self) -> str | None:
        return None if self.error is None else self.error.reason

    def __bool__(self) -> bool:
        return self.ok


def _items(headers: Headers) -> Iterable[tuple[str, str | bytes | None]]:
    if headers is None:
        return ()
    return headers.items() if isinstance(headers, Mapping) else headers


def _found(headers: Headers) -> dict[str, bytes]:
    """The hand-off headers present (the first of each name; other headers are ignored)."""
    found: dict[str, bytes] = {}
    for name, value in _items(headers):
        if name in HANDOFF_HEADERS and name not in found and value is not None:
            found[name] = value.encode() if isinstance(value, str) else bytes(value)
    return found


def check_handoff(
    keyring: Keyring,
    key: bytes | None,
    value: bytes,
    headers: Headers,
    *,
    appended_at: datetime,
    role: SignerRole = SignerRole.SERVICE,
    what: str = "record",
) -> HandoffCheck:
    """Check one record's hand-off signature (steps 1-5 of the module docstring); never raises
    for an untrusted record. *what* names the record in messages (e.g. ``pcf.products[0]@12``)."""
    # (1) headers present and well formed
    found = _found(headers)
    missing = [h for h in HANDOFF_HEADERS if h not in found]
    if missing:
        got = (
            "no signature headers"
            if len(missing) == len(HANDOFF_HEADERS)
            else (f"only {', '.join(sorted(found))}")
        )
        return HandoffCheck(
            TrustError(
                f"{what} is unsigned: headers {', '.join(HANDOFF_HEADERS)} expected (got {got})",
                reason="unsigned",
                hint="Only the streams publish on this topic, signing every batch with their"
                " service key (pcfx streams run --service-key); do not write to it directly.",
            )
        )
    try:
        signer = found[HEADER_SIGNER].decode("utf-8")
        key_id = found[HEADER_KEY_ID].decode("utf-8")
    except UnicodeDecodeError:
        return HandoffCheck(
            TrustError(
                f"{what}: headers {HEADER_SIGNER}/{HEADER_KEY_ID} must be UTF-8 text",
                reason="bad_signature",
            )
        )
    proof, signature = found[HEADER_PROOF], found[HEADER_ROOT_SIGNATURE]
    decoded = decode_proof(proof)
    if decoded is None or len(signature) != 64:
        return HandoffCheck(
            TrustError(
                f"{what}: header {HEADER_PROOF} must be 16 bytes plus 32 per audit-path hash and"
                f" {HEADER_ROOT_SIGNATURE} 64 bytes (got {len(proof)} and {len(signature)} bytes)",
                reason="bad_signature",
            ),
            signer,
            key_id,
        )
    # (2) a registered key, (3) with the role wanted, (4) usable when the broker appended it
    registration = keyring.authorize(signer, key_id, role=role, at=appended_at)
    if isinstance(registration, TrustError):
        return HandoffCheck(
            TrustError(
                f"{what}: {registration.message}",
                reason=registration.reason,
                hint=registration.hint,
            ),
            signer,
            key_id,
        )
    # (5) the proof leads to a root the key signed
    index, size, path = decoded
    try:
        root = root_from_path(hash_leaf(handoff_leaf(key, value)), index, size, path)
    except ValueError as exc:
        return HandoffCheck(
            TrustError(
                f"{what}: header {HEADER_PROOF} is malformed: {exc}", reason="bad_signature"
            ),
            signer,
            key_id,
        )
    statement = batch_root_bytes(root, size, supplier_id=signer, key_id=key_id)
    if not _root_signed(registration.public_key, signature, statement):
        return HandoffCheck(
            TrustError(
                f"{what}: the batch signature of key {key_id!r} of {signer!r} does not match the"
                f" Merkle root this record's bytes and proof (leaf {index} of {size}) lead to"
                " (the record, its proof or the signature was altered, or another key signed it)",
                reason="bad_signature",
                hint="Do not trust this record; find who wrote it to the topic.",
            ),
            signer,
            key_id,
        )
    return HandoffCheck(None, signer, key_id, registration)


def verify_handoff(
    keyring: Keyring,
    key: bytes | None,
    value: bytes,
    headers: Headers,
    *,
    appended_at: datetime,
    role: SignerRole = SignerRole.SERVICE,
    what: str = "record",
) -> KeyRegistration:
    """:func:`check_handoff`, raising its :class:`~contracts.errors.TrustError`; returns the
    registration the record verified under."""
    check = check_handoff(
        keyring, key, value, headers, appended_at=appended_at, role=role, what=what
    )
    if check.error is not None:
        raise check.error
    assert check.registration is not None
    return check.registration
