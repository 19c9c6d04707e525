"""What ``pcfx demo --keep-running`` leaves running is stopped by ``pcfx demo stop``, and only
that: the record, the signals, a pid taken over by another program, a process that ignores
SIGTERM. (The demo itself, left running and stopped, runs in ``test_readme_run.py``.) Also: every
command with ``--topic-prefix`` takes it from ``PCFX_TOPIC_PREFIX``, as the walkthroughs rely on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from typer.main import get_command
from typer.testing import CliRunner

from pcf_exchange.pcfx._services import Service, Services, is_running, start_service, stop_services
from pcf_exchange.pcfx.cli import app

SLEEPER = (
    "import signal, sys, time\n"
    "if sys.argv[2] == 'stubborn':\n"
    "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


def sleeper(tmp_path: Path, marker: str, mode: str = "polite") -> tuple[Service, Any]:
    argv = [sys.executable, "-c", SLEEPER, marker, mode]
    service, proc = start_service(mode, argv, tmp_path / f"{mode}.log", marker, dict(os.environ))
    log = tmp_path / f"{mode}.log"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (log.exists() and "ready" in log.read_text()):
        time.sleep(0.05)  # until its signal handling is set up
    return service, proc


def test_stop_signals_what_was_recorded_and_forgets_it(tmp_path: Path) -> None:
    marker = f"demo-{uuid.uuid4().hex}."
    services = Services("127.0.0.1:9", marker)
    procs = []
    for mode in ("polite", "stubborn"):
        service, proc = sleeper(tmp_path, marker, mode)
        services.processes.append(service)
        procs.append(proc)
    services.save(tmp_path)
    assert Services.load(tmp_path) == services
    assert all(is_running(s) for s in services.processes)
    try:
        done, record = stop_services(tmp_path, timeout_s=2)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert record == services
    assert f"stopped polite (pid {procs[0].pid})" in done
    assert f"killed stubborn (pid {procs[1].pid}): it ignored SIGTERM" in done
    assert not (tmp_path / "services.json").exists()
    assert stop_services(tmp_path) == ([], None)


def test_a_pid_now_held_by_another_program_is_left_alone(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        services = Services("127.0.0.1:9", "demo-x.")
        services.processes.append(Service("gateway", other.pid, "gateway.log", "demo-x."))
        services.save(tmp_path)
        done, _ = stop_services(tmp_path)
        assert done == [f"gateway (pid {other.pid}) was not running"]
        assert other.poll() is None, "a process without the demo's marker was signalled"
    finally:
        other.kill()
        other.wait()


def test_demo_stop_without_a_demo_left_running(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "stop", "--workdir", str(tmp_path)])
    assert result.exit_code == 0
    assert "Nothing recorded as running" in result.output


def test_every_topic_prefix_option_reads_pcfx_topic_prefix() -> None:
    found = []

    def walk(command: Any, path: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")
        for param in getattr(command, "params", []):
            if "--topic-prefix" in getattr(param, "opts", ()):
                found.append(path)
                assert param.envvar == "PCFX_TOPIC_PREFIX", path

    walk(get_command(app), "pcfx")
    wanted = ["publish footprints", "publish bom", "keys register", "streams run"]
    wanted += ["gateway run", "approvals list", "audit verify", "outbound decrypt"]
    for command in wanted:
        assert f"pcfx {command}" in found, command
