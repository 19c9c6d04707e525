"""Sign-then-encrypt round trip, and every way a forged or altered message is refused."""

from __future__ import annotations

import dataclasses
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pcf_exchange.contracts.canonical import canonical_json
from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.gateway import (
    OUTBOUND_CONTENT_TYPE,
    GatewayKey,
    KeyRing,
    SealedMessage,
    open_message,
    seal,
)
from pcf_exchange.gateway._sealing import hpke_seal, seal_context


@pytest.fixture(scope="module")
def alice() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


@pytest.fixture(scope="module")
def signer() -> GatewayKey:
    return GatewayKey.generate()


def envelope(message_id: str = "m-1", recipient: str = "alice") -> dict[str, object]:
    return {
        "contentType": OUTBOUND_CONTENT_TYPE,
        "messageId": message_id,
        "recipientId": recipient,
        "footprint": {"id": "pf-1", "pcf": {"pcfExcludingBiogenicUptake": "1.5"}, "note": "中文"},
    }


def sealed_for(signer: GatewayKey, key: X25519PrivateKey, **kw: str) -> SealedMessage:
    return seal(envelope(**kw), signer=signer, recipient_key=key.public_key())


def reason_of(
    message: SealedMessage, key: X25519PrivateKey, ring: KeyRing, rid: str = "alice"
) -> str:
    with pytest.raises(TrustError) as info:
        open_message(message, recipient_id=rid, private_key=key, trusted=ring)
    return info.value.reason


def test_round_trip(signer: GatewayKey, alice: X25519PrivateKey) -> None:
    message = sealed_for(signer, alice)
    opened = open_message(
        message, recipient_id="alice", private_key=alice, trusted=KeyRing.of(signer.public_key)
    )
    assert opened.envelope == envelope()
    assert opened.footprint["id"] == "pf-1"
    assert opened.key_id == signer.key_id
    # the signed bytes are the canonical JSON, and the signature is detached over the PAE
    assert opened.plaintext == canonical_json(envelope())
    # the ciphertext is not the plaintext and uses a fresh ephemeral key every time
    assert b"pf-1" not in message.ciphertext
    assert sealed_for(signer, alice).ciphertext[:32] != message.ciphertext[:32]


def test_wire_form_round_trip(signer: GatewayKey, alice: X25519PrivateKey) -> None:
    message = sealed_for(signer, alice)
    again = SealedMessage.from_bytes(message.to_bytes())
    assert again == message
    with pytest.raises(TrustError) as info:
        SealedMessage.from_json({**message.to_json(), "signature": "%%%"})
    assert info.value.reason == "malformed"
    with pytest.raises(TrustError, match="lacks 'keyId'"):
        SealedMessage.from_json({k: v for k, v in message.to_json().items() if k != "keyId"})


def test_wrong_recipient_key(signer: GatewayKey, alice: X25519PrivateKey) -> None:
    ring = KeyRing.of(signer.public_key)
    assert (
        reason_of(sealed_for(signer, alice), X25519PrivateKey.generate(), ring) == "decrypt_failed"
    )


def test_wrong_recipient_id(signer: GatewayKey, alice: X25519PrivateKey) -> None:
    ring = KeyRing.of(signer.public_key)
    assert reason_of(sealed_for(signer, alice), alice, ring, rid="bob") == "wrong_recipient"


def test_tampered_ciphertext(signer: GatewayKey, alice: X25519PrivateKey) -> None:
    message = sealed_for(signer, alice)
    ring = KeyRing.of(signer.public_key)
    for position in (0, 40, len(message.ciphertext) - 1):  # enc, body, tag
        flipped = bytearray(message.ciphertext)
        flipped[position] ^= 0x01
        altered = dataclasses.replace(message, ciphertext=bytes(flipped))
        assert reason_of(altered, alice, ring) == "decrypt_failed"
    truncated = dataclasses.replace(message, ciphertext=message.ciphertext[:20])
    assert reason_of(truncated, alice, ring) == "decrypt_failed"


def test_tampered_header_breaks_decryption(signer: GatewayKey, alice: X25519PrivateKey) -> None:
    ring = KeyRing.of(signer.public_key)
    moved = dataclasses.replace(sealed_for(signer, alice), message_id="m-2")
    assert reason_of(moved, alice, ring) == "decrypt_failed"  # bound into the HPKE context
    other_type = OUTBOUND_CONTENT_TYPE + ";x=1"
    retyped = dataclasses.replace(sealed_for(signer, alice), content_type=other_type)
    assert reason_of(retyped, alice, ring) == "unexpected_header"
    with pytest.raises(TrustError) as info:  # even if the recipient accepted that type
        open_message(
            retyped,
            recipient_id="alice",
            private_key=alice,
            trusted=ring,
            accept_content_types=(OUTBOUND_CONTENT_TYPE, other_type),
        )
    assert info.value.reason == "decrypt_failed"


def test_tampered_signature(signer: GatewayKey, alice: X25519PrivateKey) -> None:
    message = sealed_for(signer, alice)
    sig = bytearray(message.signature)
    sig[5] ^= 0x80
    altered = dataclasses.replace(message, signature=bytes(sig))
    assert reason_of(altered, alice, KeyRing.of(signer.public_key)) == "bad_signature"


def test_signature_from_another_message(signer: GatewayKey, alice: X25519PrivateKey) -> None:
    one, two = sealed_for(signer, alice), sealed_for(signer, alice, message_id="m-2")
    swapped = dataclasses.replace(one, signature=two.signature)
    assert reason_of(swapped, alice, KeyRing.of(signer.public_key)) == "bad_signature"


def test_untrusted_and_forged_signer(signer: GatewayKey, alice: X25519PrivateKey) -> None:
    mallory = GatewayKey.generate()
    forged = sealed_for(mallory, alice)
    assert reason_of(forged, alice, KeyRing.of(signer.public_key)) == "unknown_key"
    # Mallory claims the gateway's key id: the signature does not verify under it
    claimed = dataclasses.replace(forged, key_id=signer.key_id)
    assert reason_of(claimed, alice, KeyRing.of(signer.public_key)) == "bad_signature"


def test_attacker_encrypted_content(signer: GatewayKey, alice: X25519PrivateKey) -> None:
    # Anyone can encrypt to Alice's public key; without the gateway signature it is refused.
    message = sealed_for(signer, alice)
    forged_body = canonical_json({**envelope(), "footprint": {"id": "evil"}})
    context = seal_context("alice", message.message_id, message.content_type)
    forged = dataclasses.replace(
        message, ciphertext=hpke_seal(alice.public_key(), forged_body, context)
    )
    assert reason_of(forged, alice, KeyRing.of(signer.public_key)) == "bad_signature"


def test_replay_under_another_header(signer: GatewayKey, alice: X25519PrivateKey) -> None:
    # A genuine signed envelope re-encrypted under a new message id: header and envelope disagree.
    message = sealed_for(signer, alice)
    body = canonical_json(envelope())
    context = seal_context("alice", "m-replayed", message.content_type)
    replayed = dataclasses.replace(
        message, message_id="m-replayed", ciphertext=hpke_seal(alice.public_key(), body, context)
    )
    assert reason_of(replayed, alice, KeyRing.of(signer.public_key)) == "envelope_mismatch"


def test_messages_name_what_failed(signer: GatewayKey, alice: X25519PrivateKey) -> None:
    message = dataclasses.replace(sealed_for(signer, alice), signature=b"\0" * 64)
    with pytest.raises(TrustError) as info:
        open_message(
            message, recipient_id="alice", private_key=alice, trusted=KeyRing.of(signer.public_key)
        )
    assert "m-1" in info.value.message and "does not verify" in info.value.message
    assert json.loads(json.dumps(info.value.to_dict()))["reason"] == "bad_signature"
