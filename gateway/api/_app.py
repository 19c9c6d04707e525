"""The PACT v3 host as a FastAPI app: Authenticate (``/auth/token``, OpenID discovery),
ListFootprints (filters, RFC 8288 pagination), GetFootprint and Events. Data actions need a
bearer token, and each client sees only what the gateway released to its recipient id.

What the app holds to, whatever a client sends:

- **No audit record, no response.** Every footprint a response carries is first handed to the
  :class:`~gateway.api._disclosure.DisclosureRecorder` (``pcfx api serve`` always gives one that
  appends to the audit log); if it fails, the answer is 503 and nothing is disclosed.
- **Existence is not disclosed.** An id the client's recipient was not released answers 404
  exactly like an unknown id (never 403).
- **The public URL is configuration.** The OpenID ``issuer`` and the pagination ``Link`` are
  built from ``public_url`` (or, without it, the address the server listens on), never from the
  request's ``Host`` header.
- **Bounded input.** Bodies are capped (token form 8 KiB, events ``max_event_bytes``), query
  strings at :data:`MAX_QUERY_BYTES` on every path (before routing, :class:`_QueryCap`), bearer
  tokens at :data:`MAX_TOKEN_CHARS`, JSON nesting at :data:`MAX_JSON_DEPTH`: anything beyond is
  a 400 with a v3 ``Error`` body (an RFC 6749 error on ``/auth/token``), never a 500; what an
  error repeats of the request is cut short (no value beyond 80 characters, at most
  :data:`_ECHOED_PROBLEMS` problems of an event), so an error body stays under 2 KiB whatever
  was sent (``tests/api/test_fuzz.py`` checks it).
- **Failed token attempts are throttled** per client id and per remote address before any
  secret is hashed (:mod:`gateway.api._throttle`): 429 with ``Retry-After``.

Operations (no token, nothing disclosed): ``/healthz`` (the process answers), ``/readyz``
(serving, and the footprint source ready if it says so through a ``ready()`` method) and
``/metrics`` (:mod:`contracts.observability`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pcf_exchange.contracts.certification import CertRegistry
from pcf_exchange.contracts.errors import PcfError, PolicyDenied, ValidationFailed
from pcf_exchange.contracts.observability import METRICS, METRICS_CONTENT_TYPE, Readiness
from pcf_exchange.gateway.api._auth import (
    ALL_SCOPES,
    SCOPE_LIST,
    SCOPE_READ,
    AccessToken,
    Client,
    TokenIssuer,
)
from pcf_exchange.gateway.api._disclosure import Disclosure, DisclosureRecorder
from pcf_exchange.gateway.api._errors import (
    BEARER_CHALLENGE,
    ApiError,
    PactErrorCode,
    error_response,
    error_response_for,
)
from pcf_exchange.gateway.api._events import (
    CLOUDEVENTS_MEDIA_TYPE,
    DeliveryPolicy,
    EventInbox,
    EventSender,
    EventType,
    HttpEventSender,
    InMemoryEventInbox,
    RequestResponder,
    check_event,
    source_matches,
)
from pcf_exchange.gateway.api._labels import label_router
from pcf_exchange.gateway.api._query import Cursor, CursorCodec, Footprint, ListRequest
from pcf_exchange.gateway.api._source import FootprintSource
from pcf_exchange.gateway.api._throttle import FailureThrottle

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_QUERY_BYTES",
    "MAX_TOKEN_CHARS",
    "PactApiState",
    "api_readiness",
    "api_state",
    "create_app",
]

log = logging.getLogger("gateway.api")
_T = TypeVar("_T")

_MAX_TOKEN_REQUEST_BYTES: Final = 8 * 1024
MAX_QUERY_BYTES: Final = 8 * 1024
"""Longest query string a data action reads (ListFootprints filters are short)."""
MAX_TOKEN_CHARS: Final = 512
"""Longest bearer token looked up (ours are 43 characters)."""
MAX_JSON_DEPTH: Final = 32
"""Deepest nesting of arrays and objects accepted in an event (v3 events nest 4 deep)."""
_TOKEN_CHARS: Final = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")


@dataclass(slots=True)
class PactApiState:
    """The parts of a running API that its owner may reach (``api_state(app)``)."""

    tokens: TokenIssuer
    source: FootprintSource
    inbox: EventInbox
    responder: RequestResponder
    cursors: CursorCodec
    max_page_size: int
    disclosures: DisclosureRecorder | None
    throttle: FailureThrottle
    """Failed token attempts per client id and remote address."""
    public_url: str | None = None
    """The base URL clients reach this API at (``issuer``, ``Link``); ``None``: the address
    the server listens on."""
    loop: asyncio.AbstractEventLoop | None = None
    """The server's event loop, once it runs."""

    def run_threadsafe(self, coroutine: Coroutine[Any, Any, _T]) -> Future[_T]:
        """Run *coroutine* on the server's loop from another thread (a Kafka consumer, a test)."""
        if self.loop is None:
            coroutine.close()
            raise RuntimeError("the API is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def notify_published(self, recipient_id: str, pf_ids: Sequence[str]) -> int:
        """Send a ``PublishedEvent`` for *pf_ids* to each client of *recipient_id* that has an
        events endpoint. Must run on the server's event loop (use
        ``asyncio.run_coroutine_threadsafe`` from other threads)."""
        clients = list(self.tokens.clients.values())
        return await self.responder.notify_published(clients, recipient_id, pf_ids)


def api_state(app: FastAPI) -> PactApiState:
    """The state of an app made by :func:`create_app`."""
    state: PactApiState = app.state.pact
    return state


class _SecurityHeaders:
    """Adds HSTS, ``no-store`` caching (footprints and tokens are confidential) and ``nosniff``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Strict-Transport-Security", "max-age=31536000")
                headers.setdefault("Cache-Control", "no-store")
                headers.setdefault("X-Content-Type-Options", "nosniff")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _QueryCap:
    """Refuses a query string longer than :data:`MAX_QUERY_BYTES` on any path, before routing
    or parsing: 400 with a v3 ``Error`` body (an RFC 6749 error on ``/auth/token``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and len(scope.get("query_string", b"")) > MAX_QUERY_BYTES:
            message = f"query string exceeds {MAX_QUERY_BYTES} bytes"
            response = (
                _oauth_error(400, "invalid_request", message)
                if scope.get("path") == "/auth/token"
                else error_response(400, PactErrorCode.BAD_REQUEST, message)
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


_ECHOED_SCOPES: Final = 5
"""At most this many refused scopes are named in an ``invalid_scope`` error, each cut to 64
characters: an error names what was wrong without repeating the request."""


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """An RFC 6749 §5.2 error (Action Authenticate does not use the PACT ``Error`` body)."""
    headers = {"Pragma": "no-cache"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="pact"'
    return JSONResponse({"error": error, "error_description": description}, status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError.bad_request(f"request body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError.bad_request(f"request body exceeds {limit} bytes")
    return bytes(body)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _base_url(request: Request, public_url: str | None) -> str:
    """The configured public URL, or the scheme and the address the server's socket listens on
    (from the server, not the client: the ``Host`` header is never echoed)."""
    if public_url is not None:
        return public_url
    server = request.scope.get("server") or ("localhost", None)
    host, port = server[0], server[1]
    shown = f"[{host}]" if ":" in str(host) else str(host)
    return f"{request.url.scheme}://{shown}" + (f":{port}" if port else "")


def _json_depth_exceeds(document: Any, limit: int) -> bool:
    """Whether arrays/objects in *document* nest deeper than *limit* (iterative, no recursion)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _remote_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8 (UnicodeDecodeError)
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


def create_app(
    source: FootprintSource,
    clients: Iterable[Client],
    *,
    token_ttl: float = 3600.0,
    max_page_size: int = 1000,
    cursor_secret: bytes | None = None,
    inbox: EventInbox | None = None,
    event_sender: EventSender | None = None,
    event_source: str = "//localhost/3/events",
    delivery: DeliveryPolicy | None = None,
    disclosures: DisclosureRecorder | None = None,
    max_event_bytes: int = 8 * 2**20,
    clock: Callable[[], float] = time.time,
    label_registry: Callable[[], CertRegistry] | None = None,
    public_url: str | None = None,
    throttle: FailureThrottle | None = None,
) -> FastAPI:
    """A PACT v3 host serving *source* to the registered *clients*.

    - ``token_ttl``: seconds a bearer token lives (``expires_in``).
    - ``max_page_size``: most footprints per ListFootprints page (also the default page size).
    - ``cursor_secret``: HMAC key for pagination cursors; give every instance behind one name
      the same key (default: random per app, so links die with the process).
    - ``inbox``: receives accepted Published/Fulfilled/Rejected events (default: in memory).
    - ``event_sender``/``event_source``/``delivery``: how answers to footprint requests and
      published notifications are sent, the CloudEvents ``source`` they carry, and retries.
    - ``disclosures``: told of every footprint before it is sent; if it raises, the answer is
      503 and nothing is sent (``pcfx api serve`` always gives one: the audit log).
    - ``clock``: seconds since the epoch (tests move it to expire tokens).
    - ``label_registry``: serve ``GET /labels/verify`` against the certification registry it
      returns (:mod:`gateway.api._labels`); off when not given.
    - ``public_url``: the base URL clients use (``https://pact.example.com``), for the OpenID
      ``issuer`` and pagination links; default: the address the server listens on.
    - ``throttle``: failed token attempts (:class:`~gateway.api._throttle.FailureThrottle`).

    Serve it only over TLS (:func:`gateway.api.serve`); v3 allows HTTPS only.
    """
    if max_page_size < 1:
        raise ValueError("max_page_size must be at least 1")
    if public_url is not None:
        if not re.match(r"^https://[^/?#\s]+(/[^?#\s]*)?$", public_url):
            raise ValueError(
                f"public_url must be an https:// URL without query (got {public_url!r})"
            )
        public_url = public_url.rstrip("/")
    tokens = TokenIssuer(clients, ttl=token_ttl, clock=clock)
    sender = event_sender or HttpEventSender()
    state = PactApiState(
        tokens=tokens,
        source=source,
        inbox=inbox or InMemoryEventInbox(),
        responder=RequestResponder(
            source,
            sender,
            event_source=event_source,
            policy=delivery,
            disclosures=disclosures,
            clock=clock,
        ),
        cursors=CursorCodec(cursor_secret or secrets.token_bytes(32)),
        max_page_size=max_page_size,
        disclosures=disclosures,
        throttle=throttle if throttle is not None else FailureThrottle(),
        public_url=public_url,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.loop = asyncio.get_running_loop()
        yield
        state.loop = None
        await state.responder.stop()
        close = getattr(sender, "aclose", None)
        if close is not None:
            await close()

    app = FastAPI(
        title="pcf-exchange PACT v3 API",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.pact = state
    app.add_middleware(_QueryCap)
    app.add_middleware(_SecurityHeaders)  # (added last: outermost, so it marks the 400s too)
    if label_registry is not None:
        app.include_router(label_router(label_registry, clock=clock))
    _add_ops_routes(app, state)

    @app.exception_handler(PcfError)
    async def on_pcf_error(_: Request, exc: PcfError) -> JSONResponse:
        return error_response_for(exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(404, PactErrorCode.NOT_FOUND, "No such resource")
        if exc.status_code == 405:
            allow = dict(exc.headers or {})
            return error_response(405, PactErrorCode.BAD_REQUEST, "Method not allowed", allow)
        return error_response(exc.status_code, PactErrorCode.BAD_REQUEST, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, PactErrorCode.BAD_REQUEST, "Bad Request")

    @app.exception_handler(Exception)
    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a PACT request", exc_info=exc)
        return error_response(
            500, PactErrorCode.INTERNAL_ERROR, "An internal or unexpected error has occurred"
        )

    def authorize(request: Request, scope: str | None) -> AccessToken:
        """(1) a bearer token is present, (2) it is known and unexpired, (3) it has *scope*."""
        header = request.headers.get("authorization")
        if not header:
            raise ApiError.invalid_token("missing bearer token", error=None)  # (1)
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError.invalid_token(
                "Authorization must be 'Bearer <token>'", error="invalid_request"
            )
        if len(token) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.match(token):
            raise ApiError.invalid_token("invalid access token")
        info = tokens.check(token)  # (2)
        if scope is not None and scope not in info.scopes:  # (3)
            raise ApiError(
                403,
                PactErrorCode.ACCESS_DENIED,
                f"access token lacks scope '{scope}'",
                headers={"WWW-Authenticate": f'{BEARER_CHALLENGE}, error="insufficient_scope"'},
            )
        return info

    async def disclose(info: AccessToken, action: str, footprints: Sequence[Footprint]) -> None:
        """Record the disclosure before the response exists; 503 if it cannot be recorded."""
        if state.disclosures is None or not footprints:
            return
        client = tokens.clients[info.client_id]
        try:
            await state.disclosures.record(Disclosure.of(client, action, footprints))
        except Exception as exc:  # whatever failed: no audit record, no response
            log.error("disclosure to %s not recorded, nothing sent: %s", client.client_id, exc)
            raise ApiError.unavailable() from None

    def query_items(request: Request) -> list[tuple[str, str]]:
        return request.query_params.multi_items()  # (its length is capped by _QueryCap)

    @app.get("/.well-known/openid-configuration", include_in_schema=False)
    async def openid_configuration(request: Request) -> JSONResponse:
        base = _base_url(request, state.public_url)
        document = {
            "issuer": base,
            "token_endpoint": f"{base}/auth/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": sorted(ALL_SCOPES),
            "response_types_supported": ["token"],
        }
        return JSONResponse(document)

    @app.post("/auth/token", include_in_schema=False)
    async def token_endpoint(request: Request) -> JSONResponse:
        """Action Authenticate: RFC 6749 §4.4 with ``client_secret_basic`` (or ``_post``)."""
        if _media_type(request) != "application/x-www-form-urlencoded":
            return _oauth_error(
                400, "invalid_request", "body must be application/x-www-form-urlencoded"
            )
        try:
            body = (await _read_body(request, _MAX_TOKEN_REQUEST_BYTES)).decode("utf-8")
            pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=bool(body))
        except (ApiError, UnicodeDecodeError, ValueError):
            return _oauth_error(400, "invalid_request", "malformed form body")
        form: dict[str, str] = {}
        for name, value in pairs:
            if name in form:
                return _oauth_error(400, "invalid_request", f"parameter '{name}' repeated")
            form[name] = value
        basic = request.headers.get("authorization")
        posted = form.get("client_id"), form.get("client_secret")
        if basic and any(posted):
            return _oauth_error(
                400, "invalid_request", "use one client authentication method, not two"
            )
        if basic:
            credentials = _basic_credentials(basic)
        elif posted[0] is not None and posted[1] is not None:
            credentials = (posted[0], posted[1])
        else:
            return _oauth_error(401, "invalid_client", "client authentication required")
        if credentials is None:
            return _oauth_error(401, "invalid_client", "malformed Basic credentials")
        grant = form.get("grant_type")
        if grant is None:
            return _oauth_error(400, "invalid_request", "grant_type is required")
        if grant != "client_credentials":
            return _oauth_error(
                400, "unsupported_grant_type", "only client_credentials is supported"
            )
        # throttled per client id and address before any secret is hashed
        keys = (f"client:{credentials[0][:256]}", f"addr:{_remote_address(request)}")
        client: Client | None = None
        wait = state.throttle.retry_after(keys)
        if wait is None:
            with state.throttle.admit() as busy:
                if busy is None:
                    client = await run_in_threadpool(tokens.authenticate, *credentials)
                    if client is None and basic:  # RFC 6749 §2.3.1: may be form-encoded
                        decoded = (unquote_plus(credentials[0]), unquote_plus(credentials[1]))
                        if decoded != credentials:
                            client = await run_in_threadpool(tokens.authenticate, *decoded)
                wait = busy
        if wait is not None:
            return _too_many(wait)
        if client is None:
            state.throttle.failed(keys)
            log.info("token refused for client id %r", credentials[0][:64])
            return _oauth_error(401, "invalid_client", "Authentication failed")
        state.throttle.succeeded(keys)
        requested = frozenset(form.get("scope", "").split())
        refused = sorted(requested - client.scopes)
        if refused:
            named = [s[:64] for s in refused[:_ECHOED_SCOPES]]
            more = f" and {len(refused) - len(named)} more" if len(refused) > len(named) else ""
            return _oauth_error(400, "invalid_scope", f"scopes not granted: {named}{more}")
        granted = requested or client.scopes
        token, info = tokens.issue(client, granted)
        body_out = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(tokens.ttl),
            "scope": " ".join(sorted(info.scopes)),
        }
        return JSONResponse(body_out, headers={"Pragma": "no-cache"})

    @app.get("/3/footprints")
    @app.get("/3/footprints/", include_in_schema=False)
    async def list_footprints(request: Request) -> JSONResponse:
        """Action ListFootprints: filter, order by (created, id), page by signed keyset cursor."""
        info = authorize(request, SCOPE_LIST)
        wanted = ListRequest.from_params(query_items(request))
        after = (
            state.cursors.decode(wanted.cursor, recipient_id=info.recipient_id).after
            if wanted.cursor
            else None
        )
        size = (
            state.max_page_size if wanted.limit is None else min(wanted.limit, state.max_page_size)
        )
        page = await source.page_for(info.recipient_id, wanted.query, after, size)
        headers: dict[str, str] = {}
        if page.more:
            last = page.entries[-1][0] if page.entries else after
            params = [(k, v) for k, v in query_items(request) if k.lower() != "cursor"]
            if last is not None:
                params.append(("cursor", state.cursors.encode(Cursor(info.recipient_id, last))))
            link = f"{_base_url(request, state.public_url)}{request.url.path}"
            link += f"?{urlencode(params, quote_via=quote)}" if params else ""
            headers["Link"] = f'<{link}>; rel="next"'
        footprints = page.footprints
        await disclose(info, "ListFootprints", footprints)
        return JSONResponse({"data": footprints}, headers=headers)

    @app.get("/3/footprints/{pf_id}")
    async def get_footprint(pf_id: str, request: Request) -> JSONResponse:
        """Action GetFootprint: 404 ``NotFound`` for unknown (or non-UUID) ids and, alike, for
        ids not released to this client's recipient (nothing tells them apart)."""
        info = authorize(request, SCOPE_READ)
        try:
            footprint = await source.get_for(info.recipient_id, pf_id) if _is_uuid(pf_id) else None
        except PolicyDenied:
            footprint = None
        if footprint is None:
            raise ApiError.not_found()
        await disclose(info, "GetFootprint", [footprint])
        return JSONResponse({"data": footprint})

    @app.post("/3/events")
    async def post_event(request: Request) -> Response:
        """Action Events: validate, then answer requests asynchronously or hand the event to the
        inbox; 200 with an empty body once accepted."""
        info = authorize(request, None)
        client = tokens.clients[info.client_id]
        if _media_type(request) not in {CLOUDEVENTS_MEDIA_TYPE, "application/json"}:
            raise ApiError.bad_request(
                f"Content-Type must be {CLOUDEVENTS_MEDIA_TYPE} (structured mode)"
            )
        body = await _read_body(request, max_event_bytes)
        try:
            event: Any = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApiError.bad_request("body is not valid JSON") from None
        if _json_depth_exceeds(event, MAX_JSON_DEPTH):
            raise ApiError.bad_request(
                f"body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"
            )
        try:
            event_type = check_event(event)
        except ValidationFailed as exc:
            raise ApiError.bad_request(_event_problems(exc)) from None
        if event_type is EventType.REQUEST_CREATED:
            _accept_request(state.responder, client, event)
        else:
            await state.inbox.accept(client, event)
        log.info(
            "accepted %s %s from %s", event_type.schema_name, event.get("id"), client.client_id
        )
        return Response(status_code=200)

    return app


_ECHOED_PROBLEMS: Final = 4
"""At most this many problems of a refused event are named, each with its path cut to 48 and
its message to 80 characters (the value it repeats is already cut to 80, ``Violation.got``):
an event with a thousand bad attributes gets a short answer, not its own text back."""


def _event_problems(refused: ValidationFailed) -> str:
    """The 400 message for an event that broke the v3 schema: the count and a few problems."""
    count = len(refused.violations)
    named = []
    for problem in refused.violations[:_ECHOED_PROBLEMS]:
        where = f"'{_cut(problem.path, 48)}'" if problem.path else "event"
        got = f" (got {problem.got})" if problem.got is not None else ""
        named.append(f"{where}: {_cut(problem.message, 80)}{got}")
    more = f"; and {count - len(named)} more" if count > len(named) else ""
    return f"event has {count} problem{'s' * (count != 1)}: {'; '.join(named)}{more}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _too_many(wait: float) -> JSONResponse:
    """429 for a throttled token request: nothing was hashed; ``Retry-After`` in whole seconds."""
    seconds = max(1, int(wait + 0.999))
    return JSONResponse(
        {
            "error": "invalid_client",
            "error_description": f"too many failed attempts; retry after {seconds} s",
        },
        429,
        headers={"Retry-After": str(seconds), "Pragma": "no-cache"},
    )


def api_readiness(state: PactApiState) -> Readiness:
    """``/readyz`` of the API: its server runs (the lifespan started) and its footprint source,
    if it can tell (a ``ready()`` method returning a :class:`Readiness` or a bool), is ready."""
    if state.loop is None:
        return Readiness.no("the API server is not running yet")
    ready = getattr(state.source, "ready", None)
    if callable(ready):
        answer = ready()
        if isinstance(answer, Readiness):
            return answer
        if not answer:
            return Readiness.no("the footprint source is not ready")
    return Readiness.yes()


def _add_ops_routes(app: FastAPI, state: PactApiState) -> None:
    """``/healthz``, ``/readyz``, ``/metrics``: public, like the OpenID discovery document."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "service": "api"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        answer = api_readiness(state)
        body = {"status": "ready" if answer.ready else "not ready", "service": "api"}
        if answer.reason:
            body["reason"] = answer.reason
        return JSONResponse(body, 200 if answer.ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(METRICS.exposition(), media_type=METRICS_CONTENT_TYPE)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _accept_request(responder: RequestResponder, client: Client, event: Mapping[str, Any]) -> None:
    """Checks that decide synchronously (4xx) whether a footprint request can be handled."""
    if client.events is None:
        raise ApiError.not_implemented(
            f"client '{client.client_id}' has no registered events endpoint, so requests cannot be "
            "answered; use ListFootprints"
        )
    if not source_matches(str(event["source"]), client.events.url):
        raise ApiError.bad_request(
            f"event source {_cut(str(event['source']), 60)!r} does not match the events endpoint "
            f"registered for client '{client.client_id}'"
        )
    responder.submit_request(client, event)
