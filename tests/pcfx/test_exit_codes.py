"""The README's exit codes, one real command per code and per way of reaching it, through
typer's CliRunner on the whole ``pcfx`` app. No broker: an unreachable one is 127.0.0.1:1.

0 done; 1 rejected or failed verification (a wrong or missing passphrase included); 2 wrong
command line; 3 infrastructure unavailable; 4 input unreadable (a missing key file included).
Every failure is a short message on stderr, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pcf_exchange.pcfx.cli import app
from pcf_exchange.pcfx.console import ExitCode
from pcf_exchange.producers import KeyRole, new_key_pair
from tests.producers.conftest import SUPPLIER, footprint_json

runner = CliRunner()


@pytest.fixture(autouse=True)
def _nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("PCFX_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("PCFX_LEDGER", str(tmp_path / "ledger.json"))
    monkeypatch.delenv("PCFX_KEY_PASSPHRASE", raising=False)
    monkeypatch.delenv("PCFX_VERBOSE", raising=False)


class World:
    """Files the commands read: good and bad footprints, keys plain and encrypted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.good = self._json("good.json", [footprint_json(1)])
        bad = footprint_json(2)
        bad["pcf"]["pCfExcludingBiogenicUptake"] = "lots"
        self.bad = self._json("bad.json", [bad])
        self.supplier = new_key_pair(SUPPLIER, root / "keys").private_key
        (root / "pw").write_text("right\n")
        (root / "wrong").write_text("wrong\n")
        self.locked = new_key_pair(SUPPLIER, root / "locked", passphrase=b"right").private_key
        operator = new_key_pair("operator", root / "op", role=KeyRole.OPERATOR)
        self.operator_pub = operator.public_key
        self.service = new_key_pair("svc", root / "svc").private_key

    def _json(self, name: str, data: Any) -> Path:
        path = self.root / name
        path.write_text(json.dumps(data))
        return path

    def publish(self, key: Path, *extra: Any, source: Path | None = None) -> list[Any]:
        return ["publish", "footprints", source or self.good, "--key", key, "--supplier",
                SUPPLIER, *extra]  # fmt: skip


CASES: dict[str, tuple[Callable[[World], list[Any]], ExitCode]] = {
    "version": (lambda w: ["--version"], ExitCode.OK),
    "dry-run publish": (lambda w: w.publish(w.supplier, "--dry-run"), ExitCode.OK),
    "unlocked key": (
        lambda w: w.publish(w.locked, "--dry-run", "--passphrase-file", w.root / "pw"),
        ExitCode.OK,
    ),
    "pcr list": (lambda w: ["pcr", "list", "--json"], ExitCode.OK),
    "rejected record": (
        lambda w: w.publish(w.supplier, "--dry-run", source=w.bad),
        ExitCode.REJECTED,
    ),
    "wrong passphrase": (
        lambda w: w.publish(w.locked, "--dry-run", "--passphrase-file", w.root / "wrong"),
        ExitCode.REJECTED,
    ),
    "no passphrase for an encrypted key": (
        lambda w: w.publish(w.locked, "--dry-run"),
        ExitCode.REJECTED,
    ),
    "passphrase variable unset": (
        lambda w: w.publish(w.locked, "--dry-run", "--passphrase-env", "PCFX_TEST_NO_SUCH_VAR"),
        ExitCode.REJECTED,
    ),
    "unknown option": (lambda w: ["rollup", "--no-such-option"], ExitCode.USAGE),
    "unknown command": (lambda w: ["no-such-command"], ExitCode.USAGE),
    "publish, broker down": (lambda w: w.publish(w.supplier), ExitCode.INFRASTRUCTURE),
    "streams topics, broker down": (lambda w: ["streams", "topics"], ExitCode.INFRASTRUCTURE),
    "streams run, broker down": (
        lambda w: [
            "streams",
            "run",
            "--operator-key",
            w.operator_pub,
            "--service-key",
            w.service,
            "--data-dir",
            w.root / "state",
        ],
        ExitCode.INFRASTRUCTURE,
    ),
    "approvals list, broker down": (lambda w: ["approvals", "list"], ExitCode.INFRASTRUCTURE),
    "rollup, missing file": (
        lambda w: ["rollup", "--footprints", w.root / "nope.json", "--boms", w.good],
        ExitCode.UNREADABLE_INPUT,
    ),
    "missing key file": (
        lambda w: w.publish(w.root / "nope.key.pem", "--dry-run"),
        ExitCode.UNREADABLE_INPUT,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_exit_code(case: str, tmp_path: Path) -> None:
    build, expected = CASES[case]
    result = runner.invoke(app, [str(a) for a in build(World(tmp_path))])
    assert result.exit_code == expected, result.output
    assert "Traceback" not in result.output
    if expected not in (ExitCode.OK, ExitCode.USAGE, ExitCode.REJECTED):
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert 1 <= len(lines) <= 6, result.stderr  # the error and what to do, wrapped


def test_every_readme_code_is_covered() -> None:
    assert {int(code) for _, code in CASES.values()} == {int(c) for c in ExitCode}
