"""Every command the README shows exists, with the options it is shown with.

Each ``pcfx …`` line in the README's shell blocks is parsed against the real CLI (the click
command tree typer builds): the command path must exist and every ``--option`` must be one that
command accepts. ``make`` targets must be in the Makefile. The flows themselves run in the
demo, CLI and end-to-end tests.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from pcf_exchange.pcfx.cli import app

ROOT = Path(__file__).resolve().parents[2]


def shell_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lines: list[str] = []
    for block in re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for raw in joined.splitlines():
            line = raw.split("  #", 1)[0].strip().removeprefix("$ ")
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


PCFX_LINES = [line for line in shell_lines() if line.startswith("pcfx ")]
MAKE_LINES = [line for line in shell_lines() if line.startswith("make ")]


def resolve(words: list[str]) -> tuple[Any, list[str]]:
    command: Any = get_command(app)  # typer's (vendored) click command tree
    rest = words
    # options of the group itself (pcfx --kafka-config FILE publish ...) come before the command
    options = {opt: p for p in command.params for opt in p.opts}
    while rest and rest[0] in options:
        rest = rest[1:] if options[rest[0]].is_flag else rest[2:]
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        assert sub is not None, f"'{rest[0]}' is not a command of {command.name!r}"
        command, rest = sub, rest[1:]
    return command, rest


def test_the_readme_shows_commands() -> None:
    assert len(PCFX_LINES) >= 15
    assert any(line.startswith("make test") for line in MAKE_LINES)
    assert any(line.startswith("make demo") for line in MAKE_LINES)


@pytest.mark.parametrize("line", PCFX_LINES)
def test_pcfx_command_exists_with_these_options(line: str) -> None:
    words = shlex.split(line.split(" | ", maxsplit=1)[0].split(" > ", maxsplit=1)[0])[1:]
    command, rest = resolve(words)
    accepted = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    accepted.add("--help")
    used = [w.split("=", 1)[0] for w in rest if w.startswith("--")]
    unknown = [opt for opt in used if opt not in accepted]
    assert not unknown, f"{line!r}: {command.name} does not accept {unknown}"


@pytest.mark.parametrize("line", MAKE_LINES)
def test_make_targets_exist(line: str) -> None:
    makefile = (ROOT / "Makefile").read_text()
    target = shlex.split(line)[1]
    assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), target
