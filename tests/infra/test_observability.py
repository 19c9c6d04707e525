"""contracts.observability without a broker: the metric families, the health server, the log
formats, the filter that keeps a normal start free of ERROR lines, and the services' options."""

from __future__ import annotations

import io
import json
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.errors import CoordinatorNotAvailableError, GroupAuthorizationFailedError
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from pcf_exchange.contracts.errors import InfrastructureError
from pcf_exchange.contracts.observability import (
    JsonFormatter,
    Metrics,
    OpsServer,
    Readiness,
    RetryableStartup,
    configure_logging,
    log_level_of,
    start_ops_server,
)
from pcf_exchange.gateway._approvals_log import ApprovalBook
from pcf_exchange.gateway.api import create_app
from pcf_exchange.gateway.api._source import InMemoryFootprintSource


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    value = metrics.registry.get_sample_value(name, labels)
    return value


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


# --- metrics -----------------------------------------------------------------------------------


def test_the_metric_families_follow_one_naming_scheme(metrics: Metrics) -> None:
    metrics.records_in.labels("streams", "p.pcf.declared").inc(3)
    metrics.records_out.labels("gateway", "p.pcf.outbound.eu").inc(2)
    metrics.dlq.labels("streams", "bad_signature").inc()
    metrics.transfers.labels("gateway", "held", "eu").inc(4)
    metrics.approvals_pending.labels("gateway").set(4)
    metrics.rollup_latency.labels("streams").observe(0.03)
    text = metrics.exposition().decode()
    for line in (
        'pcfx_records_in_total{service="streams",topic="p.pcf.declared"} 3.0',
        'pcfx_records_out_total{service="gateway",topic="p.pcf.outbound.eu"} 2.0',
        'pcfx_dlq_total{reason="bad_signature",service="streams"} 1.0',
        'pcfx_transfers_total{decision="held",destination="eu",service="gateway"} 4.0',
        'pcfx_approvals_pending{service="gateway"} 4.0',
        'pcfx_rollup_latency_seconds_bucket{le="0.05",service="streams"} 1.0',
        'pcfx_rollup_latency_seconds_bucket{le="0.025",service="streams"} 0.0',
    ):
        assert line in text, line


def test_lag_is_the_partition_end_minus_the_next_offset_never_negative(metrics: Metrics) -> None:
    metrics.lag("gateway", "p.pcf.products", 1, end=120, next_offset=100)
    assert sample(metrics, "pcfx_consumer_lag", service="gateway", topic="p.pcf.products",
                  partition="1") == 20  # fmt: skip
    metrics.lag("gateway", "p.pcf.products", 1, end=90, next_offset=100)  # a stale end
    assert sample(metrics, "pcfx_consumer_lag", service="gateway", topic="p.pcf.products",
                  partition="1") == 0  # fmt: skip


def test_approvals_pending_counts_the_unresolved() -> None:
    book = ApprovalBook()
    assert book.pending == 0
    book.apply({"approvalId": "a1", "event": "resolved", "resolution": {}})  # unknown: a problem
    assert book.pending == 0 and book.problems


# --- the health server ---------------------------------------------------------------------------


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def ops(metrics: Metrics, free_port: int) -> Iterator[tuple[OpsServer, list[Readiness]]]:
    answers = [Readiness.no("joining consumer group 'g'")]
    server = start_ops_server(
        "streams", free_port, lambda: answers[-1], host="127.0.0.1", metrics=metrics
    )
    assert server is not None
    try:
        yield server, answers
    finally:
        server.stop()


def test_healthz_answers_while_readyz_says_why_it_is_not_ready(
    ops: tuple[OpsServer, list[Readiness]], metrics: Metrics
) -> None:
    server, answers = ops
    status, body, _ = get(f"{server.url}/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok", "service": "streams"})
    status, body, _ = get(f"{server.url}/readyz")
    assert status == 503
    assert json.loads(body) == {
        "status": "not ready",
        "service": "streams",
        "reason": "joining consumer group 'g'",
    }
    answers.append(Readiness.yes())
    status, body, _ = get(f"{server.url}/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ready", "service": "streams"})
    metrics.records_in.labels("streams", "t.pcf.bom").inc(7)
    status, body, content_type = get(f"{server.url}/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert b'pcfx_records_in_total{service="streams",topic="t.pcf.bom"} 7.0' in body
    status, body, _ = get(f"{server.url}/nothing")
    assert status == 404 and b"/metrics, /healthz, /readyz" in body


def test_a_readiness_check_that_raises_is_not_ready_not_a_crash(
    metrics: Metrics, free_port: int
) -> None:
    def broken() -> Readiness:
        raise RuntimeError("consumer gone")

    with OpsServer("gateway", broken, port=free_port, host="127.0.0.1", metrics=metrics).start():
        status, body, _ = get(f"http://127.0.0.1:{free_port}/readyz")
    assert status == 503
    assert "consumer gone" in json.loads(body)["reason"]


def test_port_zero_is_off_and_a_taken_or_impossible_port_is_named(
    ops: tuple[OpsServer, list[Readiness]], metrics: Metrics
) -> None:
    assert start_ops_server("api", 0, Readiness.yes) is None
    server, _ = ops
    with pytest.raises(InfrastructureError) as taken:
        start_ops_server("api", server.port, Readiness.yes, host="127.0.0.1", metrics=metrics)
    assert f"127.0.0.1:{server.port}" in taken.value.message
    assert "--metrics-port" in (taken.value.hint or "")
    with pytest.raises(InfrastructureError, match=r"1 to 65535, or 0 for off \(got 70000\)"):
        start_ops_server("api", 70000, Readiness.yes, metrics=metrics)


# --- logs --------------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in ("kafka", "aiokafka")}
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        for name, saved in levels.items():
            logging.getLogger(name).setLevel(saved)


def lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def test_json_logs_carry_the_same_fields_everywhere(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("gateway", "info", "json", stream=out)
    log = logging.getLogger("pcfx.gateway")
    log.info("committed %d records", 12, extra={"topic": "p.pcf.products", "partition": 3})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("batch failed", extra={"offset": 41})
    logging.getLogger("pcfx.test").debug("below the level: not written")
    first, second = (json.loads(line) for line in lines(out))
    assert set(first) == {"ts", "level", "service", "logger", "message", "topic", "partition"}
    assert first["ts"].endswith("+00:00") and "T" in first["ts"]
    assert (first["level"], first["service"]) == ("INFO", "gateway")
    assert first["logger"] == "pcfx.gateway"
    assert (first["message"], first["topic"], first["partition"]) == (
        "committed 12 records",
        "p.pcf.products",
        3,
    )
    assert (second["level"], second["offset"]) == ("ERROR", 41)
    assert "ValueError: boom" in second["exc"]


def test_text_logs_have_the_same_fields_in_one_line(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("streams", "warn", "text", stream=out)
    logging.getLogger("pcfx.streams").warning("parked", extra={"topic": "t", "offset": 5})
    logging.getLogger("pcfx.streams").info("not written at warn")
    (line,) = lines(out)
    assert " WARNING streams pcfx.streams: parked [topic=t offset=5]" in line


def test_configuring_again_replaces_only_its_own_handler(restore_logging: None) -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    first = configure_logging("api", "info", "text", stream=io.StringIO())
    second = configure_logging("api", "info", "json", stream=io.StringIO())
    assert first not in root.handlers and second in root.handlers
    assert len(root.handlers) == before + 1


def test_a_json_record_with_values_json_cannot_hold_is_still_written() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "m", None, None)
    record.when = object()
    record.service = "api"
    document = json.loads(JsonFormatter().format(record))
    assert document["when"].startswith("<object object")


@pytest.mark.parametrize(
    ("level", "log_format", "message"),
    [
        ("loud", "text", "'--log-level' must be one of crit, critical, error, warn, warning, "
                         "info, debug (got 'loud')"),
        ("info", "xml", "'--log-format' must be text or json (got 'xml')"),
    ],
)  # fmt: skip
def test_unknown_levels_and_formats_are_refused_by_name(
    level: str, log_format: str, message: str, restore_logging: None
) -> None:
    with pytest.raises(ValueError) as refused:
        configure_logging("api", level, log_format, stream=io.StringIO())
    assert str(refused.value) == message
    assert log_level_of(" WARN ") == logging.WARNING


def coordinator_log(error: Exception) -> logging.LogRecord:
    return logging.LogRecord(
        "aiokafka.consumer.group_coordinator",
        logging.ERROR,
        "group_coordinator.py",
        566,
        "Group Coordinator Request failed: %s",
        (error,),
        None,
    )


def test_a_retriable_coordinator_lookup_is_not_an_error(restore_logging: None) -> None:
    """What a normal worker start logged at ERROR (aiokafka, while the group's coordinator is
    elected) is INFO now, dropped below the client libraries' WARNING; a fatal one stays."""
    out = io.StringIO()
    configure_logging("streams", "info", "json", stream=out)
    logger = logging.getLogger("aiokafka.consumer.group_coordinator")
    logger.error("Group Coordinator Request failed: %s", CoordinatorNotAvailableError())
    assert lines(out) == []
    logger.error("Group Coordinator Request failed: %s", GroupAuthorizationFailedError("g"))
    logger.error("Heartbeat failed: %r", CoordinatorNotAvailableError())  # another message
    written = [json.loads(line) for line in lines(out)]
    assert [(w["level"], w["message"].split(":")[0]) for w in written] == [
        ("ERROR", "Group Coordinator Request failed"),
        ("ERROR", "Heartbeat failed"),
    ]


def test_the_downgrade_shows_at_info_when_the_client_libraries_debug(
    restore_logging: None,
) -> None:
    out = io.StringIO()
    configure_logging("streams", "debug", "json", stream=out)
    logging.getLogger("aiokafka.consumer.group_coordinator").error(
        "Group Coordinator Request failed: %s", CoordinatorNotAvailableError()
    )
    (line,) = (json.loads(x) for x in lines(out) if "Coordinator" in x)
    assert line["level"] == "INFO"
    record = coordinator_log(CoordinatorNotAvailableError())
    assert RetryableStartup().filter(record) and record.levelname == "INFO"


# --- the services' options and the API's routes --------------------------------------------------


@pytest.mark.parametrize(
    "command", [["streams", "run"], ["gateway", "run"], ["api", "serve"]], ids=" ".join
)
def test_every_long_running_service_takes_the_same_operations_options(command: list[str]) -> None:
    from pcf_exchange.pcfx.cli import app

    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in ("--log-level", "--log-format", "--metrics-port"):
        assert option in result.output, option
    assert "text|json" in result.output


def test_a_wrong_log_format_is_refused_before_anything_starts() -> None:
    from pcf_exchange.pcfx.cli import app

    result = CliRunner().invoke(
        app,
        ["streams", "run", "--operator-key", "x", "--service-key", "y", "--log-format", "xml"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 2
    assert "Invalid value for '--log-format'" in result.output
    assert "'xml' is not one of 'text', 'json'" in result.output


def test_the_api_serves_health_readiness_and_metrics_without_a_token() -> None:
    app: Any = create_app(InMemoryFootprintSource(), [])
    client = TestClient(app)
    answer = client.get("/readyz")  # the lifespan has not run: not serving yet
    assert answer.status_code == 503 and answer.json()["reason"].startswith("the API server")
    with TestClient(app) as running:
        assert running.get("/healthz").json() == {"status": "ok", "service": "api"}
        assert running.get("/readyz").json() == {"status": "ready", "service": "api"}
        metrics = running.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert metrics.headers["cache-control"] == "no-store"


class _SlowSource(InMemoryFootprintSource):
    def ready(self) -> Readiness:
        return Readiness.no("reading pcf.outbound.api to its end")


def test_the_api_is_not_ready_while_its_source_says_so() -> None:
    with TestClient(create_app(_SlowSource(), [])) as running:
        answer = running.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["reason"] == "reading pcf.outbound.api to its end"


@pytest.mark.parametrize("command", [["streams", "run"], ["gateway", "run"]], ids=" ".join)
def test_the_worker_and_the_gateway_take_an_http_schema_registry(command: list[str]) -> None:
    from pcf_exchange.pcfx.cli import app

    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--registry-url" in result.output


def test_the_gateway_reads_schemas_from_the_url_it_is_given() -> None:
    from pcf_exchange.contracts import HttpSchemaRegistry
    from pcf_exchange.pcfx.commands._gateway_shared import _registry

    registry = _registry("127.0.0.1:1", "http://registry.example:8081")
    try:
        assert isinstance(registry, HttpSchemaRegistry)
        assert registry._url == "http://registry.example:8081"
    finally:
        registry.close()
