"""``pcfx`` imports a command's module only when that command runs (``pcfx.cli.LazyGroup``).

Every call of the CLI used to import every command module -- the PACT API's FastAPI app, the
gateway, the roll-up engine -- before doing anything (about 2 s of CPU per call). A real
subprocess is started for each check, since a test process has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pcf_exchange.pcfx.cli import ENTRIES, load

# What a call that does not need it must not import (a prefix matches a package's modules).
HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "faust",
    "pcf_exchange.gateway",
    "pcf_exchange.streams",
    "pcf_exchange.contracts._records",
    "pcf_exchange.contracts._envelope",
    "pcf_exchange.contracts._footprint",
)

_RUN = """
import json, runpy, sys
sys.argv = ["pcfx", *sys.argv[2:]]
try:
    runpy.run_module("pcf_exchange.pcfx", run_name="__main__")
except SystemExit:
    pass
with open(OUT, "w") as f:
    json.dump(sorted(sys.modules), f)
"""


def imported_by(tmp_path: Path, *args: str) -> tuple[set[str], str]:
    """The modules ``pcfx *args`` imported (run in a fresh interpreter), and its stdout."""
    out = tmp_path / "modules.json"
    code = f"OUT = {str(out)!r}\n" + _RUN
    done = subprocess.run(
        [sys.executable, "-c", code, "pcfx", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.exists(), done.stderr
    return set(json.loads(out.read_text())), done.stdout


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def commands_imported(modules: set[str]) -> set[str]:
    prefix = "pcf_exchange.pcfx.commands."
    return {m[len(prefix) :] for m in modules if m.startswith(prefix)}


def test_top_level_help_lists_every_command_and_imports_none(tmp_path: Path) -> None:
    modules, output = imported_by(tmp_path, "--help")
    assert heavy(modules) == []
    assert commands_imported(modules) == set()
    for name in ENTRIES:
        assert f"│ {name} " in output, name


def test_broker_status_imports_the_broker_command_only(tmp_path: Path) -> None:
    modules, output = imported_by(tmp_path, "broker", "status", "--state-dir", str(tmp_path))
    assert "no broker is running" in output
    assert heavy(modules) == []
    assert commands_imported(modules) == {"broker"}


def test_a_group_help_imports_its_own_module_only(tmp_path: Path) -> None:
    modules, output = imported_by(tmp_path, "audit", "--help")
    assert "verify" in output and "checkpoint" in output
    assert "fastapi" not in modules and "pcf_exchange.gateway.api" not in modules
    assert "pcf_exchange.pcfx.commands.api" not in modules


@pytest.mark.parametrize("name", list(ENTRIES))
def test_the_listed_help_is_the_commands_own(name: str) -> None:
    command = load(name)
    assert command.name == name
    assert (command.short_help or command.help) == ENTRIES[name].help
