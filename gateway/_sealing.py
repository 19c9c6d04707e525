"""Sign, then encrypt outbound messages; the recipient's ``open_message`` verifies and decrypts.

Ed25519 over ``pae(content type, canonical JSON)``, then HPKE (RFC 9180 base mode, X25519 /
HKDF-SHA256 / AES-256-GCM, ephemeral key per message, ``info`` binding recipient/message/type).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from contracts.canonical import canonical_json, pae
from contracts.errors import TrustError
from contracts.keyfiles import key_id_of

__all__ = [
    "OUTBOUND_CONTENT_TYPE",
    "SEAL_SUITE",
    "GatewayKey",
    "KeyRing",
    "OpenedMessage",
    "SealedMessage",
    "hpke_open",
    "hpke_seal",
    "key_id_of",
    "open_message",
    "seal",
]

OUTBOUND_CONTENT_TYPE = "application/vnd.pcfx.gateway.outbound+json;v=1"
SEAL_SUITE = "HPKE-base/DHKEM(X25519,HKDF-SHA256)/HKDF-SHA256/AES-256-GCM"
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_INFO_TYPE = "application/vnd.pcfx.seal-context+json;v=1"
_VERSION = 1


@dataclass(frozen=True)
class GatewayKey:
    """The gateway's Ed25519 signing key (outbound messages, audit checkpoints)."""

    private_key: Ed25519PrivateKey
    key_id: str

    @classmethod
    def generate(cls) -> GatewayKey:
        return cls.from_private_key(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_key(cls, private_key: Ed25519PrivateKey) -> GatewayKey:
        return cls(private_key, key_id_of(private_key.public_key()))

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def sign(self, payload_type: str, body: bytes) -> bytes:
        """Ed25519 over ``pae(payload_type, body)``."""
        return self.private_key.sign(pae(payload_type, body))


@dataclass(frozen=True)
class KeyRing:
    """Trusted gateway verify keys by key id (what recipients and auditors hold)."""

    keys: Mapping[str, Ed25519PublicKey]

    @classmethod
    def of(cls, *public_keys: Ed25519PublicKey) -> KeyRing:
        return cls({key_id_of(k): k for k in public_keys})

    def verify(self, key_id: str, payload_type: str, body: bytes, signature: bytes) -> str | None:
        """``None`` if the signature verifies, else ``unknown_key`` or ``bad_signature``."""
        key = self.keys.get(key_id)
        if key is None:
            return "unknown_key"
        try:
            key.verify(signature, pae(payload_type, body))
        except InvalidSignature:
            return "bad_signature"
        return None


def hpke_seal(public_key: bytes | X25519PublicKey, plaintext: bytes, info: bytes) -> bytes:
    """HPKE single-shot seal: ``enc (32 bytes) || ciphertext``, fresh ephemeral key each call."""
    key = public_key if isinstance(public_key, X25519PublicKey) else _public_key(public_key)
    return _SUITE.encrypt(plaintext, key, info=info)


@lru_cache(maxsize=1024)
def _public_key(raw: bytes) -> X25519PublicKey:
    """Parsed once per recipient key (a public value: caching it shares nothing secret)."""
    return X25519PublicKey.from_public_bytes(raw)


def hpke_open(private_key: X25519PrivateKey, sealed: bytes, info: bytes) -> bytes:
    """HPKE single-shot open; :class:`TrustError` (``decrypt_failed``) on any mismatch."""
    try:
        return _SUITE.decrypt(sealed, private_key, info=info)
    except (InvalidTag, ValueError) as exc:
        raise TrustError(
            "cannot decrypt: wrong recipient key, or the ciphertext or its header was altered",
            reason="decrypt_failed",
        ) from exc


def seal_context(recipient_id: str, message_id: str, content_type: str) -> bytes:
    """The HPKE ``info``: binds the ciphertext to recipient, message and content type."""
    header = {"contentType": content_type, "messageId": message_id, "recipientId": recipient_id}
    return pae(_INFO_TYPE, canonical_json(header, checked=True))


@dataclass(frozen=True)
class SealedMessage:
    """What goes on the wire to one recipient: a clear header, the HPKE blob, the signature."""

    message_id: str
    recipient_id: str
    content_type: str
    key_id: str
    signature: bytes
    ciphertext: bytes
    suite: str = SEAL_SUITE
    version: int = _VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "suite": self.suite,
            "messageId": self.message_id,
            "recipientId": self.recipient_id,
            "contentType": self.content_type,
            "keyId": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
            "ciphertext": base64.b64encode(self.ciphertext).decode(),
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @property
    def sha256(self) -> str:
        """SHA-256 of the JSON wire form (:meth:`to_bytes`)."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @property
    def ciphertext_sha256(self) -> str:
        """SHA-256 of the HPKE output: what the audit log records as having left."""
        return hashlib.sha256(self.ciphertext).hexdigest()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SealedMessage:
        """Parse the wire form; :class:`TrustError` (``malformed``) names the bad key."""
        try:
            return cls(
                message_id=str(data["messageId"]),
                recipient_id=str(data["recipientId"]),
                content_type=str(data["contentType"]),
                key_id=str(data["keyId"]),
                signature=base64.b64decode(data["signature"], validate=True),
                ciphertext=base64.b64decode(data["ciphertext"], validate=True),
                suite=str(data["suite"]),
                version=int(data["version"]),
            )
        except KeyError as exc:
            raise TrustError(f"sealed message lacks '{exc.args[0]}'", reason="malformed") from exc
        except (binascii.Error, ValueError, TypeError) as exc:
            raise TrustError(f"sealed message is malformed: {exc}", reason="malformed") from exc

    @classmethod
    def from_bytes(cls, data: bytes) -> SealedMessage:
        try:
            parsed = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TrustError("sealed message is not JSON", reason="malformed") from exc
        if not isinstance(parsed, dict):
            raise TrustError("sealed message must be a JSON object", reason="malformed")
        return cls.from_json(parsed)


def seal(
    envelope: Mapping[str, Any],
    *,
    signer: GatewayKey,
    recipient_key: bytes | X25519PublicKey,
    checked: bool = False,
) -> SealedMessage:
    """Sign the envelope (canonical JSON, PAE), then HPKE-encrypt it to the recipient.

    The envelope must carry ``messageId``, ``recipientId`` and ``contentType``: they are signed
    inside it and bound into the HPKE context outside it. *checked*: the caller built the
    envelope with no binary float and no non-string key (``canonical_json(checked=True)``).
    """
    message_id = str(envelope["messageId"])
    recipient_id = str(envelope["recipientId"])
    content_type = str(envelope["contentType"])
    body = canonical_json(envelope, checked=checked)
    # (1) sign the canonical bytes under the content type
    signature = signer.sign(content_type, body)
    # (2) encrypt them to the recipient, bound to the clear header
    ciphertext = hpke_seal(
        recipient_key, body, seal_context(recipient_id, message_id, content_type)
    )
    return SealedMessage(
        message_id=message_id,
        recipient_id=recipient_id,
        content_type=content_type,
        key_id=signer.key_id,
        signature=signature,
        ciphertext=ciphertext,
    )


@dataclass(frozen=True)
class OpenedMessage:
    """A verified, decrypted message: the signed envelope and who signed it."""

    envelope: Mapping[str, Any]
    key_id: str
    plaintext: bytes

    @property
    def footprint(self) -> Mapping[str, Any]:
        fp = self.envelope.get("footprint", {})
        return fp if isinstance(fp, Mapping) else {}


def open_message(
    message: SealedMessage,
    *,
    recipient_id: str,
    private_key: X25519PrivateKey,
    trusted: KeyRing,
    accept_content_types: Iterable[str] = (OUTBOUND_CONTENT_TYPE,),
) -> OpenedMessage:
    """Recipient side: check the header, decrypt, verify the gateway signature, match the envelope.

    Steps, each a :class:`TrustError` with its ``reason``: (1) version, suite, recipient and
    content type as expected (``unexpected_header``/``wrong_recipient``); (2) HPKE open bound to
    the header (``decrypt_failed``); (3) signing key trusted (``unknown_key``); (4) signature
    (``bad_signature``); (5) the signed envelope repeats the header (``envelope_mismatch``).
    """
    # (1) header
    if message.version != _VERSION or message.suite != SEAL_SUITE:
        raise TrustError(
            f"message {message.message_id}: expected version {_VERSION} / {SEAL_SUITE},"
            f" got {message.version} / {message.suite}",
            reason="unexpected_header",
        )
    if message.recipient_id != recipient_id:
        raise TrustError(
            f"message {message.message_id} is for '{message.recipient_id}', not '{recipient_id}'",
            reason="wrong_recipient",
        )
    if message.content_type not in tuple(accept_content_types):
        raise TrustError(
            f"message {message.message_id}: content type '{message.content_type}' is not accepted",
            reason="unexpected_header",
        )
    # (2) decrypt, bound to recipient id + message id + content type
    context = seal_context(message.recipient_id, message.message_id, message.content_type)
    try:
        plaintext = hpke_open(private_key, message.ciphertext, context)
    except TrustError as exc:
        raise TrustError(
            f"message {message.message_id}: {exc.message}", reason="decrypt_failed"
        ) from exc.__cause__
    # (3) + (4) the gateway's signature over the canonical plaintext
    problem = trusted.verify(message.key_id, message.content_type, plaintext, message.signature)
    if problem == "unknown_key":
        raise TrustError(
            f"message {message.message_id} is signed by {message.key_id}, which is not trusted",
            reason="unknown_key",
        )
    if problem == "bad_signature":
        raise TrustError(
            f"message {message.message_id}: the gateway signature by {message.key_id} does not"
            " verify over the decrypted envelope",
            reason="bad_signature",
        )
    # (5) the signed envelope must say what the header says
    envelope = json.loads(plaintext)
    for key, expected in (
        ("messageId", message.message_id),
        ("recipientId", message.recipient_id),
        ("contentType", message.content_type),
    ):
        if not isinstance(envelope, dict) or envelope.get(key) != expected:
            got = envelope.get(key) if isinstance(envelope, dict) else None
            raise TrustError(
                f"message {message.message_id}: signed envelope has {key}={got!r},"
                f" header says {expected!r}",
                reason="envelope_mismatch",
            )
    return OpenedMessage(envelope=envelope, key_id=message.key_id, plaintext=plaintext)
