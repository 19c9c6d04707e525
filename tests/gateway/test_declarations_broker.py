"""``pcfx declarations art7 --kafka`` on the real broker: the sealed declaration on
``pcf.outbound.<recipient>`` and exactly one audit entry per release on the chain
``pcfx-declarations``, resumed (not restarted) by the next release. Its own topic prefix."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from contracts import KafkaSchemaRegistry
from gateway import KeyRing, SealedMessage, open_message
from gateway.audit import check_audit_log
from gateway.runtime import read_audit_logs
from gateway.runtime._avro import GatewaySerde
from gateway.runtime._codec import sealed_from_datum
from gateway.runtime._kafka import read_to_end
from gateway.runtime._topics import Topics
from pcfx.cli import app
from tests.gateway.test_declarations_cli import OEM, files, invoke, release_args

pytestmark = pytest.mark.broker
__all__ = ["files"]  # the fixture, shared with the CLI tests


def test_kafka_release_one_transaction_one_entry_chain_resumed(
    files: dict[str, Any], kafka_bootstrap: str
) -> None:
    d: Path = files["dir"]
    prefix = f"t{uuid.uuid4().hex[:8]}."
    args = [
        "declarations",
        "art7",
        str(d / "lfp.json"),
        "--input",
        str(d / "art7.yaml"),
        "--recipient",
        OEM,
        "--kafka",
        "--bootstrap",
        kafka_bootstrap,
        "--topic-prefix",
        prefix,
        "--json",
        *release_args(d),
    ]
    first = invoke(app, args)
    assert first.exit_code == 0, first.output
    second = invoke(app, args)
    assert second.exit_code == 0, second.output
    ids = [json.loads(r.stdout)["release"]["messageId"] for r in (first, second)]
    assert not (d / "audit.jsonl").exists()  # the chain is on the broker, not in a file
    topics = Topics(prefix)
    registry = KafkaSchemaRegistry(kafka_bootstrap)
    try:
        serde = GatewaySerde(registry)
        entries, checkpoints, problems = read_audit_logs(
            kafka_bootstrap, topics, serde, log_ids=["pcfx-declarations"]
        )
        sealed = [
            sealed_from_datum(serde.decode(m.value() or b"", "SealedMessage"))
            for m in read_to_end(kafka_bootstrap, [(topics.outbound(OEM), 0)], timeout_s=60)
        ]
    finally:
        registry.close()
    assert problems == []
    chain = entries["pcfx-declarations"]
    assert [(e.seq, e.kind, e.message_id) for e in chain] == [
        (0, "transfer", ids[0]),
        (1, "transfer", ids[1]),
    ]
    keys = KeyRing.of(files["gw"].public_key)
    verdict = check_audit_log(
        chain, checkpoints["pcfx-declarations"], keys, log_id="pcfx-declarations"
    )
    assert verdict.ok, verdict.summary()
    assert [m.message_id for m in sealed] == ids
    opened = open_message(sealed[1], recipient_id=OEM, private_key=files["oem"], trusted=keys)
    assert opened.footprint["batteryPassport"]["batteryCarbonFootprint"] == "60.65"
    assert isinstance(sealed[0], SealedMessage)
