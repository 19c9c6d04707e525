"""``GET /labels/verify`` for a person: a browser gets a page (the verdict at a glance, what the
label says, each check), a program gets JSON from the same address. Bad cases first: a hostile
label's text is escaped, the page runs no script and loads nothing; then the page in Chromium."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pcf_exchange.contracts.certification import CertOutcome, CurrentFootprint
from pcf_exchange.contracts.labels import encode_label, label_for, label_from_scan, label_url
from pcf_exchange.gateway.api import InMemoryFootprintSource, create_app
from pcf_exchange.gateway.api._labels import wants_html
from pcf_exchange.gateway.api._server import create_self_signed_cert, start_in_thread
from tests.contracts.test_cert_registry import DAY, HASH_A, HASH_B, PRODUCT, T0, World
from tests.producers.test_label_verify import _resign_body

NOW = (T0 + 10 * DAY).timestamp()
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def world() -> World:
    world = World()
    world.register()
    assert world.issue(T0 + DAY)[0] is CertOutcome.ACCEPTED
    world.registry.observe_footprint(CurrentFootprint(PRODUCT, "fp-a", HASH_A, "pcf.declared"))
    return world


@pytest.fixture
def label(world: World) -> str:
    cert = world.registry.certificates["CQC-2026-0001"].certificate
    return encode_label(label_for(cert), world.body_key)


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    app = create_app(
        InMemoryFootprintSource(), [], label_registry=lambda: world.registry, clock=lambda: NOW
    )
    with TestClient(app) as client:
        yield client


def _page(client: TestClient, payload: str, accept: str = BROWSER) -> str:
    response = client.get(
        "/labels/verify?payload=" + urllib.parse.quote(payload, safe=""),
        headers={"Accept": accept},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src" not in response.headers["content-security-policy"]
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["vary"] == "Accept"
    text: str = response.text
    return text


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        ("", False),
        ("*/*", False),  # what HTTP libraries send
        ("application/json", False),
        ("application/json, text/html", True),  # equal weight: the page
        ("text/html;q=0.5, application/json", False),
        ("text/html;q=0", False),
        ("text/html;q=oops", False),
        (BROWSER, True),
        ("TEXT/HTML", True),
    ],
)
def test_who_gets_the_page(accept: str, html: bool) -> None:
    assert wants_html(accept) is html


def test_a_qr_code_carries_the_page_address_and_the_label_comes_back_out(label: str) -> None:
    with pytest.raises(ValueError, match="https://"):
        label_url("http://api.example/labels/verify", label)
    url = label_url("https://api.example/labels/verify", label)
    assert url.startswith("https://api.example/labels/verify?payload=PCFX1.")
    assert label_from_scan(url) == label
    assert label_from_scan(label_url("https://x.example/v?lang=zh", label)) == label
    assert label_from_scan(f"  {label}\n") == label
    assert label_from_scan("https://x.example/v?payload=a&payload=b").startswith("https://")
    assert label_from_scan("hello") == "hello"  # (then malformed for check_label)


def test_the_address_a_qr_code_carries_opens_the_page(client: TestClient, label: str) -> None:
    url = label_url("https://testserver/labels/verify", label)
    response = client.get(url, headers={"Accept": BROWSER})
    assert response.status_code == 200 and 'data-valid="true"' in response.text


def test_a_program_still_gets_the_verdict_as_json(client: TestClient, label: str) -> None:
    response = client.get("/labels/verify", params={"payload": label})
    assert response.headers["content-type"] == "application/json"
    assert response.json()["valid"] is True


def test_a_hostile_label_is_shown_escaped_and_not_valid(client: TestClient, label: str) -> None:
    evil = '<script>alert(1)</script><img src=x onerror="x">'
    page = _page(client, _resign_body(label, {"p": evil}))
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'data-valid="false"' in page and "Not a valid carbon label" in page
    assert "bad_signature" in page
    page = _page(client, "hello")
    assert 'data-valid="false"' in page and "malformed" in page


def test_a_good_label_reads_valid_then_stale_once_the_footprint_moves(
    client: TestClient, world: World, label: str
) -> None:
    page = _page(client, label)
    assert 'data-valid="true"' in page and "Valid carbon label" in page
    assert "63.2 kgCO2e" in page and "CQC-2026-0001 (valid)" in page
    assert page.count('class="ok"') == 8  # the eight numbered checks
    world.registry.observe_footprint(CurrentFootprint(PRODUCT, "fp-b", HASH_B, "pcf.products"))
    page = _page(client, label)
    assert 'data-valid="false"' in page and "<code>stale</code>" in page
    assert "Verified 2026-01-11 00:00 UTC" in page


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (make browser)")
def test_the_page_in_chromium(world: World, label: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    app = create_app(
        InMemoryFootprintSource(), [], label_registry=lambda: world.registry, clock=lambda: NOW
    )
    tls = create_self_signed_cert(tmp_path / "tls")
    server = start_in_thread(app, tls.cert_file, tls.key_file)
    shots = Path(os.environ.get("PCFX_TEST_ARTIFACTS", "tests/artifacts"))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
            )
            try:
                page = browser.new_context(
                    ignore_https_errors=True, viewport={"width": 390, "height": 844}
                ).new_page()  # a phone that scanned the code
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.goto(
                    server.url + "/labels/verify?" + urllib.parse.urlencode({"payload": label})
                )
                assert page.get_attribute("#verdict", "data-valid") == "true"
                assert "63.2 kgCO2e" in page.inner_text("main")
                assert page.locator("li.ok").count() == 8
                shot = shots / "label-page.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000, "the screenshot is blank"
                print(f"label page screenshot: {shot.resolve()}")
                assert errors == []
            finally:
                browser.close()
    finally:
        server.stop()
