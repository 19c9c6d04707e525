"""What every ``pcfx`` command shares: the console, one error exit, exit codes, ``--json``.

Exit codes mean the same in every command:

====  =========================================================================
0     done, nothing rejected
1     done, but something was rejected or failed verification (see the output), a wrong
      or missing key passphrase included
2     the command line was wrong (typer's usage errors, an ambiguous id prefix)
3     infrastructure unavailable: broker, registry, key store, Java/Maven
4     the input could not be read at all (missing file, key file included; unknown format)
====  =========================================================================
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from enum import IntEnum
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from pcf_exchange.contracts.errors import InfrastructureError, PassphraseError, PcfError

__all__ = [
    "ExitCode",
    "Stage",
    "camel_keys",
    "console",
    "err_console",
    "handle_errors",
    "print_json",
    "progress",
    "stages",
]

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


class ExitCode(IntEnum):
    OK = 0
    REJECTED = 1
    USAGE = 2
    INFRASTRUCTURE = 3
    UNREADABLE_INPUT = 4


def exit_code_for(error: PcfError) -> ExitCode:
    """The README's exit code for *error*, from the error tree (:mod:`contracts.errors`).

    ``unreadable_input`` (a missing or unparsable input file, a key file that does not exist)
    is 4 wherever it sits in the tree, and ``ambiguous_id`` (an id prefix that names several
    records) 2, as typer's usage errors; a wrong or missing passphrase is a credential that failed
    (1), although it is a :class:`~contracts.errors.KeyStoreError`; the rest of
    :class:`~contracts.errors.InfrastructureError` (broker, registry, key store) is 3; every
    other error (contract, trust, policy, roll-up) is 1.
    """
    if error.code == "unreadable_input":
        return ExitCode.UNREADABLE_INPUT
    if error.code == "ambiguous_id":
        return ExitCode.USAGE
    if isinstance(error, PassphraseError):
        return ExitCode.REJECTED
    if isinstance(error, InfrastructureError):
        return ExitCode.INFRASTRUCTURE
    return ExitCode.REJECTED


def camel_keys(data: Any) -> Any:
    """*data* with every ``snake_case`` dict key written ``camelCase``, all the way down: for
    records the packages give as dataclasses (``asdict``) or ``__dict__``. Keys that are data,
    not names (topic names, ids with ``.``, ``:`` or ``/``), are left alone."""
    if isinstance(data, dict):
        return {_camel(k) if isinstance(k, str) else k: camel_keys(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [camel_keys(v) for v in data]
    return data


def _camel(key: str) -> str:
    if "_" not in key or any(c in key for c in ".:/@ "):
        return key
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


Tick = Callable[[int], None]
Stage = Callable[[str, int | None], Tick]
"""``stage(label, total)`` starts a stage of long work (``None``: no known total) and returns
the callable that advances it."""


def _no_tick(_: int) -> None:
    return None


def _columns(label: str) -> tuple[Any, ...]:
    return (
        SpinnerColumn(),
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )


@contextlib.contextmanager
def progress(enabled: bool, label: str, total: int | None = None) -> Iterator[Tick | None]:
    """A progress bar on stderr for one piece of long work; ``None`` (no bar) unless *enabled*
    (commands pass ``not json_out and err_console.is_terminal``). Transient: it disappears
    when the work is done, so what stays on the screen is the result."""
    if not enabled:
        yield None
        return
    with Progress(*_columns(label), console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@contextlib.contextmanager
def stages(enabled: bool) -> Iterator[Stage]:
    """One progress line on stderr for work in stages (read, compute, write); each call of
    the yielded :data:`Stage` finishes the previous stage and starts the next. When not
    *enabled* every call is a no-op."""
    if not enabled:
        yield lambda label, total: _no_tick
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        current: list[Any] = []

        def stage(label: str, total: int | None) -> Tick:
            if current:
                bar.update(current[-1], visible=False)
            task = bar.add_task(label, total=total)
            current.append(task)
            return lambda n: bar.advance(task, n)

        yield stage


def print_json(data: Any) -> None:
    """Machine output for ``--json``: one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def print_error(error: PcfError) -> ExitCode:
    """Print *error*'s diagnostics on stderr; return the exit code it means."""
    err_console.print(f"[bold red]{type(error).__name__}[/]: {error.message}")
    if error.hint:
        err_console.print(f"[yellow]→ {error.hint}[/]")
    return exit_code_for(error)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """The one error exit: a PcfError prints its diagnostics and exits with its code.

    ``PCFX_VERBOSE=1`` re-raises, so the traceback shows.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except PcfError as exc:
            if os.environ.get("PCFX_VERBOSE"):
                raise
            raise typer.Exit(int(print_error(exc))) from None

    return wrapper
