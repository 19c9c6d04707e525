"""The runner decodes a roll-up once, without the pydantic model; what does not decode still
ends in the error path (a ``Rejection`` for ``pcf.rejected``) with a reason naming why."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcf_exchange.contracts import AvroSerde, InMemorySchemaRegistry, Rejection, RolledUpFootprint
from pcf_exchange.contracts._schemas import schema_json
from pcf_exchange.contracts._serde import subject_for
from pcf_exchange.contracts.errors import ContractError, SerdeError, UnknownSchemaError
from pcf_exchange.gateway import GatewayKey, GatewaySecrets, default_policy_path, load_policy
from pcf_exchange.gateway._adapter import gateway_record
from pcf_exchange.gateway._subscriptions import Subscriptions
from pcf_exchange.gateway._topics import Topics
from pcf_exchange.gateway.runtime import GatewayRunner, RunnerSettings
from tests.gateway._rollups import rolled_footprint
from tests.gateway._trust import Trust


@pytest.fixture
def runner(tmp_path: Path) -> GatewayRunner:
    registry = InMemorySchemaRegistry()
    topics = Topics()
    registry.register(subject_for(topics.products), schema_json("RolledUpFootprint"))
    return GatewayRunner(
        RunnerSettings(bootstrap="127.0.0.1:1", topics=topics),
        policy=load_policy(default_policy_path()),
        subscriptions=Subscriptions(()),
        secrets=GatewaySecrets(GatewayKey.generate(), b"p" * 32),
        registry=registry,
        operator_keys=Trust(tmp_path).operator_keys,
    )


def _encoded(runner: GatewayRunner) -> bytes:
    return AvroSerde(runner.registry).encode(runner.topics.products, rolled_footprint())


def test_a_roll_up_decodes_to_the_model_way_record(runner: GatewayRunner) -> None:
    value = _encoded(runner)
    record, category, product_id = runner._decode(value)
    rolled = AvroSerde(runner.registry).decode(value, RolledUpFootprint)
    assert record == gateway_record(rolled)
    assert (category, product_id) == ("LITHIUM_BATTERY", rolled.product_id)


@pytest.mark.parametrize(
    ("value", "error", "says"),
    [
        (b"\x00\x00\x00\x00\x07 not a roll-up", UnknownSchemaError, "schema id 7"),
        (b"\x01\x00\x00\x00\x01", SerdeError, "magic byte"),
        (b"\x00\x00", SerdeError, "at least 5"),
    ],
)
def test_wire_problems_raise_a_contract_error_naming_why(
    runner: GatewayRunner, value: bytes, error: type[ContractError], says: str
) -> None:
    with pytest.raises(error, match=says):
        runner._decode(value)


def test_truncated_avro_is_malformed(runner: GatewayRunner) -> None:
    value = _encoded(runner)
    with pytest.raises(SerdeError, match=r"malformed Avro .*RolledUpFootprint"):
        runner._decode(value[: len(value) // 2])


def test_a_record_of_another_type_is_refused_by_name(runner: GatewayRunner) -> None:
    runner.registry.register(subject_for(runner.topics.rejected), schema_json("Rejection"))
    value = AvroSerde(runner.registry).encode(runner.topics.rejected, _rejection())
    with pytest.raises(SerdeError, match=r"expected a RolledUpFootprint but .* Rejection"):
        runner._decode(value)


def _rejection() -> Rejection:
    from datetime import UTC, datetime

    return Rejection.of(
        SerdeError("x"),
        source_topic="t",
        partition=0,
        offset=0,
        original=b"",
        rejected_at=datetime(2026, 1, 1, tzinfo=UTC),
        processor="test",
    )
