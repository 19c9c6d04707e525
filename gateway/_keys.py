"""Key files for the gateway (Ed25519 signing key) and its recipients (X25519 keys), PEM.

Written and loaded by :mod:`contracts.keyfiles` (private keys 0600 and refused when others can
read them, PKCS#8, optionally passphrase-encrypted; public keys 0644, SubjectPublicKeyInfo).
The policy names a recipient key as ``x25519:<base64 raw key>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from pcf_exchange.contracts.errors import KeyStoreError
from pcf_exchange.contracts.keyfiles import (
    key_id_of,
    load_ed25519_private_key,
    load_ed25519_public_key,
    load_x25519_private_key,
    private_key_pem,
    public_key_pem,
    raw_public_key,
    write_key_file,
)
from pcf_exchange.gateway._sealing import GatewayKey

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


def public_path_for(private: Path) -> Path:
    """``gateway.pem`` -> ``gateway.pub.pem``."""
    name = private.name[:-4] if private.name.endswith(".pem") else private.name
    return private.with_name(f"{name}.pub.pem")


def write_gateway_key(path: Path, *, passphrase: bytes | None = None) -> tuple[str, Path]:
    """New Ed25519 signing key at *path* (0600) and its public key beside it; returns key id."""
    key = Ed25519PrivateKey.generate()
    public = public_path_for(path)
    write_key_file(path, private_key_pem(key, passphrase), private=True)
    write_key_file(public, public_key_pem(key.public_key()), private=False)
    return key_id_of(key.public_key()), public


def write_recipient_key(path: Path, *, passphrase: bytes | None = None) -> tuple[str, Path]:
    """New X25519 key for a recipient at *path* (0600) + public key; returns ``x25519:...``."""
    key = X25519PrivateKey.generate()
    public = public_path_for(path)
    write_key_file(path, private_key_pem(key, passphrase), private=True)
    write_key_file(public, public_key_pem(key.public_key()), private=False)
    return policy_key_text(key.public_key()), public


def policy_key_text(key: X25519PublicKey) -> str:
    """How the policy names a recipient key: ``x25519:`` + base64 of the 32 raw bytes."""
    raw = raw_public_key(key)
    return "x25519:" + base64.b64encode(raw).decode()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"cannot read key file {path}: {exc}") from exc


def load_gateway_key(path: Path, *, passphrase: bytes | None = None) -> GatewayKey:
    return GatewayKey.from_private_key(load_ed25519_private_key(path, passphrase))


def load_gateway_public_key(path: Path) -> Ed25519PublicKey:
    """The gateway's public key from its public key file (or its private key file)."""
    return load_ed25519_public_key(path)


def load_recipient_private_key(path: Path, *, passphrase: bytes | None = None) -> X25519PrivateKey:
    return load_x25519_private_key(path, passphrase)


def write_secret(path: Path) -> None:
    """32 random bytes (hex) for pseudonyms and PI counters, 0600."""
    write_key_file(path, secrets.token_hex(32).encode() + b"\n", private=True)


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
