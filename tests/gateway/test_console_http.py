"""The console over HTTP (FastAPI's TestClient): login required, CSRF refused, wrong passwords
throttled, filters and drill-down, and an approval signed with the officer's key that the
gateway then accepts and releases."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pcf_exchange.gateway import GatewaySecrets, KeyRing, Policy
from pcf_exchange.gateway._decision_signing import check_decision
from pcf_exchange.gateway.console import (
    FileAuditSource,
    SessionStore,
    Throttle,
    UsersFile,
)
from pcf_exchange.gateway.console._app import ConsoleSettings, create_console_app
from pcf_exchange.gateway.policy import CounterState
from tests.gateway._console_logs import DAY, Scenario, act_on_decisions, build_scenario
from tests.gateway._factories import NOW
from tests.gateway._trust import OFFICER

PASSWORD = "correct horse battery staple"
LATER = NOW + 2 * DAY + timedelta(hours=3)
"""The console's clock: after the pending approval was requested, before it expires."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def scenario(
    tmp_path: Path, policy: Policy, secrets: GatewaySecrets, counters: CounterState
) -> Scenario:
    return build_scenario(tmp_path, policy, secrets, counters)


@pytest.fixture
def users(tmp_path: Path, scenario: Scenario) -> UsersFile:
    path = tmp_path / "console-users.json"
    UsersFile.set_password(path, OFFICER, key=scenario.officer_key, password=PASSWORD, n=2**14)
    return UsersFile.read(path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _client(
    scenario: Scenario, users: UsersFile, keyring: KeyRing, clock: Clock, **extra: object
) -> TestClient:
    settings = ConsoleSettings(
        audit=FileAuditSource(scenario.path),
        keys=keyring,
        users=users,
        approvals=scenario.queue,
        throttle=Throttle(clock=clock),
        sessions=SessionStore(clock=clock),
        clock=lambda: LATER,
        **extra,  # type: ignore[arg-type]
    )
    return TestClient(
        create_console_app(settings), base_url="https://console.test", follow_redirects=False
    )


@pytest.fixture
def client(scenario: Scenario, users: UsersFile, keyring: KeyRing, clock: Clock) -> TestClient:
    return _client(scenario, users, keyring, clock)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the form carries a CSRF token"
    return found.group(1)


def _login(client: TestClient, officer: str = OFFICER, password: str = PASSWORD) -> int:
    form = client.get("/login")
    response = client.post(
        "/login",
        data={"csrf": _csrf(form.text), "officer": officer, "password": password, "next": "/"},
    )
    return int(response.status_code)


# ----------------------------------------------------------------------------------------------
# login


def test_every_page_needs_a_login(client: TestClient) -> None:
    for path in ("/", "/approvals", "/transfers/default/0", "/?decision=held"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert client.post("/approvals/x", data={"verdict": "approve"}).status_code == 401


def test_login_sets_a_signed_httponly_secure_strict_cookie(client: TestClient) -> None:
    form = client.get("/login")
    assert form.status_code == 200
    assert "Content-Security-Policy" in form.headers and "script" not in form.text.lower()
    response = client.post(
        "/login",
        data={"csrf": _csrf(form.text), "officer": OFFICER, "password": PASSWORD, "next": "/"},
    )
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("pcfx_console=")
    )
    lowered = cookie.lower()
    assert "httponly" in lowered and "secure" in lowered and "samesite=strict" in lowered
    page = client.get("/")
    assert page.status_code == 200 and "officer <strong>alice</strong>" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_a_login_without_its_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/login")
    response = client.post(
        "/login", data={"csrf": "forged", "officer": OFFICER, "password": PASSWORD}
    )
    assert response.status_code == 403 and "CSRF" in response.text
    assert "pcfx_console=" not in response.headers.get("set-cookie", "")


def test_an_altered_session_cookie_is_refused(client: TestClient) -> None:
    assert _login(client) == 303
    value = client.cookies["pcfx_console"]
    client.cookies.set("pcfx_console", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert client.get("/").status_code == 303


def test_wrong_passwords_lock_the_name_even_for_the_right_one(
    client: TestClient, clock: Clock
) -> None:
    for _ in range(4):
        assert _login(client, password="not the password") == 401
    assert _login(client, officer="mallory", password="x" * 12) == 401  # 5th from this address
    response = client.post(
        "/login",
        data={"csrf": _csrf(client.get("/login").text), "officer": OFFICER, "password": PASSWORD},
    )
    assert response.status_code == 429 and "locked" in response.text
    assert int(response.headers["retry-after"]) > 0
    clock.now += 901  # the lock runs out
    assert _login(client) == 303


def test_a_login_never_redirects_off_the_console(client: TestClient) -> None:
    form = client.get("/login?next=//evil.example/x")
    assert 'name="next" value="/"' in form.text
    response = client.post(
        "/login",
        data={
            "csrf": _csrf(form.text),
            "officer": OFFICER,
            "password": PASSWORD,
            "next": "https://evil.example/",
        },
    )
    assert response.headers["location"] == "/"


def test_an_officer_whose_key_is_not_authorized_cannot_log_in(
    scenario: Scenario, users: UsersFile, keyring: KeyRing, clock: Clock
) -> None:
    refusing = _client(
        scenario, users, keyring, clock, authorize=lambda key: f"key {key.key_id} is revoked"
    )
    form = refusing.get("/login")
    response = refusing.post(
        "/login", data={"csrf": _csrf(form.text), "officer": OFFICER, "password": PASSWORD}
    )
    assert response.status_code == 403 and "is revoked" in response.text


def test_a_users_file_pointing_at_someone_elses_key_is_refused_at_login(
    tmp_path: Path, scenario: Scenario, keyring: KeyRing, clock: Clock
) -> None:
    path = tmp_path / "other-users.json"
    bob = scenario.trust.party("bob").key_file
    UsersFile.set_password(path, OFFICER, key=bob, password=PASSWORD, n=2**14)
    client = _client(scenario, UsersFile.read(path), keyring, clock)
    assert _login(client) == 403


def test_the_users_file_must_be_private_and_well_formed(tmp_path: Path, users: UsersFile) -> None:
    from pcf_exchange.gateway.console import UsersFileError

    users.path.chmod(0o644)
    with pytest.raises(UsersFileError, match="mode 0600 expected"):
        UsersFile.read(users.path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "officers": {"alice": {"key": 3}}}')
    bad.chmod(0o600)
    with pytest.raises(UsersFileError, match=r"'officers.alice.key' must be a key file path"):
        UsersFile.read(bad)
    with pytest.raises(UsersFileError, match="must be a key file path"):
        UsersFile.set_password(bad, "bob", key=bad, password=PASSWORD)  # not rewritten
    with pytest.raises(UsersFileError, match=r"at least 12 characters \(got 5\)"):
        UsersFile.set_password(tmp_path / "new.json", "bob", key=bad, password="short")
    assert not (tmp_path / "new.json").exists()


# ----------------------------------------------------------------------------------------------
# pages


def test_the_dashboard_filters_and_drills_down(client: TestClient) -> None:
    assert _login(client) == 303
    page = client.get("/").text
    assert 'id="chain-verdict" class="ok"' in page
    assert page.count('class="drill"') == 7
    assert "released (approved by bob)" in page and "CBAM Q2 report, LOCODE only" in page
    assert page.count('<g class="series"') == 5 + 2  # by decision, by destination
    narrowed = client.get("/?decision=released").text
    assert narrowed.count('class="drill"') == 1
    bad = client.get("/?since=yesterday")
    assert bad.status_code == 400 and "&#39;since&#39;: must be a date YYYY-MM-DD" in bad.text
    link = re.search(r'href="(/transfers/[^"]+)"', narrowed)
    assert link
    detail = client.get(link.group(1))
    assert detail.status_code == 200
    assert "released (approved by bob)" in detail.text and "approval_approved" in detail.text
    assert "cat-withheld" in detail.text or "cat-transformed" in detail.text
    assert "[*]" in detail.text  # lineage paths grouped
    assert client.get("/transfers/default/999").status_code == 404


def test_an_approval_is_signed_with_the_officers_key_and_the_gateway_releases_it(
    client: TestClient, scenario: Scenario, keyring: KeyRing
) -> None:
    assert _login(client) == 303
    queue = client.get("/approvals").text
    pending = scenario.pending.approval_id
    assert f'action="/approvals/{pending}"' in queue
    # without the CSRF token: refused, nothing written
    before = len(scenario.queue.events)
    refused = client.post(
        f"/approvals/{pending}", data={"verdict": "approve", "reason": "ok", "csrf": "x"}
    )
    assert refused.status_code == 403 and len(scenario.queue.events) == before
    # the guards' messages reach the officer
    empty = client.post(
        f"/approvals/{pending}", data={"verdict": "approve", "reason": " ", "csrf": _csrf(queue)}
    )
    assert empty.status_code == 409 and "a reason is required" in empty.text
    done = client.post(
        f"/approvals/{pending}",
        data={
            "verdict": "approve",
            "reason": "CBAM Q3, installation consented",
            "mechanism_ref": "SA-2026-011",
            "conditions": "LOCODE only\nno onward transfer",
            "csrf": _csrf(queue),
        },
    )
    assert done.status_code == 303 and done.headers["location"].startswith("/approvals?done=")
    decided = scenario.queue.events[-1]
    assert decided["event"] == "decided" and decided["decision"]["signerId"] == OFFICER
    row = scenario.queue.book().rows[pending]
    check = check_decision(
        scenario.keyring,
        row.approval,
        decided["decision"],
        at=decided["at"],
        appended_at=LATER,
    )
    assert check.ok and check.approval is not None
    assert check.approval.conditions == ("LOCODE only", "no onward transfer")
    # the same decision twice: the row is no longer pending once the gateway resolved it
    assert act_on_decisions(scenario, LATER + timedelta(minutes=1)) == []
    page = client.get("/").text
    assert "released (approved by alice)" in page
    again = client.post(
        f"/approvals/{pending}",
        data={"verdict": "deny", "reason": "changed my mind", "csrf": _csrf(queue)},
    )
    assert again.status_code == 409 and "only a pending one can be denied" in again.text


def test_a_deny_goes_through_the_same_path(client: TestClient, scenario: Scenario) -> None:
    assert _login(client) == 303
    queue = client.get("/approvals").text
    pending = scenario.pending.approval_id
    response = client.post(
        f"/approvals/{pending}",
        data={"verdict": "deny", "reason": "no legal basis", "csrf": _csrf(queue)},
    )
    assert response.status_code == 303
    assert scenario.queue.events[-1]["decision"]["state"] == "denied"
    act_on_decisions(scenario, LATER + timedelta(minutes=1))
    assert "denied by alice" in client.get("/?decision=denied").text
    bogus = client.post(
        f"/approvals/{pending}", data={"verdict": "maybe", "reason": "x", "csrf": _csrf(queue)}
    )
    assert bogus.status_code == 400 and "must be &#39;approve&#39; or &#39;deny&#39;" in bogus.text


def test_logout_needs_the_csrf_token_and_ends_the_session(client: TestClient) -> None:
    assert _login(client) == 303
    page = client.get("/").text
    assert client.post("/logout", data={"csrf": "nope"}).status_code == 403
    assert client.get("/").status_code == 200
    assert client.post("/logout", data={"csrf": _csrf(page)}).status_code == 303
    assert client.get("/").status_code == 303


def test_sessions_expire(client: TestClient, clock: Clock) -> None:
    assert _login(client) == 303
    clock.now += 8 * 3600 + 1
    assert client.get("/").status_code == 303


def test_when_the_chain_is_forged_the_dashboard_says_so(
    client: TestClient, scenario: Scenario
) -> None:
    from tests.gateway.test_console_views import _forge_transfer

    _forge_transfer(scenario.path, "evil-corp")
    assert _login(client) == 303
    page = client.get("/").text
    assert 'id="chain-verdict" class="fail"' in page and "NOT INTACT" in page
    assert "forged?" in page and "evil-corp" in page
    assert re.search(r'<span class="n">1</span> not proven', page)
    assert re.search(r'<span class="n">4</span> went out', page)
    assert isinstance(datetime.now(), datetime)
