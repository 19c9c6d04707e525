"""Schema registries: the in-memory one, the HTTP client against a real Confluent-compatible
server on 127.0.0.1, and the Kafka-topic registry against a real broker (marked ``broker``)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from pcf_exchange.contracts import (
    TOPICS,
    AvroSerde,
    CompatibilityLevel,
    HttpSchemaRegistry,
    IncompatibleSchemaError,
    InMemorySchemaRegistry,
    InvalidSchemaError,
    KafkaSchemaRegistry,
    RegistryError,
    SchemaRegistry,
    SignedFootprint,
    UnknownSchemaError,
    register_all,
    schema_json,
)
from pcf_exchange.contracts._schemas import expanded
from pcf_exchange.contracts.pcr import REVIEW_TOPICS

V1 = schema_json("EmissionFactor")


def _v2_optional() -> str:
    schema = expanded("EmissionFactor")
    schema["fields"].append({"name": "region", "type": ["null", "string"], "default": None})
    return json.dumps(schema)


def _v3_breaking() -> str:
    schema = expanded("EmissionFactor")
    schema["fields"].append({"name": "plant", "type": "string"})
    return json.dumps(schema)


def exercise(registry: SchemaRegistry, subject: str) -> None:
    """The behaviour every implementation must share."""
    first = registry.register(subject, V1)
    assert registry.register(subject, V1) == first  # idempotent
    assert registry.lookup(subject, V1) == first
    assert json.loads(registry.get_schema(first)) == json.loads(V1)
    second = registry.register(subject, _v2_optional())
    assert second != first
    latest = registry.latest(subject)
    assert (latest.version, latest.schema_id) == (2, second)
    assert registry.versions(subject) == [1, 2]
    assert subject in registry.subjects()
    assert registry.test_compatibility(subject, _v3_breaking())
    with pytest.raises(IncompatibleSchemaError) as info:
        registry.register(subject, _v3_breaking())
    assert "reader_field_missing_default_value" in str(info.value) or "plant" in str(info.value)
    assert registry.versions(subject) == [1, 2]
    with pytest.raises(UnknownSchemaError):
        registry.get_schema(10_000)
    with pytest.raises(UnknownSchemaError) as unknown:
        registry.lookup(subject, _v3_breaking())
    _names_real_commands(unknown.value.hint)
    with pytest.raises(UnknownSchemaError):
        registry.latest(subject + "-nothing")


def test_in_memory_registry() -> None:
    registry = InMemorySchemaRegistry()
    assert isinstance(registry, SchemaRegistry)
    exercise(registry, "pcf.factors-value")
    # the same schema under another subject keeps its id (ids are global, like Confluent's)
    assert registry.register("other-value", V1) == registry.lookup("pcf.factors-value", V1)
    assert registry.compatibility() is CompatibilityLevel.BACKWARD_TRANSITIVE


def test_compatibility_none_allows_anything() -> None:
    registry = InMemorySchemaRegistry()
    registry.register("s", V1)
    registry.set_compatibility(CompatibilityLevel.NONE, "s")
    assert registry.register("s", _v3_breaking()) > 0
    assert registry.compatibility("s") is CompatibilityLevel.NONE
    assert registry.compatibility("t") is CompatibilityLevel.BACKWARD_TRANSITIVE


def test_invalid_schema_is_refused() -> None:
    with pytest.raises(InvalidSchemaError, match="not a valid Avro schema"):
        InMemorySchemaRegistry().register(
            "s", '{"type": "record", "name": "X", "fields": [{"name": "a"}]}'
        )


# -- HTTP client against a real server -----------------------------------------------------


def test_http_registry_against_a_real_server(registry_server: Any) -> None:
    with HttpSchemaRegistry(registry_server.url) as registry:
        assert isinstance(registry, SchemaRegistry)
        exercise(registry, "http.factors-value")
        registry.set_compatibility(CompatibilityLevel.FULL, "http.factors-value")
        assert registry.compatibility("http.factors-value") is CompatibilityLevel.FULL
        assert registry.compatibility() is CompatibilityLevel.BACKWARD_TRANSITIVE
        assert registry.versions("unknown-subject") == []


def test_serde_through_the_http_registry(
    registry_server: Any, wire_samples: dict[str, Any]
) -> None:
    with HttpSchemaRegistry(registry_server.url) as registry:
        ids = register_all(registry)
        review = {f"{t}-value" for t in REVIEW_TOPICS}  # held records (contracts.pcr)
        assert set(ids) == {f"{t}-value" for t in TOPICS} | review
        serde = AvroSerde(registry)
        data = serde.encode("pcf.declared", wire_samples["SignedFootprint"])
        assert AvroSerde(registry).decode(data, SignedFootprint) == wire_samples["SignedFootprint"]


def test_http_incompatible_names_the_incompatibility(registry_server: Any) -> None:
    with HttpSchemaRegistry(registry_server.url) as registry:
        registry.register("http.break-value", V1)
        with pytest.raises(IncompatibleSchemaError) as info:
            registry.register("http.break-value", _v3_breaking())
        assert "reader_field_missing_default_value" in str(info.value)
        assert "/fields/" in str(info.value)


def test_http_errors_are_registry_errors(registry_server: Any) -> None:
    with pytest.raises(RegistryError, match="unreachable"):
        HttpSchemaRegistry("http://127.0.0.1:9", timeout_s=2).subjects()
    with HttpSchemaRegistry(registry_server.url) as registry:
        with pytest.raises(RegistryError, match="HTTP 500"):
            registry._call("GET", "/boom")
        with pytest.raises(InvalidSchemaError):
            registry.register("http.bad-value", "{not json")


# -- Kafka-topic registry on a real broker -----------------------------------------------------


@pytest.mark.broker
def test_kafka_topic_registry(kafka_bootstrap: str, wire_samples: dict[str, Any]) -> None:
    topic = f"pcf._schemas.test-{uuid.uuid4().hex[:8]}"
    with KafkaSchemaRegistry(kafka_bootstrap, topic=topic, writer=True) as writer:
        exercise(writer, "kafka.factors-value")
        ids = register_all(writer)
        data = AvroSerde(writer).encode("pcf.declared", wire_samples["SignedFootprint"])
        writer.set_compatibility(CompatibilityLevel.FULL, "kafka.factors-value")
    # a fresh reader learns everything from the topic alone
    with KafkaSchemaRegistry(kafka_bootstrap, topic=topic) as reader:
        assert reader.latest("kafka.factors-value").version == 2
        assert (
            reader.lookup("pcf.declared-value", schema_json("SignedFootprint"))
            == ids["pcf.declared-value"]
        )
        assert AvroSerde(reader).decode(data, SignedFootprint) == wire_samples["SignedFootprint"]
        assert reader.compatibility("kafka.factors-value") is CompatibilityLevel.FULL
        with pytest.raises(RegistryError, match="read-only"):
            reader.register("kafka.new-value", V1)
        assert reader.register("kafka.factors-value", V1) > 0  # already there: fine for readers


@pytest.mark.broker
def test_kafka_registry_single_writer_is_fenced(kafka_bootstrap: str) -> None:
    topic = f"pcf._schemas.test-{uuid.uuid4().hex[:8]}"
    first = KafkaSchemaRegistry(kafka_bootstrap, topic=topic, writer=True)
    try:
        first.register("a-value", V1)
        with KafkaSchemaRegistry(kafka_bootstrap, topic=topic, writer=True) as second:
            assert second.lookup("a-value", V1) == 1
            assert (
                second.register("b-value", _v2_optional()) == 2
            )  # new ids continue from the topic
            with pytest.raises(RegistryError, match="fenced"):
                first.register(
                    "c-value",
                    _v3_breaking().replace('"plant", "type": "string"', '"plant", "type": "long"'),
                )
    finally:
        first.close()


@pytest.mark.broker
def test_kafka_registry_reader_waits_briefly_for_a_fresh_registration(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A registration committed by another writer is readable only once the broker has written
    # its transaction markers; until then catching up finds nothing. Here the first two
    # catch-ups after the miss find nothing (as if the markers were late), the third the schema.
    topic = f"pcf._schemas.test-{uuid.uuid4().hex[:8]}"
    with KafkaSchemaRegistry(kafka_bootstrap, topic=topic) as reader:
        with KafkaSchemaRegistry(kafka_bootstrap, topic=topic, writer=True) as writer:
            schema_id = writer.register("late.subject-value", V1)
        real, calls = reader._catch_up, []

        def late_catch_up() -> None:
            calls.append(1)
            if len(calls) >= 3:
                real()

        monkeypatch.setattr(reader, "_catch_up", late_catch_up)
        assert reader.lookup("late.subject-value", V1) == schema_id
        assert len(calls) == 3
        # a subject nobody registered is still a clear miss, after the last catch-up
        calls.clear()
        with pytest.raises(UnknownSchemaError, match=r"nobody\.subject-value"):
            reader.lookup("nobody.subject-value", V1)
        assert len(calls) == 4


# -- one registry topic per deployment prefix ---------------------------------------------------


def test_the_registry_topic_is_the_deployments() -> None:
    from pcf_exchange.contracts._registry import schemas_topic
    from pcf_exchange.contracts.topics import TopicNames

    assert schemas_topic() == "pcf._schemas"
    assert schemas_topic("acme.") == "acme.pcf._schemas" == TopicNames("acme.").schemas
    assert schemas_topic(topic="mine") == "mine"  # tests name their own
    with pytest.raises(ValueError, match="prefix or the registry topic, not both"):
        schemas_topic("acme.", "mine")


@pytest.mark.broker
def test_two_prefixes_register_the_same_subject_independently_without_fencing(
    kafka_bootstrap: str,
) -> None:
    from pcf_exchange.contracts import register_missing

    one, two = (f"t{uuid.uuid4().hex[:8]}." for _ in range(2))
    first = KafkaSchemaRegistry(kafka_bootstrap, prefix=one, writer=True)
    second = KafkaSchemaRegistry(kafka_bootstrap, prefix=two, writer=True)
    try:
        # two writers open at once: each is its deployment's only writer, neither is fenced
        assert first._topic == f"{one}pcf._schemas" and second._topic == f"{two}pcf._schemas"
        assert first.register("same-value", V1) == 1
        assert second.register("same-value", _v2_optional()) == 1  # its own ids, from 1
        assert first.register("other-value", _v2_optional()) == 2  # first still writes
        with pytest.raises(UnknownSchemaError):  # V1 is registered in the other deployment
            second.lookup("same-value", V1)
    finally:
        first.close()
        second.close()
    with (
        KafkaSchemaRegistry(kafka_bootstrap, prefix=one) as reader_one,
        KafkaSchemaRegistry(kafka_bootstrap, prefix=two) as reader_two,
    ):
        assert reader_one.get_schema(1) == V1
        assert reader_two.get_schema(1) == _v2_optional()
        assert reader_one.subjects() == ["other-value", "same-value"]
        assert reader_two.subjects() == ["same-value"]
        with pytest.raises(UnknownSchemaError):
            reader_two.lookup("other-value", _v2_optional())
    # the short-lived writers of register_missing are per prefix too
    assert register_missing(kafka_bootstrap, [("third-value", V1)], prefix=two) == ["third-value"]
    assert register_missing(kafka_bootstrap, [("third-value", V1)], prefix=two) == []
    with KafkaSchemaRegistry(kafka_bootstrap, prefix=one) as reader_one:
        assert "third-value" not in reader_one.subjects()


# --- a service's start-up outlives a slow cluster -----------------------------------------------


def _flaky_open(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[str]:
    """``KafkaSchemaRegistry._open`` failing *failures* times as a cluster under a fault does
    (no broker needed), then opening; the sleeps between attempts are recorded, not slept."""
    from pcf_exchange.contracts import _registry

    calls: list[str] = []

    def open_(self: Any, *_: Any) -> None:
        calls.append("open")
        if calls.count("open") <= failures:
            raise RegistryError("cannot read schema topic 'pcf._schemas': Request timed out")

    monkeypatch.setattr(_registry.KafkaSchemaRegistry, "_open", open_)
    monkeypatch.setattr(
        "pcf_exchange.contracts._registry.time.sleep", lambda s: calls.append(f"sleep {s:.0f}")
    )
    return calls


def test_a_service_retries_opening_the_registry_within_its_startup_budget(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = _flaky_open(monkeypatch, failures=2)
    KafkaSchemaRegistry("127.0.0.1:9092", startup_s=60)
    assert calls == ["open", "sleep 2", "open", "sleep 2", "open"]
    assert "Request timed out; retrying for up to" in caplog.text


def test_a_command_gives_up_at_once_and_the_error_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _flaky_open(monkeypatch, failures=1)
    with pytest.raises(RegistryError, match="Request timed out"):
        KafkaSchemaRegistry("127.0.0.1:9092")
    assert calls == ["open"]


def _names_real_commands(hint: str | None) -> None:
    """Every command a hint tells the operator to run exists."""
    import importlib

    from typer.main import get_group

    from pcf_exchange.pcfx.commands.schemas import schemas_app

    assert hint
    for command in re.findall(r"pcfx schemas ([a-z-]+)", hint):
        assert command in get_group(schemas_app).commands, command
    for module in re.findall(r"python -m ([\w.]+)", hint):
        importlib.import_module(module)


def test_the_unknown_schema_hints_name_real_commands() -> None:
    _names_real_commands(UnknownSchemaError.hint)
