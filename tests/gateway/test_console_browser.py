"""The console in headless Chromium (Playwright driving Debian's ``/usr/bin/chromium``), over
TLS on a real uvicorn server: log in, the charts render, a filter narrows the table, a
drill-down opens, an approval goes through and, once the gateway acted on it, shows in the log.
A screenshot of each page is saved (the path is printed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from pcf_exchange.gateway import GatewaySecrets, KeyRing, Policy
from pcf_exchange.gateway.api._server import create_self_signed_cert, start_in_thread
from pcf_exchange.gateway.console import FileAuditSource, UsersFile
from pcf_exchange.gateway.console._app import ConsoleSettings, create_console_app
from pcf_exchange.gateway.policy import CounterState
from tests.gateway._console_logs import DAY, Scenario, act_on_decisions, build_scenario
from tests.gateway._factories import NOW
from tests.gateway._trust import OFFICER

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "correct horse battery staple"
LATER = NOW + 2 * DAY + timedelta(hours=3)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is absent (make install / .ci/run installs Debian's chromium)",
)


@pytest.fixture
def scenario(
    tmp_path: Path, policy: Policy, secrets: GatewaySecrets, counters: CounterState
) -> Scenario:
    return build_scenario(tmp_path, policy, secrets, counters)


@pytest.fixture
def console_url(
    tmp_path: Path, scenario: Scenario, keyring: KeyRing, policy: Policy
) -> Iterator[str]:
    users = tmp_path / "console-users.json"
    UsersFile.set_password(users, OFFICER, key=scenario.officer_key, password=PASSWORD, n=2**14)
    app = create_console_app(
        ConsoleSettings(
            audit=FileAuditSource(scenario.path),
            keys=keyring,
            users=UsersFile.read(users),
            approvals=scenario.queue,
            rule_basis={r.id: r.basis for r in policy.rules},
            clock=lambda: LATER,
        )
    )
    tls = create_self_signed_cert(tmp_path / "tls")
    server = start_in_thread(app, tls.cert_file, tls.key_file)
    try:
        yield server.url
    finally:
        server.stop()


def _shots() -> Path:
    where = Path(os.environ.get("PCFX_TEST_ARTIFACTS", "tests/artifacts"))
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_the_console_in_chromium(console_url: str, scenario: Scenario) -> None:
    from playwright.sync_api import sync_playwright

    shots = _shots()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context(
                ignore_https_errors=True, viewport={"width": 1440, "height": 1000}
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            # (1) every page needs a login
            page.goto(console_url + "/")
            assert "/login" in page.url
            page.fill("input[name=officer]", OFFICER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("#transfers")
            assert page.locator("#chain-verdict").get_attribute("class") == "ok"
            assert "1 approval pending" in page.inner_text("main")

            # (2) the charts render: 5 decision series in 6 bars, 2 destinations
            decision = page.locator("#chart-decision svg")
            assert decision.locator("g.series").count() == 5
            assert decision.locator("rect.bar").count() == 6
            box = decision.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 150
            assert page.locator("#chart-destination svg g.series").count() == 2
            assert page.locator("#transfers tbody tr").count() == 7
            page.screenshot(path=str(shots / "console-dashboard.png"), full_page=True)

            # (3) a filter narrows the table
            page.select_option("#filters select[name=decision]", "released")
            page.click("#filters button[type=submit]")
            page.wait_for_url("**decision=released**")
            assert page.locator("#transfers tbody tr").count() == 1
            assert page.locator("#chart-decision svg rect.bar").count() == 1

            # (4) the drill-down opens, field by field
            page.click("#transfers a.drill")
            page.wait_for_selector("#fields")
            assert page.inner_text("#transfer-status") == "released (approved by bob)"
            assert "CBAM Q2 report, LOCODE only" in page.inner_text("#approval")
            assert page.locator("#fields tbody tr").count() >= 3
            assert "[*]" in page.inner_text("#fields")
            assert "sent on approval" in page.inner_text("#fields")  # the held LOCODE
            page.screenshot(path=str(shots / "console-transfer.png"), full_page=True)

            # (5) an approval goes through
            page.click("text=Approvals")
            row = page.locator(f"tr[data-approval='{scenario.pending.approval_id}']")
            row.locator("input[name=reason]").fill("CBAM Q3 report, consent on file")
            row.locator("input[name=mechanism_ref]").fill("SA-2026-011")
            page.screenshot(path=str(shots / "console-approvals.png"), full_page=True)
            row.locator("button.approve").click()
            page.wait_for_selector("#done")
            assert "approved" in page.inner_text("#done")
            assert "awaiting the gateway" in row.inner_text()

            # the gateway judges the signed decision, releases the transfer and audits both
            assert act_on_decisions(scenario, LATER + timedelta(minutes=1)) == []
            page.goto(console_url + "/?decision=released")
            labels = page.locator("#transfers td.decision").all_inner_texts()
            assert sorted(labels) == [
                "released (approved by alice)",
                "released (approved by bob)",
            ]
            page.goto(console_url + "/approvals")
            assert (
                "released"
                in page.locator(
                    f"tr[data-approval='{scenario.pending.approval_id}'] td.ap-status"
                ).inner_text()
            )
            page.goto(console_url + "/")
            shot = shots / "console.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000, "the screenshot is blank"
            print(f"console screenshot: {shot.resolve()}")
            assert errors == [], errors
        finally:
            browser.close()
