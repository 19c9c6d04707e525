"""`pcfx demo` with no broker configured starts a --secure one: the whole story runs with
authenticated principals, and ends with the broker refusing what the parties' ACLs do not allow.
(The run is the session's ``secure_demo`` fixture, ``tests/conftest.py``; its figures are checked in
``tests/e2e/test_demo.py``.)"""

from __future__ import annotations

import pytest

from tests.harness import DemoRun

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.mark.timeout(1500)
def test_the_demo_runs_on_its_own_secure_broker(secure_demo: DemoRun) -> None:
    result = secure_demo.result
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
    configs = sorted(p.name for p in (secure_demo.workdir / "kafka").iterdir())
    assert "fj-cells.properties" in configs and "streams.properties" in configs
    for path in (secure_demo.workdir / "kafka").iterdir():
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
