"""``pcfx.commands.api``: ``hash-secret`` in-process, and ``serve --self-signed`` as a real process
on the broker that serves what a gateway released for the API over TLS, audited."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from pcf_exchange.contracts import HttpSchemaRegistry, SignerRole, register_all, subject_for
from pcf_exchange.contracts.keyfiles import load_x25519_public_key
from pcf_exchange.contracts.topics import TOPICS, ensure_topics
from pcf_exchange.gateway._keys import write_gateway_key, write_recipient_key
from pcf_exchange.gateway.api import hash_secret, verify_secret
from pcf_exchange.gateway.api._kafka import API_RELEASES
from pcf_exchange.gateway.runtime import (
    GatewayRunner,
    GatewaySerde,
    RunnerSettings,
    Topics,
    default_subscriptions_path,
    kafka_registrar,
    load_subscriptions,
    read_audit_logs,
)
from pcf_exchange.pcfx.commands.api import app
from pcf_exchange.pcfx.commands.gateway import audit_app
from tests.contracts.conftest import registry_server  # noqa: F401 (a fixture)
from tests.gateway._rollups import rolled_footprint
from tests.gateway._trust import SERVICE, Trust
from tests.gateway.test_runtime_kafka import CN, EU, GB, Env, make_env

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


@contextlib.contextmanager
def serving(
    args: list[str], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], str, httpx.Client]]:
    """``pcfx api serve ARGS --self-signed`` as a real process on an OS-assigned port: yields
    the process, the line that reported its URL, and a client trusting its development CA;
    stops it with SIGTERM (as ``kill $API_PID`` in the README) and waits for it to exit."""
    command = [
        sys.executable, "-c", "from pcf_exchange.pcfx.commands.api import app; app()",
        "serve", *args,
        "--self-signed", "--tls-dir", str(tmp_path / "tls"), "--port", "0",
        "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen: list[str] = []
    try:
        url = None
        deadline = time.monotonic() + 120  # (a liveness bound, not a speed check)
        assert process.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            seen.append(line)
            match = re.search(r"(https://127\.0\.0\.1:\d+)", line)
            url = match.group(1) if match else None
        assert url is not None, "server did not report its URL:\n" + "".join(seen)
        trust = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
        with httpx.Client(base_url=url, verify=trust) as http:
            yield process, line, http
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _listed(http: httpx.Client, client: str = "eu-erp", secret: str = "pw") -> list[Any]:
    """The footprints ``GET /3/footprints`` lists to *client* (after its token)."""
    token = None
    for _ in range(100):  # the socket is bound before uvicorn accepts; wait for it
        try:
            token = http.post(
                "/auth/token", data={"grant_type": "client_credentials"}, auth=(client, secret)
            )
            break
        except httpx.TransportError:
            time.sleep(0.05)
    assert token is not None and token.status_code == 200, token
    listed = http.get(
        "/3/footprints", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
    )
    assert listed.status_code == 200, listed.text
    data: list[Any] = listed.json()["data"]
    return data


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
        "--clients", str(clients), "--api-key", str(api_key),
        "--gateway-pub", str(exchange.pub_path), "--signing-key", str(signing_key),
        "--topic-prefix", exchange.topics.prefix, "--bootstrap", kafka_bootstrap,
    ]  # fmt: skip
    with serving(command, tmp_path) as (process, line, http):
        assert "3 recipients with releases" in line  # EU, GB, CN
        [served] = _listed(http)
        assert rolled.footprint is not None and served["id"] == str(rolled.footprint.id)
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


@pytest.mark.broker
def test_serve_with_an_http_schema_registry(
    kafka_bootstrap: str,
    tmp_path: Path,
    registry_server: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    """``--registry-url``: the API decodes the gateway's releases and writes its disclosure
    entries with the ids of a Confluent-compatible registry (the project's test server,
    tests/contracts/conftest.py), as ``streams run`` and ``gateway run`` do; the deployment's
    registry topic on Kafka is never made."""
    http = HttpSchemaRegistry(registry_server.url)
    topics = Topics(f"t{uuid.uuid4().hex[:10]}.")
    ensure_topics(
        kafka_bootstrap,
        [(topics.products, TOPICS["pcf.products"], 1), (topics.keys, TOPICS["pcf.keys"], 1)],
    )
    register_all(http, topics.prefix)  # the operator registers the exchange's schemas there
    trust = Trust(tmp_path / "keys")
    trust.register(
        kafka_bootstrap, http, topics.keys, [trust.registration(SERVICE, SignerRole.SERVICE)]
    )
    key_path = tmp_path / "gateway.pem"
    _, pub_path = write_gateway_key(key_path)
    exchange = Env(
        kafka_bootstrap, topics, tmp_path, http, key_path, pub_path, trust, group="g-http"
    )
    for rid in (EU, GB, CN):
        write_recipient_key(tmp_path / f"{rid}.pem")
        exchange.recipient_keys[rid] = tmp_path / f"{rid}.pem"
    api_key, api_pub = tmp_path / "api.x25519.pem", tmp_path / "api.x25519.pub.pem"
    write_recipient_key(api_key)
    signing_key = tmp_path / "api.key.pem"
    write_gateway_key(signing_key)
    rolled = rolled_footprint()
    exchange.publish([rolled])  # framed with the HTTP registry's ids
    policy = exchange.policy()
    with GatewayRunner(
        RunnerSettings(kafka_bootstrap, topics=topics, group_id=f"g-{uuid.uuid4().hex[:8]}"),
        policy=policy,
        subscriptions=load_subscriptions(default_subscriptions_path(), policy),
        secrets=exchange.secrets,
        registry=http,
        operator_keys=trust.operator_keys,
        registrar=None,  # (an HTTP registry registers what is missing itself)
        api_key=load_x25519_public_key(api_pub),
    ) as gateway:
        gateway.run(max_records=1, max_seconds=90)
    clients = tmp_path / "clients.yaml"
    clients.write_text(f'eu-erp:\n  recipient: {EU}\n  secret_hash: "{hash_secret("pw")}"\n')
    args = [
        "--clients", str(clients), "--api-key", str(api_key),
        "--gateway-pub", str(pub_path), "--signing-key", str(signing_key),
        "--topic-prefix", topics.prefix, "--bootstrap", kafka_bootstrap,
        "--registry-url", registry_server.url,
    ]  # fmt: skip
    with serving(args, tmp_path) as (_, line, client):
        assert "3 recipients with releases" in line
        [served] = _listed(client)
    assert rolled.footprint is not None and served["id"] == str(rolled.footprint.id)
    # the disclosure entry is framed with the HTTP registry's ids, readable with them
    entries, _, problems = read_audit_logs(
        kafka_bootstrap, topics, GatewaySerde(http), log_ids=["pcfx-api"]
    )
    assert problems == []
    assert [(e.kind, e.record_pf_id) for e in entries["pcfx-api"]] == [("disclosure", served["id"])]
    assert subject_for(topics.of(API_RELEASES)) in registry_server.backend.subjects()
    listed = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=30).topics
    assert topics.schemas not in listed, "the Kafka-topic registry was not used"
    http.close()


@pytest.mark.broker
def test_serve_with_an_unreachable_registry_exits_3_naming_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A registry that does not answer at start-up stops ``serve`` with exit 3 (infrastructure,
    the README's table) and its address, before anything is served."""
    clients = tmp_path / "clients.yaml"
    clients.write_text(f'eu-erp:\n  recipient: {EU}\n  secret_hash: "{hash_secret("pw")}"\n')
    api_key, signing_key, gateway_key = (tmp_path / f"{n}.pem" for n in ("api", "sign", "gw"))
    write_recipient_key(api_key)
    write_gateway_key(signing_key)
    _, gateway_pub = write_gateway_key(gateway_key)
    result = runner.invoke(
        app,
        [
            "serve", "--clients", str(clients), "--api-key", str(api_key),
            "--gateway-pub", str(gateway_pub), "--signing-key", str(signing_key),
            "--topic-prefix", f"t{uuid.uuid4().hex[:10]}.", "--bootstrap", kafka_bootstrap,
            "--registry-url", "http://127.0.0.1:9", "--self-signed",
            "--tls-dir", str(tmp_path / "tls"), "--port", "0",
        ],
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "http://127.0.0.1:9" in result.output and "unreachable" in result.output
