"""Publish time (``--dry-run`` here: no broker): a footprint that breaks its category's rule pack
is refused naming the rule, the field and the pack; one far outside the plausible range is a
warning, and refused with ``--strict``; a good one is valid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from pcf_exchange.infra.kafka.launcher import free_port
from pcf_exchange.pcfx.commands.publish import publish_app
from pcf_exchange.producers import KeyPairFiles
from pcf_exchange.producers._fastpath import accept
from tests.producers.conftest import SUPPLIER, footprint_json, write_json

runner = CliRunner()


def _dry_run(tmp_path: Path, files: KeyPairFiles, docs: list[dict[str, Any]], *extra: str) -> Any:
    path = write_json(tmp_path / "footprints.json", docs)
    args = ["footprints", path, "--key", files.private_key, "--supplier", SUPPLIER, "--dry-run"]
    args += ["--json", "--bootstrap", f"127.0.0.1:{free_port()}", *extra]
    return runner.invoke(publish_app, [str(a) for a in args])


def cathode(n: int) -> dict[str, Any]:
    doc = footprint_json(n)
    doc["pcf"].update(
        declaredUnitOfMeasurement="kilogram",
        pcfExcludingBiogenicUptake="999",
        pcfIncludingBiogenicUptake="999",
        fossilGhgEmissions="998.7",
    )
    return doc


def cement_in_litres(n: int) -> dict[str, Any]:
    doc = footprint_json(n)
    doc["pcf"]["declaredUnitOfMeasurement"] = "liter"
    doc["extensions"][0]["data"]["pilotCategory"] = "CEMENT"
    del doc["extensions"][0]["data"]["stageBreakdown"]
    return doc


def test_dry_run_refuses_a_broken_rule_and_warns_on_a_range(
    tmp_path: Path, supplier_files: KeyPairFiles
) -> None:
    result = _dry_run(
        tmp_path, supplier_files, [footprint_json(0), cement_in_litres(1), cathode(2)]
    )
    summary = json.loads(result.stdout)
    good, cement, cathode_ = summary["records"]
    assert good["status"] == "valid" and not good.get("warnings")
    assert cement["status"] == "rejected" and cement["errorCode"] == "pcr.declared-unit"
    assert [v["path"] for v in cement["violations"]] == [
        "pcf.declaredUnitOfMeasurement",
        "extensions[0].data.stageBreakdown.raw_material_acquisition",
        "extensions[0].data.stageBreakdown.production",
    ]
    assert "pack CN-CCL-PCR-CEMENT@1.0.0" in cement["message"]
    assert cathode_["status"] == "valid"
    (warning,) = [w for w in cathode_["warnings"] if w["code"].startswith("pcr.")]
    assert warning["code"] == "pcr.plausible-range" and "hold it" in warning["message"]
    assert result.exit_code != 0  # a record was refused


def test_strict_refuses_an_out_of_range_figure(
    tmp_path: Path, supplier_files: KeyPairFiles
) -> None:
    result = _dry_run(tmp_path, supplier_files, [cathode(0)], "--strict")
    (record,) = json.loads(result.stdout)["records"]
    assert record["status"] == "rejected" and record["errorCode"] == "pcr.plausible-range"
    assert "999 kgCO2e per kilogram" in record["message"]


def test_a_file_read_by_the_fast_lane_is_checked_too(
    tmp_path: Path, supplier_files: KeyPairFiles
) -> None:
    """A file whose every record takes the fast lane (no pydantic model) still meets its pack."""
    doc = cement_in_litres(0)
    assert accept(orjson.loads(orjson.dumps(doc))) is not None  # the fast lane reads it
    result = _dry_run(tmp_path, supplier_files, [doc])
    (record,) = json.loads(result.stdout)["records"]
    assert record["status"] == "rejected" and record["errorCode"] == "pcr.declared-unit"
    assert result.exit_code != 0
