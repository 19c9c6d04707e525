"""Key files: created private, loaded only when safe, errors that say what to do."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from contracts.errors import KeyStoreError
from producers.keys import key_id_of, load_private_key, load_public_key, new_key_pair


def test_new_key_pair_is_0600_and_round_trips(tmp_path: Path) -> None:
    files = new_key_pair("urn:pact:company:customcode:vendor-assigned:cathode-co", tmp_path)
    assert stat.S_IMODE(files.private_key.stat().st_mode) == 0o600
    private = load_private_key(files.private_key)
    public = load_public_key(files.public_key)
    assert key_id_of(public) == files.key_id == key_id_of(private.public_key())
    assert len(files.key_id) == 16
    assert ":" not in files.private_key.name, "owner ids are made safe for file names"


def test_passphrase_protected_key(tmp_path: Path) -> None:
    files = new_key_pair("supplier-a", tmp_path, passphrase=b"correct horse")
    assert b"ENCRYPTED" in files.private_key.read_bytes()
    assert load_private_key(files.private_key, b"correct horse")
    with pytest.raises(KeyStoreError, match="no passphrase was given"):
        load_private_key(files.private_key)
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        load_private_key(files.private_key, b"wrong")


def test_group_readable_key_is_refused_with_the_fix(tmp_path: Path) -> None:
    files = new_key_pair("supplier-a", tmp_path)
    os.chmod(files.private_key, 0o644)
    with pytest.raises(KeyStoreError) as caught:
        load_private_key(files.private_key)
    assert "mode 644, expected 600" in caught.value.message
    assert "chmod 600" in caught.value.hint


def test_existing_key_is_not_overwritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = new_key_pair("supplier-a", tmp_path)
    before = files.private_key.read_bytes()
    # Same key id again is practically impossible; force it by pinning the generator's output.
    from producers import keys

    private = load_private_key(files.private_key)
    monkeypatch.setattr(keys.Ed25519PrivateKey, "generate", staticmethod(lambda: private))
    with pytest.raises(KeyStoreError, match="refusing to overwrite"):
        new_key_pair("supplier-a", tmp_path)
    assert files.private_key.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a key", "not a PEM private key"),
        (None, "does not exist"),
    ],
)
def test_unusable_private_key_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "k.pem"
    if content is not None:
        path.write_bytes(content)
        os.chmod(path, 0o600)
    with pytest.raises(KeyStoreError, match=message):
        load_private_key(path)


def test_non_ed25519_public_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / "ec.pub.pem"
    path.write_bytes(pem)
    with pytest.raises(KeyStoreError, match="must be Ed25519"):
        load_public_key(path)
