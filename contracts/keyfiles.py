"""Key files and key ids: the one loader and the one key-id format every component uses.

A private key is PKCS#8 PEM (optionally passphrase-encrypted), written with mode 0600 from the
moment the file exists; a public key is SubjectPublicKeyInfo PEM. Explanatory text may come
before the PEM block (RFC 7468 §5.2; OpenSSL and ``cryptography`` skip it): the producers keep
``pcfx-key-…`` lines there saying whose key it is.

Loading refuses a private key file that group or others can read, as ssh does: a leaked
signing key lets anyone sign as its owner (a supplier's footprints, the gateway's releases and
checkpoints, an officer's approvals).

The *key id* of a public key is the first 16 bytes of the SHA-256 of its raw 32 bytes, as 32
hex digits: anyone holding the public key can recompute it, and it is what every signed
record, checkpoint and registration names (:func:`key_id_of`).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import (
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from pcf_exchange.contracts.errors import KeyFileMissing, KeyStoreError, PassphraseError

__all__ = [
    "PASSPHRASE_ENV",
    "key_id_of",
    "load_ed25519_private_key",
    "load_ed25519_public_key",
    "load_x25519_private_key",
    "load_x25519_public_key",
    "private_key_pem",
    "public_key_pem",
    "raw_public_key",
    "read_ed25519_private_key",
    "write_key_file",
]

PASSPHRASE_ENV: Final = "PCFX_KEY_PASSPHRASE"
KEY_ID_HEX: Final = 32
"""Hex digits of a key id (16 bytes of SHA-256)."""


def raw_public_key(public_key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    """The 32 raw bytes (RFC 8032 / RFC 7748) of a public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The key id: 32 hex digits, the first 16 bytes of SHA-256 over the raw public key."""
    return hashlib.sha256(raw_public_key(public_key)).hexdigest()[:KEY_ID_HEX]


def public_key_pem(public_key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_key_pem(
    private_key: Ed25519PrivateKey | X25519PrivateKey, passphrase: bytes | None = None
) -> bytes:
    """PKCS#8 PEM, encrypted with the best available scheme when a *passphrase* is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def write_key_file(path: Path, data: bytes, *, private: bool, overwrite: bool = False) -> None:
    """Write a key file: a private one 0600 from its creation (never a moment when another user
    can read it), a public one 0644. Refuses to overwrite an existing file unless told to."""
    if path.exists() and not overwrite:
        raise KeyStoreError(
            f"'{path}' exists already; refusing to overwrite a key file",
            hint="Choose another file name, or remove the old key first if it is retired.",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(
        path, mode
    )  # (O_CREAT's mode is masked by the umask, and ignored for a file that was there)


def _read_private_key(path: Path, passphrase: bytes | None) -> tuple[PrivateKeyTypes, bytes]:
    """Load the private key in *path*; returns it and the file's bytes.

    Refuses, each with what to do: a missing or unreadable file, one that group or others can
    read, a missing or wrong passphrase (or one given for an unencrypted file), and a key of
    another algorithm."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileMissing(
            f"private key file '{path}' does not exist",
            hint="Create one with 'pcfx keys new' (or 'pcfx gateway keys').",
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
        key: PrivateKeyTypes = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        if passphrase:
            raise PassphraseError(
                f"private key file '{path}' is not encrypted but a passphrase was given",
                hint=f"Unset {PASSPHRASE_ENV} or drop --passphrase-file for this key.",
            ) from None
        raise PassphraseError(
            f"private key file '{path}' is encrypted and no passphrase was given",
            hint=f"Pass --passphrase-file or set {PASSPHRASE_ENV}.",
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        if passphrase:
            raise PassphraseError(
                f"cannot load private key '{path}': wrong passphrase ({exc})",
                hint="Check --passphrase-file / --passphrase-env (or $PCFX_KEY_PASSPHRASE).",
            ) from None
        raise KeyStoreError(
            f"cannot load private key '{path}': not a PEM private key ({exc})"
        ) from None
    return key, data


def read_ed25519_private_key(
    path: Path, passphrase: bytes | None = None
) -> tuple[Ed25519PrivateKey, bytes]:
    """The Ed25519 signing key in *path* (checked as :func:`_read_private_key` says) and the
    file's bytes (for the explanatory lines before its PEM block)."""
    key, data = _read_private_key(path, passphrase)
    if not isinstance(key, Ed25519PrivateKey):
        raise _wrong_kind(path, "private", "Ed25519", key)
    return key, data


def load_ed25519_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    return read_ed25519_private_key(path, passphrase)[0]


def load_x25519_private_key(path: Path, passphrase: bytes | None = None) -> X25519PrivateKey:
    key, _ = _read_private_key(path, passphrase)
    if not isinstance(key, X25519PrivateKey):
        raise _wrong_kind(path, "private", "X25519", key)
    return key


def load_ed25519_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in *path*: a public key PEM, or a private key file (unencrypted)
    whose public half is taken."""
    key = _load_public_key(path)
    if not isinstance(key, Ed25519PublicKey):
        raise _wrong_kind(path, "public", "Ed25519", key)
    return key


def load_x25519_public_key(path: Path) -> X25519PublicKey:
    """The X25519 (encryption) public key in *path*, read as :func:`load_ed25519_public_key`."""
    key = _load_public_key(path)
    if not isinstance(key, X25519PublicKey):
        raise _wrong_kind(path, "public", "X25519", key)
    return key


def _load_public_key(path: Path) -> PublicKeyTypes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileMissing(f"public key file '{path}' does not exist") from None
    except OSError as exc:
        raise KeyStoreError(f"cannot read public key file '{path}': {exc.strerror}") from exc
    key: PublicKeyTypes
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        try:  # a private key file also gives its public half
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyStoreError(f"'{path}' is not a PEM public key ({exc})") from None
    return key


def _wrong_kind(path: Path, which: str, expected: str, key: object) -> KeyStoreError:
    got = type(key).__name__.removeprefix("_")
    return KeyStoreError(f"{which} key '{path}' must be {expected} (got {got})")
