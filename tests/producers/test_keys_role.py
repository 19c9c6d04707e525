"""``pcfx keys register --role``: the operator registers officers' and the streams' service keys
(what the gateway trusts for approvals and for ``pcf.products``)."""

from __future__ import annotations

import pytest

from pcf_exchange.contracts import (
    AvroSerde,
    KafkaSchemaRegistry,
    SignedSupplierKey,
    SignerRole,
    verify,
)
from pcf_exchange.pcfx.commands.publish import keys_app
from pcf_exchange.producers import KeyPairFiles, load_public_key
from tests.producers.conftest import Cluster
from tests.producers.test_cli import _run


@pytest.mark.broker
@pytest.mark.parametrize("role", [SignerRole.SERVICE, SignerRole.OFFICER])
def test_the_operator_registers_a_key_with_a_role(
    cluster: Cluster,
    supplier_files: KeyPairFiles,
    operator_files: KeyPairFiles,
    role: SignerRole,
) -> None:
    common = cluster.scope()
    result = _run(
        keys_app,
        [
            "register",
            "--key",
            operator_files.private_key,
            "--public-key",
            supplier_files.public_key,
            "--role",
            role.value,
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"registered with role {role.value}" in " ".join(result.stdout.split())
    (message,) = cluster.read(cluster.topics.keys, expected=1)
    registry = KafkaSchemaRegistry(cluster.bootstrap, topic=cluster.schemas_topic)
    try:
        signed = AvroSerde(registry).decode(message.value(), SignedSupplierKey)
    finally:
        registry.close()
    assert signed.key.role is role and signed.key.key_id == supplier_files.key_id
    assert verify(load_public_key(operator_files.public_key), signed)
