"""Outbound messages: signed per batch (one Merkle root), encrypted per recipient per batch (HPKE).

**Version 2 (what the gateway writes).** For each batch of outbound records (one Kafka
transaction of the runner), :class:`OutboundBatch`:

1. *encrypts* each record as it is decided. The first record for a recipient opens one HPKE
   context (RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM,
   ``info = pae(BATCH_INFO_TYPE, {"recipientId"})``): one encapsulation per recipient per batch.
   Each record is then sealed with AES-256-GCM under its own key, exported from that context
   (RFC 9180 §5.3, ``Export(exporter_context, 32)``) with ``exporter_context`` =
   :func:`seal_context` (recipient id, message id, content type), a fresh random 96-bit nonce, and
   the same ``seal_context`` as associated data. The wire ``ciphertext`` is
   ``enc (32 bytes) || nonce (12 bytes) || AES-GCM output``: a recipient opens any one record
   alone (decapsulate ``enc`` with its key, export, open) without the rest of the batch;
2. *signs* the batch once (:meth:`OutboundBatch.sign`): an RFC 6962 Merkle tree
   (:mod:`contracts._merkle`, the one Merkle module) over one leaf per record,
   ``pae(PAYLOAD_OUTBOUND_LEAF, pae(content type, canonical envelope))``, i.e. over the exact
   plaintext bytes the recipient decrypts, so nothing is re-canonicalised to verify; one Ed25519
   signature over :func:`contracts._envelope.batch_root_bytes` (root, tree size, signer
   :data:`GATEWAY_SIGNER`, key id), as the streams' hand-offs (:mod:`contracts.handoff`) and the
   producers' batches do. Each record carries that signature and its ``proof``: leaf index,
   tree size and audit path (``index (8 bytes) || size (8 bytes) || 32 bytes per hash``, the
   hand-off's layout).

The context (encapsulation and key schedule) comes from ``pyhpke`` (RFC 9180 in full;
``tests/gateway/test_sealing_batch.py`` checks it against the RFC's Appendix A.1.1 exported values
and against ``cryptography``'s own HPKE): ``cryptography`` 50's ``hpke`` module offers single-shot
encrypt/decrypt only, which version 1 still uses. The per-record export is done here, on the
context's exporter secret, with ``cryptography``'s HKDF-Expand (:func:`export_key`: the same
RFC 9180 §5.3 ``LabeledExpand``, one call per record instead of pyhpke's Python layers; a test
pins that it equals pyhpke's ``export``, and the A.1.1 vectors hold for it too).

Sign-then-encrypt stays: the recipient verifies the gateway's signature over what it decrypted,
and can show that plaintext and proof to a third party. An audit path shows a recipient the leaf
hashes of other records of the batch (possibly other recipients'); every envelope holds a random
message id (UUID4), so those hashes cannot be matched against guessed contents.

**Version 1 (single-shot, still opened).** Older records were signed one by one (Ed25519 over
``pae(content type, canonical envelope)``) and HPKE single-shot encrypted (a fresh ephemeral
key per record, ``info`` = :func:`seal_context`); ``ciphertext`` is ``enc || HPKE ciphertext``.
A recipient tells them apart by the clear header: ``version`` 1 with suite :data:`SEAL_SUITE`
and no ``proof``, or ``version`` 2 with suite :data:`SEAL_SUITE_BATCH` and a ``proof``.
:func:`open_message` opens both; :func:`seal` still writes version 1 (tests and tools that
need an old record).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import orjson
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey, PyHPKEError
from pyhpke.context_interface import ContextInterface

from pcf_exchange.contracts._envelope import _root_signed, batch_root_bytes
from pcf_exchange.contracts._merkle import (
    audit_paths,
    decode_proof,
    encode_proof,
    hash_leaf,
    root_from_path,
)
from pcf_exchange.contracts.canonical import canonical_json, pae
from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.contracts.keyfiles import key_id_of

__all__ = [
    "BATCH_INFO_TYPE",
    "GATEWAY_SIGNER",
    "OUTBOUND_CONTENT_TYPE",
    "PAYLOAD_OUTBOUND_LEAF",
    "SEAL_SUITE",
    "SEAL_SUITE_BATCH",
    "EncryptedRecord",
    "GatewayKey",
    "KeyRing",
    "OpenedMessage",
    "OutboundBatch",
    "SealedMessage",
    "batch_info",
    "hpke_open",
    "hpke_seal",
    "key_id_of",
    "open_message",
    "outbound_leaf",
    "seal",
    "seal_batch",
    "seal_context",
]

OUTBOUND_CONTENT_TYPE: Final = "application/vnd.pcfx.gateway.outbound+json;v=1"
SEAL_SUITE: Final = "HPKE-base/DHKEM(X25519,HKDF-SHA256)/HKDF-SHA256/AES-256-GCM"
"""Version 1: single-shot HPKE per record, Ed25519 per record."""
SEAL_SUITE_BATCH: Final = (
    "HPKE-base-export/DHKEM(X25519,HKDF-SHA256)/HKDF-SHA256/AES-256-GCM+Ed25519-merkle-batch"
)
"""Version 2: one HPKE context per recipient per batch, a key exported per record, AES-256-GCM;
one Ed25519 signature per batch over an RFC 6962 Merkle root, an inclusion proof per record."""
PAYLOAD_OUTBOUND_LEAF: Final = "application/vnd.pcfx.gateway.outbound-leaf"
"""What a leaf of an outbound batch is: ``pae(content type, canonical envelope)``."""
BATCH_INFO_TYPE: Final = "application/vnd.pcfx.seal-batch+json;v=1"
"""The payload type of a version-2 HPKE ``info`` (:func:`batch_info`)."""
GATEWAY_SIGNER: Final = "pcfx-gateway"
"""The signer named in the gateway's batch-root statement (``batch_root_bytes``)."""

_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_BATCH_SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)
_INFO_TYPE = "application/vnd.pcfx.seal-context+json;v=1"
_VERSION: Final = 1
_VERSION_BATCH: Final = 2
_ENC_SIZE: Final = 32
_NONCE_SIZE: Final = 12
_KEY_SIZE: Final = 32


@dataclass(frozen=True)
class GatewayKey:
    """The gateway's Ed25519 signing key (outbound batches, audit checkpoints)."""

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

    def verify_statement(self, key_id: str, statement: bytes, signature: bytes) -> str | None:
        """As :meth:`verify`, for bytes that already are the signed statement (a batch root)."""
        key = self.keys.get(key_id)
        if key is None:
            return "unknown_key"
        if not _root_signed(key.public_bytes_raw(), signature, statement):
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
    """Binds a ciphertext to recipient, message and content type: the version-1 HPKE ``info``;
    in version 2 the exporter context of the record's key and its AES-GCM associated data."""
    header = {"contentType": content_type, "messageId": message_id, "recipientId": recipient_id}
    return pae(_INFO_TYPE, canonical_json(header, checked=True))


@lru_cache(maxsize=1024)
def _seal_context_parts(recipient_id: str, content_type: str) -> tuple[bytes, bytes] | None:
    """:func:`seal_context` around its message id: the bytes before and after it (the header's
    keys sort ``contentType``, ``messageId``, ``recipientId``), or ``None`` if a string has no
    orjson form (a lone surrogate), which :func:`seal_context` then handles."""
    try:
        before = b'{"contentType":' + orjson.dumps(content_type) + b',"messageId":'
        after = b',"recipientId":' + orjson.dumps(recipient_id) + b"}"
    except orjson.JSONEncodeError:
        return None
    return before, after


_CONTEXT_PAE: Final = b"PCFXv1 %d %s " % (len(_INFO_TYPE.encode()), _INFO_TYPE.encode())


def _seal_context_fast(recipient_id: str, message_id: str, content_type: str) -> bytes:
    """Byte for byte :func:`seal_context` (a test pins it), with the parts that are the same for
    every record of a recipient encoded once: only the message id is encoded per record."""
    parts = _seal_context_parts(recipient_id, content_type)
    if parts is not None and type(message_id) is str:
        try:
            body = parts[0] + orjson.dumps(message_id) + parts[1]
        except orjson.JSONEncodeError:
            pass
        else:
            return b"%s%d %s" % (_CONTEXT_PAE, len(body), body)
    return seal_context(recipient_id, message_id, content_type)


_EXPORT_INFO_PREFIX: Final = (
    struct.pack(">H", _KEY_SIZE)
    + b"HPKE-v1"
    + b"HPKE"
    + struct.pack(
        ">HHH",
        KEMId.DHKEM_X25519_HKDF_SHA256.value,
        KDFId.HKDF_SHA256.value,
        AEADId.AES256_GCM.value,
    )
    + b"sec"
)
"""RFC 9180 §4 / §5.3: ``I2OSP(L, 2) || "HPKE-v1" || suite_id || "sec"``, with ``L`` = 32 and
``suite_id = "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2)`` of
:data:`_BATCH_SUITE`: what ``LabeledExpand`` puts before the exporter context."""
_SHA256: Final = hashes.SHA256()


def export_key(secret: bytes, exporter_context: bytes) -> bytes:
    """RFC 9180 §5.3 ``Export(exporter_context, 32)`` of the context whose exporter secret is
    *secret*: ``LabeledExpand(exporter_secret, "sec", exporter_context, 32)``, i.e. HKDF-Expand
    (RFC 5869, SHA-256) with info ``I2OSP(32, 2) || "HPKE-v1" || suite_id || "sec" ||
    exporter_context``, done by ``cryptography`` in one call per record (pyhpke's ``export``
    does the same in several Python layers; a test pins that both give the same key)."""
    return HKDFExpand(_SHA256, _KEY_SIZE, _EXPORT_INFO_PREFIX + exporter_context).derive(secret)


def exporter_secret(context: ContextInterface) -> bytes:
    """The key schedule's ``exporter_secret`` (RFC 9180 §5.1) of a pyhpke context.

    Relies on pyhpke 0.6.5 (pinned in pyproject.toml): ``ExporterContext`` (the base of its
    sender and recipient contexts) keeps it as ``_exporter_secret`` and has no public accessor.
    ``tests/gateway/test_sealing_batch.py`` pins the version and that :func:`export_key` on it
    equals the context's own ``export``.
    """
    secret = getattr(context, "_exporter_secret", None)
    if not isinstance(secret, bytes) or len(secret) != _SHA256.digest_size:
        raise RuntimeError(
            "pyhpke's context no longer keeps its exporter secret as '_exporter_secret'"
            " (the gateway relies on pyhpke 0.6.5): pin pyhpke==0.6.5 or adapt"
            " gateway._sealing.exporter_secret"
        )
    return secret


def batch_info(recipient_id: str) -> bytes:
    """The HPKE ``info`` of a version-2 context: binds the encapsulation to its recipient."""
    return pae(BATCH_INFO_TYPE, canonical_json({"recipientId": recipient_id}, checked=True))


def outbound_leaf(content_type: str, body: bytes) -> bytes:
    """The leaf data of one outbound record: ``pae(PAYLOAD_OUTBOUND_LEAF, pae(type, body))``."""
    return pae(PAYLOAD_OUTBOUND_LEAF, pae(content_type, body))


_OUTBOUND_LEAF_PAE: Final = b"PCFXv1 %d %s " % (
    len(PAYLOAD_OUTBOUND_LEAF.encode()),
    PAYLOAD_OUTBOUND_LEAF.encode(),
)


def outbound_leaf_hash(content_type: str, body: bytes) -> bytes:
    """``hash_leaf(outbound_leaf(content_type, body))`` (a test pins it), hashing the body where
    it lies instead of copying it into two nested PAEs first."""
    kind = content_type.encode("utf-8")
    inner = b"PCFXv1 %d %s %d " % (len(kind), kind, len(body))
    digest = hashlib.sha256(b"\x00%s%d %s" % (_OUTBOUND_LEAF_PAE, len(inner) + len(body), inner))
    digest.update(body)
    return digest.digest()


@dataclass(frozen=True)
class SealedMessage:
    """What goes on the wire to one recipient: a clear header, the signature, the ciphertext.

    Version 2: ``signature`` signs the batch's Merkle root, ``proof`` leads from this record's
    leaf to it, ``ciphertext`` is ``enc || nonce || AES-GCM``. Version 1: ``signature`` signs
    this record alone, ``proof`` is ``None``, ``ciphertext`` is ``enc || HPKE ciphertext``.
    """

    message_id: str
    recipient_id: str
    content_type: str
    key_id: str
    signature: bytes
    ciphertext: bytes
    suite: str = SEAL_SUITE_BATCH
    version: int = _VERSION_BATCH
    proof: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": self.version,
            "suite": self.suite,
            "messageId": self.message_id,
            "recipientId": self.recipient_id,
            "contentType": self.content_type,
            "keyId": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
            "ciphertext": base64.b64encode(self.ciphertext).decode(),
        }
        if self.proof is not None:
            data["proof"] = base64.b64encode(self.proof).decode()
        return data

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @property
    def sha256(self) -> str:
        """SHA-256 of the JSON wire form (:meth:`to_bytes`)."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @property
    def ciphertext_sha256(self) -> str:
        """SHA-256 of the ciphertext: what the audit log records as having left."""
        return hashlib.sha256(self.ciphertext).hexdigest()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SealedMessage:
        """Parse the wire form; :class:`TrustError` (``malformed``) names the bad key."""
        try:
            proof = data.get("proof")
            return cls(
                message_id=str(data["messageId"]),
                recipient_id=str(data["recipientId"]),
                content_type=str(data["contentType"]),
                key_id=str(data["keyId"]),
                signature=base64.b64decode(data["signature"], validate=True),
                ciphertext=base64.b64decode(data["ciphertext"], validate=True),
                suite=str(data["suite"]),
                version=int(data["version"]),
                proof=None if proof is None else base64.b64decode(proof, validate=True),
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
    """Version 1: sign the envelope alone (canonical JSON, PAE), then HPKE single-shot encrypt.

    The gateway writes version 2 (:class:`OutboundBatch`); this stays for tools and tests that
    need a version-1 record. The envelope must carry ``messageId``, ``recipientId`` and
    ``contentType``: they are signed inside it and bound into the HPKE context outside it.
    *checked*: the caller built the envelope with no binary float and no non-string key.
    """
    message_id, recipient_id, content_type = _header_of(envelope)
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
        suite=SEAL_SUITE,
        version=_VERSION,
    )


def _header_of(envelope: Mapping[str, Any]) -> tuple[str, str, str]:
    return str(envelope["messageId"]), str(envelope["recipientId"]), str(envelope["contentType"])


# ----------------------------------------------------------------------------------------------
# version 2: a batch


@dataclass(frozen=True)
class EncryptedRecord:
    """One record of an :class:`OutboundBatch`, encrypted, before the batch is signed.

    Its ciphertext is final (the signature covers the plaintext, not the ciphertext), so the
    audit entry can bind :attr:`ciphertext_sha256` as soon as the record is decided.
    """

    message_id: str
    recipient_id: str
    content_type: str
    ciphertext: bytes
    leaf_hash: bytes
    """MTH of :func:`outbound_leaf` (the plaintext's leaf in the batch tree)."""

    @property
    def ciphertext_sha256(self) -> str:
        return hashlib.sha256(self.ciphertext).hexdigest()


class OutboundBatch:
    """Seals the outbound records of one batch: one HPKE context per recipient, one signature.

    A builder with a short life: :meth:`add` each record as it is decided (in the order they
    will be written), then :meth:`sign` once; the batch cannot be added to afterwards. The
    HPKE sender contexts it holds are secrets of this batch only and die with it.
    """

    def __init__(self, signer: GatewayKey) -> None:
        self._signer = signer
        self._contexts: dict[tuple[str, bytes], tuple[bytes, bytes]] = {}
        self._records: list[EncryptedRecord] = []
        self._signed: tuple[SealedMessage, ...] | None = None
        self._nonces = memoryview(b"")

    def __len__(self) -> int:
        return len(self._records)

    def _context(self, recipient_id: str, key: bytes | X25519PublicKey) -> tuple[bytes, bytes]:
        """``(enc, exporter secret)`` of the recipient's context in this batch."""
        raw = key if isinstance(key, bytes) else key.public_bytes_raw()
        found = self._contexts.get((recipient_id, raw))
        if found is None:
            # (1a) one encapsulation per recipient (and recipient key) per batch
            public = KEMKey.from_pyca_cryptography_key(_public_key(raw))
            enc, context = _BATCH_SUITE.create_sender_context(public, info=batch_info(recipient_id))
            found = self._contexts[(recipient_id, raw)] = (enc, exporter_secret(context))
        return found

    def add(
        self,
        envelope: Mapping[str, Any],
        *,
        recipient_key: bytes | X25519PublicKey,
        checked: bool = False,
    ) -> EncryptedRecord:
        """Encrypt one envelope to its recipient: :meth:`add_all` of one."""
        return self.add_all(((envelope, recipient_key),), checked=checked)[0]

    def add_all(
        self,
        items: Iterable[tuple[Mapping[str, Any], bytes | X25519PublicKey]],
        *,
        checked: bool = False,
    ) -> list[EncryptedRecord]:
        """Encrypt ``(envelope, recipient key)`` pairs, in order (step 1 of the module
        docstring): (1a) the recipient's HPKE context of this batch, opened by its first record;
        (1b) each record's key, exported with :func:`seal_context` as exporter context;
        (1c) AES-256-GCM, a fresh nonce, the same context as associated data. Returns the records
        with their final ciphertexts, in the order given.

        Each envelope must carry ``messageId``, ``recipientId`` and ``contentType`` (signed
        inside it, bound to the key, nonce and associated data outside it). *checked*: as
        :func:`seal`.
        """
        if self._signed is not None:
            raise ValueError("this outbound batch is signed already: open a new one")
        added: list[EncryptedRecord] = []
        context, nonce_of, aesgcm = self._context, self._nonce, AESGCM
        for envelope, recipient_key in items:
            message_id, recipient_id, content_type = _header_of(envelope)
            body = canonical_json(envelope, checked=checked)
            enc, secret = context(recipient_id, recipient_key)
            # (1b) the record's own key, exported from the recipient's context, bound to its
            # header
            bound = _seal_context_fast(recipient_id, message_id, content_type)
            key = export_key(secret, bound)
            # (1c) AES-256-GCM with a fresh random nonce, the header as associated data
            nonce = nonce_of()
            sealed = aesgcm(key).encrypt(nonce, body, bound)
            added.append(
                EncryptedRecord(
                    message_id=message_id,
                    recipient_id=recipient_id,
                    content_type=content_type,
                    ciphertext=enc + nonce + sealed,
                    leaf_hash=outbound_leaf_hash(content_type, body),
                )
            )
        self._records.extend(added)
        return added

    def _nonce(self) -> bytes:
        """12 random bytes; drawn from the OS 256 nonces at a time (one system call, not 256)."""
        if len(self._nonces) < _NONCE_SIZE:
            self._nonces = memoryview(os.urandom(_NONCE_SIZE * 256))
        nonce, self._nonces = bytes(self._nonces[:_NONCE_SIZE]), self._nonces[_NONCE_SIZE:]
        return nonce

    def sign(self) -> tuple[SealedMessage, ...]:
        """(2) One Merkle root over the records' leaves, one signature; the sealed messages in
        the order they were added (empty for an empty batch). Signing twice gives the same."""
        if self._signed is not None:
            return self._signed
        self._contexts.clear()
        if not self._records:
            self._signed = ()
            return self._signed
        root, paths = audit_paths([r.leaf_hash for r in self._records])
        size = len(self._records)
        signer = self._signer
        signature = signer.private_key.sign(
            batch_root_bytes(root, size, supplier_id=GATEWAY_SIGNER, key_id=signer.key_id)
        )
        self._signed = tuple(
            SealedMessage(
                message_id=r.message_id,
                recipient_id=r.recipient_id,
                content_type=r.content_type,
                key_id=signer.key_id,
                signature=signature,
                ciphertext=r.ciphertext,
                suite=SEAL_SUITE_BATCH,
                version=_VERSION_BATCH,
                proof=encode_proof(index, size, path),
            )
            for index, (r, path) in enumerate(zip(self._records, paths, strict=True))
        )
        return self._signed


def seal_batch(
    envelopes: Sequence[tuple[Mapping[str, Any], bytes | X25519PublicKey]],
    *,
    signer: GatewayKey,
    checked: bool = False,
) -> tuple[SealedMessage, ...]:
    """Seal ``(envelope, recipient key)`` pairs as one version-2 batch (:class:`OutboundBatch`)."""
    batch = OutboundBatch(signer)
    for envelope, key in envelopes:
        batch.add(envelope, recipient_key=key, checked=checked)
    return batch.sign()


# ----------------------------------------------------------------------------------------------
# the recipient


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


def _decrypt_batch_record(
    message: SealedMessage, private_key: X25519PrivateKey, bound: bytes
) -> bytes:
    """Version 2, step (2): decapsulate ``enc``, export the record's key, open AES-GCM."""
    blob = message.ciphertext
    if len(blob) < _ENC_SIZE + _NONCE_SIZE + 16:
        raise TrustError(
            f"message {message.message_id}: ciphertext must hold enc (32 bytes), nonce (12) and"
            f" an AES-GCM tag (16), got {len(blob)} bytes",
            reason="decrypt_failed",
        )
    enc, nonce, sealed = blob[:_ENC_SIZE], blob[_ENC_SIZE : _ENC_SIZE + _NONCE_SIZE], blob[44:]
    try:
        context = _BATCH_SUITE.create_recipient_context(
            enc,
            KEMKey.from_pyca_cryptography_key(private_key),
            info=batch_info(message.recipient_id),
        )
        key = export_key(exporter_secret(context), bound)
        return AESGCM(key).decrypt(nonce, sealed, bound)
    except (InvalidTag, ValueError, PyHPKEError) as exc:
        raise TrustError(
            f"message {message.message_id}: cannot decrypt: wrong recipient key, or the"
            " ciphertext, its enc or nonce, or its header was altered",
            reason="decrypt_failed",
        ) from exc


def _proof_problem(message: SealedMessage, trusted: KeyRing, leaf: bytes) -> str | None:
    """Version 2, steps (3)-(4): the leaf, walked up the proof, gives a root the key signed."""
    proof = message.proof
    decoded = None if proof is None else decode_proof(proof)
    if decoded is None:
        raise TrustError(
            f"message {message.message_id}: proof must be 16 bytes plus 32 per audit-path hash"
            f" (got {'none' if proof is None else f'{len(proof)} bytes'})",
            reason="bad_signature",
        )
    if message.key_id not in trusted.keys:
        return "unknown_key"
    index, size, path = decoded
    try:
        root = root_from_path(hash_leaf(leaf), index, size, path)
    except ValueError as exc:
        raise TrustError(
            f"message {message.message_id}: proof (leaf {index} of {size}) is malformed: {exc}",
            reason="bad_signature",
        ) from exc
    statement = batch_root_bytes(root, size, supplier_id=GATEWAY_SIGNER, key_id=message.key_id)
    return trusted.verify_statement(message.key_id, statement, message.signature)


def open_message(
    message: SealedMessage,
    *,
    recipient_id: str,
    private_key: X25519PrivateKey,
    trusted: KeyRing,
    accept_content_types: Iterable[str] = (OUTBOUND_CONTENT_TYPE,),
) -> OpenedMessage:
    """Recipient side, one record at a time: check the header, decrypt, verify, match.

    Steps, each a :class:`TrustError` with its ``reason``: (1) version and suite known
    (1 / :data:`SEAL_SUITE` or 2 / :data:`SEAL_SUITE_BATCH`), recipient and content type as
    expected (``unexpected_header``/``wrong_recipient``); (2) decrypt bound to the header
    (``decrypt_failed``): version 2 decapsulates the batch's ``enc``, exports this record's key
    and opens AES-GCM, version 1 opens HPKE single-shot; (3) signing key trusted
    (``unknown_key``); (4) the signature (``bad_signature``): version 2 walks the record's leaf
    up its proof to a root the key signed (so a record altered, moved, taken from another batch
    or given another record's proof fails), version 1 checks the record's own signature;
    (5) the signed envelope repeats the header (``envelope_mismatch``).
    """
    # (1) header
    known = (message.version, message.suite) in (
        (_VERSION, SEAL_SUITE),
        (_VERSION_BATCH, SEAL_SUITE_BATCH),
    )
    if not known:
        raise TrustError(
            f"message {message.message_id}: expected version {_VERSION_BATCH} /"
            f" {SEAL_SUITE_BATCH} (or {_VERSION} / {SEAL_SUITE}), got {message.version} /"
            f" {message.suite}",
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
    bound = seal_context(message.recipient_id, message.message_id, message.content_type)
    if message.version == _VERSION_BATCH:
        plaintext = _decrypt_batch_record(message, private_key, bound)
        # (3) + (4) the batch signature, through this record's proof
        problem = _proof_problem(message, trusted, outbound_leaf(message.content_type, plaintext))
    else:
        try:
            plaintext = hpke_open(private_key, message.ciphertext, bound)
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
            + (
                " match the Merkle root this record's plaintext and proof lead to (the record,"
                " its proof or the signature was altered, or it comes from another batch)"
                if message.version == _VERSION_BATCH
                else " verify over the decrypted envelope"
            ),
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
