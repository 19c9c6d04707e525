"""The API on the real broker: the gateway releases footprints for the API in the transaction of
their audit entries; the API serves them without a restart, shows a deprecation, refuses forged
or foreign releases, and writes one disclosure entry per footprint served on its own verified
chain; without that audit write, nothing is served (503)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pcf_exchange.gateway import KeyRing
from pcf_exchange.gateway._errors import CommitFailed
from pcf_exchange.gateway._keys import load_gateway_key
from pcf_exchange.gateway._sealing import OUTBOUND_CONTENT_TYPE, GatewayKey, seal_batch
from pcf_exchange.gateway.api import Client, api_state, create_app, hash_secret
from pcf_exchange.gateway.api._kafka import (
    API_RELEASES,
    KafkaDisclosureRecorder,
    KafkaReleaseSource,
)
from pcf_exchange.gateway.audit import EntryKind, check_audit_log
from pcf_exchange.gateway.runtime import GatewaySerde, read_audit_logs, sealed_to_datum
from pcf_exchange.streams.adapt import deprecated_record
from tests.gateway._rollups import SECRET_ADDRESS, rolled_footprint
from tests.gateway.test_runtime_kafka import EU, GB, Env, make_env

pytestmark = pytest.mark.broker

SECRET = "pw"


@pytest.fixture
def env(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Env]:
    yield from make_env(kafka_bootstrap, tmp_path, partitions=1)


def eventually(check: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    """Wait for a background reader to catch up (a bound on waiting, not a speed assertion)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def gateway(env: Env, api_key: X25519PrivateKey, recipients: list[str] | None = None) -> Any:
    """The gateway of *env*, releasing for the API (key *api_key*) to *recipients*."""
    from pcf_exchange.gateway.runtime import (
        GatewayRunner,
        RunnerSettings,
        default_subscriptions_path,
        kafka_registrar,
        load_subscriptions,
    )

    policy = env.policy()
    return GatewayRunner(
        RunnerSettings(
            env.bootstrap,
            topics=env.topics,
            group_id=env.group,
            checkpoint_interval_s=0.0,
            retry_backoff_s=0.05,
        ),
        policy=policy,
        subscriptions=load_subscriptions(default_subscriptions_path(), policy),
        secrets=env.secrets,
        registry=env.registry,
        operator_keys=env.trust.operator_keys,
        registrar=kafka_registrar(env.bootstrap, prefix=env.topics.prefix),
        api_key=api_key.public_key(),
        api_recipients=recipients,
    )


class Harness:
    def __init__(self, env: Env, api_key: X25519PrivateKey, recorder: KafkaDisclosureRecorder):
        self.env = env
        self.source = KafkaReleaseSource(
            env.bootstrap,
            topics=env.topics,
            registry=env.registry,
            private_key=api_key,
            gateway_keys=[load_gateway_key(env.key_path).public_key],
        )
        self.recorder = recorder
        secret_hash = hash_secret(SECRET)
        self.app = create_app(
            self.source,
            [Client("eu-erp", EU, secret_hash), Client("gb-erp", GB, secret_hash)],
            disclosures=recorder,
        )

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=("10.1.1.1", 5000))
            async with httpx.AsyncClient(transport=transport, base_url="https://api.test") as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(go())

    def auth(self, client_id: str) -> dict[str, str]:
        token = api_state(self.app).tokens.issue(
            api_state(self.app).tokens.clients[client_id],
            frozenset({"footprint:list", "footprint:read"}),
        )[0]
        return {"Authorization": f"Bearer {token}"}


def test_the_api_serves_what_the_gateway_released_and_audits_every_disclosure(env: Env) -> None:
    api_key = X25519PrivateKey.generate()
    api_signer = GatewayKey.generate()
    first = rolled_footprint(product_id="urn:pact:example-pack.cn:product-id:A1")
    env.publish([first])
    with gateway(env, api_key, [EU, GB]) as runner:
        stats = runner.run(max_records=1, max_seconds=90)
    assert (stats.sent, stats.api_released) == (3, 2)  # EU, GB, CN; API copies for EU, GB
    pf_id = str(first.footprint.id) if first.footprint else ""

    recorder = KafkaDisclosureRecorder(
        env.bootstrap, topics=env.topics, registry=env.registry, signer=api_signer
    )
    harness = Harness(env, api_key, recorder)
    with harness.source, recorder:
        harness.source.wait_ready()
        assert harness.source.recipients() == [EU, GB]  # CN is not served through the API
        eu = harness.auth("eu-erp")
        listed = harness.call("GET", "/3/footprints", headers=eu)
        assert listed.status_code == 200
        [served] = listed.json()["data"]
        assert served["id"] == pf_id and served["status"] == "Active"
        assert SECRET_ADDRESS not in listed.text  # the policy-transformed footprint
        got = harness.call("GET", f"/3/footprints/{pf_id}", headers=eu)
        assert got.status_code == 200 and got.json()["data"] == served

        # a new release appears without a restart; the old footprint's deprecation follows
        second = rolled_footprint(product_id="urn:pact:example-pack.cn:product-id:A2")
        deprecated = deprecated_record(first)
        assert deprecated is not None
        env.publish([second, deprecated])
        with gateway(env, api_key, [EU, GB]) as runner:
            runner.run(max_records=2, max_seconds=90)

        def statuses() -> dict[str, str]:
            response = harness.call("GET", "/3/footprints", headers=eu)
            return {fp["id"]: fp["status"] for fp in response.json()["data"]}

        new_id = str(second.footprint.id) if second.footprint else ""
        eventually(
            lambda: statuses() == {pf_id: "Deprecated", new_id: "Active"}, "deprecation shown"
        )
        # another recipient's client: the EU's ids are 404 like unknown ones
        gb = harness.auth("gb-erp")
        assert {
            fp["id"] for fp in harness.call("GET", "/3/footprints", headers=gb).json()["data"]
        } == {pf_id, new_id}
        assert harness.call("GET", f"/3/footprints/{uuid.uuid4()}", headers=gb).status_code == 404
        served_count = recorder.recorded

    # one disclosure entry per footprint served, on the API's own chain, sealed and verifying
    entries, checkpoints, problems = read_audit_logs(
        env.bootstrap, env.topics, GatewaySerde(env.registry), log_ids=["pcfx-api"]
    )
    assert problems == []
    chain = entries["pcfx-api"]
    assert len(chain) == served_count
    assert {e.kind for e in chain} == {EntryKind.DISCLOSURE.value}
    assert [e.purpose for e in chain[:2]] == ["ListFootprints", "GetFootprint"]
    assert chain[0].record_pf_id == pf_id and chain[0].recipient_id == EU
    assert chain[0].reasons == ("client=eu-erp",)
    verdict = check_audit_log(
        chain, checkpoints.get("pcfx-api", []), KeyRing.of(api_signer.public_key)
    )
    assert verdict.ok, verdict.summary()

    # the chain resumes after a restart, and a forged or foreign release is served to nobody
    recorder = KafkaDisclosureRecorder(
        env.bootstrap, topics=env.topics, registry=env.registry, signer=api_signer
    )
    harness = Harness(env, api_key, recorder)
    forged_by = GatewayKey.generate()
    forged_id = str(uuid.uuid4())
    envelope: dict[str, Any] = {
        "contentType": OUTBOUND_CONTENT_TYPE,
        "messageId": str(uuid.uuid4()),
        "recipientId": EU,
        "footprint": {"id": forged_id, "status": "Active"},
    }
    serde = GatewaySerde(env.registry)
    topic = env.topics.of(API_RELEASES)
    producer = Producer({"bootstrap.servers": env.bootstrap})
    (forged,) = seal_batch([(envelope, api_key.public_key())], signer=forged_by)
    producer.produce(
        topic,
        key=f"{EU}|{forged_id}".encode(),
        value=serde.encode(topic, "SealedMessage", sealed_to_datum(forged)),
    )
    producer.produce(topic, key=b"no-separator", value=b"\x00garbage")
    assert producer.flush(30) == 0
    with harness.source, recorder:
        harness.source.wait_ready()
        eventually(lambda: len(harness.source.refused) >= 2, "forged records refused")
        assert {r.reason for r in harness.source.refused} == {"malformed", "unknown_key"}
        assert {
            fp["id"]
            for fp in harness.call("GET", "/3/footprints", headers=harness.auth("eu-erp")).json()[
                "data"
            ]
        } == {pf_id, new_id}
    entries, checkpoints, _ = read_audit_logs(
        env.bootstrap, env.topics, GatewaySerde(env.registry), log_ids=["pcfx-api"]
    )
    resumed = entries["pcfx-api"]
    assert len(resumed) == served_count + 2 and resumed[: len(chain)] == chain
    assert check_audit_log(
        resumed, checkpoints.get("pcfx-api", []), KeyRing.of(api_signer.public_key)
    ).ok


def test_without_the_audit_write_nothing_is_served(env: Env) -> None:
    api_key = X25519PrivateKey.generate()
    env.publish([rolled_footprint()])
    with gateway(env, api_key) as runner:
        runner.run(max_records=1, max_seconds=90)
    recorder = KafkaDisclosureRecorder(
        env.bootstrap, topics=env.topics, registry=env.registry, signer=GatewayKey.generate()
    )
    harness = Harness(env, api_key, recorder)
    with harness.source, recorder:
        harness.source.wait_ready()
        eu = harness.auth("eu-erp")
        assert harness.call("GET", "/3/footprints", headers=eu).status_code == 200

        def broken(*_: Any, **__: Any) -> None:
            raise CommitFailed("the broker refused the transaction")

        recorder._sink.commit = broken  # type: ignore[method-assign]
        refused = harness.call("GET", "/3/footprints", headers=eu)
    assert refused.status_code == 503
    assert "data" not in refused.json() and refused.json()["code"] == "InternalError"
