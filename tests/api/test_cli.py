"""``pcfx.commands.api``: ``hash-secret`` in-process, and ``serve --self-signed`` as a real process
that answers a token request and a ListFootprints call over TLS."""

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
from typer.testing import CliRunner

from gateway.api import hash_secret, verify_secret
from pcfx.commands.api import app
from tests.api._factory import make_footprint

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


def test_serve_with_a_bad_clients_file_exits_1(tmp_path: Path) -> None:
    clients = tmp_path / "clients.yaml"
    clients.write_text("acme:\n  recipient: acme\n")
    result = runner.invoke(
        app, ["serve", "--clients", str(clients), "--self-signed", "--tls-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "clients.acme.secret_hash" in result.output


def test_serve_self_signed_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "fps" / "acme").mkdir(parents=True)
    footprint = make_footprint()
    (tmp_path / "fps" / "acme" / "one.json").write_text(json.dumps(footprint))
    clients = tmp_path / "clients.yaml"
    clients.write_text(f'acme-buyer:\n  recipient: acme\n  secret_hash: "{hash_secret("pw")}"\n')
    command = [
        sys.executable, "-c", "from pcfx.commands.api import app; app()", "serve",
        "--clients", str(clients), "--footprints", str(tmp_path / "fps"),
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
        trust = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
        with httpx.Client(base_url=url, verify=trust) as http:
            for _ in range(100):  # the socket is bound before uvicorn accepts; wait for it
                try:
                    token = http.post(
                        "/auth/token",
                        data={"grant_type": "client_credentials"},
                        auth=("acme-buyer", "pw"),
                    )
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            listed = http.get(
                "/3/footprints", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
            )
        assert listed.json() == {"data": [footprint]}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
