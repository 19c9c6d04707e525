"""Key files for the gateway (Ed25519 signing key) and its recipients (X25519 keys), PEM.

Private keys are written 0600 (PKCS#8, optionally passphrase-encrypted), public keys 0644
(SubjectPublicKeyInfo). The policy names a recipient key as ``x25519:<base64 raw key>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from contracts.errors import KeyStoreError
from gateway._sealing import GatewayKey, key_id_of

__all__ = [
    "derive_secret",
    "load_gateway_key",
    "load_gateway_public_key",
    "load_recipient_private_key",
    "load_secret",
    "policy_key_text",
    "policy_with_recipient_keys",
    "write_gateway_key",
    "write_recipient_key",
    "write_secret",
]


def _write(path: Path, data: bytes, mode: int) -> None:
    if path.exists():
        raise KeyStoreError(f"{path} exists; refusing to overwrite a key file")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _private_pem(key: Ed25519PrivateKey | X25519PrivateKey, passphrase: bytes | None) -> bytes:
    encryption = BestAvailableEncryption(passphrase) if passphrase else NoEncryption()
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)


def _public_pem(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def public_path_for(private: Path) -> Path:
    """``gateway.pem`` -> ``gateway.pub.pem``."""
    name = private.name[:-4] if private.name.endswith(".pem") else private.name
    return private.with_name(f"{name}.pub.pem")


def write_gateway_key(path: Path, *, passphrase: bytes | None = None) -> tuple[str, Path]:
    """New Ed25519 signing key at *path* (0600) and its public key beside it; returns key id."""
    key = Ed25519PrivateKey.generate()
    public = public_path_for(path)
    _write(path, _private_pem(key, passphrase), 0o600)
    _write(public, _public_pem(key.public_key()), 0o644)
    return key_id_of(key.public_key()), public


def write_recipient_key(path: Path, *, passphrase: bytes | None = None) -> tuple[str, Path]:
    """New X25519 key for a recipient at *path* (0600) + public key; returns ``x25519:...``."""
    key = X25519PrivateKey.generate()
    public = public_path_for(path)
    _write(path, _private_pem(key, passphrase), 0o600)
    _write(public, _public_pem(key.public_key()), 0o644)
    return policy_key_text(key.public_key()), public


def policy_key_text(key: X25519PublicKey) -> str:
    """How the policy names a recipient key: ``x25519:`` + base64 of the 32 raw bytes."""
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "x25519:" + base64.b64encode(raw).decode()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"cannot read key file {path}: {exc}") from exc


def _load_private(path: Path, passphrase: bytes | None) -> object:
    try:
        return load_pem_private_key(_read(path), password=passphrase)
    except (ValueError, TypeError) as exc:
        raise KeyStoreError(
            f"{path} is not a readable PEM private key (wrong passphrase?): {exc}"
        ) from exc


def load_gateway_key(path: Path, *, passphrase: bytes | None = None) -> GatewayKey:
    key = _load_private(path, passphrase)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyStoreError(f"{path} holds a {type(key).__name__}, not an Ed25519 signing key")
    return GatewayKey.from_private_key(key)


def load_gateway_public_key(path: Path) -> Ed25519PublicKey:
    data = _read(path)
    try:
        key = load_pem_public_key(data)
    except ValueError:
        try:  # a private key file also gives its public half
            private = load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyStoreError(f"{path} is not a PEM Ed25519 public key: {exc}") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise KeyStoreError(f"{path} is not an Ed25519 key") from None
        return private.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise KeyStoreError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def load_recipient_private_key(path: Path, *, passphrase: bytes | None = None) -> X25519PrivateKey:
    key = _load_private(path, passphrase)
    if not isinstance(key, X25519PrivateKey):
        raise KeyStoreError(f"{path} holds a {type(key).__name__}, not an X25519 private key")
    return key


def write_secret(path: Path) -> None:
    """32 random bytes (hex) for pseudonyms and PI counters, 0600."""
    _write(path, secrets.token_hex(32).encode() + b"\n", 0o600)


def load_secret(path: Path) -> bytes:
    text = _read(path).strip()
    try:
        secret = bytes.fromhex(text.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise KeyStoreError(f"{path} must hold a hex secret: {exc}") from exc
    if len(secret) < 32:
        raise KeyStoreError(f"{path} holds {len(secret)} bytes; a secret needs at least 32")
    return secret


def derive_secret(key: GatewayKey, label: str) -> bytes:
    """A 32-byte secret derived from the signing key (when no secret file is given)."""
    raw = key.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return hmac.new(raw, f"pcfx/gateway/{label}/v1".encode(), hashlib.sha256).digest()


def policy_with_recipient_keys(policy_text: str, keys: dict[str, X25519PublicKey]) -> str:
    """*policy_text* with the ``encryption_key`` of each recipient in *keys* replaced.

    For deployments and demos that generate recipients' keys: the rest of the policy file,
    comments included, is kept as written.
    """
    for recipient, key in keys.items():
        pattern = re.compile(
            rf"(- id: {re.escape(recipient)}\n(?:    .*\n)*?    encryption_key: )\"[^\"]*\""
        )
        policy_text, count = pattern.subn(rf'\1"{policy_key_text(key)}"', policy_text)
        if count != 1:
            raise ValueError(f"recipient {recipient!r} with an encryption_key is not in the policy")
    return policy_text
