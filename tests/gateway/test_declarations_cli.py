"""``pcfx declarations``: files in, documents out, released through the gateway to a file sink
(sealed message + JSON-lines audit log). Bad cases first. No broker needed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from typer.testing import CliRunner

from pcf_exchange.contracts.keyfiles import private_key_pem, write_key_file
from pcf_exchange.gateway import (
    GatewayKey,
    KeyRing,
    SealedMessage,
    default_policy_path,
    open_message,
)
from pcf_exchange.gateway.audit import JsonLinesAuditStore, check_audit_log
from pcf_exchange.pcfx.cli import app
from tests.gateway.test_declarations import SCHEMA, aluminium, art7_input, battery, cbam_input

invoke = CliRunner().invoke
OEM = "eu-battery-oem-de"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Any]:
    """Footprints, input files, a gateway key, and a policy whose OEM key we hold."""
    gw = GatewayKey.generate()
    write_key_file(tmp_path / "gw.pem", private_key_pem(gw.private_key), private=True)
    oem = X25519PrivateKey.generate()
    raw = oem.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    policy = Path(default_policy_path()).read_text(encoding="utf-8")
    policy = policy.replace(
        "x25519:5b1lxe+9XPPpoWJ/FZ7B+b+7rCRwfshPEmswxCwdKVw=",
        "x25519:" + base64.b64encode(raw).decode(),
    )
    (tmp_path / "policy.yaml").write_text(policy, encoding="utf-8")
    (tmp_path / "lfp.json").write_text(json.dumps(battery()), encoding="utf-8")
    (tmp_path / "al.json").write_text(json.dumps(aluminium()), encoding="utf-8")
    (tmp_path / "art7.yaml").write_text(yaml.safe_dump(art7_input()), encoding="utf-8")
    (tmp_path / "cbam.json").write_text(json.dumps(cbam_input()), encoding="utf-8")
    return {"dir": tmp_path, "gw": gw, "oem": oem}


def release_args(d: Path, *more: str) -> list[str]:
    return [
        "--out",
        str(d / "out"),
        "--policy",
        str(d / "policy.yaml"),
        "--gateway-key",
        str(d / "gw.pem"),
        "--audit-log",
        str(d / "audit.jsonl"),
        *more,
    ]


# --- bad cases --------------------------------------------------------------------------------


def test_a_missing_input_field_is_named_and_nothing_is_written(files: dict[str, Any]) -> None:
    d: Path = files["dir"]
    data = art7_input()
    del data["manufacturingPlant"]["country"]
    (d / "bad.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    result = invoke(
        app,
        [
            "declarations",
            "art7",
            str(d / "lfp.json"),
            "--input",
            str(d / "bad.yaml"),
            "--out",
            str(d / "out"),
            "--dry-run",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "manufacturingPlant.country" in result.output
    assert not (d / "out").exists()


def test_an_unreadable_footprint_exits_4(files: dict[str, Any]) -> None:
    d: Path = files["dir"]
    result = invoke(
        app,
        [
            "declarations",
            "cbam",
            str(d / "nope.json"),
            "--input",
            str(d / "cbam.json"),
            "--out",
            str(d / "out"),
            "--dry-run",
        ],
    )
    assert result.exit_code == 4, result.output


def test_a_refused_recipient_gets_nothing_and_exit_1(files: dict[str, Any]) -> None:
    d: Path = files["dir"]
    result = invoke(
        app,
        [
            "declarations",
            "art7",
            str(d / "lfp.json"),
            "--input",
            str(d / "art7.yaml"),
            "--recipient",
            "uk-customer-gb",
            "--json",
            *release_args(d),
        ],
    )
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert out["release"]["outcome"] == "blocked" and out["release"]["sealedFile"] is None
    assert not list((d / "out").glob("*.sealed.jsonl"))
    (entry,) = JsonLinesAuditStore(d / "audit.jsonl").entries()
    assert entry.kind == "transfer_blocked"


def test_a_tampered_audit_log_is_not_extended(files: dict[str, Any]) -> None:
    d: Path = files["dir"]
    args = [
        "declarations",
        "art7",
        str(d / "lfp.json"),
        "--input",
        str(d / "art7.yaml"),
        "--recipient",
        OEM,
        *release_args(d),
    ]
    assert invoke(app, args).exit_code == 0
    log = d / "audit.jsonl"
    log.write_text(log.read_text(encoding="utf-8").replace(OEM, "eu-battery-oem-xx"), "utf-8")
    before = log.read_bytes()
    result = invoke(app, args)
    assert result.exit_code == 1 and "refusing to extend" in result.output
    assert log.read_bytes() == before


# --- good paths -------------------------------------------------------------------------------


def test_dry_run_writes_json_html_and_a_schema_valid_passport(files: dict[str, Any]) -> None:
    d: Path = files["dir"]
    result = invoke(
        app,
        [
            "declarations",
            "art7",
            str(d / "lfp.json"),
            "--input",
            str(d / "art7.yaml"),
            "--out",
            str(d / "out"),
            "--dry-run",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["dryRun"] is True and out["release"] is None
    passport = json.loads(Path(out["files"]["passport"]).read_text(encoding="utf-8"))
    jsonschema.validate(passport, json.loads(SCHEMA.read_text(encoding="utf-8")))
    page = Path(out["files"]["html"]).read_text(encoding="utf-8")
    assert "Annex II" in page and "@media print" in page
    assert not (d / "audit.jsonl").exists()


def test_release_seals_for_the_recipient_with_one_checked_audit_entry(
    files: dict[str, Any],
) -> None:
    d: Path = files["dir"]
    result = invoke(
        app,
        [
            "declarations",
            "art7",
            str(d / "lfp.json"),
            "--input",
            str(d / "art7.yaml"),
            "--recipient",
            OEM,
            "--json",
            *release_args(d),
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)["release"]
    assert out["outcome"] == "allowed" and out["released"] is True
    store = JsonLinesAuditStore(d / "audit.jsonl")
    (entry,) = store.entries()
    assert entry.kind == "transfer" and entry.message_id == out["messageId"]
    keys = KeyRing.of(files["gw"].public_key)
    assert check_audit_log(store.entries(), store.checkpoints(), keys, log_id="default").ok
    line = Path(out["sealedFile"]).read_bytes().strip()
    opened = open_message(
        SealedMessage.from_bytes(line), recipient_id=OEM, private_key=files["oem"], trusted=keys
    )
    assert opened.footprint["declaration"]["manufacturingPlant"]["city"] == "Ningde"


def test_cbam_is_held_for_approval_and_the_study_goes_home(files: dict[str, Any]) -> None:
    d: Path = files["dir"]
    cbam = invoke(
        app,
        [
            "declarations",
            "cbam",
            str(d / "al.json"),
            "--input",
            str(d / "cbam.json"),
            "--recipient",
            "eu-cbam-importer-nl",
            "--json",
            *release_args(d),
        ],
    )
    assert cbam.exit_code == 1, cbam.output
    held = json.loads(cbam.stdout)["release"]
    assert held["outcome"] == "held" and held["approvalId"]
    study = invoke(
        app,
        [
            "declarations",
            "study",
            str(d / "al.json"),
            "--recipient",
            "cn-carbon-label-body",
            "--purpose",
            "carbon-label-certification",
            "--json",
            *release_args(d),
        ],
    )
    assert study.exit_code == 0, study.output
    assert json.loads(study.stdout)["release"]["released"] is True
    kinds = [e.kind for e in JsonLinesAuditStore(d / "audit.jsonl").entries()]
    assert kinds == ["transfer_held", "transfer"]
