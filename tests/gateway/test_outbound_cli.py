"""``pcfx outbound verify`` and ``decrypt`` on a file of sealed messages: one record at a time,
version 2 (sealed per batch) and version 1 (sealed alone) alike, and FAIL with the reason for
each record that was altered, moved, or sealed for someone else. No broker needed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import typer
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from typer.testing import CliRunner

from pcf_exchange.gateway import OUTBOUND_CONTENT_TYPE, GatewayKey, SealedMessage, seal, seal_batch
from pcf_exchange.pcfx.commands.gateway import outbound_app

cli = typer.Typer()
cli.add_typer(outbound_app, name="outbound")
invoke = CliRunner().invoke


def envelope(message_id: str, recipient: str, value: str = "2.50") -> dict[str, object]:
    return {
        "contentType": OUTBOUND_CONTENT_TYPE,
        "messageId": message_id,
        "recipientId": recipient,
        "footprint": {"id": f"pf-{message_id}", "pcf": {"pcfExcludingBiogenicUptake": value}},
    }


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("keys")
    alice, bob = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    signer = GatewayKey.generate()
    (folder / "alice.pem").write_bytes(
        alice.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    (folder / "alice.pem").chmod(0o600)
    (folder / "gateway.pub.pem").write_bytes(
        signer.public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return {"alice": alice, "bob": bob, "signer": signer, "dir": folder}


def write(path: Path, messages: list[SealedMessage]) -> Path:
    path.write_bytes(b"".join(m.to_bytes() + b"\n" for m in messages))
    return path


def args(command: str, keys: dict[str, object], source: Path) -> list[str]:
    folder = keys["dir"]
    assert isinstance(folder, Path)
    return [
        "outbound",
        command,
        "--recipient",
        "alice",
        "--key",
        str(folder / "alice.pem"),
        "--gateway-pub",
        str(folder / "gateway.pub.pem"),
        str(source),
    ]


def batch_for_alice(keys: dict[str, object]) -> list[SealedMessage]:
    alice, bob, signer = keys["alice"], keys["bob"], keys["signer"]
    assert isinstance(alice, X25519PrivateKey) and isinstance(bob, X25519PrivateKey)
    assert isinstance(signer, GatewayKey)
    sealed = seal_batch(
        [
            (envelope("a-1", "alice"), alice.public_key()),
            (envelope("b-1", "bob"), bob.public_key()),
            (envelope("a-2", "alice"), alice.public_key()),
        ],
        signer=signer,
    )
    old = seal(envelope("a-0", "alice"), signer=signer, recipient_key=alice.public_key())
    return [old, sealed[0], sealed[2]]


def test_verify_and_decrypt_both_versions(keys: dict[str, object], tmp_path: Path) -> None:
    source = write(tmp_path / "alice.jsonl", batch_for_alice(keys))
    result = invoke(cli, args("verify", keys, source))
    assert result.exit_code == 0, result.output
    assert "OK: a-0 (v1, signed alone)" in result.stdout
    assert "OK: a-1 (v2, leaf 0 of a batch of 3)" in result.stdout
    assert "OK: a-2 (v2, leaf 2 of a batch of 3)" in result.stdout
    assert "OK: 3 messages verified, 0 refused" in result.stdout
    assert "pf-a" not in result.stdout  # verify shows no content

    result = invoke(cli, [*args("decrypt", keys, source), "--footprint-only"])
    assert result.exit_code == 0, result.output
    footprints = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [f["id"] for f in footprints] == ["pf-a-0", "pf-a-1", "pf-a-2"]
    assert footprints[1]["pcf"]["pcfExcludingBiogenicUptake"] == "2.50"


def test_each_bad_record_fails_with_its_reason(keys: dict[str, object], tmp_path: Path) -> None:
    old, first, second = batch_for_alice(keys)
    assert first.proof is not None and second.proof is not None
    tampered = bytearray(first.ciphertext)
    tampered[60] ^= 1
    proof = bytearray(second.proof)
    proof[-1] ^= 1
    alice, signer = keys["alice"], keys["signer"]
    assert isinstance(alice, X25519PrivateKey) and isinstance(signer, GatewayKey)
    # a genuine record of another batch (same message id, another value)
    (other_batch,) = seal_batch(
        [(envelope("a-1", "alice", value="3.00"), alice.public_key())], signer=signer
    )
    messages = [
        dataclasses.replace(first, ciphertext=bytes(tampered)),  # tampered ciphertext
        dataclasses.replace(second, proof=bytes(proof)),  # tampered proof
        dataclasses.replace(first, proof=second.proof),  # another record's proof
        dataclasses.replace(other_batch, signature=first.signature),  # another batch's root
        dataclasses.replace(first, ciphertext=first.ciphertext[:31]),  # truncated enc
        old,  # still fine
    ]
    source = write(tmp_path / "bad.jsonl", messages)
    result = invoke(cli, args("verify", keys, source))
    assert result.exit_code == 1, result.output
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL: ")]
    assert [line.split(":")[1].strip() for line in fails[:-1]] == [
        "decrypt_failed",
        "bad_signature",
        "bad_signature",
        "bad_signature",
        "decrypt_failed",
    ]
    assert "FAIL: 1 messages verified, 5 refused" in result.stdout
    result = invoke(cli, args("decrypt", keys, source))
    assert result.exit_code == 1
    assert [json.loads(x)["messageId"] for x in result.stdout.splitlines() if x[:1] == "{"] == [
        "a-0"
    ]


def test_a_record_for_someone_else(keys: dict[str, object], tmp_path: Path) -> None:
    bob, signer = keys["bob"], keys["signer"]
    assert isinstance(bob, X25519PrivateKey) and isinstance(signer, GatewayKey)
    (for_bob,) = seal_batch([(envelope("b-9", "bob"), bob.public_key())], signer=signer)
    readdressed = dataclasses.replace(for_bob, recipient_id="alice")
    source = write(tmp_path / "bob.jsonl", [for_bob, readdressed])
    result = invoke(cli, args("verify", keys, source))
    assert result.exit_code == 1
    assert "FAIL: wrong_recipient:" in result.stdout
    assert "FAIL: decrypt_failed:" in result.stdout  # alice's key cannot open bob's record
