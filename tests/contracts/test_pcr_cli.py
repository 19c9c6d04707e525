"""``pcfx pcr list|show|check`` (no broker): tables and ``--json``, exit codes (1 when a record
would be refused or held, 4 when the file cannot be read), and errors that say what to do next."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from pcf_exchange.contracts.examples import example_footprint
from pcf_exchange.pcfx.cli import app

runner = CliRunner()


def _run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def test_list_and_show() -> None:
    listed = _run("pcr", "list", "--json")
    assert listed.exit_code == 0, listed.output
    packs = json.loads(listed.stdout)
    assert len(packs) == 17 and {"id", "version", "source", "declaredUnits"} <= set(packs[0])
    assert "17 rule packs" in _run("pcr", "list").stdout
    shown = json.loads(_run("pcr", "show", "CN-CCL-PCR-LIB-TRACTION", "--json").stdout)
    assert shown["maxDqr"] == "3.0" and shown["declaredUnits"][0]["unit"] == "kilowatt hour"
    assert shown["declaredUnits"][0]["range"]["source"].startswith("IVL report C444")
    unknown = _run("pcr", "show", "CN-CCL-PCR-CONCRETE")
    assert unknown.exit_code == 1 and "pcfx pcr list" in unknown.output


def test_check_a_file_of_good_bad_and_held_records(tmp_path: Path) -> None:
    good = example_footprint()
    cement = example_footprint()
    cement["pcf"]["declaredUnitOfMeasurement"] = "liter"
    cement["extensions"][0]["data"]["pilotCategory"] = "CEMENT"
    cathode = example_footprint()
    cathode["pcf"].update(declaredUnitOfMeasurement="kilogram", pcfExcludingBiogenicUptake="999")
    path = tmp_path / "fps.json"
    path.write_text(json.dumps([good, cement, cathode]))
    result = _run("pcr", "check", path, "--json")
    assert result.exit_code == 1
    outcomes = [r["outcome"] for r in json.loads(result.stdout)]
    assert outcomes == ["passed", "violated", "out_of_range"]
    text = _run("pcr", "check", path).stdout
    assert "OK:" in text and "FAIL:" in text and "HELD:" in text
    path.write_text(json.dumps(good))
    assert _run("pcr", "check", path).exit_code == 0


def test_check_an_unreadable_file_exits_4(tmp_path: Path) -> None:
    missing = _run("pcr", "check", tmp_path / "nope.json")
    assert missing.exit_code == 4 and "cannot read" in missing.output
    (tmp_path / "bad.json").write_text("{not json")
    assert _run("pcr", "check", tmp_path / "bad.json").exit_code == 4
