"""Carbon labels: encode, render, verify (contracts.labels, producers.labels); bad cases first."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from pcf_exchange.contracts.certification import (
    CertOutcome,
    CurrentFootprint,
    ListingAction,
    Revocation,
    Snapshot,
    sign_statement,
)
from pcf_exchange.contracts.errors import CertificationError, ContractError
from pcf_exchange.contracts.keyfiles import key_id_of
from pcf_exchange.contracts.labels import (
    LABEL_PREFIX,
    check_label,
    decode_label,
    encode_label,
    label_for,
)
from pcf_exchange.producers.labels import label_svg, qr_code, write_qr
from tests.contracts.test_cert_registry import DAY, HASH_A, HASH_B, PRODUCT, T0, World

NOW = T0 + 10 * DAY


def _world() -> tuple[World, str]:
    world = World()
    world.register()
    assert world.issue(T0 + DAY)[0] is CertOutcome.ACCEPTED
    world.registry.observe_footprint(CurrentFootprint(PRODUCT, "fp-a", HASH_A, "pcf.declared"))
    state = world.registry.certificates["CQC-2026-0001"]
    return world, encode_label(label_for(state.certificate), world.body_key)


def _reasons(text: str, world: World) -> list[str]:
    verdict = check_label(text, world.registry, at=NOW)
    return [c.reason for c in verdict.failures]


def _resign_body(text: str, change: dict[str, str]) -> str:
    """The label with fields changed and the *old* signature kept (an altered print)."""
    body, signature = text[len(LABEL_PREFIX) :].split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data.update(change)
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return f"{LABEL_PREFIX}{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.{signature}"


def test_a_label_whose_figure_was_altered_fails_its_signature() -> None:
    world, text = _world()
    altered = _resign_body(text, {"f": "6.32"})
    verdict = check_label(altered, world.registry, at=NOW)
    assert not verdict.valid
    assert [c.reason for c in verdict.failures] == ["bad_signature"]
    assert verdict.checks[-1].step == 3  # nothing is claimed about an unsigned label


def test_a_label_the_body_signed_with_another_figure_than_certified_is_a_mismatch() -> None:
    world, _ = _world()
    cert = world.registry.certificates["CQC-2026-0001"].certificate
    lying = encode_label(replace(label_for(cert), figure=Decimal("6.32")), world.body_key)
    verdict = check_label(lying, world.registry, at=NOW)
    assert [c.reason for c in verdict.failures] == ["label_mismatch"]
    assert "figure '6.32' (certified: '63.2')" in verdict.failures[0].message


def test_a_label_for_a_superseded_footprint_is_stale() -> None:
    world, text = _world()
    assert check_label(text, world.registry, at=NOW).valid
    world.registry.observe_footprint(CurrentFootprint(PRODUCT, "fp-b", HASH_B, "pcf.products"))
    verdict = check_label(text, world.registry, at=NOW)
    assert [c.reason for c in verdict.failures] == ["stale"]
    assert verdict.status is not None and verdict.status.value == "stale"
    assert "fp-b" in verdict.failures[0].message


def test_a_label_of_a_revoked_certificate_is_refused() -> None:
    world, text = _world()
    revocation = sign_statement(
        world.body_key, Revocation("CQC-2026-0001", "cqc", "wrong figure"), signer_id="cqc"
    )
    assert world.registry.apply(revocation, T0 + 2 * DAY).outcome is CertOutcome.ACCEPTED
    assert _reasons(text, world) == ["revoked_certificate"]


def test_a_blacklisted_bodys_label_is_refused() -> None:
    world, text = _world()
    assert world.listing(ListingAction.BLACKLIST, T0 + 2 * DAY) is CertOutcome.ACCEPTED
    assert _reasons(text, world) == ["blacklisted_body"]


def test_an_expired_label_is_refused() -> None:
    world, text = _world()
    verdict = check_label(text, world.registry, at=T0 + 400 * DAY)
    assert [c.reason for c in verdict.failures] == ["expired_label"]
    assert "the certificate is valid from" in verdict.failures[0].message


def test_a_label_of_an_unknown_body_or_certificate_is_refused() -> None:
    world, text = _world()
    stranger = World()
    assert _reasons(text, stranger) == ["unknown_body"]
    other_key = Ed25519PrivateKey.generate()
    cert = world.registry.certificates["CQC-2026-0001"].certificate
    forged = replace(label_for(cert), key_id=key_id_of(other_key.public_key()))
    assert _reasons(encode_label(forged, other_key), world) == ["unknown_key"]
    unknown = replace(label_for(cert), certificate_id="CQC-2026-9999")
    assert _reasons(encode_label(unknown, world.body_key), world) == ["unknown_certificate"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "PCFX2.abc.def",
        "PCFX1.only-one-part",
        "PCFX1.!!!.???",
        "PCFX1." + "A" * 3000,
        "PCFX1.e30.AAAA",  # {} : no fields
    ],
)
def test_a_malformed_label_is_a_verdict_naming_what_is_wrong(text: str) -> None:
    world, _ = _world()
    verdict = check_label(text, world.registry, at=NOW)
    assert not verdict.valid and [c.reason for c in verdict.failures] == ["malformed"]
    assert verdict.failures[0].message.startswith("not a carbon label")


def test_encoding_refuses_a_key_the_label_does_not_name() -> None:
    world, _ = _world()
    cert = world.registry.certificates["CQC-2026-0001"].certificate
    with pytest.raises(CertificationError) as caught:
        encode_label(label_for(cert), Ed25519PrivateKey.generate())
    assert caught.value.reason == "unknown_key"


# --- the good path --------------------------------------------------------------------------


def test_a_good_label_verifies_in_every_step_and_fits_a_small_qr_code() -> None:
    world, text = _world()
    verdict = check_label(text, world.registry, at=NOW)
    assert verdict.valid, verdict.to_json()
    assert [c.step for c in verdict.checks] == [1, 2, 3, 4, 5, 6, 7, 8]
    label, _, _ = decode_label(text)
    assert (label.figure, label.unit, label.product_id) == (Decimal("63.2"), "kgCO2e/kWh", PRODUCT)
    assert len(text) < 400
    assert int(qr_code(text).version) <= 15
    out = verdict.to_json()
    assert out["valid"] is True and out["certificateStatus"] == "valid" and out["reasons"] == []


def test_a_label_verifies_offline_against_a_signed_snapshot() -> None:
    world, text = _world()
    data = Snapshot.of(world.registry, exported_by="operator", at=NOW).sign(world.operator)
    public = world.operator.public_key()
    _, registry = Snapshot.verify(json.loads(json.dumps(data)), {key_id_of(public): public})
    assert check_label(text, registry, at=NOW).valid


def test_labels_render_as_qr_png_svg_and_a_label_image(tmp_path: Path) -> None:
    _, text = _world()
    png = write_qr(text, tmp_path / "l.png")
    svg = write_qr(text, tmp_path / "l.svg")
    assert png.read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in svg.read_bytes()
    label, _, _ = decode_label(text)
    card = label_svg(label, text, product_name="LFP280 cell", body_name="CQC")
    assert card.startswith("<svg") and "63.2" in card and "kgCO2e/kWh" in card
    assert "LFP280 cell" in card and "CQC-2026-0001" in card
    with pytest.raises(ContractError):
        write_qr(text, tmp_path / "l.jpg")


def test_the_label_expires_with_the_certificate_or_earlier() -> None:
    world, _ = _world()
    cert = world.registry.certificates["CQC-2026-0001"].certificate
    assert label_for(cert).valid_until == cert.valid_until
    short = label_for(cert, valid_until=T0 + 30 * DAY)
    assert short.valid_until == T0 + 30 * DAY
    text = encode_label(short, world.body_key)
    assert _reasons(text, world) == []
    verdict = check_label(text, world.registry, at=T0 + 31 * DAY)
    assert [c.reason for c in verdict.failures] == ["expired_label"]
    assert timedelta(0) < cert.valid_until - short.valid_until


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_changed_character_of_a_label_makes_it_not_valid(data: st.DataObject) -> None:
    world, text = _WORLD
    index = data.draw(st.integers(min_value=len(LABEL_PREFIX), max_value=len(text) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    replacement = data.draw(st.sampled_from([c for c in alphabet if c != text[index]]))
    changed = text[:index] + replacement + text[index + 1 :]
    verdict = check_label(changed, world.registry, at=NOW)
    # base64 padding bits can absorb a change of the last character: then the bytes are equal
    if decode_or_none(changed) == decode_or_none(text) and decode_or_none(text) is not None:
        assert verdict.valid
    else:
        assert not verdict.valid
        assert verdict.failures[0].reason in {
            "malformed",
            "bad_signature",
            "unknown_key",
            "unknown_body",
        }


def decode_or_none(text: str) -> tuple[bytes, bytes] | None:
    try:
        _, body, signature = decode_label(text)
    except CertificationError:
        return None
    return body, signature


_WORLD = _world()
