"""Fixtures for the PACT API tests: a development CA, the normative OpenAPI as a response checker,
and a "world" of two real uvicorn TLS servers on OS-assigned ports: our host (the data owner)
and a customer's PACT host that receives the events we send.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from pcf_exchange.gateway.api import (
    BackgroundServer,
    Client,
    DeliveryPolicy,
    DevCertificate,
    EventEndpoint,
    InMemoryEventInbox,
    InMemoryFootprintSource,
    create_app,
    create_self_signed_cert,
    hash_secret,
    start_in_thread,
)
from tests.api._factory import make_footprint, many_footprints

SHARED_DIR = Path(__file__).resolve().parents[2].parent / "shared"
OPENAPI_PATH = SHARED_DIR / "pact" / "v3" / "openapi.yaml"
TOKEN_TTL = 600


class SpecCheck:
    """Validates bodies against the normative PACT v3 OpenAPI with openapi-schema-validator."""

    _URI = "urn:test:pact-v3-openapi"

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(self._URI, resource)

    def _validate(self, pointer: str, instance: Any) -> None:
        validator = OAS31Validator(
            {"$ref": f"{self._URI}#{pointer}"},
            registry=self._registry,
            format_checker=oas31_format_checker,
        )
        errors = [
            f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(instance)
        ]
        assert not errors, f"does not conform to {pointer}: {errors[:5]}"

    def schema(self, name: str, instance: Any) -> None:
        """*instance* conforms to ``components.schemas.<name>``."""
        self._validate(f"/components/schemas/{name}", instance)

    def response(self, path: str, method: str, response: httpx.Response) -> None:
        """The response's status is declared for the operation and its body has the declared
        schema (``application/json``)."""
        responses = self.document["paths"][path][method]["responses"]
        status = str(response.status_code)
        assert status in responses, f"{method.upper()} {path} does not declare HTTP {status}"
        declared = responses[status]
        if "$ref" in declared:
            pointer = declared["$ref"].removeprefix("#")
            declared = self.document
            for part in pointer.strip("/").split("/"):
                declared = declared[part]
        else:
            escaped = path.replace("~", "~0").replace("/", "~1")
            pointer = f"/paths/{escaped}/{method}/responses/{status}"
        if "content" not in declared:
            return
        assert response.headers["content-type"].startswith("application/json")
        self._validate(f"{pointer}/content/application~1json/schema", response.json())


@pytest.fixture(scope="session")
def spec() -> SpecCheck:
    if not OPENAPI_PATH.is_file():
        pytest.skip(f"normative PACT v3 OpenAPI not found at {OPENAPI_PATH}")
    return SpecCheck(yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8")))


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> DevCertificate:
    return create_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def trust(tls: DevCertificate) -> ssl.SSLContext:
    """A client TLS context that trusts only the development CA."""
    return ssl.create_default_context(cafile=str(tls.ca_file))


class FakeClock:
    """Wall-clock time plus an adjustable offset (to expire tokens without sleeping)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


SECRETS = {
    "acme-buyer": "acme-buyer-secret-1",
    "acme-lister": "acme-lister-secret-2",
    "globex-buyer": "globex-buyer-secret-3",
}
OWNER_AT_CUSTOMER = ("pcfx-owner", "owner-secret-at-acme")


@pytest.fixture(scope="session")
def secret_hashes() -> dict[str, str]:
    return {name: hash_secret(secret) for name, secret in [*SECRETS.items(), OWNER_AT_CUSTOMER]}


@dataclass
class World:
    """Our PACT host with two recipients (acme, globex) and acme's own PACT host (``customer``)."""

    url: str
    app: FastAPI
    source: InMemoryFootprintSource
    clock: FakeClock
    trust: ssl.SSLContext
    acme: list[dict[str, Any]]
    globex: list[dict[str, Any]]
    customer: BackgroundServer
    customer_inbox: InMemoryEventInbox
    tokens: dict[tuple[str, str | None], str] = field(default_factory=dict)

    def http(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.trust, timeout=10, **kwargs)

    def token(self, client_id: str = "acme-buyer", scope: str | None = None) -> str:
        """A bearer token for *client_id* (cached per test module)."""
        key = (client_id, scope)
        if key not in self.tokens:
            data = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
            with self.http() as http:
                response = http.post("/auth/token", data=data, auth=(client_id, SECRETS[client_id]))
            assert response.status_code == 200, response.text
            self.tokens[key] = response.json()["access_token"]
        return self.tokens[key]

    def auth(self, client_id: str = "acme-buyer", scope: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(client_id, scope)}"}

    def customer_events(self) -> list[dict[str, Any]]:
        return [dict(r.event) for r in self.customer_inbox.events]

    def wait_for_customer_events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.customer_inbox.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.customer_events()


def acme_footprints() -> list[dict[str, Any]]:
    """25 generated footprints plus a few with hand-picked scope for the filter tests."""
    crafted = [
        make_footprint(
            created="2025-03-01T00:00:00Z",
            product_ids=("urn:gtin:4712345060507",),
            company_ids=("urn:pact:example.com:company-id:supplier-2",),
            classifications=("urn:pact:productclassification:un-cpc:7892",),
            geography={"geographyCountrySubdivision": "DE-BY"},
            validity=("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ),
        make_footprint(
            created="2025-03-02T00:00:00Z",
            product_ids=("urn:gtin:4712345060507", "urn:pact:example.com:product-id:Alias-7"),
            geography={"geographyRegionOrSubregion": "Western Europe"},
            status="Deprecated",
            reference_end="2023-06-30T00:00:00Z",
        ),
        make_footprint(
            created="2025-03-03T00:00:00Z",
            product_ids=("urn:pact:example.com:product-id:global-1",),
            classifications=None,
            reference_end="2020-02-29T00:00:00Z",
        ),
    ]
    return many_footprints(25) + crafted


@pytest.fixture(scope="module")
def world(
    tls: DevCertificate, trust: ssl.SSLContext, secret_hashes: dict[str, str]
) -> Iterator[World]:
    customer_inbox = InMemoryEventInbox()
    customer_app = create_app(
        InMemoryFootprintSource(),
        [Client(OWNER_AT_CUSTOMER[0], "pcf-exchange", secret_hashes[OWNER_AT_CUSTOMER[0]])],
        inbox=customer_inbox,
        event_source="//acme.example/3/events",
    )
    with start_in_thread(customer_app, tls.cert_file, tls.key_file) as customer:
        acme, globex = acme_footprints(), many_footprints(4, prefix="g")
        source = InMemoryFootprintSource({"acme": acme, "globex": globex})
        clock = FakeClock()
        events_at_acme = EventEndpoint(
            url=f"{customer.url}/3/events",
            client_id=OWNER_AT_CUSTOMER[0],
            client_secret=OWNER_AT_CUSTOMER[1],
            ca_file=str(tls.ca_file),
        )
        clients = [
            Client("acme-buyer", "acme", secret_hashes["acme-buyer"], events=events_at_acme),
            Client(
                "acme-lister",
                "acme",
                secret_hashes["acme-lister"],
                scopes=frozenset({"footprint:list"}),
            ),
            Client("globex-buyer", "globex", secret_hashes["globex-buyer"]),
        ]
        app = create_app(
            source,
            clients,
            token_ttl=TOKEN_TTL,
            max_page_size=10,
            clock=clock,
            event_source="//pcfx.test/3/events",
            delivery=DeliveryPolicy(initial_backoff=0.05, max_backoff=0.2, give_up_after=3.0),
        )
        with start_in_thread(app, tls.cert_file, tls.key_file) as server:
            yield World(
                url=server.url,
                app=app,
                source=source,
                clock=clock,
                trust=trust,
                acme=acme,
                globex=globex,
                customer=customer,
                customer_inbox=customer_inbox,
            )
