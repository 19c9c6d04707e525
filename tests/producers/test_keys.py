"""Key files: created private, loaded only when safe, errors that say what to do."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pcf_exchange.contracts.errors import KeyStoreError
from pcf_exchange.producers.keys import key_id_of, load_private_key, load_public_key, new_key_pair


def test_new_key_pair_is_0600_and_round_trips(tmp_path: Path) -> None:
    files = new_key_pair("urn:pact:company:customcode:vendor-assigned:cathode-co", tmp_path)
    assert stat.S_IMODE(files.private_key.stat().st_mode) == 0o600
    private = load_private_key(files.private_key)
    public = load_public_key(files.public_key)
    assert key_id_of(public) == files.key_id == key_id_of(private.public_key())
    assert len(files.key_id) == 32
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
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = load_private_key(files.private_key)
    monkeypatch.setattr(Ed25519PrivateKey, "generate", staticmethod(lambda: private))
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


# -- whose key is it


def test_key_files_say_whose_they_are(tmp_path: Path) -> None:
    from pcf_exchange.producers.keys import KeyRole, read_key_info

    files = new_key_pair("urn:pact:company:customcode:vendor-assigned:cathode-co", tmp_path)
    for path in (files.private_key, files.public_key):
        info = read_key_info(path)
        assert info.owner == "urn:pact:company:customcode:vendor-assigned:cathode-co"
        assert info.role is KeyRole.SUPPLIER
        assert info.key_id == files.key_id
    operator = new_key_pair("operator", tmp_path, role=KeyRole.OPERATOR)
    assert read_key_info(operator.public_key).role is KeyRole.OPERATOR


def test_load_signer_refuses_another_suppliers_key(tmp_path: Path) -> None:
    from pcf_exchange.contracts.errors import TrustError
    from pcf_exchange.producers.keys import load_signer

    files = new_key_pair("supplier-a", tmp_path)
    signer = load_signer(files.private_key, owner="supplier-a")
    assert (signer.owner, signer.key_id) == ("supplier-a", files.key_id)
    assert load_signer(files.private_key).owner == "supplier-a", "the file names its owner"
    with pytest.raises(TrustError) as caught:
        load_signer(files.private_key, owner="supplier-b")
    assert caught.value.reason == "key_supplier_mismatch"
    assert "belongs to 'supplier-a', not to 'supplier-b'" in caught.value.message


def test_load_signer_refuses_the_wrong_role(tmp_path: Path) -> None:
    from pcf_exchange.contracts.errors import TrustError
    from pcf_exchange.producers.keys import KeyRole, load_signer

    supplier = new_key_pair("supplier-a", tmp_path)
    with pytest.raises(TrustError, match="is a supplier key; this needs an operator key"):
        load_signer(supplier.private_key, role=KeyRole.OPERATOR)
    operator = new_key_pair("operator", tmp_path, role=KeyRole.OPERATOR)
    with pytest.raises(TrustError, match="is an operator key; this needs a supplier key"):
        load_signer(operator.private_key, owner="operator", role=KeyRole.SUPPLIER)


def test_a_pem_without_header_falls_back_to_the_file_name(tmp_path: Path) -> None:
    from pcf_exchange.contracts.errors import KeyStoreError, TrustError
    from pcf_exchange.producers.keys import load_signer

    files = new_key_pair("urn:x:supplier-a", tmp_path)
    pem = files.private_key.read_bytes().split(b"-----BEGIN", 1)[1]
    files.private_key.write_bytes(b"-----BEGIN" + pem)  # as another tool would write it
    assert load_signer(files.private_key, owner="urn:x:supplier-a").owner == "urn:x:supplier-a"
    with pytest.raises(TrustError):
        load_signer(files.private_key, owner="urn:x:supplier-b")
    bare = tmp_path / "anonymous.pem"
    bare.write_bytes(b"-----BEGIN" + pem)
    os.chmod(bare, 0o600)
    assert load_signer(bare, owner="whoever").owner == "whoever"
    with pytest.raises(KeyStoreError, match="does not say whose it is"):
        load_signer(bare)


def test_passphrase_from_file_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pcf_exchange.contracts.errors import KeyStoreError
    from pcf_exchange.producers.keys import load_signer, read_passphrase

    files = new_key_pair("supplier-a", tmp_path, passphrase=b"correct horse")
    secret = tmp_path / "pass.txt"
    secret.write_text("correct horse\n")
    assert read_passphrase(secret) == b"correct horse"
    assert load_signer(files.private_key, read_passphrase(secret)).key_id == files.key_id
    monkeypatch.setenv("PCFX_KEY_PASSPHRASE", "correct horse")
    assert read_passphrase(None) == b"correct horse"
    monkeypatch.delenv("PCFX_KEY_PASSPHRASE")
    assert read_passphrase(None) is None
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(KeyStoreError, match="is empty"):
        read_passphrase(tmp_path / "empty.txt")
    with pytest.raises(KeyStoreError, match="cannot read passphrase file"):
        read_passphrase(tmp_path / "missing.txt")


def test_owner_with_control_characters_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="without control characters"):
        new_key_pair("evil\npcfx-key-owner: other", tmp_path)
