"""The console on the real broker: the audit topics and ``pcf.approvals`` through the Kafka
seams, an officer whose key the operator registered logs in, approves a held transfer in the
console, the gateway runtime releases it, and the console shows it released by that officer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pcf_exchange.gateway import KeyRing
from pcf_exchange.gateway._keys import load_gateway_key
from pcf_exchange.gateway.console import (
    KafkaApprovalQueue,
    KafkaAuditSource,
    UsersFile,
)
from pcf_exchange.gateway.console._app import ConsoleSettings, create_console_app
from pcf_exchange.gateway.runtime import parse_subscriptions
from pcf_exchange.pcfx.commands.console import _registration_check
from tests.gateway._rollups import rolled_footprint
from tests.gateway._trust import OFFICER
from tests.gateway.test_runtime_kafka import EU, EU_PURPOSE, Env, make_env

PASSWORD = "correct horse battery staple"


@pytest.fixture
def env(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Env]:
    yield from make_env(kafka_bootstrap, tmp_path)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def test_an_officer_approves_in_the_console_and_the_gateway_releases(env: Env) -> None:
    policy = env.policy(hold_city_for_eu=True)
    subs = parse_subscriptions(
        {"schema_version": 1, "subscriptions": [{"recipient": EU, "purpose": EU_PURPOSE}]}, policy
    )
    env.publish([rolled_footprint()])
    users = env.tmp / "console-users.json"
    officer_key = env.trust.party(OFFICER).key_file
    UsersFile.set_password(users, OFFICER, key=officer_key, password=PASSWORD, n=2**14)
    prefix = env.topics.prefix
    app = create_console_app(
        ConsoleSettings(
            audit=KafkaAuditSource(env.bootstrap, prefix, refresh_s=0.0),
            keys=KeyRing.of(load_gateway_key(env.key_path).public_key),
            users=UsersFile.read(users),
            approvals=KafkaApprovalQueue(env.bootstrap, prefix),
            authorize=_registration_check(env.bootstrap, prefix, env.trust.operator.public_file),
        )
    )
    client = TestClient(app, base_url="https://console.test", follow_redirects=False)
    with env.runner(policy, subs) as runner:
        stats = runner.run(max_records=1, max_seconds=60)
        assert stats.held == 1

        # an officer the operator registered logs in; a company's key would not
        login = client.get("/login")
        response = client.post(
            "/login", data={"csrf": _csrf(login.text), "officer": OFFICER, "password": PASSWORD}
        )
        assert response.status_code == 303, response.text
        page = client.get("/").text
        assert 'id="chain-verdict" class="ok"' in page and "held for approval" in page

        queue = client.get("/approvals").text
        found = re.search(r'action="/approvals/([0-9a-f-]+)"', queue)
        assert found, "the held transfer is in the queue with a form"
        approval_id = found.group(1)
        done = client.post(
            f"/approvals/{approval_id}",
            data={"verdict": "approve", "reason": "plant city agreed", "csrf": _csrf(queue)},
        )
        assert done.status_code == 303, done.text
        assert "awaiting the gateway" in client.get("/approvals").text

        stats = runner.run(idle_seconds=2, max_seconds=30)
        assert stats.approvals_released == 1

    page = client.get("/?decision=released").text
    assert f"released (approved by {OFFICER})" in page and "plant city agreed" in page
    assert 'id="chain-verdict" class="ok"' in page
    assert "released" in client.get("/approvals").text
