"""The PACT v3 (WBCSD) HTTPS API of the gateway: external customers authenticate with OAuth2
client credentials, list and get the footprints released to their recipient id, and request or
receive footprints through CloudEvents. ``create_app`` builds it, ``serve`` runs it over TLS.
"""

from pcf_exchange.gateway.api._app import PactApiState, api_state, create_app
from pcf_exchange.gateway.api._auth import (
    ALL_SCOPES,
    SCOPE_LIST,
    SCOPE_READ,
    AccessToken,
    Client,
    EventEndpoint,
    TokenIssuer,
    hash_secret,
    load_clients,
    verify_secret,
)
from pcf_exchange.gateway.api._disclosure import Disclosure, DisclosureRecorder
from pcf_exchange.gateway.api._errors import ApiError, PactErrorCode
from pcf_exchange.gateway.api._events import (
    DeliveryOutcome,
    DeliveryPolicy,
    DeliveryStatus,
    EventInbox,
    EventSender,
    EventType,
    HttpEventSender,
    InMemoryEventInbox,
    PactClient,
    ReceivedEvent,
    check_event,
    new_event,
)
from pcf_exchange.gateway.api._query import Footprint, FootprintQuery, validity_period
from pcf_exchange.gateway.api._server import (
    BackgroundServer,
    DevCertificate,
    create_self_signed_cert,
    serve,
    start_in_thread,
)
from pcf_exchange.gateway.api._source import FootprintSource, InMemoryFootprintSource, Page, page_of
from pcf_exchange.gateway.api._spec import PACT_SPEC_VERSION

__all__ = [
    "ALL_SCOPES",
    "PACT_SPEC_VERSION",
    "SCOPE_LIST",
    "SCOPE_READ",
    "AccessToken",
    "ApiError",
    "BackgroundServer",
    "Client",
    "DeliveryOutcome",
    "DeliveryPolicy",
    "DeliveryStatus",
    "DevCertificate",
    "Disclosure",
    "DisclosureRecorder",
    "EventEndpoint",
    "EventInbox",
    "EventSender",
    "EventType",
    "Footprint",
    "FootprintQuery",
    "FootprintSource",
    "HttpEventSender",
    "InMemoryEventInbox",
    "InMemoryFootprintSource",
    "PactApiState",
    "PactClient",
    "PactErrorCode",
    "Page",
    "ReceivedEvent",
    "TokenIssuer",
    "api_state",
    "check_event",
    "create_app",
    "create_self_signed_cert",
    "hash_secret",
    "load_clients",
    "new_event",
    "page_of",
    "serve",
    "start_in_thread",
    "validity_period",
    "verify_secret",
]
