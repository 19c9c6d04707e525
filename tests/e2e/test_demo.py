"""`make demo`'s scenario on the real broker, checked against an independent calculation: a
plain recursive evaluation of the demo files, written here without the roll-up core.

The figures are those the ``pcfx demo`` process wrote to ``<workdir>/figures.json`` in the
session's one run on its own secure broker (the ``secure_demo`` fixture, ``tests/conftest.py``;
``tests/infra/test_demo_secure.py`` checks what that broker refused)."""

from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pcf_exchange.pcfx.commands.demo import BUS, CELL, DEMO_DIR, FACTORS_FILE, PACK
from tests.harness import DemoRun

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def independent_footprints(
    cell_bom_override: dict[str, Any] | None = None,
    supplier_override: dict[str, Any] | None = None,
) -> dict[str, Decimal]:
    """PCF(P) = direct + kWh x grid factor + sum(quantity x PCF(input)), per declared unit.

    The demo's BOM lines use each input's own declared unit, so no conversion is needed here;
    the test asserts that assumption rather than converting.
    """
    factors = {f["factorId"]: Decimal(f["value"]) for f in json.loads(FACTORS_FILE.read_text())}
    supplied: dict[str, tuple[Decimal, str]] = {}
    suppliers = json.loads((DEMO_DIR / "suppliers-footprints.json").read_text())
    if supplier_override is not None:
        suppliers = [
            supplier_override if fp["productIds"] == supplier_override["productIds"] else fp
            for fp in suppliers
        ]
    for fp in suppliers:
        declared = fp["pcf"]
        supplied[fp["productIds"][0]] = (
            Decimal(declared["pcfExcludingBiogenicUptake"])
            / Decimal(declared["declaredUnitAmount"]),
            declared["declaredUnitOfMeasurement"],
        )
    boms = {
        b["productId"]: b for b in json.loads((DEMO_DIR / "manufacturers-boms.json").read_text())
    }
    if cell_bom_override:
        boms[cell_bom_override["productId"]] = cell_bom_override
    memo: dict[str, Decimal] = {}

    def pcf(product: str) -> Decimal:
        if product in memo:
            return memo[product]
        bom = boms[product]
        process = bom.get("processEmissions", {})
        total = Decimal(process.get("directKgCO2e", "0"))
        if "electricityKWh" in process:
            total += Decimal(process["electricityKWh"]) * factors[process["electricityFactorId"]]
        for line in bom["components"]:
            quantity = Decimal(line["quantity"])
            pid = line.get("productId")
            if pid in boms:
                assert boms[pid]["declaredUnit"]["unit"] == line["unit"]
                total += quantity * pcf(pid)
            elif pid in supplied:
                value, unit = supplied[pid]
                assert unit == line["unit"]
                total += quantity * value
            else:  # background factor (the product has no supplier footprint)
                total += quantity * factors[line["factorId"]]
        memo[product] = total / Decimal(bom["declaredUnit"]["amount"])
        return memo[product]

    return {pid: pcf(pid) for pid in boms}


@pytest.mark.timeout(1500)  # a guard only: the run is 2-3 min on a quiet machine, more under load
def test_the_demo_matches_an_independent_calculation(secure_demo: DemoRun, tmp_path: Path) -> None:
    result = secure_demo.result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads((secure_demo.workdir / "figures.json").read_text())
    before = independent_footprints()
    green = json.loads((DEMO_DIR / "cell-green-electricity.json").read_text())
    after = independent_footprints(green)
    for product in (CELL, PACK, BUS):
        assert Decimal(figures["before"][product]) == before[product], product
        assert Decimal(figures["after"][product]) == after[product], product
    assert after[PACK] < before[PACK]
    assert figures["rejection"]["reason"] == "bad_signature"
    gateway = figures["gateway"]
    assert Decimal(gateway["eu_pcf"]) == after[PACK], "the EU customer gets the exact figure"
    assert gateway["eu_city"] == "CN-JS", "the plant city is generalised to the province"
    assert all(
        str(i.get("productId", "")).startswith("urn:pcfx:pseudonym:") or i.get("factorId")
        for i in gateway["eu_inputs"]
    ), "no sub-tier supplier identity reaches the EU customer"
    assert gateway["held"] >= 1 and gateway["released_city"] == "Changzhou"
    assert gateway["audit_ok"]
    # #21 item 6: the certification act, on the same run
    (electrolyte,) = json.loads((DEMO_DIR / "electrolyte-update.json").read_text())
    updated = independent_footprints(green, electrolyte)
    for product in (CELL, PACK, BUS):
        assert Decimal(figures["update"][product]) == updated[product], product
    cert = figures["certification"]
    certificate = cert["certificate"]
    assert certificate["bodyId"] == "cec" and certificate["productId"] == CELL
    assert Decimal(certificate["figure"]) == after[CELL], "certified: the cell's figure then"
    assert certificate["pcrPackId"] == "CN-CCL-PCR-LIB-TRACTION" and certificate["published"]
    for kind, suffix in (("qrPng", ".qr.png"), ("qrSvg", ".qr.svg"), ("labelSvg", ".label.svg")):
        assert cert["files"][kind].endswith(suffix) and Path(cert["files"][kind]).stat().st_size
    valid = cert["valid"]
    assert valid["valid"] and valid["apiValid"] and valid["exitCode"] == 0
    assert valid["reasons"] == [] and valid["certificateStatus"] == "valid"
    stale = cert["stale"]
    assert not stale["valid"] and stale["exitCode"] == 1
    assert stale["reasons"] == ["stale"] and stale["apiReasons"] == ["stale"]
    assert [n["certificateId"] for n in cert["staleNotices"]] == [certificate["certificateId"]]
    refused = cert["blacklisted"]
    assert not refused["valid"] and not refused["apiValid"] and refused["exitCode"] == 1
    assert "blacklisted_body" in refused["reasons"] and "blacklisted_body" in refused["apiReasons"]
    declaration = figures["declaration"]
    assert declaration["released"] and declaration["auditProblems"] == []
    assert declaration["auditEntries"] == [
        {"seq": 0, "kind": "transfer", "messageId": declaration["messageId"]}
    ], "one audit entry for the one release"
    assert declaration["received"] == 1, "the EU customer opens the sealed declaration"
    beyond = Decimal("0.42") + Decimal("-2.10")  # demo/lfp/art7-pack.yaml
    assert Decimal(declaration["lifeCycle"]) == updated[PACK] + beyond
    report = Path(gateway["report"])
    assert "<script" not in report.read_text().lower(), "the report is static, escaped HTML"
    dom = render_in_chromium(report, tmp_path)
    assert "Every audit log verified" in dom
    assert "eu-battery-oem-de" in dom and "D01-plant-address-for-verification" in dom


def render_in_chromium(page: Path, tmp_path: Path) -> str:
    """What a person sees: the page rendered by headless Chromium (DOM after rendering), and a
    screenshot that must not be blank."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs Debian's chromium)")
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"]
    shot = tmp_path / "report.png"
    subprocess.run([*base, f"--screenshot={shot}", page.as_uri()], check=True, timeout=120,
                   capture_output=True)  # fmt: skip
    assert shot.stat().st_size > 20_000, "the screenshot is blank"
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], check=True, timeout=120,
                         capture_output=True, text=True).stdout  # fmt: skip
    return dom
