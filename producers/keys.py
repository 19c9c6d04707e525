"""Supplier and operator signing keys on disk: create, load, fingerprint, say whose they are.

A key pair is an Ed25519 private key (PKCS#8 PEM, file mode 0600, optionally encrypted with a
passphrase) and its public key (SubjectPublicKeyInfo PEM). The *key id* is the first 16 hex
digits of the SHA-256 of the raw public key, so anyone holding the public key can recompute it.

Both files start with a few ``pcfx-key-…: value`` lines before the PEM block (RFC 7468 allows
explanatory text there; OpenSSL and ``cryptography`` skip it) naming the key's owner (the
supplier id, or the operator id) and role. :func:`load_signer` uses them to refuse a key that
belongs to someone else before anything is signed.

Loading refuses a private key file that group or others can read, as ssh does: a leaked
supplier key lets anyone forge that supplier's footprints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pcf_exchange.contracts.errors import KeyFileMissing, KeyStoreError, TrustError
from pcf_exchange.contracts.keyfiles import (
    PASSPHRASE_ENV,
    key_id_of,
    load_ed25519_public_key,
    private_key_pem,
    public_key_pem,
    raw_public_key,
    read_ed25519_private_key,
    write_key_file,
)

__all__ = [
    "DEFAULT_OPERATOR_ID",
    "PASSPHRASE_ENV",
    "KeyInfo",
    "KeyPairFiles",
    "KeyRole",
    "Signer",
    "default_key_dir",
    "key_id_of",
    "load_private_key",
    "load_public_key",
    "load_signer",
    "new_key_pair",
    "public_key_pem",
    "raw_public_key",
    "read_key_info",
    "read_passphrase",
]

DEFAULT_OPERATOR_ID: Final = "operator"
_HEADER_PREFIX: Final = "pcfx-key-"


class KeyRole(StrEnum):
    """Who a key belongs to: a supplier (or manufacturer) signs its own records; the platform
    operator signs emission factors and supplier-key registrations."""

    SUPPLIER = "supplier"
    OPERATOR = "operator"


@dataclass(frozen=True)
class KeyPairFiles:
    owner: str
    key_id: str
    private_key: Path
    public_key: Path
    role: KeyRole = KeyRole.SUPPLIER


@dataclass(frozen=True)
class KeyInfo:
    """What a key file says about itself (its ``pcfx-key-*`` lines); ``None`` when it says
    nothing (a PEM made by another tool)."""

    owner: str | None
    role: KeyRole | None
    key_id: str | None


@dataclass(frozen=True)
class Signer:
    """A loaded private key and whom it signs for: what the SDK's ``Publisher`` needs."""

    private_key: Ed25519PrivateKey
    owner: str
    """The supplier id (or operator id) that goes into every envelope's ``supplierId``."""
    key_id: str
    role: KeyRole = KeyRole.SUPPLIER

    @classmethod
    def from_private_key(
        cls, private_key: Ed25519PrivateKey, owner: str, role: KeyRole = KeyRole.SUPPLIER
    ) -> Signer:
        _check_owner(owner)
        return cls(private_key, owner, key_id_of(private_key.public_key()), role)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()


def default_key_dir() -> Path:
    """``$PCFX_KEY_DIR``, else ``$XDG_CONFIG_HOME/pcf-exchange/keys`` (``~/.config/...``)."""
    explicit = os.environ.get("PCFX_KEY_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(config) / "pcf-exchange" / "keys"


def read_passphrase(passphrase_file: Path | None) -> bytes | None:
    """The passphrase from *passphrase_file* (first line), else ``$PCFX_KEY_PASSPHRASE``."""
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyStoreError(
                f"cannot read passphrase file '{passphrase_file}': {exc.strerror or exc}"
            ) from exc
        line = text.splitlines()[0] if text.strip() else ""
        if not line:
            raise KeyStoreError(f"passphrase file '{passphrase_file}' is empty")
        return line.encode("utf-8")
    env = os.environ.get(PASSPHRASE_ENV, "")
    return env.encode("utf-8") if env else None


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _safe_name(owner: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in owner)


def _check_owner(owner: str) -> None:
    if not owner.strip():
        raise KeyStoreError("the key owner (supplier id) must not be empty")
    if len(owner) > 512 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in owner):
        raise KeyStoreError(
            "the key owner must be at most 512 characters without control characters "
            f"(got {owner[:80]!r})"
        )


def _header(owner: str, role: KeyRole, key_id: str) -> bytes:
    lines = [
        f"{_HEADER_PREFIX}owner: {owner}",
        f"{_HEADER_PREFIX}role: {role.value}",
        f"{_HEADER_PREFIX}id: {key_id}",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def new_key_pair(
    owner: str,
    out_dir: Path,
    *,
    passphrase: bytes | None = None,
    overwrite: bool = False,
    role: KeyRole = KeyRole.SUPPLIER,
) -> KeyPairFiles:
    """Create an Ed25519 key pair for *owner* (a supplier id or the operator id) in *out_dir*."""
    _check_owner(owner)
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    key_id = key_id_of(public)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{_safe_name(owner)}.{key_id}"
    private_path = out_dir / f"{stem}.key.pem"
    public_path = out_dir / f"{stem}.pub.pem"
    header = _header(owner, role, key_id)
    write_key_file(private_path, header + private_key_pem(private, passphrase), private=True,
                   overwrite=overwrite)  # fmt: skip
    write_key_file(public_path, header + public_key_pem(public), private=False, overwrite=True)
    return KeyPairFiles(owner, key_id, private_path, public_path, role)


def _parse_header(data: bytes) -> KeyInfo:
    owner: str | None = None
    role: KeyRole | None = None
    key_id: str | None = None
    head = data.split(b"-----BEGIN", 1)[0].decode("utf-8", errors="replace")
    for line in head.splitlines():
        name, sep, value = line.partition(":")
        if not sep or not name.startswith(_HEADER_PREFIX):
            continue
        field, value = name[len(_HEADER_PREFIX) :].strip(), value.strip()
        if field == "owner" and value:
            owner = value
        elif field == "role" and value in {r.value for r in KeyRole}:
            role = KeyRole(value)
        elif field == "id" and value:
            key_id = value
    return KeyInfo(owner, role, key_id)


def read_key_info(path: Path) -> KeyInfo:
    """The owner, role and key id a key file (private or public) declares."""
    try:
        return _parse_header(path.read_bytes())
    except FileNotFoundError:
        raise KeyFileMissing(f"key file '{path}' does not exist") from None
    except OSError as exc:
        raise KeyStoreError(f"cannot read key file '{path}': {exc.strerror}") from exc


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Load a private key, refusing files that group/others can read and wrong passphrases."""
    key, _ = _load_private(path, passphrase)
    return key


def _load_private(path: Path, passphrase: bytes | None) -> tuple[Ed25519PrivateKey, KeyInfo]:
    key, data = read_ed25519_private_key(path, passphrase)
    return key, _parse_header(data)


def load_public_key(path: Path) -> Ed25519PublicKey:
    return load_ed25519_public_key(path)


def load_signer(
    path: Path,
    passphrase: bytes | None = None,
    *,
    owner: str | None = None,
    role: KeyRole = KeyRole.SUPPLIER,
) -> Signer:
    """Load *path* as the signer for *owner* in *role*, refusing someone else's key.

    Checks, in order: (1) the file loads (mode 0600, passphrase, Ed25519); (2) the owner the
    file declares (its ``pcfx-key-owner`` line, else the owner part of a file name made by
    :func:`new_key_pair`) is *owner*; (3) its declared role is *role*. With ``owner=None`` the
    file's declared owner is used (and must exist).
    """
    # (1)
    key, info = _load_private(path, passphrase)
    key_id = key_id_of(key.public_key())
    declared = info.owner
    if declared is None:
        name = path.name
        suffix = f".{key_id}.key.pem"
        if name.endswith(suffix):
            declared = name[: -len(suffix)]
            # a file name holds only the safe form of the owner
            if owner is not None and _safe_name(owner) == declared:
                declared = owner
    # (2)
    if owner is None:
        if declared is None:
            raise KeyStoreError(
                f"private key '{path}' does not say whose it is; pass the owner "
                "(--supplier ID) explicitly"
            )
        owner = declared
    elif declared is not None and declared != owner:
        raise TrustError(
            f"private key '{path}' (key id {key_id}) belongs to '{declared}', not to '{owner}'",
            reason="key_supplier_mismatch",
            hint="Sign with the key created for this supplier (pcfx keys new --supplier ID).",
        )
    _check_owner(owner)
    # (3)
    if info.role is not None and info.role is not role:
        raise TrustError(
            f"private key '{path}' is {_a(info.role.value)} key; this needs {_a(role.value)} key",
            reason="key_role_mismatch",
            hint=(
                "Emission factors and key registrations are signed by the platform operator "
                "(pcfx keys new --operator)."
                if role is KeyRole.OPERATOR
                else "Suppliers sign with their own key (pcfx keys new --supplier ID)."
            ),
        )
    return Signer(key, owner, key_id, role)
