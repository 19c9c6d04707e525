"""Background services the demo leaves running (``pcfx demo --keep-running``), and their stop.

What was started is recorded in ``<workdir>/services.json``: each process's name, pid, log file
and a marker (a word of its command line), and whether the demo started the local broker.
``pcfx demo stop`` signals only a process whose command line still holds its marker (a pid the
system has since given to another program is left alone), waits for it, then removes the record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pcf_exchange.contracts.errors import ContractError

__all__ = ["STATE_FILE", "Service", "Services", "is_running", "start_service", "stop_services"]

STATE_FILE = "services.json"


@dataclass(frozen=True)
class Service:
    name: str
    pid: int
    log: str
    marker: str
    """A word of the process's command line (the demo's topic prefix) that proves it is ours."""


@dataclass
class Services:
    bootstrap: str
    prefix: str
    broker_started: bool = False
    processes: list[Service] = field(default_factory=list)

    def save(self, workdir: Path) -> Path:
        path = workdir / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, workdir: Path) -> Services | None:
        path = workdir / STATE_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(
                bootstrap=str(data["bootstrap"]),
                prefix=str(data["prefix"]),
                broker_started=bool(data.get("broker_started", False)),
                processes=[Service(**item) for item in data.get("processes", [])],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ContractError(
                f"'{path}' is not a record of running services: {exc}",
                hint="Stop the processes by hand (see the *.log files next to it), then delete it.",
            ) from exc


def start_service(
    name: str, argv: list[str], log: Path, marker: str, env: dict[str, str]
) -> tuple[Service, subprocess.Popen[bytes]]:
    """Start *argv* in its own session (it outlives the demo and the terminal's Ctrl-C)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return Service(name, proc.pid, str(log), marker), proc


def is_running(service: Service) -> bool:
    """The process is alive and still the one we started (its command line holds the marker)."""
    try:
        argv = Path(f"/proc/{service.pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{service.pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # exited, not yet reaped by its parent
        return False
    return any(service.marker.encode() in word for word in argv)


def stop_services(workdir: Path, timeout_s: float = 30.0) -> tuple[list[str], Services | None]:
    """SIGTERM each recorded process that is still ours, SIGKILL it after *timeout_s*; forget
    the record. Returns what was done, line by line, and the record (None: nothing recorded)."""
    services = Services.load(workdir)
    if services is None:
        return [], None
    done: list[str] = []
    live = [s for s in services.processes if is_running(s)]
    for service in services.processes:
        if service not in live:
            done.append(f"{service.name} (pid {service.pid}) was not running")
    for service in live:
        os.kill(service.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for service in live:
        while is_running(service) and time.monotonic() < deadline:
            time.sleep(0.2)
        if is_running(service):
            os.kill(service.pid, signal.SIGKILL)
            done.append(f"killed {service.name} (pid {service.pid}): it ignored SIGTERM")
        else:
            done.append(f"stopped {service.name} (pid {service.pid})")
    (workdir / STATE_FILE).unlink(missing_ok=True)
    return done, services
