"""The publish step's records, ids and content hashes, pinned byte for byte.

``test_publish_datum`` compares the datum path with the model path, but both read the same
result's ``content_hash`` and ``result_id``: a change in how those are computed would move both
alike. Here the records of every varied case (complete chains, withheld footprints,
assumptions, incomplete and blocked products, tiny figures, long lineage), with and without a
predecessor, are hashed together and compared with the digest the code gave before the publish
step was made faster (session 16): not one output byte may change."""

from __future__ import annotations

import hashlib

import pytest

from pcf_exchange.contracts import (
    AvroSerde,
    InMemorySchemaRegistry,
    RolledUpFootprint,
    register_all,
)
from pcf_exchange.contracts.canonical import canonical_json
from pcf_exchange.streams.adapt import rolled_up_datum
from tests.streams.test_publish_datum import CASES, NOW, PREVIOUS, TOPIC

PINNED = {
    # name: sha256 over (content hash, result id, record bytes) of every result of the case
    "demo-chain": "10f8c2ad29627a08dd13b56613f86849b2f0f3efd99bca945374ba3eff40bc02",
    "incomplete": "63faef47660dd072482f63811dfdb0cbb8c0b160cc90f8192d85fc950b06d61c",
    "blocked": "03c00fb3d72ad38d07a28fc07121a483e55698c113fa3f81d98d48df600a6039",
    "assumptions-no-dqi": "d23110ff02763d13196150f37968e6a0bb794019b365a7f967c3985a879ac05c",
    "withheld": "079c3ff2aabacd85dd127364c5c242f5d825a6e93a84baf3c76dbc9541eb2dff",
    "tiny-figures": "7cd717d7f6312974fbcd71121f3c8b18b31f42992a789d2f29930a31e4426da4",
    "long-lineage": "7252ceb7f3195ebc8e2b5705ecd28715a5855056b72ac76e61245e75a8019f6c",
}


@pytest.fixture(scope="module")
def serde() -> AvroSerde:
    registry = InMemorySchemaRegistry()
    register_all(registry)
    return AvroSerde(registry)


def _digest(serde: AvroSerde, name: str) -> str:
    out = hashlib.sha256()
    for result, bom in CASES[name]():
        out.update(result.content_hash.encode() + result.result_id.encode())
        for previous in (None, PREVIOUS):
            datum = rolled_up_datum(result, sequence=7, bom=bom, previous_pf_id=previous, now=NOW)
            assert datum is not None, (name, result.product_id)
            out.update(serde.encode_datum(TOPIC, RolledUpFootprint, datum))
    return out.hexdigest()


@pytest.mark.parametrize("name", list(CASES))
def test_the_records_are_the_bytes_they_were(serde: AvroSerde, name: str) -> None:
    assert _digest(serde, name) == PINNED[name]


def test_the_content_hash_is_the_canonical_json_of_the_result() -> None:
    for name in CASES:
        for result, _ in CASES[name]():
            payload = canonical_json(result.canonical())  # (the checked walk, the slow way)
            assert result.content_hash == "sha256:" + hashlib.sha256(payload).hexdigest()
