"""The options every ``pcfx`` command shares: one name, one meaning, one help text.

A command declares a shared option by its alias here (``json_out: JsonOut = False``) instead of
spelling the ``typer.Option`` again, so that ``--passphrase-file`` means the same in
``pcfx keys``, ``pcfx approvals`` and ``pcfx gateway run``, and a help text is fixed once.

The names:

==========================  ===================================================================
``--json``                  one machine-readable JSON document on stdout (camelCase keys)
``--bootstrap``             Kafka bootstrap servers (default: :mod:`pcfx.settings`)
``--topic-prefix``          prefix of every topic name (``$PCFX_TOPIC_PREFIX``)
``--passphrase-file FILE``  the first line of FILE is the private key's passphrase
``--passphrase-env NAME``   the environment variable NAME holds it
``--log-level``             ``critical``, ``error``, ``warning``, ``info`` or ``debug``
``--group``                 the consumer group a long-running process joins
==========================  ===================================================================

A block of options several commands take together (the release options of every declaration,
the operator options of the certification registry's commands) is written once, as the
parameters of a function that only declares them, and added to each command by
:func:`with_options`: the command receives them as ``**kwargs``.

With neither passphrase option, ``$PCFX_KEY_PASSPHRASE`` is used when set (:func:`passphrase`).
Old spellings stay as hidden, deprecated aliases only where the README used them: ``--app-id``
for ``pcfx streams run|topics --group``; it prints a one-line deprecation notice on stderr.
(``--loglevel`` of ``streams run`` was used nowhere and is gone: ``--log-level``.)
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from pcf_exchange.contracts.errors import PassphraseError
from pcf_exchange.pcfx.console import err_console
from pcf_exchange.pcfx.kafka_options import KafkaConfig

__all__ = [
    "LOG_LEVELS",
    "OPS_PORTS",
    "Bootstrap",
    "Group",
    "JsonOut",
    "KafkaConfig",
    "LogFormat",
    "LogFormatName",
    "LogLevel",
    "MetricsPort",
    "PassphraseEnv",
    "PassphraseFile",
    "RegistryUrl",
    "TopicPrefix",
    "deprecated",
    "log_level",
    "passphrase",
    "with_options",
]

_F = TypeVar("_F", bound=Callable[..., Any])

JsonOut = Annotated[
    bool,
    typer.Option("--json", help="Print one machine-readable JSON document (camelCase keys)."),
]
Bootstrap = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, the client config's"
        " bootstrap.servers, else the local broker).",
        show_default=False,
    ),
]
TopicPrefix = Annotated[
    str,
    typer.Option(
        "--topic-prefix",
        envvar="PCFX_TOPIC_PREFIX",
        help="Prefix of every topic name (a namespace on a shared cluster).",
    ),
]
PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="File whose first line is the private key's passphrase"
        " (else --passphrase-env, else $PCFX_KEY_PASSPHRASE).",
        show_default=False,
    ),
]
PassphraseEnv = Annotated[
    str | None,
    typer.Option(
        "--passphrase-env",
        help="Name of the environment variable that holds the private key's passphrase.",
        show_default=False,
    ),
]
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LogLevel = Annotated[
    str,
    typer.Option("--log-level", help=f"Log level: {', '.join(LOG_LEVELS)}."),
]


class LogFormatName(StrEnum):
    """``--log-format`` choices (:func:`contracts.observability.configure_logging`)."""

    text = "text"
    json = "json"


LogFormat = Annotated[
    LogFormatName,
    typer.Option(
        "--log-format",
        help="text: one line per record; json: one JSON object per line (ts, level, service,"
        " logger, message, and the record's extra fields).",
    ),
]
OPS_PORTS = {"streams": 9464, "gateway": 9465, "api": 9466}
"""The ``--metrics-port`` each service uses in docker-compose.yml (and the README's examples);
the default is 0, off."""
MetricsPort = Annotated[
    int,
    typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve /metrics (Prometheus), /healthz and /readyz over plain HTTP on this port"
        " (0: off).",
    ),
]
RegistryUrl = Annotated[
    str | None,
    typer.Option(
        "--registry-url",
        help="A Confluent-compatible schema registry (default: the registry topic on Kafka).",
    ),
]

Group = Annotated[
    str | None,
    typer.Option(
        "--group",
        help="Consumer group: processes with one group share the partitions.",
        show_default=False,
    ),
]


def passphrase(file: Path | None, env: str | None) -> bytes | None:
    """The passphrase the options name: *file*'s first line, else the variable *env* (which
    must be set), else ``$PCFX_KEY_PASSPHRASE``, else ``None`` (an unencrypted key).

    Raises :class:`~contracts.errors.PassphraseError` when both are given or *env* is unset,
    :class:`~contracts.errors.KeyStoreError` when *file* cannot be read."""
    if file is not None and env:
        raise PassphraseError(
            "give --passphrase-file or --passphrase-env, not both",
            hint="Keep the one that holds the key's passphrase.",
        )
    if env:
        value = os.environ.get(env)
        if value is None:
            raise PassphraseError(
                f"--passphrase-env names {env}, which is not set",
                hint=f"export {env}=... (the key's passphrase), or use --passphrase-file.",
            )
        return value.encode("utf-8")
    # (here, not at the top: every command imports this module, few read a passphrase, and
    # the producers package imports the Kafka publisher)
    from pcf_exchange.producers.keys import read_passphrase

    return read_passphrase(file)


def log_level(level: str) -> str:
    """*level*, checked and lower-cased; ``warn`` and ``crit`` (faust's short names) are
    accepted too."""
    short = {"warn": "warning", "crit": "critical"}
    wanted = short.get(level.lower(), level.lower())
    if wanted not in LOG_LEVELS:
        raise typer.BadParameter(
            f"expected one of {', '.join(LOG_LEVELS)} (got {level!r})", param_hint="--log-level"
        )
    return wanted


def deprecated(old: str, new: str) -> None:
    """Say once on stderr that *old* is a deprecated spelling of *new*."""
    err_console.print(f"[yellow]{old} is deprecated: use {new}[/]")


def with_options(block: Callable[..., Any]) -> Callable[[_F], _F]:
    """Add the parameters of *block* (a function that only declares options, with their
    aliases and defaults) to the decorated command's, after its own and keyword-only; the
    command takes them as ``**kwargs``. Typer reads the merged signature, so ``--help`` and
    parsing are as if each command spelled the block out. A name in both is a mistake (raised
    at import)."""
    extra = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(block, eval_str=True).parameters.values()
    ]

    def decorate(command: _F) -> _F:
        own = inspect.signature(command, eval_str=True)
        kept = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
        if len(kept) == len(own.parameters):
            raise TypeError(f"{command.__name__} must take **kwargs to receive {block.__name__}")
        clash = {p.name for p in kept} & {p.name for p in extra}
        if clash:
            raise TypeError(f"{command.__name__} declares {sorted(clash)} of {block.__name__}")

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return command(*args, **kwargs)

        merged = own.replace(parameters=[*kept, *extra])
        wrapper.__signature__ = merged  # type: ignore[attr-defined]
        wrapper.__annotations__ = {
            **{p.name: p.annotation for p in merged.parameters.values()},
            "return": own.return_annotation,
        }
        return wrapper  # type: ignore[return-value]

    return decorate
