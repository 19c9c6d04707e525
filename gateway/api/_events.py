"""PACT v3 Action Events (CloudEvents 1.0, structured JSON): checking incoming events against the
normative schemas, answering accepted footprint requests later with exactly one Fulfilled or
Rejected event, notifying recipients of published footprints, and the outbound HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import httpx

from pcf_exchange.contracts.errors import InfrastructureError, PcfError, ValidationFailed, Violation
from pcf_exchange.gateway.api._auth import Client, EventEndpoint
from pcf_exchange.gateway.api._disclosure import Disclosure, DisclosureRecorder
from pcf_exchange.gateway.api._errors import ApiError
from pcf_exchange.gateway.api._query import Footprint, FootprintQuery, sort_key
from pcf_exchange.gateway.api._source import FootprintSource
from pcf_exchange.gateway.api._spec import spec_validator

__all__ = [
    "DeliveryOutcome",
    "DeliveryPolicy",
    "DeliveryStatus",
    "EventInbox",
    "EventSender",
    "EventType",
    "HttpEventSender",
    "InMemoryEventInbox",
    "PactClient",
    "ReceivedEvent",
    "RequestResponder",
    "check_event",
    "new_event",
]

log = logging.getLogger("gateway.api.events")


class EventType(StrEnum):
    """The four v3 event types (``const`` of each event schema) and their schema names."""

    REQUEST_CREATED = "org.wbcsd.pact.ProductFootprint.RequestCreatedEvent.3"
    REQUEST_FULFILLED = "org.wbcsd.pact.ProductFootprint.RequestFulfilledEvent.3"
    REQUEST_REJECTED = "org.wbcsd.pact.ProductFootprint.RequestRejectedEvent.3"
    PUBLISHED = "org.wbcsd.pact.ProductFootprint.PublishedEvent.3"

    @property
    def schema_name(self) -> str:
        return self.value.rsplit(".", 2)[1]


CLOUDEVENTS_SPEC_VERSION: Final = "1.0"
CLOUDEVENTS_MEDIA_TYPE: Final = "application/cloudevents+json"


def _now_iso(clock: Callable[[], float] = time.time) -> str:
    return datetime.fromtimestamp(clock(), UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_event(
    event_type: EventType,
    data: Mapping[str, Any],
    *,
    source: str,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """A fresh CloudEvent of *event_type* (random id, ``time`` now)."""
    return {
        "type": event_type.value,
        "specversion": CLOUDEVENTS_SPEC_VERSION,
        "id": str(uuid.uuid4()),
        "source": source,
        "time": _now_iso(clock),
        "data": dict(data),
    }


def check_event(event: Any) -> EventType:
    """The type of a valid v3 event; :class:`ValidationFailed` listing every problem otherwise.

    Checks, in order: (1) a JSON object, (2) ``specversion`` is CloudEvents ``1.0``, (3) ``type``
    is one of the four v3 types, (4) the event satisfies that type's schema in the normative
    OpenAPI (required attributes, ``date-time``/``uuid`` formats, ``pfs`` as ProductFootprints).
    """
    if not isinstance(event, Mapping):
        raise ValidationFailed(
            [Violation.of("", "type", "a CloudEvent must be a JSON object", type(event).__name__)],
            subject="event",
        )
    problems: list[Violation] = []
    if event.get("specversion") != CLOUDEVENTS_SPEC_VERSION:
        problems.append(
            Violation.of(
                "specversion",
                "const",
                "must be the CloudEvents version '1.0'",
                event.get("specversion", ...),
            )
        )
    try:
        event_type = EventType(str(event.get("type")))
    except ValueError:
        known = ", ".join(t.value for t in EventType)
        problems.append(
            Violation.of("type", "enum", f"must be one of {known}", event.get("type", ...))
        )
        raise ValidationFailed(problems, subject="event") from None
    problems.extend(spec_validator().violations(event_type.schema_name, event))
    if problems:
        raise ValidationFailed(problems, subject=event_type.schema_name)
    return event_type


def source_matches(source: str, endpoint_url: str) -> bool:
    """Whether a CloudEvent ``source`` (``//host/path`` or an absolute URL) names the host (and
    port, if it gives one) of the registered *endpoint_url*."""
    text = source.strip()
    if text.startswith("//"):
        text = "https:" + text
    try:
        claimed, registered = urlsplit(text), urlsplit(endpoint_url)
        claimed_port, registered_port = claimed.port, registered.port or 443
    except ValueError:
        return False
    if not claimed.hostname or claimed.hostname.lower() != (registered.hostname or "").lower():
        return False
    return claimed_port is None or claimed_port == registered_port


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """An event a client posted and the API accepted."""

    client_id: str
    recipient_id: str
    event: Mapping[str, Any]


class EventInbox(Protocol):
    """Where accepted Published/Fulfilled/Rejected events go (our side as a data recipient).

    Raise :class:`~contracts.errors.ContractError` to refuse an event (the poster gets 400).
    """

    async def accept(self, client: Client, event: Mapping[str, Any]) -> None: ...


class InMemoryEventInbox:
    """Keeps accepted events in a list (tests, demo); readable from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[ReceivedEvent] = []

    async def accept(self, client: Client, event: Mapping[str, Any]) -> None:
        with self._lock:
            self._events.append(ReceivedEvent(client.client_id, client.recipient_id, event))

    @property
    def events(self) -> list[ReceivedEvent]:
        with self._lock:
            return list(self._events)


class EventSender(Protocol):
    """Delivers one event to a client's PACT host; raises on any failure (it will be retried)."""

    async def send(self, endpoint: EventEndpoint, event: Mapping[str, Any]) -> None: ...


class PactClient:
    """A small client for another PACT v3 host: token discovery and caching, posting events.

    The token endpoint comes from ``token_url``, else ``<origin>/.well-known/openid-configuration``
    (``token_endpoint``), else ``<origin>/auth/token`` (v3 §Authentication Flow).
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        token_url: str | None = None,
        verify: ssl.SSLContext | str | bool = True,
        timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(base_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._credentials = (client_id, client_secret)
        self._token_url = token_url
        self._token: tuple[str, float] | None = None
        self._http = httpx.AsyncClient(verify=verify, timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _discover_token_url(self) -> str:
        if self._token_url is None:
            self._token_url = f"{self._origin}/auth/token"
            with contextlib.suppress(httpx.HTTPError, ValueError):
                response = await self._http.get(f"{self._origin}/.well-known/openid-configuration")
                endpoint = response.json().get("token_endpoint") if response.is_success else None
                if isinstance(endpoint, str) and endpoint.startswith("https://"):
                    self._token_url = endpoint
        return self._token_url

    async def token(self, *, refresh: bool = False) -> str:
        """A bearer token, reused until 30 s before it expires."""
        if self._token is not None and not refresh and time.monotonic() < self._token[1]:
            return self._token[0]
        url = await self._discover_token_url()
        response = await self._http.post(
            url,
            data={"grant_type": "client_credentials"},
            auth=httpx.BasicAuth(*self._credentials),
            headers={"Accept": "application/json"},
        )
        if response.status_code != 200:
            raise InfrastructureError(
                f"token request to {url} failed with HTTP {response.status_code}"
            )
        try:
            body = response.json()
            token, expires_in = str(body["access_token"]), float(str(body.get("expires_in", 300)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InfrastructureError(f"token response from {url} is malformed: {exc!r}") from exc
        self._token = (token, time.monotonic() + max(expires_in - 30, 1))
        return token

    async def post_event(self, url: str, event: Mapping[str, Any]) -> httpx.Response:
        """POST *event* to *url*; on 401 fetch a new token once. Raises for any non-2xx."""
        response: httpx.Response | None = None
        for attempt in range(2):
            token = await self.token(refresh=attempt > 0)
            response = await self._http.post(
                url,
                content=json.dumps(event, ensure_ascii=False).encode(),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": f"{CLOUDEVENTS_MEDIA_TYPE}; charset=UTF-8",
                },
            )
            if response.status_code != 401:
                break
        assert response is not None
        if not response.is_success:
            raise InfrastructureError(
                f"{url} refused event {event.get('id')!r} with HTTP {response.status_code}: "
                f"{response.text[:200]}"
            )
        return response


class HttpEventSender:
    """Delivers events over HTTPS with a :class:`PactClient` per endpoint (tokens are reused)."""

    def __init__(self, *, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._clients: dict[tuple[str, str], PactClient] = {}

    def _client_for(self, endpoint: EventEndpoint) -> PactClient:
        key = (endpoint.url, endpoint.client_id)
        client = self._clients.get(key)
        if client is None:
            verify: ssl.SSLContext | bool = (
                ssl.create_default_context(cafile=endpoint.ca_file) if endpoint.ca_file else True
            )
            client = PactClient(
                endpoint.url,
                endpoint.client_id,
                endpoint.client_secret,
                token_url=endpoint.token_url,
                verify=verify,
                timeout=self._timeout,
            )
            self._clients[key] = client
        return client

    async def send(self, endpoint: EventEndpoint, event: Mapping[str, Any]) -> None:
        try:
            await self._client_for(endpoint).post_event(endpoint.url, event)
        except httpx.HTTPError as exc:
            raise InfrastructureError(f"cannot deliver event to {endpoint.url}: {exc!r}") from exc

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What became of one outbound event: delivered (after how many attempts) or abandoned."""

    client_id: str
    event: Mapping[str, Any]
    status: DeliveryStatus
    attempts: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How outbound events are retried: exponential backoff from ``initial_backoff`` seconds,
    doubling up to ``max_backoff``, abandoned once ``give_up_after`` seconds (72 h, as v3 says)
    would be exceeded."""

    initial_backoff: float = 1.0
    max_backoff: float = 3600.0
    give_up_after: float = 72 * 3600.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number *attempt* (1-based)."""
        return min(self.initial_backoff * 2.0 ** (attempt - 1), self.max_backoff)


class RequestResponder:
    """Answers accepted ``RequestCreatedEvent``s and sends ``PublishedEvent``s.

    Per accepted request exactly one event follows: ``RequestFulfilledEvent`` with every
    matching footprint released to the requester, or ``RequestRejectedEvent`` (``NotFound``)
    when none matches. Delivery is retried as *policy* says; every footprint sent is first
    reported to *disclosures* (no record, no transfer). A repeated request (same client,
    ``source`` and ``id``) is answered once.

    Pending work lives in memory: answers still pending at shutdown are logged and lost.
    """

    def __init__(
        self,
        source: FootprintSource,
        sender: EventSender,
        *,
        event_source: str,
        policy: DeliveryPolicy | None = None,
        disclosures: DisclosureRecorder | None = None,
        max_concurrency: int = 16,
        remember_requests: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._sender = sender
        self.event_source = event_source
        self._policy = policy or DeliveryPolicy()
        self._disclosures = disclosures
        self._clock = clock
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._remember = remember_requests
        self._tasks: set[asyncio.Task[None]] = set()
        self._outcomes: list[DeliveryOutcome] = []
        self._lock = threading.Lock()

    @property
    def outcomes(self) -> list[DeliveryOutcome]:
        """Finished deliveries, oldest first (readable from any thread)."""
        with self._lock:
            return list(self._outcomes)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def submit_request(self, client: Client, request: Mapping[str, Any]) -> bool:
        """Schedule the answer to an accepted, valid RequestCreatedEvent; ``False`` (and nothing
        scheduled) if this request was seen before."""
        endpoint = client.events
        if endpoint is None:
            raise ApiError.not_implemented(
                f"client '{client.client_id}' has no registered events endpoint to answer to"
            )
        key = (client.client_id, str(request["source"]), str(request["id"]))
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        self._spawn(self._answer(client, endpoint, request))
        return True

    async def notify_published(
        self, clients: Sequence[Client], recipient_id: str, pf_ids: Sequence[str]
    ) -> int:
        """Send a ``PublishedEvent`` for *pf_ids* to every client of *recipient_id* that has an
        events endpoint; ids not released to that recipient are left out. Returns the number
        of events scheduled."""
        released: list[str] = []
        for pf_id in dict.fromkeys(pf_ids):
            with contextlib.suppress(PcfError):
                if await self._source.get_for(recipient_id, pf_id) is not None:
                    released.append(pf_id)
        if not released:
            return 0
        scheduled = 0
        for client in clients:
            if client.recipient_id == recipient_id and client.events is not None:
                event = new_event(
                    EventType.PUBLISHED,
                    {"pfIds": released},
                    source=self.event_source,
                    clock=self._clock,
                )
                self._spawn(self._deliver(client, client.events, event))
                scheduled += 1
        return scheduled

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every scheduled delivery has finished (tests, orderly shutdown)."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel pending deliveries (they are logged as lost)."""
        if self._tasks:
            log.warning(
                "stopping with %d event deliveries pending; they are lost", len(self._tasks)
            )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event delivery task failed", exc_info=task.exception())

    async def _answer(
        self, client: Client, endpoint: EventEndpoint, request: Mapping[str, Any]
    ) -> None:
        """(1) find the matching footprints released to the requester, (2) record the
        disclosure, (3) build Fulfilled, or Rejected if none matched or a step failed, (4) deliver.
        """
        request_id = str(request["id"])
        error: dict[str, str] | None = None
        pfs: list[Footprint] = []
        try:
            query = FootprintQuery.from_event_data(request.get("data") or {})  # (1)
            found = await self._source.list_for(client.recipient_id, query)
            unique = {str(fp.get("id", "")).lower(): fp for fp in found if query.matches(fp)}
            pfs = sorted(unique.values(), key=sort_key)
            if pfs and self._disclosures is not None:  # (2)
                await self._disclosures.record(
                    Disclosure.of(client, "RequestFulfilledEvent", pfs, request_id=request_id)
                )
        except PcfError as exc:
            log.error(
                "cannot answer request %s of %s: %s", request_id, client.client_id, exc.message
            )
            error = {"code": "InternalError", "message": "The request could not be processed."}
        if error is None and not pfs:
            error = {"code": "NotFound", "message": "No footprint matches the request."}
        if error is None:  # (3)
            data: dict[str, Any] = {"requestEventId": request_id, "pfs": [dict(fp) for fp in pfs]}
            event = new_event(
                EventType.REQUEST_FULFILLED, data, source=self.event_source, clock=self._clock
            )
        else:
            data = {"requestEventId": request_id, "error": error}
            event = new_event(
                EventType.REQUEST_REJECTED, data, source=self.event_source, clock=self._clock
            )
        await self._deliver(client, endpoint, event)  # (4)

    async def _deliver(
        self, client: Client, endpoint: EventEndpoint, event: Mapping[str, Any]
    ) -> None:
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._semaphore:
                    await self._sender.send(endpoint, event)
            except (PcfError, httpx.HTTPError, OSError) as exc:
                delay = self._policy.delay(attempt)
                if self._clock() - started + delay > self._policy.give_up_after:
                    log.error(
                        "abandoned %s %s for %s after %d attempts: %s",
                        event["type"],
                        event["id"],
                        client.client_id,
                        attempt,
                        exc,
                    )
                    self._record(
                        DeliveryOutcome(
                            client.client_id, event, DeliveryStatus.ABANDONED, attempt, str(exc)
                        )
                    )
                    return
                log.warning(
                    "delivery of %s to %s failed (attempt %d, retry in %.1f s): %s",
                    event["id"],
                    endpoint.url,
                    attempt,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
            else:
                self._record(
                    DeliveryOutcome(client.client_id, event, DeliveryStatus.DELIVERED, attempt)
                )
                return

    def _record(self, outcome: DeliveryOutcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)
            del self._outcomes[:-10_000]
