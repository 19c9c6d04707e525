"""Ingestion checks: every record is accepted, a harmless duplicate, pending its key, or rejected
with the reason that names what is wrong."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pcf_exchange.contracts import (
    AvroSerde,
    BillOfMaterials,
    EmissionFactor,
    InMemorySchemaRegistry,
    SignedFootprint,
    SignerRole,
    SupplierKey,
    parse,
    parse_footprint,
    register_all,
    sign,
    sign_batch,
)
from pcf_exchange.contracts.errors import TrustError, ValidationFailed
from pcf_exchange.streams.ingest import (
    CheckedFootprint,
    IngestOutcome,
    KeyRegistry,
    ParkingLot,
    SequenceLedger,
    SourceRef,
    check_record,
)
from tests.contracts.conftest import BOM_JSON, FACTOR_JSON, FOOTPRINT_JSON

SUPPLIER = FOOTPRINT_JSON["companyIds"][0]
MANUFACTURER = "example-pack"
T0 = datetime(2025, 6, 1, tzinfo=UTC)
NAMESPACES = {
    SUPPLIER: ("urn:pact:example-cells.cn", "urn:gtin:06901234567892"),
    MANUFACTURER: ("urn:pact:example-pack.cn",),
}


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class World:
    """An operator, two suppliers' keys, a serde, and the ingestion state."""

    def __init__(self) -> None:
        registry = InMemorySchemaRegistry()
        register_all(registry)
        self.serde = AvroSerde(registry)
        self.operator = Ed25519PrivateKey.generate()
        self.supplier = Ed25519PrivateKey.generate()
        self.manufacturer = Ed25519PrivateKey.generate()
        self.keys = KeyRegistry(operator_keys={"op-1": self.operator.public_key()})
        self.ledger = SequenceLedger()
        self.offset = 0

    def source(self, topic: str, at: datetime = T0) -> SourceRef:
        self.offset += 1
        return SourceRef(topic, 0, self.offset, at)

    def register(self, owner: str, key: Ed25519PrivateKey, key_id: str, seq: int = 1, **kw: Any):
        registration = SupplierKey(
            supplier_id=owner,
            key_id=key_id,
            public_key=raw(key),
            valid_from=kw.pop("valid_from", datetime(2025, 1, 1, tzinfo=UTC)),
            registered_by="operator",
            namespaces=kw.pop("namespaces", NAMESPACES.get(owner, ())),
            **kw,
        )
        signed = sign(
            self.operator, registration, supplier_id="operator", key_id="op-1", sequence=seq
        )
        data = self.serde.encode("pcf.keys", signed)
        return self.keys.apply(data, self.source("pcf.keys"), self.serde)

    def footprint_bytes(
        self, seq: int = 1, key: Ed25519PrivateKey | None = None, **changes: Any
    ) -> bytes:
        doc = copy.deepcopy(FOOTPRINT_JSON)
        doc.update(changes)
        signed = sign(
            key or self.supplier,
            parse_footprint(doc),
            supplier_id=SUPPLIER,
            key_id="s-1",
            sequence=seq,
        )
        return self.serde.encode("pcf.declared", signed)

    def check(self, topic: str, data: bytes, at: datetime = T0):
        return check_record(
            data, self.source(topic, at), serde=self.serde, keys=self.keys, ledger=self.ledger
        )


@pytest.fixture
def world() -> World:
    w = World()
    assert w.register(SUPPLIER, w.supplier, "s-1").outcome is IngestOutcome.ACCEPTED
    assert w.register(MANUFACTURER, w.manufacturer, "m-1").outcome is IngestOutcome.ACCEPTED
    return w


def test_signed_footprint_is_accepted_then_a_redelivery_is_a_duplicate(world: World) -> None:
    data = world.footprint_bytes(seq=5)
    first = world.check("pcf.declared", data)
    assert first.outcome is IngestOutcome.ACCEPTED
    assert first.subject == f"footprint:{SUPPLIER}/{FOOTPRINT_JSON['productIds'][0]}"
    assert len(first.content_hash) == 64
    assert world.check("pcf.declared", data).outcome is IngestOutcome.DUPLICATE
    assert (
        world.check("pcf.declared", world.footprint_bytes(seq=6)).outcome is IngestOutcome.ACCEPTED
    )


def test_an_older_sequence_is_superseded_not_rejected(world: World) -> None:
    # a redelivery after a restart (the same bytes) or any older record of the subject: counted,
    # neither applied nor sent to the DLQ as an attack
    four = world.footprint_bytes(seq=4)
    assert world.check("pcf.declared", four).outcome is IngestOutcome.ACCEPTED
    assert (
        world.check("pcf.declared", world.footprint_bytes(seq=5)).outcome is IngestOutcome.ACCEPTED
    )
    redelivered = world.check("pcf.declared", four)
    other = world.check("pcf.declared", world.footprint_bytes(seq=3, comment="other content"))
    for result in (redelivered, other):
        assert result.outcome is IngestOutcome.SUPERSEDED
        assert result.error is None and result.content_hash
    assert world.ledger.seen[redelivered.subject][0] == 5  # the newer one stays in force
    assert world.ledger.counts[IngestOutcome.SUPERSEDED] == 2
    assert world.ledger.counts[IngestOutcome.DUPLICATE] == 0


def test_the_same_sequence_with_other_content_is_refused_as_reused(world: World) -> None:
    assert (
        world.check("pcf.declared", world.footprint_bytes(seq=5)).outcome is IngestOutcome.ACCEPTED
    )
    changed = world.check("pcf.declared", world.footprint_bytes(seq=5, comment="altered, same seq"))
    assert changed.outcome is IngestOutcome.REJECTED
    assert isinstance(changed.error, TrustError)
    assert changed.error.reason == "sequence_reused"
    assert "'sequence' 5 of footprint:" in changed.error.message
    assert "must name one content" in changed.error.message
    assert world.ledger.counts[IngestOutcome.DUPLICATE] == 0


def test_forged_signature_is_rejected(world: World) -> None:
    forger = Ed25519PrivateKey.generate()
    result = world.check("pcf.declared", world.footprint_bytes(key=forger))
    assert result.outcome is IngestOutcome.REJECTED
    assert isinstance(result.error, TrustError)
    assert result.error.reason == "bad_signature"
    rejection = result.rejection(b"orig", T0, "test")
    assert rejection.error_code == "trust" and rejection.reason == "bad_signature"


def test_unknown_key_is_pending_until_registered(world: World) -> None:
    stranger = Ed25519PrivateKey.generate()
    doc_key_id = "s-2"
    signed = sign(
        stranger,
        parse_footprint(copy.deepcopy(FOOTPRINT_JSON)),
        supplier_id=SUPPLIER,
        key_id=doc_key_id,
        sequence=1,
    )
    data = world.serde.encode("pcf.declared", signed)
    pending = world.check("pcf.declared", data)
    assert pending.outcome is IngestOutcome.PENDING_KEY
    assert pending.error is not None and "not registered" in pending.error.message
    world.register(SUPPLIER, stranger, doc_key_id)
    assert world.check("pcf.declared", data).outcome is IngestOutcome.ACCEPTED


def test_revoked_key_rejects_records_produced_after_revocation(world: World) -> None:
    revoked_at = T0 + timedelta(days=1)
    world.register(SUPPLIER, world.supplier, "s-1", seq=2, revoked_at=revoked_at)
    before = world.check("pcf.declared", world.footprint_bytes(seq=1), at=T0)
    after = world.check(
        "pcf.declared", world.footprint_bytes(seq=2), at=revoked_at + timedelta(seconds=1)
    )
    assert before.outcome is IngestOutcome.ACCEPTED
    assert after.outcome is IngestOutcome.REJECTED
    assert isinstance(after.error, TrustError) and after.error.reason == "revoked_key"
    assert "revoked at" in after.error.message


def test_key_of_one_supplier_cannot_sign_for_another(world: World) -> None:
    other = dict(FOOTPRINT_JSON)
    doc = copy.deepcopy(other)
    doc["companyIds"] = ["urn:pact:company:customcode:vendor-assigned:someone-else"]
    signed = sign(
        world.supplier, parse_footprint(doc), supplier_id=SUPPLIER, key_id="s-1", sequence=1
    )
    result = world.check("pcf.declared", world.serde.encode("pcf.declared", signed))
    assert result.outcome is IngestOutcome.REJECTED
    assert isinstance(result.error, TrustError) and result.error.reason == "key_supplier_mismatch"
    assert "'companyIds' must name the signing supplier" in result.error.message


def test_bom_signed_by_its_owner_and_factor_by_the_operator(world: World) -> None:
    bom = parse(BillOfMaterials, copy.deepcopy(BOM_JSON))
    signed_bom = sign(world.manufacturer, bom, supplier_id=MANUFACTURER, key_id="m-1", sequence=3)
    assert (
        world.check("pcf.bom", world.serde.encode("pcf.bom", signed_bom)).outcome
        is IngestOutcome.ACCEPTED
    )
    factor = parse(EmissionFactor, copy.deepcopy(FACTOR_JSON))
    by_operator = sign(world.operator, factor, supplier_id="operator", key_id="op-1", sequence=1)
    by_supplier = sign(world.supplier, factor, supplier_id=SUPPLIER, key_id="s-1", sequence=2)
    assert (
        world.check("pcf.factors", world.serde.encode("pcf.factors", by_operator)).outcome
        is IngestOutcome.ACCEPTED
    )
    refused = world.check("pcf.factors", world.serde.encode("pcf.factors", by_supplier))
    assert refused.outcome is IngestOutcome.REJECTED
    assert (
        refused.error is not None and "must be signed by an operator key" in refused.error.message
    )


def test_bom_owned_by_someone_else_is_rejected(world: World) -> None:
    doc = copy.deepcopy(BOM_JSON)
    doc["owner"] = "a-competitor"
    signed = sign(
        world.manufacturer,
        parse(BillOfMaterials, doc),
        supplier_id=MANUFACTURER,
        key_id="m-1",
        sequence=1,
    )
    result = world.check("pcf.bom", world.serde.encode("pcf.bom", signed))
    assert result.outcome is IngestOutcome.REJECTED
    assert (
        result.error is not None
        and "'owner' must be the signing manufacturer" in result.error.message
    )


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda b: b"\x01" + b[1:], "serde"),
        (lambda b: b[:20], "serde"),
        (lambda b: b"", "serde"),
    ],
    ids=["wrong-magic-byte", "truncated", "empty"],
)
def test_malformed_bytes_are_rejected_with_a_serde_error(
    world: World, mangle: Any, code: str
) -> None:
    result = world.check("pcf.declared", mangle(world.footprint_bytes()))
    assert result.outcome is IngestOutcome.REJECTED
    assert result.error is not None and result.error.code == code
    assert result.rejection(b"x" * 10, T0, "test").original == b"x" * 10


def test_key_registration_must_be_signed_by_the_operator(world: World) -> None:
    registration = SupplierKey(
        supplier_id=SUPPLIER,
        key_id="self-made",
        public_key=raw(world.supplier),
        valid_from=datetime(2025, 1, 1, tzinfo=UTC),
        registered_by="me",
    )
    self_signed = sign(world.supplier, registration, supplier_id=SUPPLIER, key_id="s-1", sequence=9)
    result = world.keys.apply(
        world.serde.encode("pcf.keys", self_signed), world.source("pcf.keys"), world.serde
    )
    assert result.outcome is IngestOutcome.REJECTED
    assert result.error is not None and "not a configured operator key" in result.error.message
    assert world.keys.lookup(SUPPLIER, "self-made") is None


def bom_bytes(world: World, seq: int = 1, signer: str = MANUFACTURER, **changes: Any) -> bytes:
    doc = copy.deepcopy(BOM_JSON)
    doc.update(changes)
    signed = sign(
        world.manufacturer, parse(BillOfMaterials, doc), supplier_id=signer, key_id="m-1",
        sequence=seq,
    )  # fmt: skip
    return world.serde.encode("pcf.bom", signed)


def test_hijacked_footprint_outside_the_signers_namespaces_is_not_owner(world: World) -> None:
    world.register(SUPPLIER, world.supplier, "s-1", seq=2, namespaces=("urn:pact:example-cells",))
    result = world.check("pcf.declared", world.footprint_bytes())
    assert result.outcome is IngestOutcome.REJECTED
    assert isinstance(result.error, TrustError) and result.error.reason == "not_owner"
    message = result.error.message
    assert "'productIds[0]'" in message and FOOTPRINT_JSON["productIds"][0] in message
    assert SUPPLIER in message and "'s-1'" in message and "urn:pact:example-cells" in message


def test_hijacked_bom_and_owner_less_bom_are_not_owner(world: World) -> None:
    world.register(MANUFACTURER, world.manufacturer, "m-1", seq=2, namespaces=("urn:pact:x.cn",))
    hijack = world.check("pcf.bom", bom_bytes(world))
    assert hijack.error is not None and getattr(hijack.error, "reason", "") == "not_owner"
    assert "'productId'" in hijack.error.message
    ownerless = world.check("pcf.bom", bom_bytes(world, owner=None))
    assert ownerless.error is not None and getattr(ownerless.error, "reason", "") == "not_owner"
    assert "'owner'" in ownerless.error.message


def test_the_real_owners_bom_lands_after_an_attackers_huge_revision(world: World) -> None:
    attacker = Ed25519PrivateKey.generate()
    world.register("evil", attacker, "e-1", namespaces=("urn:pact:evil.cn",))
    doc = copy.deepcopy(BOM_JSON) | {"owner": "evil"}
    huge = sign(attacker, parse(BillOfMaterials, doc), supplier_id="evil", key_id="e-1",
                sequence=2**53 - 1)  # fmt: skip
    refused = world.check("pcf.bom", world.serde.encode("pcf.bom", huge))
    assert refused.error is not None and getattr(refused.error, "reason", "") == "not_owner"
    assert world.check("pcf.bom", bom_bytes(world, seq=2)).outcome is IngestOutcome.ACCEPTED


def test_an_officer_key_does_not_declare_products(world: World) -> None:
    world.register(SUPPLIER, world.supplier, "s-1", seq=2, role=SignerRole.OFFICER)
    result = world.check("pcf.declared", world.footprint_bytes())
    assert result.error is not None and getattr(result.error, "reason", "") == "wrong_role"


def test_record_appended_before_the_keys_not_before_is_refused(world: World) -> None:
    result = world.check(
        "pcf.declared", world.footprint_bytes(), at=datetime(2024, 12, 31, tzinfo=UTC)
    )
    assert result.error is not None and getattr(result.error, "reason", "") == "key_not_yet_valid"


def test_the_parking_lot_releases_in_arrival_order_and_expires_at_append_time_plus_grace() -> None:
    lot: ParkingLot[str] = ParkingLot(timedelta(seconds=10))
    lot.park(("a", "k"), T0, "a1")
    lot.park(("b", "k"), T0, "b1")
    lot.park(("a", "k"), T0 + timedelta(seconds=5), "a2")
    assert [p.item for p in lot.waiting_for([("a", "k")])] == ["a1", "a2"]
    assert lot.next_deadline() == T0 + timedelta(seconds=10)
    assert lot.expired(T0 + timedelta(seconds=9)) == []
    assert [p.item for p in lot.expired(T0 + timedelta(seconds=10))] == ["b1"]
    assert len(lot) == 0


# -- the v2 envelope: signatures over the bytes received --------------------------------------


def _v2_datum(world: World, data: bytes) -> dict[str, Any]:
    _, datum = world.serde.decode_datum(data)
    return datum


def _reencoded(world: World, datum: dict[str, Any]) -> bytes:
    """Through the model and back: the way a tool that reads and re-writes records would."""
    from pcf_exchange.contracts._serde import from_avro_dict

    value = from_avro_dict(SignedFootprint, datum).unwrap()
    return world.serde.encode("pcf.declared", value)


def _raw_encode(world: World, datum: dict[str, Any]) -> bytes:
    import io

    from fastavro import parse_schema, schemaless_writer

    from pcf_exchange.contracts._schemas import expanded
    from pcf_exchange.contracts._serde import frame

    buffer = io.BytesIO()
    schema = parse_schema(expanded("SignedFootprint"), named_schemas={})
    schemaless_writer(buffer, schema, datum, disable_tuple_notation=True)
    schema_id = world.serde.schema_id("pcf.declared", SignedFootprint)
    return frame(schema_id, buffer.getvalue())


def test_v2_records_take_the_fast_path_and_cite_the_hash_of_the_bytes_signed(
    world: World,
) -> None:
    import hashlib

    data = world.footprint_bytes(seq=5)
    datum = _v2_datum(world, data)
    assert datum["footprint"] is None and datum["signedBody"]
    result = world.check("pcf.declared", data)
    assert result.outcome is IngestOutcome.ACCEPTED
    assert isinstance(result.record, CheckedFootprint)
    assert result.content_hash == hashlib.sha256(datum["signedBody"]).hexdigest()
    assert result.signer == (SUPPLIER, "s-1")


def test_forged_bytes_in_the_signed_body_are_rejected(world: World) -> None:
    datum = _v2_datum(world, world.footprint_bytes(seq=5))
    body: bytes = datum["signedBody"]
    # the same length (the PAE length still holds), one figure changed
    forged = body.replace(b'"fossilGhgEmissions":"61.10"', b'"fossilGhgEmissions":"11.10"')
    assert forged != body
    result = world.check("pcf.declared", _raw_encode(world, {**datum, "signedBody": forged}))
    assert result.outcome is IngestOutcome.REJECTED
    assert isinstance(result.error, TrustError) and result.error.reason == "bad_signature"


def test_a_batch_proof_for_another_record_is_rejected(world: World) -> None:
    doc_a, doc_b = copy.deepcopy(FOOTPRINT_JSON), copy.deepcopy(FOOTPRINT_JSON)
    doc_b["comment"] = "the second record of the batch"
    batch = sign_batch(
        world.supplier,
        [parse_footprint(doc_a), parse_footprint(doc_b)],
        supplier_id=SUPPLIER,
        key_id="s-1",
        sequences=[5, 5],
    )
    first, second = (_v2_datum(world, world.serde.encode("pcf.declared", r)) for r in batch.records)
    swapped = _raw_encode(world, {**first, "batchProof": second["batchProof"]})
    result = world.check("pcf.declared", swapped)
    assert result.outcome is IngestOutcome.REJECTED
    assert isinstance(result.error, TrustError) and result.error.reason == "bad_signature"
    # each with its own proof is fine
    good = world.check("pcf.declared", _raw_encode(world, first))
    assert good.outcome is IngestOutcome.ACCEPTED
    assert good.content_hash == batch.content_hashes[0]


def test_a_record_re_encoded_or_in_the_old_form_verifies_with_the_same_content_hash(
    world: World,
) -> None:
    data = world.footprint_bytes(seq=5)
    datum = _v2_datum(world, data)
    v2 = world.check("pcf.declared", data)
    # re-encoded through the model: still v2, the same bytes signed
    again = world.check("pcf.declared", _reencoded(world, datum))
    assert again.outcome is IngestOutcome.DUPLICATE and again.content_hash == v2.content_hash
    # the old form (typed footprint, no signedBody) takes the model path, same hash
    signed = sign(
        world.supplier,
        parse_footprint(copy.deepcopy(FOOTPRINT_JSON)),
        supplier_id=SUPPLIER,
        key_id="s-1",
        sequence=5,
    )
    v1 = world.serde.encode("pcf.declared", signed.model_copy(update={"signed_body": None}))
    assert _v2_datum(world, v1)["footprint"] is not None
    old = world.check("pcf.declared", v1)
    assert old.outcome is IngestOutcome.DUPLICATE, old.error
    assert isinstance(old.record, SignedFootprint) and old.content_hash == v2.content_hash


def test_an_old_form_record_with_a_forged_footprint_is_rejected(world: World) -> None:
    signed = sign(
        world.supplier,
        parse_footprint(copy.deepcopy(FOOTPRINT_JSON)),
        supplier_id=SUPPLIER,
        key_id="s-1",
        sequence=5,
    )
    v1 = _v2_datum(
        world, world.serde.encode("pcf.declared", signed.model_copy(update={"signed_body": None}))
    )
    v1["footprint"]["pcf"]["fossilGhgEmissions"] = "11.10"
    result = world.check("pcf.declared", _raw_encode(world, v1))
    assert result.outcome is IngestOutcome.REJECTED
    assert isinstance(result.error, TrustError) and result.error.reason == "bad_signature"


def test_an_envelope_that_claims_another_sequence_than_its_body_is_rejected(
    world: World,
) -> None:
    datum = _v2_datum(world, world.footprint_bytes(seq=5))
    result = world.check("pcf.declared", _raw_encode(world, {**datum, "sequence": 9}))
    assert result.outcome is IngestOutcome.REJECTED
    assert isinstance(result.error, ValidationFailed)
    assert [(v.path, v.code) for v in result.error.violations] == [("sequence", "body_mismatch")]


def test_a_bad_footprint_in_a_v2_record_is_rejected_with_its_field_path(world: World) -> None:
    import orjson

    from pcf_exchange.contracts._envelope import PAYLOAD_FOOTPRINT
    from pcf_exchange.contracts.canonical import pae

    doc = copy.deepcopy(FOOTPRINT_JSON)
    doc["pcf"]["declaredUnitAmount"] = "0"
    body = pae(
        PAYLOAD_FOOTPRINT,
        orjson.dumps(
            {"keyId": "s-1", "payload": doc, "sequence": 5, "supplierId": SUPPLIER},
            option=orjson.OPT_SORT_KEYS,
        ),
    )
    datum = _v2_datum(world, world.footprint_bytes(seq=5))
    datum = {
        **datum,
        "signedBody": body,
        "signature": world.supplier.sign(body),
        "batchProof": None,
    }
    result = world.check("pcf.declared", _raw_encode(world, datum))
    assert result.outcome is IngestOutcome.REJECTED
    assert isinstance(result.error, ValidationFailed)
    assert [(v.path, v.code) for v in result.error.violations] == [
        ("footprint.pcf.declaredUnitAmount", "min_value")
    ]


def test_a_batch_signature_is_checked_once_per_batch_not_once_per_record(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records of one batch share its signed root: one Ed25519 verification for the batch
    (what a supplier publishing with ``pcfx publish`` costs the worker), one more for the next."""
    from pcf_exchange.contracts import _envelope

    verified: list[bytes] = []
    real = Ed25519PublicKey

    class Counting:
        @staticmethod
        def from_public_bytes(raw: bytes) -> Any:
            key = real.from_public_bytes(raw)

            class Key:
                def verify(self, signature: bytes, data: bytes) -> None:
                    verified.append(data)
                    key.verify(signature, data)

                def __getattr__(self, name: str) -> Any:
                    return getattr(key, name)

            return Key()

    monkeypatch.setattr(_envelope, "Ed25519PublicKey", Counting)
    _envelope._root_signed.cache_clear()
    _envelope._batch_root_signed.cache_clear()
    is_root = _envelope.PAYLOAD_BATCH_ROOT.encode()

    def batch(first_sequence: int, size: int) -> list[bytes]:
        docs = []
        for i in range(size):
            doc = copy.deepcopy(FOOTPRINT_JSON)
            doc["comment"] = f"update {first_sequence + i}"
            docs.append(parse_footprint(doc))
        signed = sign_batch(
            world.supplier,
            docs,
            supplier_id=SUPPLIER,
            key_id="s-1",
            sequences=list(range(first_sequence, first_sequence + size)),
        )
        return [world.serde.encode("pcf.declared", r) for r in signed.records]

    for data in batch(10, 5):
        assert world.check("pcf.declared", data).outcome is IngestOutcome.ACCEPTED
    assert len(verified) == 1 and all(is_root in d for d in verified)
    for data in batch(20, 3):
        assert world.check("pcf.declared", data).outcome is IngestOutcome.ACCEPTED
    assert len(verified) == 2 and all(is_root in d for d in verified)
    # a record whose proof leads to another root is checked again (and refused): no cache hit
    # stands in for a verification that was never made
    other = batch(30, 2)
    first = _v2_datum(world, other[0])
    forged = {**first, "batchProof": {**first["batchProof"], "rootSignature": bytes(64)}}
    result = world.check("pcf.declared", _raw_encode(world, forged))
    assert result.outcome is IngestOutcome.REJECTED
    assert len(verified) == 3 and all(is_root in d for d in verified)
