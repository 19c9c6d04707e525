"""The operations options every long-running service shares (``pcfx streams run``,
``pcfx gateway run``, ``pcfx api serve``), with one name each: ``--log-level``,
``--log-format text|json`` and ``--metrics-port`` (see :mod:`contracts.observability`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from contracts.observability import LOG_FORMATS, LOG_LEVELS

__all__ = ["OPS_PORTS", "LogFormat", "LogFormatName", "LogLevel", "LogLevelName", "MetricsPort"]


class LogLevelName(StrEnum):
    """``--log-level`` choices (faust's short names and Python's)."""

    crit = "crit"
    critical = "critical"
    error = "error"
    warn = "warn"
    warning = "warning"
    info = "info"
    debug = "debug"


class LogFormatName(StrEnum):
    """``--log-format`` choices."""

    text = "text"
    json = "json"


assert set(LogLevelName) == set(LOG_LEVELS) and set(LogFormatName) == set(LOG_FORMATS)

OPS_PORTS = {"streams": 9464, "gateway": 9465, "api": 9466}
"""The ``--metrics-port`` each service uses in docker-compose.yml (and the README's examples);
the default is 0, off."""

LogLevel = Annotated[
    LogLevelName,
    typer.Option(
        "--log-level",
        "--loglevel",
        case_sensitive=False,
        help="Least severe log records written (stderr).",
    ),
]
LogFormat = Annotated[
    LogFormatName,
    typer.Option(
        "--log-format",
        help="text: one line per record; json: one JSON object per line (ts, level, service,"
        " logger, message, and the record's extra fields).",
    ),
]
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
