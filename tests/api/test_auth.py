"""Action Authenticate and bearer tokens, over real TLS: discovery, client credentials (Basic and
form), failures as RFC 6749 errors, missing/invalid/expired tokens as v3 401s, scopes as 403s."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from pcf_exchange.contracts.errors import ContractError, ValidationFailed
from pcf_exchange.gateway.api import Client, hash_secret, load_clients, verify_secret
from tests.api.conftest import SECRETS, TOKEN_TTL, SpecCheck, World


def test_discovery_names_the_token_endpoint_which_issues_tokens(world: World) -> None:
    with world.http() as http:
        document = http.get("/.well-known/openid-configuration").json()
        assert document["token_endpoint"] == f"{world.url}/auth/token"
        assert document["grant_types_supported"] == ["client_credentials"]
        assert set(document["scopes_supported"]) == {"footprint:list", "footprint:read"}
        response = http.post(
            document["token_endpoint"],
            data={"grant_type": "client_credentials"},
            auth=("acme-buyer", SECRETS["acme-buyer"]),
        )
    assert response.status_code == 200


def test_token_with_basic_credentials(world: World) -> None:
    with world.http() as http:
        response = http.post(
            "/auth/token",
            data={"grant_type": "client_credentials"},
            auth=("acme-buyer", SECRETS["acme-buyer"]),
        )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == TOKEN_TTL
    assert body["scope"] == "footprint:list footprint:read"
    assert len(body["access_token"]) >= 40 and "acme" not in body["access_token"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


def test_token_with_form_credentials_and_tokens_are_random(world: World) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": "acme-buyer",
        "client_secret": SECRETS["acme-buyer"],
    }
    with world.http() as http:
        first, second = (http.post("/auth/token", data=form) for _ in range(2))
    assert first.status_code == second.status_code == 200
    assert first.json()["access_token"] != second.json()["access_token"]


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


GOOD = _basic("acme-buyer", SECRETS["acme-buyer"])
FORM = "application/x-www-form-urlencoded"


CC = "grant_type=client_credentials"
BAD_TOKEN_REQUESTS = [
    ("wrong secret", _basic("acme-buyer", "nope"), CC, 401, "invalid_client"),
    ("unknown client", _basic("mallory", "x"), CC, 401, "invalid_client"),
    ("no credentials", None, CC, 401, "invalid_client"),
    ("malformed basic", "Basic !!!", CC, 401, "invalid_client"),
    ("two methods", GOOD, f"{CC}&client_id=acme-buyer&client_secret=x", 400, "invalid_request"),
    ("password grant", GOOD, "grant_type=password", 400, "unsupported_grant_type"),
    ("no grant type", GOOD, "", 400, "invalid_request"),
    ("repeated parameter", GOOD, f"{CC}&{CC}", 400, "invalid_request"),
    ("unknown scope", GOOD, f"{CC}&scope=footprint:write", 400, "invalid_scope"),
]


@pytest.mark.parametrize(
    ("case", "authorization", "body", "status", "error"),
    BAD_TOKEN_REQUESTS,
    ids=[case for case, *_ in BAD_TOKEN_REQUESTS],
)
def test_token_request_refused(
    world: World, case: str, authorization: str | None, body: str, status: int, error: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with world.http() as http:
        response = http.post("/auth/token", content=body, headers={"Content-Type": FORM, **headers})
    assert response.status_code == status, case
    payload = response.json()
    assert payload["error"] == error and isinstance(payload["error_description"], str)
    assert "access_token" not in payload
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic")


def test_token_request_must_be_form_encoded(world: World) -> None:
    with world.http() as http:
        response = http.post(
            "/auth/token",
            json={"grant_type": "client_credentials"},
            headers={"Authorization": GOOD},
        )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


ENDPOINTS = [
    ("GET", "/3/footprints", "/3/footprints"),
    ("GET", "/3/footprints/{id}", "/3/footprints/{id}"),
    ("POST", "/3/events", "/3/events"),
]


@pytest.mark.parametrize(("method", "template", "path"), ENDPOINTS)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer very-invalid-access-token-0123456789", "Bearer", "Basic abc", "Token xyz"],
)
def test_missing_or_invalid_token_is_401(
    world: World, spec: SpecCheck, method: str, template: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    url = path.replace("{id}", world.acme[0]["id"])
    with world.http() as http:
        response = http.request(method, url, headers=headers, json={})
    assert response.status_code == 401
    assert response.json()["code"] == "BadRequest"
    assert response.headers["www-authenticate"].startswith('Bearer realm="pact"')
    spec.response(template, method.lower(), response)


def test_expired_token_is_401_token_expired_and_a_new_token_works(
    world: World, spec: SpecCheck
) -> None:
    with world.http() as http:
        token = http.post(
            "/auth/token",
            data={"grant_type": "client_credentials"},
            auth=("acme-buyer", SECRETS["acme-buyer"]),
        ).json()["access_token"]
        try:
            world.clock.offset = TOKEN_TTL + 1
            expired = http.get("/3/footprints", headers={"Authorization": f"Bearer {token}"})
            fresh = http.post(
                "/auth/token",
                data={"grant_type": "client_credentials"},
                auth=("acme-buyer", SECRETS["acme-buyer"]),
            ).json()["access_token"]
            ok = http.get("/3/footprints", headers={"Authorization": f"Bearer {fresh}"})
        finally:
            world.clock.offset = 0
    assert expired.status_code == 401
    assert expired.json()["code"] == "TokenExpired"
    spec.response("/3/footprints", "get", expired)
    assert ok.status_code == 200


def test_token_without_read_scope_cannot_get(world: World, spec: SpecCheck) -> None:
    pf_id = world.acme[0]["id"]
    with world.http() as http:
        narrowed = http.get(
            f"/3/footprints/{pf_id}", headers=world.auth("acme-buyer", scope="footprint:list")
        )
        lister = http.get(f"/3/footprints/{pf_id}", headers=world.auth("acme-lister"))
        listed = http.get("/3/footprints", headers=world.auth("acme-lister"))
    for response in (narrowed, lister):
        assert response.status_code == 403
        assert response.json()["code"] == "AccessDenied"
        spec.response("/3/footprints/{id}", "get", response)
    assert listed.status_code == 200


def test_plain_http_token_request_fails(world: World) -> None:
    plain = world.url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError), httpx.Client(timeout=5) as http:
        http.post(
            f"{plain}/auth/token",
            data={"grant_type": "client_credentials"},
            auth=("acme-buyer", SECRETS["acme-buyer"]),
        )


# --- secrets and clients files (pure) --------------------------------------------------------


def test_secret_hash_verifies_only_its_secret() -> None:
    stored = hash_secret("correct horse")
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_secret("correct horse", stored)
    assert not verify_secret("correct horse ", stored)
    assert stored != hash_secret("correct horse")  # salted


def test_pbkdf2_hashes_are_accepted() -> None:
    import hashlib

    salt = b"0123456789abcdef"
    key = hashlib.pbkdf2_hmac("sha256", b"s3cret", salt, 200_000)
    enc = base64.urlsafe_b64encode
    stored = f"pbkdf2_sha256$200000${enc(salt).decode()}${enc(key).decode()}"
    assert verify_secret("s3cret", stored) and not verify_secret("S3cret", stored)


@pytest.mark.parametrize(
    "stored",
    [
        "plaintext",
        "scrypt$3$8$1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
        "pbkdf2_sha256$10$c2FsdA$a2V5",
        "md5$x$y",
    ],
)
def test_malformed_or_weak_hashes_are_refused(stored: str) -> None:
    with pytest.raises(ContractError):
        verify_secret("x", stored)
    with pytest.raises(ContractError):
        Client("c", "r", stored)


def test_clients_file_is_read_with_events_secret_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_PACT_SECRET", "their-secret")
    path = tmp_path / "clients.yaml"
    path.write_text(
        f"""
clients:
  acme-buyer:
    recipient: acme
    secret_hash: "{hash_secret("s")}"
    events:
      url: https://pact.acme.example/3/events
      client_id: pcf-exchange
      client_secret_env: ACME_PACT_SECRET
  acme-lister:
    recipient: acme
    secret_hash: "{hash_secret("t")}"
    scopes: [footprint:list]
"""
    )
    buyer, lister = load_clients(path)
    assert (buyer.client_id, buyer.recipient_id) == ("acme-buyer", "acme")
    assert buyer.events is not None and buyer.events.client_secret == "their-secret"
    assert lister.scopes == frozenset({"footprint:list"}) and lister.events is None
    assert "their-secret" not in repr(buyer) and "scrypt" not in repr(buyer)


def test_clients_file_problems_are_all_reported_with_paths(tmp_path: Path) -> None:
    path = tmp_path / "clients.json"
    path.write_text(
        '{"a": {"recipient": "x"}, "b": {"recipient": "y", "secret_hash": "nope"},'
        ' "c": {"recipient": "z", "secret_hash": "' + hash_secret("s") + '",'
        ' "events": {"url": "http://insecure", "client_id": "me",'
        ' "client_secret_env": "UNSET_VAR_PCFX"}}}'
    )
    with pytest.raises(ValidationFailed) as caught:
        load_clients(path)
    paths = {v.path for v in caught.value.violations}
    assert paths == {
        "clients.a.secret_hash",
        "clients.b",
        "clients.c.events.url",
        "clients.c.events.client_secret_env",
    }
