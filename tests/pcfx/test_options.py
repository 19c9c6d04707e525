"""One name per option across commands: the shared options come as a set, and mean one thing.

Walks the click command tree typer builds for the whole ``pcfx`` app.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from pcf_exchange.contracts.errors import PassphraseError
from pcf_exchange.pcfx.cli import app
from pcf_exchange.pcfx.options import JsonOut, TopicPrefix, log_level, passphrase, with_options


def commands(group: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, set[str]]]:
    group = group or get_command(app)
    subs = getattr(group, "commands", None)
    if subs:
        for name, sub in subs.items():
            yield from commands(sub, (*path, name))
    else:
        yield " ".join(path), {o for p in group.params for o in getattr(p, "opts", [])}


COMMANDS = dict(commands())


def test_the_walk_sees_every_group() -> None:
    groups = {path.split()[0] for path in COMMANDS}
    assert {"publish", "keys", "streams", "gateway", "approvals", "broker", "rollup"} <= groups
    assert len(COMMANDS) > 60


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_shared_options_come_together(path: str) -> None:
    opts = COMMANDS[path]
    if "--topic-prefix" in opts:
        assert "--bootstrap" in opts, "a command that names topics says where the cluster is"
    if "--passphrase-file" in opts:
        assert "--passphrase-env" in opts, "both ways to give a passphrase, everywhere"
    assert not opts & {"--loglevel", "--passphrase", "--app-id"} or path in {
        "streams run",
        "streams topics",
    }, "old spellings only where the README used them (hidden there)"


def test_passphrase_has_one_meaning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PCFX_KEY_PASSPHRASE", raising=False)
    file = tmp_path / "pw"
    file.write_text("from-file\nignored\n")
    monkeypatch.setenv("MY_PW", "from-env")
    assert passphrase(file, None) == b"from-file"
    assert passphrase(None, "MY_PW") == b"from-env"
    assert passphrase(None, None) is None
    monkeypatch.setenv("PCFX_KEY_PASSPHRASE", "default")
    assert passphrase(None, None) == b"default"
    with pytest.raises(PassphraseError, match="not both"):
        passphrase(file, "MY_PW")
    with pytest.raises(PassphraseError, match="NO_SUCH_PW"):
        passphrase(None, "NO_SUCH_PW")


def test_log_levels() -> None:
    assert log_level("WARN") == "warning" and log_level("debug") == "debug"
    import typer

    with pytest.raises(typer.BadParameter, match="loud"):
        log_level("loud")


def _block(json_out: JsonOut = False, topic_prefix: TopicPrefix = "") -> None:
    """A block of two options."""


def test_with_options_adds_a_block_after_the_commands_own_options() -> None:
    import typer
    from typer.testing import CliRunner

    seen: dict[str, object] = {}
    cli = typer.Typer()

    @cli.command()
    @with_options(_block)
    def show(name: str, **options: object) -> None:
        seen.update(options, name=name)

    @cli.command()
    def other() -> None:  # (two commands: typer then needs the command's name)
        pass

    result = CliRunner().invoke(cli, ["show", "x", "--json", "--topic-prefix", "p."])
    assert result.exit_code == 0, result.output
    assert seen == {"name": "x", "json_out": True, "topic_prefix": "p."}
    assert list(inspect.signature(show).parameters) == ["name", "json_out", "topic_prefix"]


def test_with_options_refuses_a_command_without_kwargs_or_declaring_a_block_option() -> None:
    def no_kwargs(name: str) -> None: ...

    def clash(json_out: bool, **options: object) -> None: ...

    with pytest.raises(TypeError, match="must take \\*\\*kwargs"):
        with_options(_block)(no_kwargs)
    with pytest.raises(TypeError, match="declares \\['json_out'\\] of _block"):
        with_options(_block)(clash)
