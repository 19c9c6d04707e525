"""The local broker launcher: the CLI round trip, and clear errors when things are wrong."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pcf_exchange.contracts.errors import BrokerError, InfrastructureError
from pcf_exchange.infra.kafka import launcher

PCFX = [sys.executable, "-m", "pcf_exchange.pcfx"]


def run_pcfx(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PCFX, *args], capture_output=True, text=True, timeout=180, env=env, check=False
    )


@pytest.mark.broker
def test_cli_start_status_stop_round_trip(tmp_path: Path) -> None:
    state = str(tmp_path / "broker")
    started = run_pcfx("broker", "start", "--state-dir", state, "--json")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    try:  # (the broker is stopped even when an assertion fails)
        assert info["ready_after_s"] > 0  # (how long it took is a figure, not a test)
        status = run_pcfx("broker", "status", "--state-dir", state, "--json")
        assert status.returncode == 0
        assert json.loads(status.stdout)["broker"]["bootstrap"] == info["bootstrap"]
        again = run_pcfx("broker", "start", "--state-dir", state, "--json")
        assert json.loads(again.stdout)["pid"] == info["pid"], "a second start reuses the broker"
        logs = run_pcfx("broker", "logs", "--state-dir", state, "-n", "200")
        assert "Kafka Server started" in logs.stdout
    finally:
        stopped = run_pcfx("broker", "stop", "--state-dir", state)
    assert stopped.returncode == 0
    assert f"stopped the broker (pid {info['pid']})" in stopped.stdout
    after = run_pcfx("broker", "status", "--state-dir", state)
    assert after.returncode == 1
    assert "no broker is running" in after.stdout


def test_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(BrokerError, match=f"broker port {port} on 127.0.0.1 is already in use"):
            launcher.start(tmp_path, port=port)
    assert not (tmp_path / "broker.json").exists()


def test_missing_java_says_what_to_install(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # a PATH with no java on it
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pcf_exchange.infra.kafka import launcher; launcher.check_java()",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert "Java was not found on PATH" in result.stderr


def test_cli_missing_java_exits_3_with_a_hint(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "PCFX_CACHE": str(tmp_path / "cache")}
    result = run_pcfx("broker", "start", "--state-dir", str(tmp_path / "b"), env=env)
    assert result.returncode == 3
    assert "Java was not found" in result.stderr
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.stderr


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "_java_major", lambda: 11)
    with pytest.raises(InfrastructureError, match=r"needs Java >= 17 \(found Java 11\)"):
        launcher.check_java()


def test_stop_never_kills_a_process_it_did_not_start(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        record = {
            "pid": stranger.pid,
            "port": 1,
            "controller_port": 2,
            "bootstrap": "127.0.0.1:1",
            "kafka_version": "4.1.1",
            "state_dir": str(tmp_path),
            "started_at": 0.0,
            "ready_after_s": 0.0,
        }
        (tmp_path / "broker.json").write_text(json.dumps(record))
        assert not launcher.status(tmp_path).running
        launcher.stop(tmp_path)
        assert stranger.poll() is None, "the unrelated process must still run"
        assert not (tmp_path / "broker.json").exists(), "the stale record is cleared"
    finally:
        stranger.kill()
        stranger.wait()


def test_a_broker_that_dies_during_start_shows_its_log(tmp_path: Path) -> None:
    (tmp_path / "broker.log").write_text("line one\nFATAL: something broke\n")
    died = subprocess.Popen(["false"])
    died.wait()
    with pytest.raises(BrokerError) as caught:
        launcher._wait_ready("127.0.0.1:1", died, tmp_path)
    assert "exited with code 1 before it was ready" in caught.value.message
    assert "FATAL: something broke" in caught.value.message


def test_a_corrupt_broker_record_is_named(tmp_path: Path) -> None:
    (tmp_path / "broker.json").write_text("{not json")
    with pytest.raises(InfrastructureError, match="is not a broker record"):
        launcher.status(tmp_path)
