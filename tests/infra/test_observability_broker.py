"""The services' metrics, health and logs on the real broker: a streams worker process started
as an operator would (``--metrics-port``, ``--log-format json``) and a gateway instance."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pcf_exchange.contracts import AvroSerde, HttpSchemaRegistry, register_all
from pcf_exchange.contracts.observability import METRICS
from tests.contracts.conftest import registry_server  # noqa: F401 (a fixture)
from tests.gateway._rollups import rolled_footprint
from tests.gateway.test_runtime_kafka import CN, EU, GB, make_env
from tests.harness import start_worker, stop_worker, worker_command
from tests.streams._broker_world import World

pytestmark = pytest.mark.broker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""  # not listening yet


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def wait_until(check: Any, what: str, log: Path, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text(errors='replace')[-4000:]}")


def test_a_worker_is_ready_counts_its_batches_and_logs_json_without_an_error(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    world = World(kafka_bootstrap, tmp_path)
    port, log = free_port(), tmp_path / "worker.log"
    command = worker_command(
        world.operator_pub,
        service_key=world.participants.service_key,
        app_id=world.app_id,
        topic_prefix=world.prefix,
        partitions=world.partitions,
        data_dir=tmp_path / "data",
        loglevel="info",
    )
    command += ["--log-format", "json", "--metrics-port", str(port)]
    proc = start_worker(kafka_bootstrap, command, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: get(f"{base}/healthz")[0] == 200, "/healthz", log)
        wait_until(lambda: get(f"{base}/readyz")[0] == 200, "/readyz", log)
        world.publish_demo_chain()
        world.wait_for(lambda latest: len(latest) >= 3, what="roll-ups")
        products, declared = world.topic("pcf.products"), world.topic("pcf.declared")

        def counted() -> dict[Any, float] | None:
            found = samples(get(f"{base}/metrics")[1])
            wanted = ("pcfx_records_out_total", (("service", "streams"), ("topic", products)))
            return found if found.get(wanted, 0) >= 3 else None

        found = wait_until(counted, "the products counted", log)
        taken = found[("pcfx_records_in_total", (("service", "streams"), ("topic", declared)))]
        assert taken >= 1
        assert found[("pcfx_rollup_latency_seconds_count", (("service", "streams"),))] >= 1
        lags = {k: v for k, v in found.items() if k[0] == "pcfx_consumer_lag"}
        assert lags and all(v >= 0 for v in lags.values())
        assert any(dict(k[1])["topic"] == declared for k in lags)
    finally:
        stop_worker(proc)
        world.stop()
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    raw = [line for line in lines if not line.startswith("{")]
    assert raw == [], "every line is a JSON record (librdkafka's included)"
    records = [json.loads(line) for line in lines]
    assert records, "the worker wrote no log line at info"
    for record in records:
        assert {"ts", "level", "service", "logger", "message"} <= set(record), record
        assert record["service"] == "streams"
    errors = [r for r in records if r["level"] in {"ERROR", "CRITICAL"}]
    assert errors == [], errors


def test_the_gateway_counts_what_it_committed_and_is_ready_once_assigned(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    for env in make_env(kafka_bootstrap, tmp_path):
        rollups = [
            rolled_footprint(product_id=f"urn:pact:example-pack.cn:product-id:M{i}")
            for i in range(4)
        ]
        env.publish(rollups)
        env.publish_raw(b"\x00not avro")  # signed, undecodable: the DLQ
        before = {
            (decision, rid): METRICS.registry.get_sample_value(
                "pcfx_transfers_total",
                {"service": "gateway", "decision": decision, "destination": rid},
            )
            or 0.0
            for decision in ("allowed", "transformed", "held", "blocked")
            for rid in (EU, GB, CN)
        }
        with env.runner(env.policy()) as runner:
            assert runner.readiness().reason.startswith("starting")
            stats = runner.run(max_records=5, max_seconds=90)
            assert runner.readiness().ready
        assert (stats.records, stats.sent, stats.rejected) == (5, 12, 1)
        value = METRICS.registry.get_sample_value
        products = env.topics.products
        assert value("pcfx_records_in_total", {"service": "gateway", "topic": products}) == 5
        after = {
            key: value(
                "pcfx_transfers_total",
                {"service": "gateway", "decision": key[0], "destination": key[1]},
            )
            or 0.0
            for key in before
        }
        assert sum(after.values()) - sum(before.values()) == 12
        for rid in (EU, GB, CN):
            out = {"service": "gateway", "topic": env.topics.outbound(rid)}
            assert value("pcfx_records_out_total", out) == 4, rid
        rejected = {"service": "gateway", "topic": env.topics.rejected}
        assert value("pcfx_records_out_total", rejected) == 1
        lags = [
            value("pcfx_consumer_lag", {"service": "gateway", "topic": products, "partition": p})
            for p in ("0", "1")
        ]
        assert [lag for lag in lags if lag is not None] and all(
            lag == 0 for lag in lags if lag is not None
        )


def test_a_worker_can_use_an_http_schema_registry(
    kafka_bootstrap: str,
    tmp_path: Path,
    registry_server: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    """``--registry-url``: the worker registers and resolves its schemas over Confluent's REST
    API (here the project's test server, tests/contracts/conftest.py), and the records it
    publishes carry that registry's ids (Confluent framing), readable by any of its clients."""
    world = World(kafka_bootstrap, tmp_path)
    http = HttpSchemaRegistry(registry_server.url)
    register_all(http, world.prefix)
    world.serde = AvroSerde(http)  # the parties publish with the HTTP registry's ids too
    # the service key registered again, framed with the HTTP registry's ids
    world._send("pcf.keys", "pcfx-streams", world.participants.service_registration(sequence=2))
    log = tmp_path / "worker.log"
    command = worker_command(
        world.operator_pub,
        service_key=world.participants.service_key,
        app_id=world.app_id,
        topic_prefix=world.prefix,
        partitions=world.partitions,
        data_dir=tmp_path / "data",
    )
    proc = start_worker(kafka_bootstrap, [*command, "--registry-url", registry_server.url], log)
    world.workers.append(proc)
    try:
        world.publish_demo_chain()
        latest = world.wait_for(lambda got: len(got) >= 3, what="roll-ups over HTTP ids")
        assert all(r.pcf_excluding_biogenic_uptake is not None for r in latest.values())
        products = f"{world.prefix}pcf.products-value"
        assert products in registry_server.backend.subjects()
    finally:
        world.stop()
        http.close()
