"""``pcfx console add-user|serve`` and ``pcfx audit report --since/--until`` from the command
line: the README's commands, run as written (the server as a real process, over TLS)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from pcf_exchange.gateway import GatewaySecrets, Policy
from pcf_exchange.gateway._keys import load_gateway_key, write_gateway_key
from pcf_exchange.gateway.policy import CounterState
from pcf_exchange.pcfx.commands.console import console_app
from pcf_exchange.pcfx.commands.gateway import audit_app
from tests.gateway._console_logs import DAY, Scenario, build_scenario
from tests.gateway._factories import NOW, PSEUDONYM_SECRET
from tests.gateway._trust import OFFICER

invoke = CliRunner().invoke
PASSWORD = "correct horse battery staple"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gateway_pub(tmp_path: Path) -> tuple[Path, GatewaySecrets]:
    _, public = write_gateway_key(tmp_path / "gateway.key.pem")
    key = load_gateway_key(tmp_path / "gateway.key.pem")
    secrets = GatewaySecrets(signer=key, pseudonym_secret=PSEUDONYM_SECRET, log_id="gateway-p0")
    return Path(public), secrets


@pytest.fixture
def scenario(
    tmp_path: Path,
    policy: Policy,
    counters: CounterState,
    gateway_pub: tuple[Path, GatewaySecrets],
) -> Scenario:
    return build_scenario(tmp_path, policy, gateway_pub[1], counters)


def test_add_user_checks_the_key_and_writes_a_private_users_file(
    tmp_path: Path, scenario: Scenario
) -> None:
    users = tmp_path / "console-users.json"
    env = {"CONSOLE_PASSWORD": PASSWORD}
    result = invoke(
        console_app,
        ["add-user", OFFICER, "--key", str(scenario.officer_key), "--users", str(users),
         "--password-env", "CONSOLE_PASSWORD"],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"OK: officer {OFFICER}")
    assert users.stat().st_mode & 0o777 == 0o600
    assert PASSWORD not in users.read_text() and '"kdf": "scrypt"' in users.read_text()
    # someone else's key is refused, and nothing is written for them
    bob = scenario.trust.party("bob").key_file
    result = invoke(
        console_app,
        ["add-user", OFFICER + "2", "--key", str(bob), "--users", str(users),
         "--password-env", "CONSOLE_PASSWORD"],
        env=env,
    )  # fmt: skip
    assert result.exit_code != 0 and OFFICER + "2" not in users.read_text()
    result = invoke(
        console_app,
        ["add-user", OFFICER, "--key", str(scenario.officer_key), "--users", str(users),
         "--password-env", "NOT_SET_ANYWHERE"],
    )  # fmt: skip
    assert result.exit_code == 3 and "NOT_SET_ANYWHERE" in result.output


def test_serve_needs_tls(tmp_path: Path, gateway_pub: tuple[Path, GatewaySecrets]) -> None:
    result = invoke(
        console_app,
        ["serve", "--users", str(tmp_path / "u.json"), "--gateway-pub", str(gateway_pub[0])],
    )
    assert result.exit_code == 2 and "--tls-cert" in result.output


def test_serve_runs_the_console_over_tls(
    tmp_path: Path, scenario: Scenario, gateway_pub: tuple[Path, GatewaySecrets]
) -> None:
    users = tmp_path / "console-users.json"
    env = {**os.environ, "CONSOLE_PASSWORD": PASSWORD, "PYTHONPATH": str(ROOT)}
    pcfx = [sys.executable, "-m", "pcf_exchange.pcfx"]
    subprocess.run(
        [*pcfx, "console", "add-user", OFFICER, "--key", str(scenario.officer_key),
         "--users", str(users), "--password-env", "CONSOLE_PASSWORD"],
        check=True, env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    server = subprocess.Popen(
        [*pcfx, "console", "serve", "--users", str(users), "--gateway-pub", str(gateway_pub[0]),
         "--audit-log", str(scenario.path), "--no-approvals", "--self-signed", "--port", "0",
         "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = None
        for line in server.stdout:
            found = re.search(r"compliance console on (https://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "the console prints its URL once it listens"
        with httpx.Client(base_url=url, verify=False, follow_redirects=False) as client:
            assert client.get("/").status_code == 303
            form = client.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf
            login = client.post(
                "/login",
                data={"csrf": csrf.group(1), "officer": OFFICER, "password": PASSWORD},
            )
            assert login.status_code == 303
            page = client.get("/")
            assert page.status_code == 200
            assert "Every log verified" in page.text and "gateway-p0" in page.text
            assert "released (approved by bob)" in page.text
            # the field table names each rule's legal basis from the shipped policy
            link = re.search(r'href="(/transfers/gateway-p0/\d+)"', page.text)
            assert link and "regulation.md" in client.get(link.group(1)).text
            approvals = client.get("/approvals")
            assert "the approvals queue is not connected" in approvals.text
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def test_audit_report_from_the_command_line(
    tmp_path: Path, scenario: Scenario, gateway_pub: tuple[Path, GatewaySecrets]
) -> None:
    out = tmp_path / "report.html"
    day2 = (NOW + DAY).date().isoformat()
    args = ["report", "--gateway-pub", str(gateway_pub[0]), "--file", str(scenario.path)]
    result = invoke(audit_app, [*args, "--out", str(out), "--since", day2, "--until", day2])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "released (approved by bob)" in page and "denied by bob" in page
    assert "Period " + day2 in page and "held for approval" not in page  # day 3 left out
    bad = invoke(audit_app, [*args, "--out", str(out), "--since", "tomorrow"])
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output
    backwards = invoke(
        audit_app,
        [
            *args,
            "--out",
            str(out),
            "--since",
            day2,
            "--until",
            (NOW + timedelta(0)).date().isoformat(),
        ],
    )
    assert backwards.exit_code == 2 and "must not be before since" in backwards.output
