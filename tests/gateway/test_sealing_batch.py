"""Version 2 sealing: one HPKE context per recipient per batch, one signature per batch.

The export is RFC 9180's (Appendix A.1.1 vectors through the library the gateway uses, and a
cross-check of our exact suite against ``cryptography``'s independent HPKE); each record opens
alone; and every way a record can be forged, altered, moved or mixed up is refused with its
reason. ``test_sealing.py`` covers version 1 (single-shot), which still opens.
"""

from __future__ import annotations

import dataclasses
import struct

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey, KEMKeyPair

from pcf_exchange.contracts.canonical import canonical_json
from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.gateway import (
    OUTBOUND_CONTENT_TYPE,
    SEAL_SUITE,
    SEAL_SUITE_BATCH,
    GatewayKey,
    KeyRing,
    OutboundBatch,
    SealedMessage,
    open_message,
    seal,
    seal_batch,
)
from pcf_exchange.gateway._sealing import batch_info, seal_context

# RFC 9180, Appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode
A11_INFO = "4f6465206f6e2061204772656369616e2055726e"
A11_SKEM = "52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736"
A11_PKRM = "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d"
A11_SKRM = "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8"
A11_ENC = "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431"
A11_EXPORTS = (
    ("", "3853fe2b4035195a573ffc53856e77058e15d9ea064de3e59f4961d0095250ee"),
    ("00", "2e8f0b54673c7029649d4eb9d5e33bf1872cf76d623ff164ac185da9e88c21a5"),
    ("54657374436f6e74657874", "e9e43065102c3836401bed8c3c3c75ae46be1639869391d62c61f1ec7af54931"),
)


def test_rfc9180_a11_exported_values() -> None:
    suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES128_GCM)
    ephemeral = X25519PrivateKey.from_private_bytes(bytes.fromhex(A11_SKEM))
    eks = KEMKeyPair(
        KEMKey.from_pyca_cryptography_key(ephemeral),
        KEMKey.from_pyca_cryptography_key(ephemeral.public_key()),
    )
    recipient = X25519PrivateKey.from_private_bytes(bytes.fromhex(A11_SKRM))
    assert recipient.public_key().public_bytes_raw().hex() == A11_PKRM
    enc, sender = suite.create_sender_context(
        KEMKey.from_pyca_cryptography_key(recipient.public_key()),
        info=bytes.fromhex(A11_INFO),
        eks=eks,
    )
    assert enc.hex() == A11_ENC
    receiver = suite.create_recipient_context(
        enc, KEMKey.from_pyca_cryptography_key(recipient), info=bytes.fromhex(A11_INFO)
    )
    for context, expected in A11_EXPORTS:
        assert sender.export(bytes.fromhex(context), 32).hex() == expected
        assert receiver.export(bytes.fromhex(context), 32).hex() == expected


def test_our_suite_matches_an_independent_hpke() -> None:
    # cryptography's HPKE (Rust/OpenSSL) opens what the pyhpke context of our exact suite
    # (X25519 / HKDF-SHA256 / AES-256-GCM) seals first: the same key schedule, so the same
    # exporter secret.
    suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)
    key = X25519PrivateKey.generate()
    info = batch_info("alice")
    enc, sender = suite.create_sender_context(
        KEMKey.from_pyca_cryptography_key(key.public_key()), info=info
    )
    sealed = sender.seal(b"first record")
    theirs = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    assert theirs.decrypt(enc + sealed, key, info=info) == b"first record"


# ----------------------------------------------------------------------------------------------
# a batch


@pytest.fixture(scope="module")
def keys() -> dict[str, X25519PrivateKey]:
    return {name: X25519PrivateKey.generate() for name in ("alice", "bob", "carol")}


@pytest.fixture(scope="module")
def signer() -> GatewayKey:
    return GatewayKey.generate()


@pytest.fixture(scope="module")
def ring(signer: GatewayKey) -> KeyRing:
    return KeyRing.of(signer.public_key)


def envelope(message_id: str, recipient: str) -> dict[str, object]:
    return {
        "contentType": OUTBOUND_CONTENT_TYPE,
        "messageId": message_id,
        "recipientId": recipient,
        "footprint": {"id": f"pf-{message_id}", "pcf": {"pcfExcludingBiogenicUptake": "1.5"}},
    }


ORDER = ("alice", "bob", "alice", "carol", "alice", "bob", "alice")


def a_batch(
    signer: GatewayKey, keys: dict[str, X25519PrivateKey], tag: str = "m"
) -> list[SealedMessage]:
    return list(
        seal_batch(
            [(envelope(f"{tag}-{i}", who), keys[who].public_key()) for i, who in enumerate(ORDER)],
            signer=signer,
        )
    )


@pytest.fixture(scope="module")
def batch(signer: GatewayKey, keys: dict[str, X25519PrivateKey]) -> list[SealedMessage]:
    return a_batch(signer, keys)


def open_as(message: SealedMessage, keys: dict[str, X25519PrivateKey], ring: KeyRing) -> object:
    rid = message.recipient_id
    return open_message(message, recipient_id=rid, private_key=keys[rid], trusted=ring)


def reason_of(
    message: SealedMessage,
    key: X25519PrivateKey,
    ring: KeyRing,
    rid: str | None = None,
) -> str:
    with pytest.raises(TrustError) as info:
        open_message(
            message, recipient_id=rid or message.recipient_id, private_key=key, trusted=ring
        )
    return info.value.reason


def test_each_record_opens_alone(
    batch: list[SealedMessage], keys: dict[str, X25519PrivateKey], ring: KeyRing
) -> None:
    for i, message in enumerate(batch):
        assert (message.version, message.suite) == (2, SEAL_SUITE_BATCH)
        # opened alone, with nothing else of the batch
        opened = open_message(
            message, recipient_id=ORDER[i], private_key=keys[ORDER[i]], trusted=ring
        )
        assert opened.envelope == envelope(f"m-{i}", ORDER[i])
        assert opened.plaintext == canonical_json(envelope(f"m-{i}", ORDER[i]))
        assert b"pf-m" not in message.ciphertext


def test_one_encapsulation_per_recipient_one_signature_per_batch(
    batch: list[SealedMessage],
) -> None:
    encs = {m.recipient_id: set() for m in batch}  # type: dict[str, set[bytes]]
    for m in batch:
        encs[m.recipient_id].add(m.ciphertext[:32])
    assert all(len(e) == 1 for e in encs.values())
    assert len({next(iter(e)) for e in encs.values()}) == 3
    assert len({m.signature for m in batch}) == 1
    # every record has its own nonce and its own proof (index, size = 7)
    assert len({m.ciphertext[32:44] for m in batch}) == len(batch)
    for index, m in enumerate(batch):
        assert m.proof is not None
        assert struct.unpack(">QQ", m.proof[:16]) == (index, len(batch))


def test_the_builder_signs_once_and_then_closes(
    signer: GatewayKey, keys: dict[str, X25519PrivateKey], ring: KeyRing
) -> None:
    builder = OutboundBatch(signer)
    assert builder.sign() == ()
    builder = OutboundBatch(signer)
    record = builder.add(envelope("x-1", "bob"), recipient_key=keys["bob"].public_key())
    (message,) = builder.sign()
    assert builder.sign() == (message,)
    assert message.ciphertext == record.ciphertext
    assert message.ciphertext_sha256 == record.ciphertext_sha256
    with pytest.raises(ValueError, match="signed already"):
        builder.add(envelope("x-2", "bob"), recipient_key=keys["bob"].public_key())
    assert open_as(message, keys, ring)


def test_wire_form_and_avro_round_trip(batch: list[SealedMessage]) -> None:
    from pcf_exchange.gateway._codec import sealed_from_datum, sealed_to_datum

    for message in batch[:2]:
        assert SealedMessage.from_bytes(message.to_bytes()) == message
        assert sealed_from_datum(sealed_to_datum(message)) == message


def test_wrong_recipient_key(
    batch: list[SealedMessage], keys: dict[str, X25519PrivateKey], ring: KeyRing
) -> None:
    message = batch[0]  # alice's
    assert reason_of(message, keys["bob"], ring) == "decrypt_failed"
    assert reason_of(message, X25519PrivateKey.generate(), ring) == "decrypt_failed"
    assert reason_of(message, keys["bob"], ring, rid="bob") == "wrong_recipient"


def test_tampered_ciphertext_enc_nonce_and_tag(
    batch: list[SealedMessage], keys: dict[str, X25519PrivateKey], ring: KeyRing
) -> None:
    message = batch[1]
    for position in (0, 31, 32, 43, 50, len(message.ciphertext) - 1):  # enc, nonce, body, tag
        flipped = bytearray(message.ciphertext)
        flipped[position] ^= 0x01
        altered = dataclasses.replace(message, ciphertext=bytes(flipped))
        assert reason_of(altered, keys["bob"], ring) == "decrypt_failed", position


def test_truncated_enc(
    batch: list[SealedMessage], keys: dict[str, X25519PrivateKey], ring: KeyRing
) -> None:
    message = batch[0]
    for cut in (0, 20, 31, 32, 44, 59):
        truncated = dataclasses.replace(message, ciphertext=message.ciphertext[:cut])
        with pytest.raises(TrustError) as info:
            open_as(truncated, keys, ring)
        assert info.value.reason == "decrypt_failed"
    # enc cut short by one byte (everything after it shifts)
    shifted = dataclasses.replace(message, ciphertext=message.ciphertext[1:])
    assert reason_of(shifted, keys["alice"], ring) == "decrypt_failed"


def test_header_is_bound_to_key_and_associated_data(
    batch: list[SealedMessage], keys: dict[str, X25519PrivateKey], ring: KeyRing
) -> None:
    moved = dataclasses.replace(batch[0], message_id="m-2")  # another alice message's id
    assert reason_of(moved, keys["alice"], ring) == "decrypt_failed"
    other_type = OUTBOUND_CONTENT_TYPE + ";x=1"
    retyped = dataclasses.replace(batch[0], content_type=other_type)
    with pytest.raises(TrustError) as info:
        open_message(
            retyped,
            recipient_id="alice",
            private_key=keys["alice"],
            trusted=ring,
            accept_content_types=(other_type,),
        )
    assert info.value.reason == "decrypt_failed"
    # a version-2 record relabelled as version 1 is not opened as one
    relabelled = dataclasses.replace(batch[0], version=1, suite=SEAL_SUITE)
    assert reason_of(relabelled, keys["alice"], ring) == "decrypt_failed"
    mixed = dataclasses.replace(batch[0], version=1)
    assert reason_of(mixed, keys["alice"], ring) == "unexpected_header"


def test_tampered_proof(
    batch: list[SealedMessage], keys: dict[str, X25519PrivateKey], ring: KeyRing
) -> None:
    message = batch[2]
    assert message.proof is not None
    for position in (7, 15, 16, len(message.proof) - 1):  # index, size, a path hash
        flipped = bytearray(message.proof)
        flipped[position] ^= 0x01
        altered = dataclasses.replace(message, proof=bytes(flipped))
        assert reason_of(altered, keys["alice"], ring) == "bad_signature", position
    for bad in (None, b"", message.proof[:-1], message.proof[:-32]):
        altered = dataclasses.replace(message, proof=bad)
        assert reason_of(altered, keys["alice"], ring) == "bad_signature"


def test_a_proof_for_another_record(
    batch: list[SealedMessage], keys: dict[str, X25519PrivateKey], ring: KeyRing
) -> None:
    # alice's record 0 with alice's record 2's proof (a swap, or a reordering of the batch)
    swapped = dataclasses.replace(batch[0], proof=batch[2].proof)
    assert reason_of(swapped, keys["alice"], ring) == "bad_signature"


def test_a_record_from_another_batch(
    batch: list[SealedMessage],
    signer: GatewayKey,
    keys: dict[str, X25519PrivateKey],
    ring: KeyRing,
) -> None:
    other = a_batch(signer, keys, tag="n")
    assert open_as(other[0], keys, ring)  # genuine in its own batch
    for altered in (
        dataclasses.replace(other[0], signature=batch[0].signature),  # this batch's root sig
        dataclasses.replace(other[0], proof=batch[0].proof),  # this batch's proof
        dataclasses.replace(batch[0], ciphertext=other[0].ciphertext),  # other ciphertext
    ):
        with pytest.raises(TrustError) as info:
            open_as(altered, keys, ring)
        assert info.value.reason in ("bad_signature", "decrypt_failed")
    assert (
        reason_of(dataclasses.replace(other[0], signature=batch[0].signature), keys["alice"], ring)
        == "bad_signature"
    )


def test_removed_records_leave_the_others_valid(
    batch: list[SealedMessage], keys: dict[str, X25519PrivateKey], ring: KeyRing
) -> None:
    # a recipient sees only its own records: the others' absence changes nothing for it
    for message in batch[3:]:
        assert open_as(message, keys, ring)


def test_untrusted_and_forged_signer(
    keys: dict[str, X25519PrivateKey], ring: KeyRing, signer: GatewayKey
) -> None:
    mallory = GatewayKey.generate()
    forged = a_batch(mallory, keys)[0]
    assert reason_of(forged, keys["alice"], ring) == "unknown_key"
    claimed = dataclasses.replace(forged, key_id=signer.key_id)
    assert reason_of(claimed, keys["alice"], ring) == "bad_signature"


def test_attacker_encrypted_content(
    batch: list[SealedMessage], keys: dict[str, X25519PrivateKey], ring: KeyRing
) -> None:
    # anyone can encrypt to alice: a record sealed by Mallory under the gateway's header,
    # signature and proof does not match the root the gateway signed
    evil = {**envelope("m-0", "alice"), "footprint": {"id": "evil"}}
    builder = OutboundBatch(GatewayKey.generate())
    builder.add(evil, recipient_key=keys["alice"].public_key())
    (mallory,) = builder.sign()
    forged = dataclasses.replace(batch[0], ciphertext=mallory.ciphertext)
    assert reason_of(forged, keys["alice"], ring) == "bad_signature"


def test_version_1_records_still_open(
    signer: GatewayKey, keys: dict[str, X25519PrivateKey], ring: KeyRing
) -> None:
    old = seal(envelope("old-1", "carol"), signer=signer, recipient_key=keys["carol"].public_key())
    assert (old.version, old.suite, old.proof) == (1, SEAL_SUITE, None)
    assert open_as(old, keys, ring)


def test_seal_context_is_the_exporter_context() -> None:
    # the binding the recipient recomputes from the clear header
    assert seal_context("alice", "m-0", OUTBOUND_CONTENT_TYPE) != seal_context(
        "alice", "m-1", OUTBOUND_CONTENT_TYPE
    )
    assert batch_info("alice") != batch_info("bob")


# ----------------------------------------------------------------------------------------------
# the per-record export: cryptography's HKDF-Expand on the context's exporter secret


def test_pyhpke_version_the_export_relies_on() -> None:
    # exporter_secret() reads pyhpke's private '_exporter_secret'; a new pyhpke must be checked
    from importlib.metadata import version

    assert version("pyhpke") == "0.6.5"


def test_export_key_equals_pyhpke_export_for_the_same_context() -> None:
    from pcf_exchange.gateway._sealing import export_key, exporter_secret

    suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)
    key = X25519PrivateKey.generate()
    enc, sender = suite.create_sender_context(
        KEMKey.from_pyca_cryptography_key(key.public_key()), info=batch_info("alice")
    )
    receiver = suite.create_recipient_context(
        enc, KEMKey.from_pyca_cryptography_key(key), info=batch_info("alice")
    )
    for context in (b"", b"\x00", seal_context("alice", "m-0", OUTBOUND_CONTENT_TYPE), b"x" * 300):
        ours = export_key(exporter_secret(sender), context)
        assert ours == sender.export(context, 32) == receiver.export(context, 32)
        assert export_key(exporter_secret(receiver), context) == ours
    other = suite.create_sender_context(
        KEMKey.from_pyca_cryptography_key(key.public_key()), info=batch_info("alice")
    )[1]
    assert export_key(exporter_secret(other), b"") != export_key(exporter_secret(sender), b"")


def test_export_key_gives_the_rfc9180_a11_values_for_an_aes128_context() -> None:
    # the A.1.1 suite differs from ours in the AEAD id (AES-128-GCM), which is part of the
    # suite_id in the export's label: our prefix with that id must give the RFC's values
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    from pcf_exchange.gateway._sealing import _EXPORT_INFO_PREFIX, exporter_secret

    suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES128_GCM)
    recipient = X25519PrivateKey.from_private_bytes(bytes.fromhex(A11_SKRM))
    receiver = suite.create_recipient_context(
        bytes.fromhex(A11_ENC),
        KEMKey.from_pyca_cryptography_key(recipient),
        info=bytes.fromhex(A11_INFO),
    )
    ours = struct.pack(">HHH", 0x20, 0x01, 0x02)
    assert _EXPORT_INFO_PREFIX[:-3].endswith(ours)  # X25519 / HKDF-SHA256 / AES-256-GCM
    prefix = _EXPORT_INFO_PREFIX[: -3 - 6] + struct.pack(">HHH", 0x20, 0x01, 0x01) + b"sec"
    for context, expected in A11_EXPORTS:
        info = prefix + bytes.fromhex(context)
        got = HKDFExpand(hashes.SHA256(), 32, info).derive(exporter_secret(receiver))
        assert got.hex() == expected


@pytest.mark.parametrize(
    ("recipient", "message_id", "content_type"),
    [
        ("alice", "m-0", OUTBOUND_CONTENT_TYPE),
        ('bö"b\\\n', "é\u2028\x00", "text/x;v=1"),
        ("", "", ""),
    ],
)
def test_fast_seal_context_is_seal_context(
    recipient: str, message_id: str, content_type: str
) -> None:
    from pcf_exchange.gateway._sealing import _seal_context_fast

    assert _seal_context_fast(recipient, message_id, content_type) == seal_context(
        recipient, message_id, content_type
    )


def test_fast_seal_context_fails_as_seal_context_on_a_lone_surrogate() -> None:
    # orjson refuses it, so the fast path falls back to seal_context, which cannot encode it
    from pcf_exchange.gateway._sealing import _seal_context_fast

    with pytest.raises(UnicodeEncodeError):
        seal_context("r", "\ud800", OUTBOUND_CONTENT_TYPE)
    with pytest.raises(UnicodeEncodeError):
        _seal_context_fast("r", "\ud800", OUTBOUND_CONTENT_TYPE)
