"""Hostile input to the API, in process (no TLS, no broker): malformed and oversized tokens,
bodies and query strings, other recipients' ids, and a token flood. Nothing leaks, nothing is a
500, the lockout answers 429 before any secret is hashed, and normal calls are still answered.
No timing: every assertion is on status codes, bodies and how often scrypt ran."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pcf_exchange.gateway.api import (
    Client,
    InMemoryFootprintSource,
    api_state,
    create_app,
    hash_secret,
)
from pcf_exchange.gateway.api._app import MAX_JSON_DEPTH, MAX_QUERY_BYTES, MAX_TOKEN_CHARS
from pcf_exchange.gateway.api._throttle import FailureThrottle, ThrottleSettings
from tests.api._factory import make_footprint

SECRET = "right-secret"
OURS = make_footprint()
THEIRS = make_footprint()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def secret_hash() -> str:
    return hash_secret(SECRET)


class Api:
    """One app, called in process from chosen remote addresses; counts the scrypt runs."""

    def __init__(self, secret_hash: str, *, public_url: str | None = None, **throttle: Any):
        self.clock = Clock()
        self.throttle = FailureThrottle(ThrottleSettings(**throttle), clock=self.clock)
        self.app = create_app(
            InMemoryFootprintSource({"acme": [OURS], "globex": [THEIRS]}),
            [Client("acme-erp", "acme", secret_hash), Client("globex-erp", "globex", secret_hash)],
            throttle=self.throttle,
            public_url=public_url,
        )
        self.hashed = 0
        tokens = api_state(self.app).tokens
        original: Callable[[str, str], Any] = tokens.authenticate

        def counting(client_id: str, secret: str) -> Any:
            self.hashed += 1
            return original(client_id, secret)

        tokens.authenticate = counting  # type: ignore[method-assign]

    def call(
        self, method: str, url: str, *, address: str = "10.0.0.1", **kwargs: Any
    ) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="https://pact.test") as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(go())

    def token_request(
        self, client_id: str = "acme-erp", secret: str = SECRET, *, address: str = "10.0.0.1"
    ) -> httpx.Response:
        return self.call(
            "POST",
            "/auth/token",
            address=address,
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
        )

    def bearer(self, client_id: str = "acme-erp", *, address: str = "10.0.0.9") -> dict[str, str]:
        response = self.token_request(client_id, address=address)
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def api(secret_hash: str) -> Iterator[Api]:
    yield Api(secret_hash, allowed=3, base_lockout=10.0, max_lockout=60.0)


# --- tokens ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Bearer " + "a" * (MAX_TOKEN_CHARS + 1),
        "Bearer " + "a" * 100_000,
        "Bearer abc\x7fdef",
        "Bearer ../../etc/passwd",
        "Bearer a b c",
        "Bearer " + "é" * 20,
        "Basic YWNtZS1lcnA6cmlnaHQtc2VjcmV0",
        "Bearer",
    ],
)
def test_malformed_and_oversized_bearer_tokens_are_401_never_500(api: Api, header: str) -> None:
    response = api.call("GET", "/3/footprints", headers={"Authorization": header.encode("utf-8")})
    assert response.status_code == 401
    assert response.json()["code"] == "BadRequest"
    assert "data" not in response.json()


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GRANT = b"grant_type=client_credentials"


@pytest.mark.parametrize(
    ("authorization", "description"),
    [
        ("Basic !!!not-base64", "malformed Basic credentials"),
        (_basic(b"acme-erp"), "malformed Basic credentials"),  # no colon
        (_basic(b"\xff\xfe:\xff"), "malformed Basic credentials"),  # not UTF-8
        ("Basic ", "malformed Basic credentials"),
        (_basic(b"acme-erp:" + b"s" * 30_000), "Authentication failed"),  # a 30 kB secret
        (_basic(b"a" * 30_000 + b":" + SECRET.encode()), "Authentication failed"),  # a 30 kB id
    ],
)
def test_malformed_and_oversized_client_credentials_are_401_and_never_echoed(
    api: Api, authorization: str, description: str
) -> None:
    response = api.call(
        "POST", "/auth/token", headers={**FORM, "Authorization": authorization}, content=GRANT
    )
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "invalid_client", "error_description": description}
    assert "sss" not in response.text and "aaa" not in response.text
    assert response.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("headers", "body", "error"),
    [
        (FORM, b"\x00\xff\xfe=\x01", "invalid_request"),  # not a form
        (FORM, GRANT + b"&grant_type=password", "invalid_request"),  # repeated
        (FORM, b"", "invalid_request"),  # no grant_type
        (FORM, b"grant_type=%zz%ff", "unsupported_grant_type"),
        ({"Content-Type": "application/json"}, b'{"grant_type": "client_credentials"}',
         "invalid_request"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x\r\ngarbage", "invalid_request"),
    ],
)  # fmt: skip
def test_malformed_token_requests_are_400_oauth_errors(
    api: Api, headers: dict[str, str], body: bytes, error: str
) -> None:
    response = api.call(
        "POST",
        "/auth/token",
        headers={**headers, "Authorization": _basic(f"acme-erp:{SECRET}".encode())},
        content=body,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert "access_token" not in response.text and SECRET not in response.text
    assert api.hashed == 0  # refused before any secret was hashed


def test_an_invalid_scope_error_names_a_few_scopes_cut_short(api: Api) -> None:
    asked = " ".join(f"{i:03d}" + "x" * 5_000 for i in range(1))
    asked += " " + " ".join(f"s{i}" for i in range(500))
    response = api.call(
        "POST",
        "/auth/token",
        headers={**FORM, "Authorization": _basic(f"acme-erp:{SECRET}".encode())},
        content=GRANT + b"&scope=" + asked.replace(" ", "+").encode(),
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"
    description = response.json()["error_description"]
    assert "and 496 more" in description and len(description) < 500
    assert "access_token" not in response.text


def test_a_flood_of_wrong_secrets_locks_the_address_and_the_id_before_any_hashing(
    api: Api,
) -> None:
    headers = api.bearer()  # a client that already holds a token, elsewhere
    statuses = [api.token_request(secret=f"wrong-{i}").status_code for i in range(50)]
    # 3 free failures, the 4th locks; the other 46 are refused without hashing
    assert statuses[:4] == [401] * 4
    assert set(statuses[4:]) == {429}
    assert api.hashed == 1 + 4  # the bearer's own token, then the 4 that ran scrypt
    refused = api.token_request(secret="wrong")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"] == "invalid_client"
    # normal calls are still answered
    listed = api.call("GET", "/3/footprints", headers=headers)
    assert listed.status_code == 200 and [fp["id"] for fp in listed.json()["data"]] == [OURS["id"]]


def test_the_right_secret_from_a_locked_address_waits_too_then_passes(api: Api) -> None:
    for i in range(4):
        api.token_request("globex-erp", f"wrong-{i}", address="10.0.0.2")
    hashed = api.hashed
    # the locked address is refused even with the right secret of another client, unhashed
    assert api.token_request("acme-erp", address="10.0.0.2").status_code == 429
    # ... the locked client id from another address as well
    assert api.token_request("globex-erp", address="10.0.0.3").status_code == 429
    assert api.hashed == hashed
    # another client from another address is not affected
    assert api.token_request("acme-erp", address="10.0.0.3").status_code == 200
    api.clock.now += 11  # the lockout (10 s) is over
    assert api.token_request("globex-erp", address="10.0.0.2").status_code == 200
    # a success clears the counts: three more failures are free again
    assert [
        api.token_request("globex-erp", "bad", address="10.0.0.2").status_code for _ in range(3)
    ] == [401, 401, 401]


def test_lockouts_double_up_to_the_maximum(api: Api) -> None:
    waits = []
    for _ in range(8):
        api.token_request(secret="wrong", address="10.0.0.4")
        wait = api.throttle.retry_after(["addr:10.0.0.4"])
        waits.append(wait)
        if wait:
            api.clock.now += wait
    assert waits[:3] == [None, None, None]
    assert waits[3:] == [10.0, 20.0, 40.0, 60.0, 60.0]


def test_unknown_client_ids_are_throttled_and_the_table_stays_bounded(secret_hash: str) -> None:
    throttle = FailureThrottle(ThrottleSettings(allowed=1, max_keys=100))
    for i in range(5_000):
        throttle.failed([f"client:made-up-{i}", f"addr:10.1.{i // 250}.{i % 250}"])
    assert len(throttle) == 100
    throttle.failed(["client:made-up-x"])
    throttle.failed(["client:made-up-x"])
    assert throttle.retry_after(["client:made-up-x"]) is not None


def test_hashing_beyond_the_concurrent_limit_is_429_without_hashing(secret_hash: str) -> None:
    api = Api(secret_hash, max_pending=2)
    with api.throttle.admit() as first, api.throttle.admit() as second:
        assert first is None and second is None
        busy = api.token_request()
        assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
        assert api.hashed == 0
    assert api.token_request().status_code == 200


# --- other recipients' ids, query strings ------------------------------------------------------


def test_ids_of_other_recipients_are_404_exactly_like_unknown_ones(api: Api) -> None:
    headers = api.bearer()
    theirs = api.call("GET", f"/3/footprints/{THEIRS['id']}", headers=headers)
    unknown = api.call("GET", f"/3/footprints/{uuid.uuid4()}", headers=headers)
    ours = api.call("GET", f"/3/footprints/{OURS['id']}", headers=headers)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.content == unknown.content
    assert ours.status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "productId=" + "x" * (MAX_QUERY_BYTES + 1),
        "&".join(f"p{i}=1" for i in range(2000)),
        "limit=99999999999999999999999",
        "limit=abc",
        "validOn=%00%ff",
        "cursor=" + "A" * 4000,
        "status=%E2%80%AE",
        "geography=" + "%5B" * 500,
    ],
)
def test_hostile_query_strings_are_400_never_500(api: Api, query: str) -> None:
    response = api.call("GET", f"/3/footprints?{query}", headers=api.bearer())
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["code"] in ("BadRequest", "NotImplemented")
    else:  # unknown-but-harmless filters: still only this recipient's footprints
        assert {fp["id"] for fp in response.json()["data"]} <= {OURS["id"]}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/3/footprints/{OURS['id']}"),
        ("POST", "/auth/token"),
        ("POST", "/3/events"),
        ("GET", "/.well-known/openid-configuration"),
        ("GET", "/no/such/path"),
    ],
)
def test_an_oversized_query_string_is_400_on_every_path(api: Api, method: str, path: str) -> None:
    headers = {**api.bearer(), **FORM}
    body = GRANT if path == "/auth/token" else b"{}"
    query = "x=" + "y" * MAX_QUERY_BYTES
    response = api.call(method, f"{path}?{query}", headers=headers, content=body)
    assert response.status_code == 400, response.text
    if path == "/auth/token":
        assert response.json()["error"] == "invalid_request"
    else:
        assert response.json()["code"] == "BadRequest"
    assert "yyyy" not in response.text and OURS["id"] not in response.text
    assert response.headers["cache-control"] == "no-store"  # the security headers still apply
    # one byte less is no reason to refuse: the query cap is the only thing that changed
    shorter = api.call(
        "GET", f"/3/footprints/{OURS['id']}?{query[:MAX_QUERY_BYTES]}", headers=headers
    )
    assert shorter.status_code == 200


@pytest.mark.parametrize(
    "pf_id",
    ["not-a-uuid", "a" * 5_000, "%00", "%E2%80%AE", "00000000-0000-0000-0000-000000000000",
     THEIRS["id"].upper()],
)  # fmt: skip
def test_malformed_ids_are_404_exactly_like_unknown_ones(api: Api, pf_id: str) -> None:
    headers = api.bearer()
    response = api.call("GET", f"/3/footprints/{pf_id}", headers=headers)
    unknown = api.call("GET", f"/3/footprints/{uuid.uuid4()}", headers=headers)
    assert response.status_code == 404 and response.content == unknown.content


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/2/footprints", 404),
        ("GET", "/3/footprints/..%2F..%2Fetc%2Fpasswd", 404),
        ("DELETE", "/3/footprints", 405),
        ("PUT", f"/3/footprints/{OURS['id']}", 405),
        ("GET", "/" + "a" * 10_000, 404),
    ],
)
def test_unknown_paths_and_methods_answer_a_pact_error_and_nothing_else(
    api: Api, method: str, path: str, status: int
) -> None:
    response = api.call(method, path, headers=api.bearer(), content=b"{}")
    assert response.status_code == status
    assert set(response.json()) == {"code", "message"}
    assert OURS["id"] not in response.text and "Traceback" not in response.text


# --- bodies ------------------------------------------------------------------------------------


def _event(data: Any) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "//pact.test/3/events",
            "time": "2025-01-01T00:00:00Z",
            "type": "org.wbcsd.pact.ProductFootprint.PublishedEvent.3",
            "data": data,
        }
    ).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000,
        b"{" * 50_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        _event({"pfIds": [str(uuid.uuid4())], "x": json.loads("[" * 60 + "]" * 60)}),
        json.dumps(json.loads("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))).encode(),
        b"\xff\xfe{}",
        b'{"specversion": NaN}',
        b"",
    ],
)
def test_nested_and_malformed_event_bodies_are_400_with_a_pact_error(api: Api, body: bytes) -> None:
    response = api.call(
        "POST",
        "/3/events",
        headers={**api.bearer(), "Content-Type": "application/cloudevents+json"},
        content=body,
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "BadRequest"


def test_oversized_bodies_are_refused_before_they_are_read(api: Api) -> None:
    huge = b" " * (9 * 2**20)
    event = api.call(
        "POST",
        "/3/events",
        headers={**api.bearer(), "Content-Type": "application/cloudevents+json"},
        content=huge,
    )
    token = api.call(
        "POST",
        "/auth/token",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        content=b"grant_type=client_credentials&x=" + b"a" * 20_000,
    )
    assert event.status_code == 400 and event.json()["code"] == "BadRequest"
    assert token.status_code == 400 and token.json()["error"] == "invalid_request"


# --- the public URL ----------------------------------------------------------------------------


def test_issuer_and_links_come_from_the_public_url_never_the_host_header(secret_hash: str) -> None:
    api = Api(secret_hash, public_url="https://pact.example.com/base/")
    discovery = api.call(
        "GET", "/.well-known/openid-configuration", headers={"Host": "evil.example"}
    )
    assert discovery.json()["issuer"] == "https://pact.example.com/base"
    assert discovery.json()["token_endpoint"] == "https://pact.example.com/base/auth/token"
    state = api_state(api.app)
    assert isinstance(state.source, InMemoryFootprintSource)
    for _ in range(3):
        state.source.release("acme", make_footprint())
    page = api.call(
        "GET", "/3/footprints?limit=1", headers={**api.bearer(), "Host": "evil.example"}
    )
    assert page.links["next"]["url"].startswith("https://pact.example.com/base/3/footprints?")
    assert "evil" not in page.headers["link"]


@pytest.mark.parametrize(
    "url", ["http://pact.example.com", "https://pact.example.com/?x=1", "pact.example.com", ""]
)
def test_a_public_url_that_is_not_plain_https_is_refused(secret_hash: str, url: str) -> None:
    with pytest.raises(ValueError, match="public_url"):
        create_app(InMemoryFootprintSource(), [], public_url=url)
