"""``pcfx label verify`` offline (against a signed registry snapshot) and the certificate a body
issues from a footprint file: exit codes, ``--json``, and bad input first. No broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from pcf_exchange.contracts import parse_footprint, to_pact_json
from pcf_exchange.contracts.certification import Snapshot, footprint_digest
from pcf_exchange.contracts.errors import ValidationFailed
from pcf_exchange.contracts.keyfiles import public_key_pem
from pcf_exchange.contracts.labels import encode_label, label_for
from pcf_exchange.pcfx.cli import app
from pcf_exchange.producers.certification import certificate_from_footprint
from tests.contracts.test_cert_registry import DAY, T0, World
from tests.producers.test_label_verify import _resign_body, _world

FOOTPRINTS = Path(__file__).resolve().parents[2] / "demo" / "lfp" / "suppliers-footprints.json"
runner = CliRunner()


@pytest.fixture
def offline(tmp_path: Path) -> tuple[World, str, Path, Path]:
    world, _ = _world()
    # a label valid now (the world's certificate is valid for 2026): re-issue around today
    now = datetime.now(UTC)
    cert = world.certificate("CQC-NOW", valid_from=now - DAY, valid_until=now + 30 * DAY)
    assert world.issue(now - timedelta(hours=1), cert)[0].value == "accepted"
    text = encode_label(label_for(cert), world.body_key)
    snapshot = tmp_path / "snapshot.json"
    data = Snapshot.of(world.registry, exported_by="operator", at=now).sign(world.operator)
    snapshot.write_text(json.dumps(data))
    pub = tmp_path / "operator.pub.pem"
    pub.write_bytes(public_key_pem(world.operator.public_key()))
    return world, text, snapshot, pub


def _verify(*args: str) -> Any:
    return runner.invoke(app, ["label", "verify", *args, "--json"])


def test_a_tampered_snapshot_is_refused_with_exit_1(
    offline: tuple[World, str, Path, Path], tmp_path: Path
) -> None:
    _, text, snapshot, pub = offline
    data = json.loads(snapshot.read_text())
    data["snapshot"]["footprints"] = []
    data["snapshot"]["statements"][0]["appendedAt"] = "2020-01-01T00:00:00Z"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    result = _verify(text, "--snapshot", str(bad), "--operator-key", str(pub))
    assert result.exit_code == 1
    assert "bad_signature" not in result.stdout  # an error, not a verdict
    assert "altered after the operator signed it" in result.output


def test_an_altered_label_exits_1_naming_the_signature(
    offline: tuple[World, str, Path, Path],
) -> None:
    _, text, snapshot, pub = offline
    result = _verify(
        _resign_body(text, {"f": "1.0"}), "--snapshot", str(snapshot), "--operator-key", str(pub)
    )
    assert result.exit_code == 1
    verdict = json.loads(result.stdout)
    assert verdict["valid"] is False and verdict["reasons"] == ["bad_signature"]


def test_an_unreadable_label_file_exits_4_and_a_missing_operator_key_2(
    offline: tuple[World, str, Path, Path], tmp_path: Path
) -> None:
    _, text, snapshot, pub = offline
    result = _verify(
        str(tmp_path / "nope.txt"), "--snapshot", str(snapshot), "--operator-key", str(pub)
    )
    assert result.exit_code == 4
    result = runner.invoke(
        app, ["label", "verify", text, "--snapshot", str(snapshot)], env={"PCFX_OPERATOR_KEY": ""}
    )
    assert result.exit_code == 2


def test_a_good_label_verifies_offline_from_its_file(
    offline: tuple[World, str, Path, Path], tmp_path: Path
) -> None:
    _, text, snapshot, pub = offline
    label_file = tmp_path / "label.txt"
    label_file.write_text(text + "\n")
    result = _verify(str(label_file), "--snapshot", str(snapshot), "--operator-key", str(pub))
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert verdict["valid"] is True and verdict["source"] == str(snapshot)
    assert verdict["label"]["certificateId"] == "CQC-NOW"


# --- issuing from a footprint file ------------------------------------------------------------


def _pact() -> dict[str, Any]:
    data = json.loads(FOOTPRINTS.read_text())
    return dict(data[0] if isinstance(data, list) else data)


def _issue(pact: dict[str, Any], **changes: Any) -> Any:
    args: dict[str, Any] = {
        "certificate_id": "CQC-7",
        "body_id": "cqc",
        "body_key": Ed25519PrivateKey.generate(),
        "holder": "qh-lithium",
        "pcr_pack_id": "CN-CCL-PCR-LIB-TRACTION",
        "pcr_pack_version": "1.0.0",
        "valid_from": T0,
        "valid_until": T0 + 365 * DAY,
        **changes,
    }
    return certificate_from_footprint(pact, **args)


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"scope": "CEMENT"}, "scope"),
        ({"scope": "ROCKETS"}, "scope"),
        ({"pcr_pack_id": " "}, "pcrPackId"),
        ({"pcr_pack_version": ""}, "pcrPackVersion"),
        ({"pcr_pack_id": "CN-CCL-PCR-NO-SUCH"}, "pcrPackId"),
        ({"pcr_pack_version": "0.9.0"}, "pcrPackVersion"),
        ({"pcr_pack_id": "CN-CCL-PCR-CEMENT"}, "pcrPackId"),
        ({"product_id": "urn:pact:other.cn:product-id:X"}, "productIds"),
        ({"valid_until": T0 - DAY}, "validUntil"),
    ],
)
def test_a_certificate_request_names_what_is_wrong(changes: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _issue(_pact(), **changes)
    assert path in {v.path for v in caught.value.violations}


def test_a_footprint_that_breaks_the_pact_rules_is_not_certified() -> None:
    pact = _pact()
    pact["pcf"]["pcfExcludingBiogenicUptake"] = 7.85
    with pytest.raises(ValidationFailed) as caught:
        _issue(pact)
    assert "pcf.pcfExcludingBiogenicUptake" in caught.value.first_path


def test_a_footprint_that_breaks_its_pack_is_not_certified() -> None:
    """The body verified against the pack: a footprint in the wrong unit dimension is refused,
    naming the pack's rule and the field."""
    pact = _pact()
    pact["pcf"]["declaredUnitOfMeasurement"] = "liter"
    with pytest.raises(ValidationFailed) as caught:
        _issue(pact)
    assert "pcf.declaredUnitOfMeasurement" in {v.path for v in caught.value.violations}


def test_the_certificate_binds_the_footprints_hash_figure_unit_and_category() -> None:
    pact = _pact()
    cert = _issue(pact)
    assert cert.scope == "LITHIUM_BATTERY" and cert.unit == "kgCO2e/kg"
    assert str(cert.figure) == pact["pcf"]["pcfExcludingBiogenicUptake"]
    assert cert.footprint_id == pact["id"] and cert.product_id == pact["productIds"][0]
    assert cert.content_hash == footprint_digest(to_pact_json(parse_footprint(pact)))
    changed = _pact()
    changed["pcf"]["pcfExcludingBiogenicUptake"] = "7.86"
    assert _issue(changed).content_hash != cert.content_hash
