"""Losing brokers: a 3-node cluster (replication 3, min.insync.replicas 2, acks=all idempotent
producers) loses one node to kill -9 under load, or stops answering altogether for 30 s.

What must hold (RELIABILITY.md has the figures of each run): no acknowledged record is lost or
written twice; the streams worker and the gateway go on by themselves; the final roll-ups equal
the oracle (the batch roll-up of the last acknowledged versions); every outbound record has
exactly one audit entry and no record goes to a recipient twice; no legitimate record is on
the DLQ.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from pcf_exchange.contracts.topics import TOPICS, ensure_topics
from pcf_exchange.infra.kafka.launcher import Cluster
from pcf_exchange.producers.delivery import DeliveryReport, KafkaSink, Outgoing
from tests.reliability._exchange import Exchange, Verdict, signal_process

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def _leader_of(bootstrap: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pcfx-reliability")
    try:
        (described,) = admin.describe_topics([topic])
        return int(described["partitions"][0]["leader_id"])
    finally:
        admin.close()


def test_acknowledged_records_survive_kill_9_of_a_broker(healthy: Cluster) -> None:
    """The reduced form (in ``make test``): a steady acks=all load on a replicated topic, the
    partition's leader killed with SIGKILL mid-way and restarted; every acknowledged record is
    there exactly once, and the producer never stopped acknowledging for good."""
    bootstrap = healthy.bootstrap
    topic = f"rel-{uuid.uuid4().hex[:10]}.pcf.declared"
    ensure_topics(bootstrap, [(topic, TOPICS["pcf.declared"], 1)])
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pcfx-reliability")
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    assert len(described["partitions"][0]["replica_nodes"]) == 3, (
        "the table replicates to 3 brokers"
    )
    sink = KafkaSink(bootstrap, delivery_timeout_s=120)
    acked: list[str] = []
    failed: list[str] = []
    lock = threading.Lock()

    def report(outcome: DeliveryReport) -> None:
        with lock:
            (acked if outcome.ok else failed).append(outcome.ref)

    victim = _leader_of(bootstrap, topic)
    try:
        for n in range(600):
            value = f"record {n}".encode()
            sink.submit(Outgoing(topic, str(n).encode(), value, str(n)), report)
            if n == 200:
                healthy.kill(victim)  # the leader, mid-stream: no flush, no hand-over
            if n == 400:
                healthy.restart(victim)
            time.sleep(0.01)
        assert sink.flush(timeout_s=180) == 0
    finally:
        sink.close(timeout_s=180)
    assert failed == []
    consumer_values = _read_all(bootstrap, topic)
    counts = Counter(consumer_values)
    assert len(acked) == 600
    assert {f"record {r}".encode() for r in acked} <= set(counts), "an acknowledged record was lost"
    assert max(counts.values()) == 1, "a record was written twice"


def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=5000,
        isolation_level="read_committed",
    )
    try:
        return [m.value for m in consumer]
    finally:
        consumer.close()


# --- the whole exchange ---------------------------------------------------------------------


@pytest.fixture
def exchange(healthy: Cluster, tmp_path: Path) -> Iterator[Exchange]:
    ex = Exchange(healthy.bootstrap, tmp_path)
    try:
        yield ex
    finally:
        ex.stop()


def _run_with_fault(exchange: Exchange, fault: Callable[[], None], versions: int = 150) -> Verdict:
    """Publish the demo chain, start a worker and the gateway, run *fault* while *versions*
    new supplier versions are published at a steady rate; then wait and judge."""
    exchange.prepare_gateway()
    exchange.start_worker("w1")
    exchange.publish_demo_chain()
    exchange.start_gateway("g1")
    exchange.wait_for(lambda got: len(got) >= 1, what="the first roll-up", timeout_s=180)
    load = exchange.load_in_background(versions, interval_s=0.2)
    load.start()
    try:
        fault()
    finally:
        load.join(600)
    assert exchange.send_failures == [], exchange.send_failures
    converged = exchange.wait_converged(timeout_s=300)
    exchange.wait_quiet(settle_s=8, timeout_s=120)
    time.sleep(10)  # the gateway's last transaction
    verdict = exchange.check()
    print(verdict.summary())
    assert converged, exchange.logs()
    for proc in [*exchange.workers, *exchange.gateways]:
        assert proc.poll() is None, f"a process exited ({proc.returncode})\n{exchange.logs()}"
    return verdict


@pytest.mark.timeout(1200)
def test_kill_9_of_one_broker_under_load_loses_nothing(
    healthy: Cluster, exchange: Exchange
) -> None:
    def fault() -> None:
        time.sleep(8)
        healthy.kill(2)
        time.sleep(15)
        healthy.restart(2)

    verdict = _run_with_fault(exchange, fault)
    assert verdict.ok, verdict.summary()
    assert verdict.outbound > 0 and verdict.acknowledged > 150
    # faust's own leader-election topic is replicated like the table's topics (it was RF 1)
    leader = f"{exchange.app_id}-__assignor-__leader"
    admin = KafkaAdminClient(bootstrap_servers=healthy.bootstrap, client_id="pcfx-reliability")
    try:
        (described,) = admin.describe_topics([leader])
    finally:
        admin.close()
    assert [len(p["replica_nodes"]) for p in described["partitions"]] == [3], described


@pytest.mark.timeout(1200)
def test_the_cluster_unreachable_for_30_s_everything_resumes(
    healthy: Cluster, exchange: Exchange
) -> None:
    def fault() -> None:
        time.sleep(8)
        for node in healthy.node_ids:
            healthy.pause(node)
        try:
            time.sleep(30)
        finally:
            for node in healthy.node_ids:
                healthy.resume(node)

    verdict = _run_with_fault(exchange, fault)
    assert verdict.ok, verdict.summary()
    assert verdict.outbound > 0


@pytest.mark.timeout(1200)
def test_a_paused_worker_and_gateway_resume(healthy: Cluster, exchange: Exchange) -> None:
    """SIGSTOP of the worker and the gateway for 20 s (longer than the group's session)."""

    def fault() -> None:
        time.sleep(8)
        procs = [*exchange.workers, *exchange.gateways]
        for proc in procs:
            signal_process(proc, signal.SIGSTOP)
        time.sleep(20)
        for proc in procs:
            signal_process(proc, signal.SIGCONT)

    verdict = _run_with_fault(exchange, fault)
    assert verdict.ok, verdict.summary()


# --- the PACT API through the outage ---------------------------------------------------------


@pytest.mark.timeout(900)
def test_the_api_through_30_s_of_cluster_outage(healthy: Cluster, tmp_path: Path) -> None:
    """The API (the release source and the disclosure recorder ``pcfx api serve`` runs, behind
    the app, in process) reading releases from the cluster while every node is SIGSTOPped for
    30 s: it answers each request during the outage either with what it holds (only if that
    disclosure was audited) or 503 with a reason and ``Retry-After`` (its audit write cannot
    commit: no disclosure without audit); afterwards it serves again without a restart, a new
    release appears, and its audit chain verifies with an entry for every footprint served."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from pcf_exchange.gateway import KeyRing
    from pcf_exchange.gateway._sealing import GatewayKey
    from pcf_exchange.gateway.api._kafka import KafkaDisclosureRecorder
    from pcf_exchange.gateway.audit import EntryKind, check_audit_log
    from pcf_exchange.gateway.runtime import GatewaySerde, read_audit_logs
    from tests.api.test_api_kafka import Harness, eventually, gateway
    from tests.gateway._rollups import rolled_footprint
    from tests.gateway.test_runtime_kafka import make_env

    with contextlib.contextmanager(make_env)(healthy.bootstrap, tmp_path, partitions=1) as env:
        api_key, api_signer = X25519PrivateKey.generate(), GatewayKey.generate()
        before = rolled_footprint(product_id="urn:pact:example-pack.cn:product-id:OUT1")
        env.publish([before])
        with gateway(env, api_key) as runner:
            runner.run(max_records=1, max_seconds=120)
        recorder = KafkaDisclosureRecorder(
            env.bootstrap, topics=env.topics, registry=env.registry, signer=api_signer
        )
        harness = Harness(env, api_key, recorder)
        served = 0  # footprints answered with 200 (each must have its disclosure entry)
        with harness.source, recorder:
            harness.source.wait_ready()
            eu = harness.auth("eu-erp")
            first = harness.call("GET", "/3/footprints", headers=eu)
            assert first.status_code == 200 and len(first.json()["data"]) == 1
            served += 1
            during: list[tuple[int, str]] = []
            for node in healthy.node_ids:
                healthy.pause(node)
            try:
                paused_at = time.monotonic()
                while time.monotonic() - paused_at < 30:
                    answer = harness.call("GET", "/3/footprints", headers=eu)
                    during.append((answer.status_code, answer.text))
                    if answer.status_code == 200:
                        served += len(answer.json()["data"])
                    else:
                        assert answer.status_code == 503, answer.text
                        assert answer.headers.get("Retry-After") == "5"
                        assert "data" not in answer.json() and "retry" in answer.text
                    time.sleep(1.0)
            finally:
                for node in healthy.node_ids:
                    healthy.resume(node)
            print(f"\nduring the outage: {[code for code, _ in during]}")
            assert during and any(code == 503 for code, _ in during), during

            # it comes back by itself: the same app serves again, and a new release shows
            def serves() -> bool:
                nonlocal served
                answer = harness.call("GET", "/3/footprints", headers=eu)
                if answer.status_code == 200:
                    served += len(answer.json()["data"])
                return answer.status_code == 200

            eventually(serves, "the API serving again after the outage", seconds=240)
            after = rolled_footprint(product_id="urn:pact:example-pack.cn:product-id:OUT2")
            env.publish([after])
            with gateway(env, api_key) as runner:
                runner.run(max_records=1, max_seconds=180)
            wanted = {str(before.footprint.id), str(after.footprint.id)}  # type: ignore[union-attr]

            def shows_new_release() -> bool:
                nonlocal served
                answer = harness.call("GET", "/3/footprints", headers=eu)
                if answer.status_code != 200:
                    return False
                served += len(answer.json()["data"])
                return {fp["id"] for fp in answer.json()["data"]} == wanted

            eventually(shows_new_release, "the release made after the outage", seconds=240)
        entries, checkpoints, problems = read_audit_logs(
            env.bootstrap, env.topics, GatewaySerde(env.registry), log_ids=["pcfx-api"]
        )
        assert problems == []
        chain = entries["pcfx-api"]
        assert {e.kind for e in chain} == {EntryKind.DISCLOSURE.value}
        # every footprint served has its entry; a request that timed out while its entry was
        # still being committed may leave one more entry than answers (audited, not disclosed)
        assert len(chain) >= served, (len(chain), served)
        print(f"served {served} footprints, {len(chain)} disclosure entries")
        verdict = check_audit_log(
            chain, checkpoints.get("pcfx-api", []), KeyRing.of(api_signer.public_key)
        )
        assert verdict.ok, verdict.summary()
