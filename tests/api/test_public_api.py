"""The public surface of ``gateway.api`` is pinned, and the pinned OpenAPI copy equals the
normative file in shared/."""

from __future__ import annotations

import pytest

from pcf_exchange.gateway import api
from pcf_exchange.gateway.api._spec import PACT_OPENAPI_PATH, pact_openapi
from tests.api.conftest import OPENAPI_PATH

EXPECTED = {
    "ALL_SCOPES", "PACT_SPEC_VERSION", "SCOPE_LIST", "SCOPE_READ", "AccessToken", "ApiError",
    "BackgroundServer", "Client", "DeliveryOutcome", "DeliveryPolicy", "DeliveryStatus",
    "DevCertificate", "Disclosure", "DisclosureRecorder", "EventEndpoint", "EventInbox",
    "EventSender", "EventType", "Footprint", "FootprintQuery", "FootprintSource",
    "HttpEventSender", "InMemoryEventInbox", "InMemoryFootprintSource", "Page", "PactApiState",
    "PactClient", "PactErrorCode", "ReceivedEvent", "TokenIssuer", "api_state", "check_event",
    "create_app", "create_self_signed_cert", "hash_secret", "load_clients", "new_event", "page_of",
    "serve", "start_in_thread", "validity_period", "verify_secret",
}  # fmt: skip


def test_public_names_are_pinned_and_importable() -> None:
    assert set(api.__all__) == EXPECTED
    assert all(getattr(api, name) is not None for name in EXPECTED)


def test_pinned_openapi_equals_the_normative_file() -> None:
    if not OPENAPI_PATH.is_file():
        pytest.skip(f"normative PACT v3 OpenAPI not found at {OPENAPI_PATH}")
    assert PACT_OPENAPI_PATH.read_bytes() == OPENAPI_PATH.read_bytes()
    assert pact_openapi()["info"]["version"] == api.PACT_SPEC_VERSION


def test_in_memory_source_satisfies_the_protocol() -> None:
    assert isinstance(api.InMemoryFootprintSource(), api.FootprintSource)
