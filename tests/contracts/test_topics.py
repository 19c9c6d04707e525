"""The one table of topics: names, configs checked at start-up, on a real broker."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from pcf_exchange.contracts.errors import InfrastructureError
from pcf_exchange.contracts.topics import TOPICS, TopicNames, ensure_topics


def test_names_carry_the_prefix_the_schemas_topic_too() -> None:
    names = TopicNames("t1.")
    assert names.products == "t1.pcf.products"
    assert names.checkpoints == "t1.pcf.audit.checkpoints"
    assert names.outbound("eu-oem") == "t1.pcf.outbound.eu-oem"
    assert names.of("pcf._schemas") == names.schemas == "t1.pcf._schemas"
    assert TopicNames().schemas == "pcf._schemas"
    with pytest.raises(ValueError, match="cannot name a Kafka topic"):
        names.outbound("eu oem/../x")
    with pytest.raises(ValueError, match="needs member name"):
        names.of("pcf.outbound.")


def test_the_table_fixes_the_broker_clock_and_keeps_evidence_for_ever() -> None:
    for name in ("pcf.declared", "pcf.bom", "pcf.factors", "pcf.keys"):
        assert TOPICS[name].configs["message.timestamp.type"] == "LogAppendTime"
    for name in ("pcf.audit", "pcf.audit.checkpoints", "pcf.approvals", "pcf.keys"):
        assert TOPICS[name].configs["retention.ms"] == "-1"
    for name in ("pcf.keys", "pcf.factors", "pcf._schemas"):
        writers = {role for role, ops in TOPICS[name].access.items() if "W" in ops}
        assert writers == {"operator"}, f"nobody but the operator writes {name}"


@pytest.mark.broker
def test_ensure_creates_with_the_configs_and_refuses_a_topic_that_differs(
    kafka_bootstrap: str,
) -> None:
    names = TopicNames(f"tt-{uuid.uuid4().hex[:8]}.")
    wanted = [(names.declared, TOPICS["pcf.declared"], 2), (names.audit, TOPICS["pcf.audit"], 1)]
    assert sorted(ensure_topics(kafka_bootstrap, wanted)) == sorted([names.declared, names.audit])
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    described = {
        r.name: {k: v.value for k, v in f.result(10).items()}
        for r, f in admin.describe_configs(
            [ConfigResource(ResourceType.TOPIC, names.declared),
             ConfigResource(ResourceType.TOPIC, names.audit)]
        ).items()
    }  # fmt: skip
    assert described[names.declared]["message.timestamp.type"] == "LogAppendTime"
    assert described[names.audit]["retention.ms"] == "-1"
    assert ensure_topics(kafka_bootstrap, wanted) == []  # idempotent

    # an attacker's (or an old version's) topic with the producer's clock and 7-day retention
    keys, checkpoints = names.keys, names.checkpoints
    futures = admin.create_topics([NewTopic(keys, 1, 1), NewTopic(checkpoints, 1, 1)])
    for future in futures.values():
        future.result(10)
    with pytest.raises(InfrastructureError) as caught:
        ensure_topics(
            kafka_bootstrap,
            [(keys, TOPICS["pcf.keys"], 1), (checkpoints, TOPICS["pcf.audit.checkpoints"], 1)],
        )
    message = str(caught.value)
    assert f"topic '{keys}' must have message.timestamp.type=LogAppendTime" in message
    assert "(it has message.timestamp.type=CreateTime)" in message
    assert f"topic '{checkpoints}' must have retention.ms=-1" in message
    assert f"--entity-name {checkpoints} --add-config retention.ms=-1" in caught.value.hint
