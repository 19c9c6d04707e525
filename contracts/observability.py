"""Operating the long-running services: Prometheus metrics, health and readiness, one log format.

The streams worker (``pcfx streams run``), the gateway (``pcfx gateway run``) and the PACT API
(``pcfx api serve``) all use this module, which is why it sits in ``contracts`` (the one package
all three import; it imports none of them, and no ``pcfx``).

**Metrics** (:class:`Metrics`, one naming scheme, ``prometheus-client``). Every series carries
the ``service`` label (``streams``, ``gateway``, ``api``), so one dashboard reads all three:

==================================  =========================  ===================================
series                              labels                     what
==================================  =========================  ===================================
``pcfx_records_in_total``           service, topic             records taken from a topic
``pcfx_records_out_total``          service, topic             records written to a topic
``pcfx_dlq_total``                  service, reason            records sent to ``pcf.rejected``
``pcfx_consumer_lag``               service, topic, partition  records behind the partition's end
``pcfx_rollup_latency_seconds``     service                    roll-up batch: oldest input to acks
``pcfx_transfers_total``            service, decision,         gateway decisions committed, per
                                    destination                recipient (sent, blocked, held)
``pcfx_approvals_pending``          service                    held transfers awaiting an officer
==================================  =========================  ===================================

The services count **per batch, never per record** (a ``labels().inc(n)`` costs about a
microsecond; the hot paths handle a record in tens of microseconds), and only what was
committed: the gateway adds a batch's transfers after its transaction commits.

**Health** (:class:`OpsServer`, ``--metrics-port``): a small HTTP server (stdlib, one daemon
thread) serving ``/metrics`` (the Prometheus text format), ``/healthz`` (200 while the process
answers: liveness) and ``/readyz`` (200 once the service is connected and doing its work, else
503 with the reason: readiness). What "ready" means is the service's own check
(:class:`Readiness`): the worker has joined its consumer group and read the key registry, the
gateway has its partitions assigned, the API is serving. Port 0 turns the server off.

**Logs** (:func:`configure_logging`, ``--log-level`` / ``--log-format text|json``): one root
handler, the same fields in both formats: ``ts`` (UTC, ISO 8601), ``level``, ``service``,
``logger``, ``message``, plus whatever the call passed in ``extra=`` (``topic``,
``partition``, ``offset``, ...) and ``exc`` for a traceback. JSON is one object per line.

**No ERROR on a normal start** (:class:`RetryableStartup`): while a new consumer group's
coordinator is elected, aiokafka logs ``Group Coordinator Request failed:
[Error 15] CoordinatorNotAvailableError`` at ERROR and retries. The condition is retriable and
expected on a fresh broker or group, so the filter downgrades exactly those messages (a
retriable Kafka error, from aiokafka's group coordinator) to INFO; a non-retriable error keeps
its level.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, TextIO

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from pcf_exchange.contracts.errors import InfrastructureError

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "METRICS",
    "METRICS_CONTENT_TYPE",
    "JsonFormatter",
    "Metrics",
    "OpsServer",
    "Readiness",
    "RetryableStartup",
    "configure_logging",
    "log_level_of",
    "start_ops_server",
]

LOG_FORMATS: Final = ("text", "json")
LOG_LEVELS: Final = {
    "crit": logging.CRITICAL,
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
"""``--log-level`` names (faust's short ones and Python's)."""

METRICS_CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
"""The media type of ``/metrics`` (the Prometheus text format)."""

ROLLUP_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds: a roll-up batch takes milliseconds on a quiet worker, seconds behind a backlog."""


# --- metrics -----------------------------------------------------------------------------------


class Metrics:
    """The exchange's metric families, registered in *registry* (the process's default one,
    which also carries prometheus-client's process and platform collectors; tests pass their
    own :class:`~prometheus_client.CollectorRegistry`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = REGISTRY if registry is None else registry
        r = self.registry
        self.records_in = Counter(
            "pcfx_records_in", "Records taken from a topic.", ["service", "topic"], registry=r
        )
        self.records_out = Counter(
            "pcfx_records_out", "Records written to a topic.", ["service", "topic"], registry=r
        )
        self.dlq = Counter(
            "pcfx_dlq",
            "Records sent to the dead-letter topic pcf.rejected, by reason.",
            ["service", "reason"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "pcfx_consumer_lag",
            "Records between a consumed partition's end and the next one to process.",
            ["service", "topic", "partition"],
            registry=r,
        )
        self.rollup_latency = Histogram(
            "pcfx_rollup_latency_seconds",
            "A roll-up batch: from its oldest input's timestamp to its outputs acknowledged.",
            ["service"],
            buckets=ROLLUP_BUCKETS,
            registry=r,
        )
        self.transfers = Counter(
            "pcfx_transfers",
            "Gateway decisions committed, by decision and recipient.",
            ["service", "decision", "destination"],
            registry=r,
        )
        self.approvals_pending = Gauge(
            "pcfx_approvals_pending",
            "Held transfers waiting for a compliance officer.",
            ["service"],
            registry=r,
        )

    def lag(self, service: str, topic: str, partition: int, end: int, next_offset: int) -> None:
        """Set the lag of one partition: its end offset (high watermark) minus the next offset
        the service will process (never below 0: a watermark read earlier can trail)."""
        self.consumer_lag.labels(service, topic, str(partition)).set(max(0, end - next_offset))

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


METRICS: Final = Metrics()
"""The process's metrics (in prometheus-client's default registry)."""


# --- health and readiness ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Readiness:
    """A service's answer to ``/readyz``: ready, or not and why (the operator reads it)."""

    ready: bool
    reason: str = ""

    @classmethod
    def yes(cls) -> Readiness:
        return cls(True, "")

    @classmethod
    def no(cls, reason: str) -> Readiness:
        return cls(False, reason)


def _handler(
    service: str, ready: Callable[[], Readiness], metrics: Metrics
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "pcfx-ops"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, METRICS_CONTENT_TYPE, metrics.exposition())
            elif path == "/healthz":
                self._json(200, {"status": "ok", "service": service})
            elif path == "/readyz":
                try:
                    answer = ready()
                except Exception as exc:  # a broken check is "not ready", never a 500
                    answer = Readiness.no(f"readiness check failed: {exc!r}")
                status = 200 if answer.ready else 503
                body = {"status": "ready" if answer.ready else "not ready", "service": service}
                if answer.reason:
                    body["reason"] = answer.reason
                self._json(status, body)
            else:
                self._json(404, {"error": f"no such path {path!r}: /metrics, /healthz, /readyz"})

        def _json(self, status: int, body: dict[str, str]) -> None:
            self._send(status, "application/json", json.dumps(body).encode())

        def _send(self, status: int, content_type: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            # probes every few seconds: not worth a log line each
            logging.getLogger("pcfx.ops").debug("%s " + format, self.address_string(), *args)

    return Handler


class OpsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` of one service on plain HTTP, in a daemon
    thread (:func:`start_ops_server`). Bind it to the pod's or container's network only: it
    has no authentication, like every Prometheus exporter."""

    def __init__(
        self,
        service: str,
        ready: Callable[[], Readiness],
        *,
        port: int,
        host: str = "0.0.0.0",
        metrics: Metrics = METRICS,
    ) -> None:
        try:
            self._server = ThreadingHTTPServer((host, port), _handler(service, ready, metrics))
        except OSError as exc:
            raise InfrastructureError(
                f"cannot serve metrics and health on {host}:{port}: {exc.strerror}",
                hint="Choose another --metrics-port (0 turns the endpoint off).",
            ) from exc
        self._server.daemon_threads = True
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"pcfx-ops-{service}", daemon=True
        )

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in {"0.0.0.0", ""} else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> OpsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)

    def __enter__(self) -> OpsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_ops_server(
    service: str,
    port: int,
    ready: Callable[[], Readiness],
    *,
    host: str = "0.0.0.0",
    metrics: Metrics = METRICS,
) -> OpsServer | None:
    """Start the service's :class:`OpsServer` on *port*; ``None`` (nothing started) for 0."""
    if port == 0:
        return None
    if not 0 < port < 65536:
        raise InfrastructureError(
            f"'--metrics-port' must be a TCP port, 1 to 65535, or 0 for off (got {port})"
        )
    server = OpsServer(service, ready, port=port, host=host, metrics=metrics).start()
    logging.getLogger("pcfx.ops").info(
        "metrics and health on %s (/metrics, /healthz, /readyz)", server.url
    )
    return server


# --- logs ----------------------------------------------------------------------------------------

_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "service",
    "taskName",
}
"""A LogRecord's own attributes: anything else on a record came from ``extra=``."""

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(service)s %(name)s: %(message)s"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    items = record.__dict__.items()
    return {k: v for k, v in items if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``service``, ``logger``, ``message``, the
    record's extras, and ``exc`` (the formatted traceback) when there is one. Values JSON
    cannot hold are written as their ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": getattr(record, "service", ""),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            document.setdefault(key, value)
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exc"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, default=str, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT`, then the extras as ``key=value``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if not extras:
            return line
        head, sep, tail = line.partition("\n")  # extras before a traceback
        pairs = " ".join(f"{k}={v}" for k, v in extras.items())
        return f"{head} [{pairs}]{sep}{tail}"


class _Service(logging.Filter):
    """Stamps every record the handler writes with the service's name."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        return True


class RetryableStartup(logging.Filter):
    """Downgrades aiokafka's ERROR for a retriable coordinator look-up to INFO (see the module
    docstring); installed on ``aiokafka.consumer.group_coordinator`` by
    :func:`configure_logging`. Everything else passes unchanged."""

    MESSAGES: Final = frozenset({"Group Coordinator Request failed: %s"})

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or record.msg not in self.MESSAGES:
            return True
        error = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if not getattr(error, "retriable", False):
            return True
        record.levelno, record.levelname = logging.INFO, "INFO"
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


_RETRYABLE_LOGGERS: Final = ("aiokafka.consumer.group_coordinator",)
_NOISY: Final = ("kafka", "aiokafka", "librdkafka")
"""Client libraries whose INFO is a line per connection: kept at WARNING unless debugging."""


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on whatever ``sys.stderr`` is when a record is written (a test runner or a
    daemon may swap it after logging was configured)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


class _Ours(logging.Filter):
    """Marks the handler :func:`configure_logging` installed (replaced on the next call)."""


def log_level_of(name: str) -> int:
    """The ``logging`` level of a ``--log-level`` name, or a ValueError naming the choices."""
    try:
        return LOG_LEVELS[name.strip().lower()]
    except KeyError:
        raise ValueError(
            f"'--log-level' must be one of {', '.join(LOG_LEVELS)} (got {name!r})"
        ) from None


def configure_logging(
    service: str,
    level: str = "info",
    log_format: str = "text",
    *,
    stream: TextIO | None = None,
    quiet: Iterable[str] = _NOISY,
) -> logging.Handler:
    """Send every log record of this process to one handler on *stream* (stderr), in
    *log_format* (``text`` or ``json``), from *level* up, stamped with *service*; returns the
    handler. A second call replaces the handler the first installed; handlers others put on the
    root logger (a test runner's) stay. The *quiet* libraries log from WARNING unless *level*
    is ``debug``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"'--log-format' must be text or json (got {log_format!r})")
    threshold = log_level_of(level)
    handler: logging.Handler = _Stderr() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else _TextFormatter())
    handler.addFilter(_Service(service))
    handler.addFilter(_Ours())
    root = logging.getLogger()
    for old in list(root.handlers):
        if any(isinstance(f, _Ours) for f in old.filters):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    for name in quiet:
        logging.getLogger(name).setLevel(max(threshold, logging.WARNING))
    if threshold <= logging.DEBUG:
        for name in quiet:
            logging.getLogger(name).setLevel(logging.DEBUG)
    for name in _RETRYABLE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RetryableStartup) for f in logger.filters):
            logger.addFilter(RetryableStartup())
    return handler
