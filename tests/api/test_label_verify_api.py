"""``GET /labels/verify`` on a real uvicorn TLS server: the verdict JSON, bad cases first."""

from __future__ import annotations

import json
import ssl
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pcf_exchange.contracts.certification import (
    CertOutcome,
    CertRegistry,
    CurrentFootprint,
    Revocation,
    Snapshot,
    sign_statement,
)
from pcf_exchange.contracts.errors import CertificationError
from pcf_exchange.contracts.keyfiles import key_id_of
from pcf_exchange.contracts.labels import encode_label, label_for
from pcf_exchange.gateway.api import (
    DevCertificate,
    InMemoryFootprintSource,
    create_app,
    start_in_thread,
)
from pcf_exchange.gateway.api._labels import SnapshotFile
from tests.contracts.test_cert_registry import DAY, HASH_A, HASH_B, PRODUCT, T0, World
from tests.producers.test_label_verify import _resign_body

NOW = (T0 + 10 * DAY).timestamp()


@pytest.fixture(scope="module")
def served(tls: DevCertificate, trust: ssl.SSLContext) -> Iterator[tuple[World, str, httpx.Client]]:
    world = World()
    world.register()
    assert world.issue(T0 + DAY)[0] is CertOutcome.ACCEPTED
    world.registry.observe_footprint(CurrentFootprint(PRODUCT, "fp-a", HASH_A, "pcf.declared"))
    cert = world.registry.certificates["CQC-2026-0001"].certificate
    text = encode_label(label_for(cert), world.body_key)

    def registry() -> CertRegistry:
        return world.registry

    app = create_app(InMemoryFootprintSource(), [], label_registry=registry, clock=lambda: NOW)
    with (
        start_in_thread(app, tls.cert_file, tls.key_file) as server,
        httpx.Client(base_url=server.url, verify=trust, timeout=10) as client,
    ):
        yield world, text, client


def _verify(client: httpx.Client, payload: str) -> httpx.Response:
    return client.get("/labels/verify?payload=" + urllib.parse.quote(payload, safe=""))


def test_a_missing_or_oversized_payload_is_a_bad_request(
    served: tuple[World, str, httpx.Client],
) -> None:
    _, _, client = served
    assert client.get("/labels/verify").status_code == 400
    assert _verify(client, "PCFX1." + "A" * 2100).status_code == 400


def test_an_altered_label_is_not_valid_and_says_why(
    served: tuple[World, str, httpx.Client],
) -> None:
    _, text, client = served
    response = _verify(client, _resign_body(text, {"f": "6.32"}))
    assert response.status_code == 200
    verdict = response.json()
    assert verdict["valid"] is False and verdict["reasons"] == ["bad_signature"]
    assert verdict["label"]["figure"] == "6.32"  # what the altered label claims, refused
    assert _verify(client, "hello").json()["reasons"] == ["malformed"]


def test_a_good_label_is_valid_then_stale_once_the_footprint_moves(
    served: tuple[World, str, httpx.Client],
) -> None:
    world, text, client = served
    response = _verify(client, text)
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    verdict = response.json()
    assert verdict["valid"] is True, verdict
    assert verdict["label"]["figure"] == "63.2" and verdict["certificateStatus"] == "valid"
    assert [c["step"] for c in verdict["checks"]] == list(range(1, 9))
    world.registry.observe_footprint(CurrentFootprint(PRODUCT, "fp-b", HASH_B, "pcf.products"))
    verdict = _verify(client, text).json()
    assert verdict["valid"] is False and verdict["reasons"] == ["stale"]
    assert verdict["verifiedAt"] == "2026-01-11T00:00:00Z"


def test_a_snapshot_file_is_reread_when_it_changes_and_a_tampered_one_is_not_used(
    tmp_path: Path,
) -> None:
    world = World()
    world.register()
    world.issue(T0 + DAY)
    public = world.operator.public_key()
    path = tmp_path / "snapshot.json"

    def export() -> dict[str, Any]:
        return Snapshot.of(world.registry, exported_by="operator", at=T0 + 2 * DAY).sign(
            world.operator
        )

    path.write_text(json.dumps(export()))
    source = SnapshotFile(path, {key_id_of(public): public})
    assert set(source().certificates) == {"CQC-2026-0001"}
    revoke = Revocation("CQC-2026-0001", "cqc", "figure wrong")
    world.registry.apply(sign_statement(world.body_key, revoke, signer_id="cqc"), T0 + 3 * DAY)
    path.write_text(json.dumps(export(), indent=1))
    assert source().certificates["CQC-2026-0001"].revoked_at == T0 + 3 * DAY
    tampered = export()
    tampered["snapshot"]["statements"].pop()  # hide the revocation
    path.write_text(json.dumps(tampered))
    assert source().certificates["CQC-2026-0001"].revoked_at == T0 + 3 * DAY  # last good kept
    with pytest.raises(CertificationError):
        SnapshotFile(path, {key_id_of(public): public})
