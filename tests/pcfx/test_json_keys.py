"""``--json`` speaks one key style: every name a command writes is camelCase.

Runs every command whose ``--json`` works without a broker, through the whole ``pcfx`` app,
and walks the document it prints. Keys that are data rather than names (topic names, ids with
``.``, ``:`` or ``/``) are not names and are not judged; nor are the keys of a map from a
stable reason code (``byError``: ``owner_mismatch``, the code the DLQ and the error tree use).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pcf_exchange.pcfx.cli import app
from pcf_exchange.pcfx.console import camel_keys
from pcf_exchange.producers import KeyRole, new_key_pair
from tests.contracts.conftest import BOM_JSON, FACTOR_JSON
from tests.producers.conftest import SUPPLIER, footprint_json

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
NOT_CAMEL = re.compile(r"^[A-Za-z0-9]+([_-][A-Za-z0-9]+)+$")
DATA_MAPS = {"byError"}


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("PCFX_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("PCFX_LEDGER", str(tmp_path / "ledger.json"))
    monkeypatch.setenv("PCFX_BROKER_DIR", str(tmp_path / "no-broker"))
    monkeypatch.delenv("PCFX_KEY_PASSPHRASE", raising=False)


def names(document: Any, where: str = "$") -> Iterator[tuple[str, str]]:
    """Every (path, key) of *document*."""
    if isinstance(document, dict):
        for key, value in document.items():
            if where.rsplit(".", 1)[-1] not in DATA_MAPS:
                yield where, key
            yield from names(value, f"{where}.{key}")
    elif isinstance(document, list):
        for i, value in enumerate(document):
            yield from names(value, f"{where}[{i}]")


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def _commands(tmp: Path) -> dict[str, list[Any]]:
    supplier = new_key_pair(SUPPLIER, tmp / "keys")
    operator = new_key_pair("operator", tmp / "op", role=KeyRole.OPERATOR)
    good = _write(tmp / "good.json", [footprint_json(1)])
    bom = _write(tmp / "bom.json", [BOM_JSON])
    factors = _write(tmp / "factors.json", [FACTOR_JSON])
    lfp = ROOT / "demo" / "lfp"
    return {
        "broker status": ["broker", "status"],
        "api hash-secret": ["api", "hash-secret", "--generate"],
        "pcr list": ["pcr", "list"],
        "pcr show": ["pcr", "show", "CN-CCL-PCR-CEMENT"],
        "pcr check": ["pcr", "check", good],
        "keys new": ["keys", "new", "--supplier", "acme", "--out-dir", tmp / "new"],
        "keys show": ["keys", "show", supplier.public_key],
        "publish footprints": [
            "publish",
            "footprints",
            good,
            "--key",
            supplier.private_key,
            "--supplier",
            SUPPLIER,
            "--dry-run",
        ],
        "publish bom": [
            "publish",
            "bom",
            bom,
            "--key",
            supplier.private_key,
            "--supplier",
            SUPPLIER,
            "--dry-run",
        ],
        "publish factors": [
            "publish",
            "factors",
            factors,
            "--key",
            operator.private_key,
            "--dry-run",
        ],
        "rollup": [
            "rollup",
            "--footprints",
            lfp / "suppliers-footprints.json",
            "--boms",
            lfp / "manufacturers-boms.json",
        ],
        "gateway policy-check": [
            "gateway",
            "policy-check",
            "--policy",
            ROOT / "gateway" / "policies" / "default.yaml",
        ],
    }


COMMANDS = [
    "api hash-secret",
    "broker status", "pcr list", "pcr show", "pcr check", "keys new", "keys show",
    "publish footprints", "publish bom", "publish factors", "rollup", "gateway policy-check",
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_json_keys_are_camel_case(command: str, tmp_path: Path) -> None:
    args = _commands(tmp_path)[command]
    result = runner.invoke(app, [*map(str, args), "--json"])
    assert result.exit_code in (0, 1), result.output
    document = json.loads(result.stdout)
    bad = [f"{where}: {key}" for where, key in names(document) if NOT_CAMEL.match(key)]
    assert bad == []


def test_the_judge_and_the_fixer_agree() -> None:
    data = {"kafka_version": 1, "pcf.products": {"state_dir": [{"a_b_c": 2}]}, "ok": 3}
    fixed = camel_keys(data)
    assert fixed == {"kafkaVersion": 1, "pcf.products": {"stateDir": [{"aBC": 2}]}, "ok": 3}
    assert [k for _, k in names(data) if NOT_CAMEL.match(k)] == ["kafka_version", "state_dir",
                                                                 "a_b_c"]  # fmt: skip
    assert [k for _, k in names(fixed) if NOT_CAMEL.match(k)] == []


LONG_RUNNING = {"streams run", "api serve", "console serve"}
"""Services that run until stopped: they log (``--log-format json``) instead of printing one
document."""


def test_every_command_but_the_services_has_json() -> None:
    from tests.pcfx.test_options import COMMANDS as OPTIONS

    without = {path for path, opts in OPTIONS.items() if "--json" not in opts}
    assert without == LONG_RUNNING


def test_outbound_decrypt_json_is_one_document_with_every_message(tmp_path: Path) -> None:
    """``outbound decrypt --json``: one document (not JSON Lines) holding the decrypted messages
    and the refusals, camelCase; a message sealed for someone else is a refusal with its
    reason, and the exit code still says so."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from pcf_exchange.contracts.keyfiles import private_key_pem, public_key_pem, write_key_file
    from pcf_exchange.gateway import GatewayKey, seal, seal_batch
    from tests.gateway.test_outbound_cli import envelope

    alice, bob = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    signer = GatewayKey.generate()
    write_key_file(tmp_path / "alice.pem", private_key_pem(alice), private=True)
    (tmp_path / "gateway.pub.pem").write_bytes(public_key_pem(signer.public_key))
    batch = seal_batch(
        [
            (envelope("a-1", "alice"), alice.public_key()),
            (envelope("b-1", "bob"), bob.public_key()),
        ],
        signer=signer,
    )
    old = seal(envelope("a-0", "alice"), signer=signer, recipient_key=alice.public_key())
    source = tmp_path / "alice.jsonl"
    source.write_bytes(b"".join(m.to_bytes() + b"\n" for m in [old, *batch]))
    result = runner.invoke(
        app,
        ["outbound", "decrypt", "--recipient", "alice", "--key", str(tmp_path / "alice.pem"),
         "--gateway-pub", str(tmp_path / "gateway.pub.pem"), str(source), "--footprint-only",
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # b-1 is bob's
    document = json.loads(result.stdout)
    assert document["decrypted"] == 2 and document["refused"] == 1
    assert [m["id"] for m in document["messages"]] == ["pf-a-0", "pf-a-1"]
    (refusal,) = document["refusals"]
    assert refusal["messageId"] == "b-1" and refusal["reason"]
    assert [f"{w}: {k}" for w, k in names(document) if NOT_CAMEL.match(k)] == []
