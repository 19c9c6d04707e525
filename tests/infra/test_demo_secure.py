"""`pcfx demo` with no broker configured starts a --secure one: the whole story runs with
authenticated principals, and ends with the broker refusing what the parties' ACLs do not allow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PCFX = [sys.executable, "-m", "pcf_exchange.pcfx"]

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(1500)
def test_the_demo_runs_on_its_own_secure_broker(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAFKA_", "PCFX_TOPIC_PREFIX", "PCFX_BROKER_DIR"))
    }
    env |= {"PCFX_BROKER_DIR": str(tmp_path / "broker"), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    try:
        result = subprocess.run(
            [*PCFX, "demo", "--workdir", str(tmp_path / "work")],
            capture_output=True, text=True, timeout=1400, env=env, cwd=tmp_path, check=False,
        )  # fmt: skip
    finally:  # never leave the broker running, whatever happened
        subprocess.run(
            [*PCFX, "broker", "stop"],
            capture_output=True, text=True, timeout=120, env=env, check=False,
        )  # fmt: skip
    out = " ".join(result.stdout.split())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SASL_SSL (SCRAM-SHA-512), ACLs enforced" in out
    assert "The streams worker runs as User:streams and the gateway as User:gateway" in out
    for line in (
        "fj-cells writes pcf.products: Broker: Topic authorization failed",
        "fj-cells writes pcf.keys: Broker: Topic authorization failed",
        "eu-battery-oem-de reads pcf.outbound.eu-notified-body-fr: Broker: Topic authorization"
        " failed",
    ):
        assert line in out
    assert "fj-cells reads pcf.declared:" in out and "ALLOWED (!)" not in out
    assert "ACCEPTED (!)" not in out
    configs = sorted(p.name for p in (tmp_path / "work" / "kafka").iterdir())
    assert "fj-cells.properties" in configs and "streams.properties" in configs
    for path in (tmp_path / "work" / "kafka").iterdir():
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
