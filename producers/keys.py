"""Supplier and operator signing keys on disk: create, load, fingerprint.

A key pair is an Ed25519 private key (PKCS#8 PEM, file mode 0600, optionally encrypted with a
passphrase) and its public key (SubjectPublicKeyInfo PEM). The *key id* is the first 16 hex
digits of the SHA-256 of the raw public key, so anyone holding the public key can recompute it.

Loading refuses a private key file that group or others can read, as ssh does: a leaked
supplier key lets anyone forge that supplier's footprints.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contracts.errors import KeyStoreError

__all__ = [
    "KeyPairFiles",
    "key_id_of",
    "load_private_key",
    "load_public_key",
    "new_key_pair",
    "public_key_pem",
]


@dataclass(frozen=True)
class KeyPairFiles:
    owner: str
    key_id: str
    private_key: Path
    public_key: Path


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _safe_name(owner: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in owner)


def new_key_pair(
    owner: str, out_dir: Path, *, passphrase: bytes | None = None, overwrite: bool = False
) -> KeyPairFiles:
    """Create an Ed25519 key pair for *owner* (a supplier id or ``operator``) in *out_dir*."""
    if not owner.strip():
        raise KeyStoreError("the key owner (supplier id) must not be empty")
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    key_id = key_id_of(public)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{_safe_name(owner)}.{key_id}"
    private_path = out_dir / f"{stem}.key.pem"
    public_path = out_dir / f"{stem}.pub.pem"
    if not overwrite and private_path.exists():
        raise KeyStoreError(f"'{private_path}' exists already; refusing to overwrite a key")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    # Create with 0600 from the start: never a moment when the key is world-readable.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(private_path, 0o600)
    public_path.write_bytes(public_key_pem(public))
    return KeyPairFiles(owner, key_id, private_path, public_path)


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Load a private key, refusing files that group/others can read and wrong passphrases."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(
            f"private key file '{path}' does not exist",
            hint="Create one with 'pcfx keys new --supplier ID'.",
        ) from None
    except OSError as exc:
        raise KeyStoreError(f"cannot read private key file '{path}': {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyStoreError(
            f"private key file '{path}' is readable by others (mode {stat.S_IMODE(mode):o}, "
            "expected 600)",
            hint=f"Run: chmod 600 '{path}'",
        )
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        raise KeyStoreError(
            f"private key file '{path}' is encrypted and no passphrase was given",
            hint="Pass --passphrase-file or set PCFX_KEY_PASSPHRASE.",
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        reason = "wrong passphrase" if passphrase else "not a PEM private key"
        raise KeyStoreError(f"cannot load private key '{path}': {reason} ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyStoreError(
            f"private key '{path}' must be Ed25519 (got {type(key).__name__.removeprefix('_')})"
        )
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise KeyStoreError(f"public key file '{path}' does not exist") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyStoreError(f"'{path}' is not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyStoreError(f"public key '{path}' must be Ed25519 (got {type(key).__name__})")
    return key
