"""One key-file loader and one key-id format (ARCHITECTURE decision 14), whoever holds the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcf_exchange.contracts.errors import KeyStoreError
from pcf_exchange.contracts.keyfiles import (
    key_id_of,
    load_ed25519_private_key,
    private_key_pem,
    write_key_file,
)
from pcf_exchange.gateway import GatewayKey
from pcf_exchange.producers.keys import Signer


def test_one_key_id_format_for_suppliers_and_the_gateway() -> None:
    key = Ed25519PrivateKey.generate()
    supplier = Signer.from_private_key(key, "urn:pact:company:customcode:vendor-assigned:x")
    gateway = GatewayKey.from_private_key(key)
    assert supplier.key_id == gateway.key_id == key_id_of(key.public_key())
    assert len(supplier.key_id) == 32 and int(supplier.key_id, 16) >= 0


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_private_key_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.pem"
    write_key_file(path, private_key_pem(Ed25519PrivateKey.generate()), private=True)
    assert path.stat().st_mode & 0o777 == 0o600
    load_ed25519_private_key(path)
    path.chmod(mode)
    with pytest.raises(KeyStoreError, match=f"readable by others \\(mode {mode:o}"):
        load_ed25519_private_key(path)


def test_a_key_file_is_never_overwritten_silently(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    write_key_file(path, b"one", private=True)
    with pytest.raises(KeyStoreError, match="refusing to overwrite"):
        write_key_file(path, b"two", private=True)
    assert path.read_bytes() == b"one"


def test_an_x25519_public_key_loads_from_its_pem_or_its_private_file_and_nothing_else(
    tmp_path: Path,
) -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from pcf_exchange.contracts.keyfiles import (
        load_x25519_public_key,
        public_key_pem,
        raw_public_key,
    )

    key = X25519PrivateKey.generate()
    public, private = tmp_path / "x.pub.pem", tmp_path / "x.pem"
    write_key_file(public, public_key_pem(key.public_key()), private=False)
    write_key_file(private, private_key_pem(key), private=True)
    for path in (public, private):
        assert raw_public_key(load_x25519_public_key(path)) == raw_public_key(key.public_key())
    signing = tmp_path / "ed.pub.pem"
    write_key_file(
        signing, public_key_pem(Ed25519PrivateKey.generate().public_key()), private=False
    )
    with pytest.raises(KeyStoreError, match="must be X25519"):
        load_x25519_public_key(signing)
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(KeyStoreError, match="not a PEM public key"):
        load_x25519_public_key(tmp_path / "junk.pem")
