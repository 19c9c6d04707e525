"""Action Events over real TLS between two PACT hosts: a footprint request is accepted with an
empty 200 and answered later, exactly once, at the customer's own host; published notifications
go both ways; malformed events are 400s. Events are checked against the normative OpenAPI."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from pcf_exchange.contracts.errors import InfrastructureError, PolicyDenied
from pcf_exchange.gateway.api import (
    Client,
    DeliveryPolicy,
    DeliveryStatus,
    Disclosure,
    EventEndpoint,
    EventType,
    FootprintQuery,
    InMemoryFootprintSource,
    Page,
    api_state,
    create_app,
    start_in_thread,
)
from pcf_exchange.gateway.api._events import RequestResponder
from tests.api._factory import make_footprint
from tests.api.conftest import SpecCheck, World

EVENTS = "/3/events"
CE = {"Content-Type": "application/cloudevents+json; charset=UTF-8"}


def event(
    event_type: EventType, data: Mapping[str, Any], *, source: str, **overrides: Any
) -> dict[str, Any]:
    body = {
        "type": event_type.value,
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "data": dict(data),
    }
    body.update(overrides)
    return body


def customer_source(world: World) -> str:
    return f"//{world.customer.url.removeprefix('https://')}/3/events"


def post(
    world: World, body: Any, *, client: str = "acme-buyer", headers: dict[str, str] | None = None
):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with world.http() as http:
        return http.post(
            EVENTS, content=content, headers={**world.auth(client), **CE, **(headers or {})}
        )


def answers_to(world: World, request_id: str) -> list[dict[str, Any]]:
    return [
        e for e in world.customer_events() if e.get("data", {}).get("requestEventId") == request_id
    ]


def drain(world: World) -> None:
    state = api_state(world.app)
    state.run_threadsafe(state.responder.drain(10)).result(15)


def test_request_is_accepted_empty_and_fulfilled_later_at_the_customers_host(
    world: World, spec: SpecCheck
) -> None:
    request = event(
        EventType.REQUEST_CREATED,
        {"productId": ["urn:gtin:4712345060507"], "comment": "Please send PCF data for this year."},
        source=customer_source(world),
    )
    spec.schema("RequestCreatedEvent", request)
    response = post(world, request)
    assert response.status_code == 200
    assert response.content == b""
    drain(world)
    (answer,) = answers_to(world, request["id"])
    spec.schema("RequestFulfilledEvent", answer)
    assert answer["type"] == EventType.REQUEST_FULFILLED.value
    assert answer["source"] == "//pcfx.test/3/events"
    expected = [fp for fp in world.acme if "urn:gtin:4712345060507" in fp["productIds"]]
    assert [fp["id"] for fp in answer["data"]["pfs"]] == [fp["id"] for fp in expected]
    assert answer["data"]["pfs"] == expected
    # Anything obtained asynchronously is also retrievable synchronously.
    with world.http() as http:
        for fp in expected:
            assert http.get(f"/3/footprints/{fp['id']}", headers=world.auth()).json()["data"] == fp


def test_request_matching_nothing_is_rejected_later(world: World, spec: SpecCheck) -> None:
    request = event(
        EventType.REQUEST_CREATED, {"productId": ["urn:pact:null"]}, source=customer_source(world)
    )
    assert post(world, request).status_code == 200
    drain(world)
    (answer,) = answers_to(world, request["id"])
    spec.schema("RequestRejectedEvent", answer)
    assert answer["data"]["error"]["code"] == "NotFound"


def test_request_never_answers_with_another_recipients_footprints(world: World) -> None:
    foreign = world.globex[0]["productIds"][0]
    request = event(
        EventType.REQUEST_CREATED, {"productId": [foreign]}, source=customer_source(world)
    )
    assert post(world, request).status_code == 200
    drain(world)
    (answer,) = answers_to(world, request["id"])
    assert answer["type"] == EventType.REQUEST_REJECTED.value


def test_repeated_request_is_answered_once(world: World) -> None:
    request = event(
        EventType.REQUEST_CREATED,
        {"geography": ["CN"], "status": "Active"},
        source=customer_source(world),
    )
    assert [post(world, request).status_code for _ in range(3)] == [200, 200, 200]
    drain(world)
    (answer,) = answers_to(world, request["id"])
    pfs = answer["data"]["pfs"]
    assert pfs and all(
        fp["pcf"]["geographyCountry"] == "CN" and fp["status"] == "Active" for fp in pfs
    )


def test_request_from_an_unregistered_source_is_refused(world: World, spec: SpecCheck) -> None:
    request = event(
        EventType.REQUEST_CREATED,
        {"productId": ["urn:gtin:4712345060507"]},
        source="//evil.example/3/events",
    )
    response = post(world, request)
    assert response.status_code == 400
    assert response.json()["code"] == "BadRequest"
    spec.response(EVENTS, "post", response)


def test_request_from_a_client_without_events_endpoint_is_not_implemented(
    world: World, spec: SpecCheck
) -> None:
    request = event(
        EventType.REQUEST_CREATED, {"geography": ["DE"]}, source="//globex.example/3/events"
    )
    response = post(world, request, client="globex-buyer")
    assert response.status_code == 400
    assert response.json()["code"] == "NotImplemented"
    spec.response(EVENTS, "post", response)


@pytest.mark.parametrize(
    "event_type", [EventType.PUBLISHED, EventType.REQUEST_FULFILLED, EventType.REQUEST_REJECTED]
)
def test_notifications_and_answers_to_us_are_accepted_into_the_inbox(
    world: World, event_type: EventType
) -> None:
    examples: dict[EventType, dict[str, Any]] = {
        EventType.PUBLISHED: {"pfIds": [str(uuid.uuid4())]},
        EventType.REQUEST_FULFILLED: {"requestEventId": "r-1", "pfs": [make_footprint()]},
        EventType.REQUEST_REJECTED: {
            "requestEventId": "r-2",
            "error": {"code": "NotFound", "message": "none"},
        },
    }
    data = examples[event_type]
    body = event(event_type, data, source="//globex.example/3/events")
    response = post(world, body, client="globex-buyer")
    assert response.status_code == 200 and response.content == b""
    inbox = api_state(world.app).inbox
    received = [r for r in inbox.events if r.event["id"] == body["id"]]  # type: ignore[attr-defined]
    assert [(r.client_id, r.recipient_id) for r in received] == [("globex-buyer", "globex")]


GOOD_PUBLISHED = event(
    EventType.PUBLISHED, {"pfIds": [str(uuid.uuid4())]}, source="//x.example/3/events"
)


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD_PUBLISHED.items() if k != key}


MALFORMED: list[tuple[str, Any]] = [
    ("not json", b"{not json"),
    ("NaN literal", b'{"type": NaN}'),
    ("json array", [GOOD_PUBLISHED]),
    ("missing type", _without("type")),
    ("unknown type", {**GOOD_PUBLISHED, "type": "org.example.Unknown"}),
    ("v2 type", {**GOOD_PUBLISHED, "type": "org.wbcsd.pathfinder.ProductFootprint.Published.v1"}),
    ("wrong specversion", {**GOOD_PUBLISHED, "specversion": "0.3"}),
    ("missing id", _without("id")),
    ("missing source", _without("source")),
    ("missing time", _without("time")),
    ("bad time", {**GOOD_PUBLISHED, "time": "yesterday"}),
    ("missing data", _without("data")),
    ("data not an object", {**GOOD_PUBLISHED, "data": ["x"]}),
    ("pfIds not uuids (TC40)", {**GOOD_PUBLISHED, "data": {"pfIds": ["urn:gtin:4712345060507"]}}),
    (
        "fulfilled with no footprints",
        event(
            EventType.REQUEST_FULFILLED, {"requestEventId": "r", "pfs": []}, source="//x.example"
        ),
    ),
    (
        "fulfilled with an invalid footprint",
        event(
            EventType.REQUEST_FULFILLED,
            {
                "requestEventId": "r",
                "pfs": [{k: v for k, v in make_footprint().items() if k != "pcf"}],
            },
            source="//x.example",
        ),
    ),
    (
        "rejected with an unknown error code",
        event(
            EventType.REQUEST_REJECTED,
            {"requestEventId": "r", "error": {"code": "Nope", "message": "x"}},
            source="//x.example",
        ),
    ),
    (
        "request with a malformed date",
        event(EventType.REQUEST_CREATED, {"validOn": "01/02/2025"}, source="//x.example"),
    ),
    (
        "request with a bogus status",
        event(EventType.REQUEST_CREATED, {"status": "Whatever"}, source="//x.example"),
    ),
]


@pytest.mark.parametrize(("case", "body"), MALFORMED, ids=[case for case, _ in MALFORMED])
def test_malformed_event_is_bad_request(
    world: World, spec: SpecCheck, case: str, body: Any
) -> None:
    response = post(world, body)
    assert response.status_code == 400, case
    assert response.json()["code"] == "BadRequest"
    spec.response(EVENTS, "post", response)


@pytest.mark.parametrize("content_type", ["text/plain", "application/cloudevents-batch+json", ""])
def test_event_needs_structured_cloudevents_content_type(
    world: World, spec: SpecCheck, content_type: str
) -> None:
    response = post(world, GOOD_PUBLISHED, headers={"Content-Type": content_type})
    assert response.status_code == 400
    spec.response(EVENTS, "post", response)


def test_oversized_event_is_refused(world: World) -> None:
    response = post(world, b"{" + b" " * (8 * 2**20) + b"}")
    assert response.status_code == 400
    assert response.json()["code"] == "BadRequest"


def test_published_notification_reaches_the_customer_for_released_ids_only(
    world: World, spec: SpecCheck
) -> None:
    state = api_state(world.app)
    mine, foreign = world.acme[1]["id"], world.globex[1]["id"]
    before = len(world.customer_events())
    scheduled = state.run_threadsafe(state.notify_published("acme", [mine, foreign, mine])).result(
        10
    )
    assert scheduled == 1  # acme-buyer has an events endpoint; acme-lister has none
    drain(world)
    published = [
        e for e in world.customer_events()[before:] if e["type"] == EventType.PUBLISHED.value
    ]
    assert len(published) == 1
    spec.schema("PublishedEvent", published[0])
    assert published[0]["data"] == {"pfIds": [mine]}


# --- delivery and disclosure, on their own hosts ----------------------------------------------


class FlakySender:
    """Fails the first *failures* sends, then records the rest."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[Mapping[str, Any]] = []

    async def send(self, endpoint: EventEndpoint, event: Mapping[str, Any]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise InfrastructureError("customer host unavailable")
        self.sent.append(event)


ENDPOINT = EventEndpoint(url="https://customer.example/3/events", client_id="me", client_secret="s")


def _responder(sender: Any, policy: DeliveryPolicy, source: Any = None) -> RequestResponder:
    source = source or InMemoryFootprintSource({"acme": [make_footprint(product_ids=("urn:x:1",))]})
    return RequestResponder(source, sender, event_source="//us/3/events", policy=policy)


def test_delivery_is_retried_with_backoff_until_it_succeeds(secret_hashes: dict[str, str]) -> None:
    sender = FlakySender(failures=2)
    client = Client("acme-buyer", "acme", secret_hashes["acme-buyer"], events=ENDPOINT)

    async def scenario() -> RequestResponder:
        responder = _responder(sender, DeliveryPolicy(initial_backoff=0.01, max_backoff=0.02))
        request = event(
            EventType.REQUEST_CREATED, {"productId": ["urn:x:1"]}, source="//customer.example"
        )
        assert responder.submit_request(client, request)
        assert not responder.submit_request(client, request)
        await responder.drain(5)
        return responder

    responder = asyncio.run(scenario())
    (outcome,) = responder.outcomes
    assert (outcome.status, outcome.attempts) == (DeliveryStatus.DELIVERED, 3)
    assert [e["type"] for e in sender.sent] == [EventType.REQUEST_FULFILLED.value]


def test_delivery_is_abandoned_after_the_retry_window(secret_hashes: dict[str, str]) -> None:
    client = Client("acme-buyer", "acme", secret_hashes["acme-buyer"], events=ENDPOINT)

    async def scenario() -> RequestResponder:
        policy = DeliveryPolicy(initial_backoff=0.01, max_backoff=0.04, give_up_after=0.2)
        responder = _responder(FlakySender(failures=10**6), policy)
        responder.submit_request(
            client, event(EventType.REQUEST_CREATED, {}, source="//customer.example")
        )
        await responder.drain(5)
        return responder

    (outcome,) = asyncio.run(scenario()).outcomes
    assert outcome.status is DeliveryStatus.ABANDONED and outcome.attempts > 2


def test_unreachable_customer_host_is_abandoned_over_real_http(
    tls: Any, secret_hashes: dict[str, str]
) -> None:
    """The HTTP sender against a closed port: connection errors are retried, then abandoned."""
    closed = EventEndpoint(
        url="https://127.0.0.1:9/3/events",
        client_id="me",
        client_secret="s",
        ca_file=str(tls.ca_file),
    )
    client = Client("acme-buyer", "acme", secret_hashes["acme-buyer"], events=closed)
    source = InMemoryFootprintSource({"acme": [make_footprint()]})
    app = create_app(
        source,
        [client],
        delivery=DeliveryPolicy(initial_backoff=0.01, max_backoff=0.02, give_up_after=0.3),
    )
    with start_in_thread(app, tls.cert_file, tls.key_file):
        state = api_state(app)
        state.run_threadsafe(_submit(state.responder, client)).result(5)
        state.run_threadsafe(state.responder.drain(10)).result(15)
        (outcome,) = state.responder.outcomes
    assert outcome.status is DeliveryStatus.ABANDONED
    assert outcome.event["type"] == EventType.REQUEST_FULFILLED.value


async def _submit(responder: RequestResponder, client: Client) -> None:
    responder.submit_request(client, event(EventType.REQUEST_CREATED, {}, source="//127.0.0.1"))


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.records: list[Disclosure] = []

    async def record(self, disclosure: Disclosure) -> None:
        if self.fail:
            raise InfrastructureError("audit log unavailable")
        self.records.append(disclosure)


@pytest.mark.parametrize("fail", [False, True])
def test_every_disclosure_is_recorded_first_or_nothing_is_sent(
    tls: Any, trust: Any, spec: SpecCheck, fail: bool
) -> None:
    from pcf_exchange.gateway.api import hash_secret

    footprints = [make_footprint(), make_footprint()]
    recorder = Recorder(fail=fail)
    client = Client("c", "acme", hash_secret("pw"))
    app = create_app(InMemoryFootprintSource({"acme": footprints}), [client], disclosures=recorder)
    with start_in_thread(app, tls.cert_file, tls.key_file) as server:
        import httpx

        with httpx.Client(base_url=server.url, verify=trust) as http:
            token = http.post(
                "/auth/token", data={"grant_type": "client_credentials"}, auth=("c", "pw")
            )
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            listed = http.get("/3/footprints", headers=headers)
            got = http.get(f"/3/footprints/{footprints[0]['id']}", headers=headers)
    if fail:
        for response in (listed, got):
            # 503 (retry later), with the v3 Error body; the spec declares no 503, so the body
            # is checked against the Error schema
            assert response.status_code == 503
            assert response.headers["retry-after"] == "5"
            assert response.json() == {
                "code": "InternalError",
                "message": "The service cannot serve footprints right now; retry later",
            }
            assert "data" not in response.text
            spec.schema("Error", response.json())
    else:
        assert listed.status_code == got.status_code == 200
        assert [(r.action, set(r.pf_ids)) for r in recorder.records] == [
            ("ListFootprints", {fp["id"] for fp in footprints}),
            ("GetFootprint", {footprints[0]["id"]}),
        ]


def test_source_policy_denial_is_not_found(tls: Any, trust: Any, spec: SpecCheck) -> None:
    """A source that denies (the gateway's policy) yields 404, as an unknown id: a client cannot
    tell a footprint it may not see from one that does not exist."""
    from pcf_exchange.gateway.api import hash_secret

    class DenyingSource:
        async def list_for(self, recipient_id: str, query: FootprintQuery) -> list[dict[str, Any]]:
            return []

        async def page_for(self, recipient_id: str, query: Any, after: Any, size: int) -> Page:
            return Page((), False)

        async def get_for(self, recipient_id: str, pf_id: str) -> dict[str, Any] | None:
            raise PolicyDenied("field-level policy forbids this transfer")

    app = create_app(DenyingSource(), [Client("c", "acme", hash_secret("pw"))])
    with start_in_thread(app, tls.cert_file, tls.key_file) as server:
        import httpx

        with httpx.Client(base_url=server.url, verify=trust) as http:
            token = http.post(
                "/auth/token", data={"grant_type": "client_credentials"}, auth=("c", "pw")
            )
            response = http.get(
                f"/3/footprints/{uuid.uuid4()}",
                headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            )
    assert response.status_code == 404
    assert response.json() == {
        "code": "NotFound",
        "message": "The requested footprint could not be found.",
    }
    spec.response("/3/footprints/{id}", "get", response)
