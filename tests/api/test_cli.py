"""``pcfx.commands.api``: ``hash-secret`` in-process, and ``serve --self-signed`` as a real process
on the broker that serves what a gateway released for the API over TLS, audited."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from contracts.keyfiles import load_x25519_public_key
from gateway.api import hash_secret, verify_secret
from gateway.runtime import (
    GatewayRunner,
    GatewaySerde,
    RunnerSettings,
    default_subscriptions_path,
    kafka_registrar,
    load_subscriptions,
    read_audit_logs,
)
from gateway.runtime._keys import write_gateway_key, write_recipient_key
from pcfx.commands.api import app
from pcfx.commands.gateway import audit_app
from tests.gateway._rollups import rolled_footprint
from tests.gateway.test_runtime_kafka import EU, make_env

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_hash_secret_from_stdin() -> None:
    result = runner.invoke(app, ["hash-secret", "--stdin"], input="s3cret\n")
    assert result.exit_code == 0, result.output
    assert verify_secret("s3cret", result.output.strip())


def test_hash_secret_generate_json() -> None:
    result = runner.invoke(app, ["hash-secret", "--generate", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert verify_secret(document["secret"], document["secretHash"])


def test_serve_needs_exactly_one_tls_choice(tmp_path: Path) -> None:
    clients = tmp_path / "clients.yaml"
    clients.write_text("{}")
    assert runner.invoke(app, ["serve", "--clients", str(clients)]).exit_code == 2
    both = [
        "serve",
        "--clients",
        str(clients),
        "--self-signed",
        "--cert",
        "c.pem",
        "--key",
        "k.pem",
    ]
    assert runner.invoke(app, both).exit_code == 2


KEYS = ["--api-key", "api.pem", "--gateway-pub", "gw.pub.pem", "--signing-key", "sign.pem"]


def test_serve_needs_the_keys_of_the_api_and_the_gateway(tmp_path: Path) -> None:
    clients = tmp_path / "clients.yaml"
    clients.write_text("{}")
    for missing in ("--api-key", "--gateway-pub", "--signing-key"):
        i = KEYS.index(missing)
        args = ["serve", "--clients", str(clients), "--self-signed", *KEYS[:i], *KEYS[i + 2 :]]
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and missing in result.output


def test_serve_has_no_folder_source_any_more(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--footprints", str(tmp_path), *KEYS])
    assert result.exit_code == 2


def test_serve_with_a_bad_clients_file_exits_1(tmp_path: Path) -> None:
    clients = tmp_path / "clients.yaml"
    clients.write_text("acme:\n  recipient: acme\n")
    result = runner.invoke(
        app,
        ["serve", "--clients", str(clients), "--self-signed", "--tls-dir", str(tmp_path), *KEYS],
    )
    assert result.exit_code == 1
    assert "clients.acme.secret_hash" in result.output


@pytest.mark.broker
def test_serve_self_signed_end_to_end(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The gateway releases one footprint for the API; ``serve`` serves it to the recipient's
    client and audits the disclosure on its chain."""
    exchange = next(make_env(kafka_bootstrap, tmp_path, partitions=1))
    api_key, api_pub = tmp_path / "api.x25519.pem", tmp_path / "api.x25519.pub.pem"
    write_recipient_key(api_key)
    signing_key = tmp_path / "api.key.pem"
    _, signing_pub = write_gateway_key(signing_key)
    rolled = rolled_footprint()
    exchange.publish([rolled])
    policy = exchange.policy()
    with GatewayRunner(
        RunnerSettings(exchange.bootstrap, topics=exchange.topics, group_id=exchange.group),
        policy=policy,
        subscriptions=load_subscriptions(default_subscriptions_path(), policy),
        secrets=exchange.secrets,
        registry=exchange.registry,
        operator_keys=exchange.trust.operator_keys,
        registrar=kafka_registrar(exchange.bootstrap, prefix=exchange.topics.prefix),
        api_key=load_x25519_public_key(api_pub),
    ) as gateway:
        gateway.run(max_records=1, max_seconds=90)
    clients = tmp_path / "clients.yaml"
    clients.write_text(f'eu-erp:\n  recipient: {EU}\n  secret_hash: "{hash_secret("pw")}"\n')
    command = [
        sys.executable, "-c", "from pcfx.commands.api import app; app()", "serve",
        "--clients", str(clients), "--api-key", str(api_key),
        "--gateway-pub", str(exchange.pub_path), "--signing-key", str(signing_key),
        "--topic-prefix", exchange.topics.prefix, "--bootstrap", kafka_bootstrap,
        "--self-signed", "--tls-dir", str(tmp_path / "tls"),
        "--port", "0", "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = None
        deadline = time.monotonic() + 30
        assert process.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            match = re.search(r"(https://127\.0\.0\.1:\d+)", line)
            url = match.group(1) if match else None
        assert url is not None, "server did not report its URL"
        assert "3 recipients with releases" in line  # EU, GB, CN
        trust = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
        with httpx.Client(base_url=url, verify=trust) as http:
            for _ in range(100):  # the socket is bound before uvicorn accepts; wait for it
                try:
                    token = http.post(
                        "/auth/token",
                        data={"grant_type": "client_credentials"},
                        auth=("eu-erp", "pw"),
                    )
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            listed = http.get(
                "/3/footprints", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
            )
        assert token.status_code == 200, token.text
        [served] = listed.json()["data"]
        assert rolled.footprint is not None and served["id"] == str(rolled.footprint.id)
    finally:
        process.send_signal(signal.SIGTERM)  # as `kill $API_PID` in the README
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    entries, _, problems = read_audit_logs(
        kafka_bootstrap, exchange.topics, GatewaySerde(exchange.registry), log_ids=["pcfx-api"]
    )
    assert problems == []
    assert [(e.kind, e.record_pf_id, e.recipient_id) for e in entries["pcfx-api"]] == [
        ("disclosure", served["id"], EU)
    ]
    assert process.returncode == 0  # a graceful stop
    # the README's check: the gateway's chains and the API's, each with its own key
    keys = ["--gateway-pub", str(exchange.pub_path), "--gateway-pub", str(signing_pub)]
    where = ["--topic-prefix", exchange.topics.prefix, "--bootstrap", kafka_bootstrap]
    verified = runner.invoke(audit_app, ["verify", *keys, *where])
    assert verified.exit_code == 0, verified.output
    assert re.search(r"pcfx-api: OK: 1 entries, [12] checkpoints", verified.output), verified.output
    alone = runner.invoke(audit_app, ["verify", *keys[:2], *where])
    assert alone.exit_code == 1  # the API's chain is not the gateway's to vouch for
    exchange.registry.close()
