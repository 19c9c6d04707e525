"""``pcfx rollup`` from files, through typer (no broker): the table, the tree and hotspots, PACT
v3 JSON + lineage with ``--out``, and every tier saying why it is not complete."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pcf_exchange.pcfx.cli import app
from pcf_exchange.pcfx.console import ExitCode

ROOT = Path(__file__).resolve().parents[2]
PACK = "urn:pact:cz-packs.cn:product-id:PACK-282"
ELECTROLYTE = "urn:pact:js-electrolyte.cn:product-id:LIPF6-EC"
FOOTPRINTS = ROOT / "demo/lfp/suppliers-footprints.json"
INPUTS = [
    "--boms",
    str(ROOT / "demo/lfp/manufacturers-boms.json"),
    "--factors",
    str(ROOT / "producers/data/factors-cn.json"),
]
runner = CliRunner()


def _flat(output: str) -> str:
    """Rich wraps long lines at the terminal width: compare without whitespace."""
    return "".join(output.split())


def test_the_demo_chain_rolls_up_with_a_tree_hotspots_and_pact_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    args = ["rollup", "--footprints", str(FOOTPRINTS), *INPUTS, "--tree", PACK, "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == ExitCode.OK, result.output
    assert "Hotspots of" in result.output and "complete" in result.output
    documents = json.loads(out.read_text())
    assert len(documents) == 6
    pack = next(d for d in documents if d["productId"] == PACK)
    assert pack["footprint"]["status"] == "Active"
    assert pack["rollup"]["completeness"]["complete"] is True
    figure = pack["footprint"]["pcf"]["pcfExcludingBiogenicUptake"]
    assert pack["rollup"]["pcfExcludingBiogenicUptake"] == figure
    assert pack["rollup"]["inputs"], "lineage comes with every result"


def test_a_missing_footprint_is_named_at_every_tier_and_the_exit_code_says_so(
    tmp_path: Path,
) -> None:
    footprints = [
        fp for fp in json.loads(FOOTPRINTS.read_text()) if ELECTROLYTE not in fp["productIds"]
    ]
    partial = tmp_path / "footprints.json"
    partial.write_text(json.dumps(footprints))
    result = runner.invoke(app, ["rollup", "--footprints", str(partial), *INPUTS])
    assert result.exit_code == ExitCode.REJECTED, result.output
    text = _flat(result.output)
    cell = f"incomplete LFP prismatic cell 280 Ah: components[2] {ELECTROLYTE}: no supplier"
    assert _flat(cell) in text
    for product in (
        "16S battery module",
        "282 kWh bus battery pack",
        "12 m battery-electric city bus",
    ):
        assert _flat(f"incomplete {product}: components[0]") in text
    assert text.count(_flat(f"missing further up: product:{ELECTROLYTE}")) == 3
