"""ListFootprints and GetFootprint over real TLS: per-recipient access, v3 filters, RFC 8288
pagination that returns each footprint exactly once, and v3 error responses, every body checked
against the normative OpenAPI."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api._factory import make_footprint
from tests.api.conftest import SpecCheck, World

LIST = "/3/footprints"
GET = "/3/footprints/{id}"


def walk(
    world: World,
    spec: SpecCheck,
    query: str = "",
    client: str = "acme-buyer",
    limit: int | None = None,
) -> tuple[list[str], list[int]]:
    """Follow ``Link: rel="next"`` from the first page to the last; ids in order, page sizes."""
    ids: list[str] = []
    sizes: list[int] = []
    url: str | None = f"{LIST}?{query}" if query else LIST
    with world.http() as http:
        while url is not None:
            response = http.get(url, headers=world.auth(client))
            assert response.status_code == 200, response.text
            spec.response(LIST, "get", response)
            page = response.json()["data"]
            if limit is not None:
                assert len(page) <= limit
            ids += [fp["id"] for fp in page]
            sizes.append(len(page))
            link = response.links.get("next")
            url = link["url"] if link else None
            if url is not None:
                assert url.startswith(f"{world.url}{LIST}"), url
            assert len(sizes) < 200, "pagination does not end"
    return ids, sizes


def oracle_order(footprints: list[dict[str, Any]]) -> list[str]:
    def key(fp: dict[str, Any]) -> tuple[datetime, str]:
        created = datetime.fromisoformat(fp["created"].replace("Z", "+00:00")).astimezone(UTC)
        return created, fp["id"].lower()

    return [fp["id"] for fp in sorted(footprints, key=key)]


def test_list_returns_exactly_the_recipients_footprints(world: World, spec: SpecCheck) -> None:
    ids, sizes = walk(world, spec)
    assert ids == oracle_order(world.acme)
    assert max(sizes) == 10  # the server's page size
    globex_ids, _ = walk(world, spec, client="globex-buyer")
    assert globex_ids == oracle_order(world.globex)
    assert not set(ids) & set(globex_ids)


def test_footprints_are_served_as_released(world: World, spec: SpecCheck) -> None:
    wanted = world.acme[-3]
    with world.http() as http:
        got = http.get(f"{LIST}/{wanted['id']}", headers=world.auth())
        upper = http.get(f"{LIST}/{wanted['id'].upper()}", headers=world.auth())
    assert got.status_code == 200
    spec.response(GET, "get", got)
    assert got.json() == {"data": wanted}
    assert upper.json() == {"data": wanted}


def test_another_recipients_footprint_is_not_found_like_an_unknown_id(
    world: World, spec: SpecCheck
) -> None:
    with world.http() as http:
        response = http.get(f"{LIST}/{world.globex[0]['id']}", headers=world.auth("acme-buyer"))
        unknown = http.get(f"{LIST}/{uuid.uuid4()}", headers=world.auth("acme-buyer"))
        listed = http.get(
            f"{LIST}?productId={world.globex[0]['productIds'][0]}", headers=world.auth()
        )
    assert response.status_code == 404
    assert response.json() == unknown.json()  # nothing tells "someone else's" from "none"
    assert response.headers.keys() == unknown.headers.keys()
    spec.response(GET, "get", response)
    assert listed.json() == {"data": []}


@pytest.mark.parametrize(
    "pf_id", [str(uuid.uuid4()), "random-string-as-id-abc", "00000000-0000-0000-0000-000000000000"]
)
def test_unknown_footprint_is_not_found(world: World, spec: SpecCheck, pf_id: str) -> None:
    with world.http() as http:
        response = http.get(f"{LIST}/{pf_id}", headers=world.auth())
    assert response.status_code == 404
    assert response.json()["code"] == "NotFound"
    spec.response(GET, "get", response)


@pytest.mark.parametrize("limit", ["abc", "-1", "1.5", "1e3", "+3", " 2", "０"])
def test_invalid_limit_is_bad_request(world: World, spec: SpecCheck, limit: str) -> None:
    with world.http() as http:
        response = http.get(LIST, params={"limit": limit}, headers=world.auth())
    assert response.status_code == 400
    assert response.json()["code"] == "BadRequest"
    spec.response(LIST, "get", response)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("limit=3&limit=4", "BadRequest"),
        ("validOn=yesterday", "BadRequest"),
        ("status=Active&status=Deprecated", "BadRequest"),
        ("cursor=bm90LWEtY3Vyc29y", "BadRequest"),
        ("$filter=pcf/geographyCountry eq 'DE'", "NotImplemented"),
        ("x-atq-invoice-id=12345", "NotImplemented"),
    ],
)
def test_malformed_list_requests(world: World, spec: SpecCheck, query: str, code: str) -> None:
    with world.http() as http:
        response = http.get(f"{LIST}?{query}", headers=world.auth())
    assert response.status_code == 400
    assert response.json()["code"] == code
    spec.response(LIST, "get", response)


def test_limit_bounds_each_page_and_links_walk_all_pages(world: World, spec: SpecCheck) -> None:
    ids, sizes = walk(world, spec, "limit=7", limit=7)
    assert sizes == [7, 7, 7, 7]
    assert ids == oracle_order(world.acme)


def test_limit_zero_returns_no_footprints_but_a_next_link(world: World, spec: SpecCheck) -> None:
    with world.http() as http:
        response = http.get(LIST, params={"limit": "0"}, headers=world.auth())
    assert response.status_code == 200
    spec.response(LIST, "get", response)
    assert response.json() == {"data": []}
    assert "next" in response.links


@settings(max_examples=25, deadline=None)
@given(limit=st.integers(min_value=1, max_value=40))
def test_any_page_size_covers_every_footprint_exactly_once(
    world: World, spec: SpecCheck, limit: int
) -> None:
    ids, sizes = walk(world, spec, f"limit={limit}", limit=min(limit, 10))
    assert ids == oracle_order(world.acme)
    assert len(ids) == len(set(ids))
    assert all(size == min(limit, 10) for size in sizes[:-1])


def test_pagination_link_is_absolute_on_the_server_address_never_the_host_header(
    world: World, spec: SpecCheck
) -> None:
    with world.http() as http:
        first = http.get(
            f"{LIST}?geography=DE&limit=2", headers={**world.auth(), "Host": "evil.example.test"}
        )
        link = first.links["next"]["url"]
        parts = urlsplit(link)
        here = urlsplit(world.url)
        assert (parts.scheme, parts.netloc, parts.path) == ("https", here.netloc, LIST)
        assert "evil" not in first.headers["link"]
        assert "geography=DE" in parts.query and "limit=2" in parts.query
        # Call the link (as the conformance tool does), twice.
        local = urlunsplit((here.scheme, here.netloc, parts.path, parts.query, ""))
        again = [http.get(local, headers=world.auth()) for _ in range(2)]
    assert first.headers["link"] == f'<{link}>; rel="next"'
    assert again[0].json() == again[1].json()
    assert again[0].headers["link"] == again[1].headers["link"]
    assert not {fp["id"] for fp in first.json()["data"]} & {
        fp["id"] for fp in again[0].json()["data"]
    }


def test_cursor_of_one_recipient_is_refused_for_another(world: World, spec: SpecCheck) -> None:
    with world.http() as http:
        link = http.get(f"{LIST}?limit=1", headers=world.auth()).links["next"]["url"]
        stolen = http.get(link, headers=world.auth("globex-buyer"))
        tampered = http.get(
            link[:-2] + ("AA" if not link.endswith("AA") else "BB"), headers=world.auth()
        )
    for response in (stolen, tampered):
        assert response.status_code == 400
        assert response.json()["code"] == "BadRequest"
        spec.response(LIST, "get", response)


def test_footprints_added_during_a_walk_do_not_disturb_it(world: World, spec: SpecCheck) -> None:
    late = make_footprint(created="2030-01-01T00:00:00Z")
    seen: list[str] = []
    with world.http() as http:
        response = http.get(f"{LIST}?limit=6", headers=world.auth())
        seen += [fp["id"] for fp in response.json()["data"]]
        world.source.release("acme", late)
        try:
            while "next" in response.links:
                response = http.get(response.links["next"]["url"], headers=world.auth())
                seen += [fp["id"] for fp in response.json()["data"]]
        finally:
            world.source.withdraw("acme", late["id"])
    assert len(seen) == len(set(seen))
    assert seen == [*oracle_order(world.acme), late["id"]]


def _ids(world: World, *indexes: int) -> set[str]:
    return {world.acme[i]["id"] for i in indexes}


GENERATED = range(25)
C0, C1, C2 = 25, 26, 27


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("productId=URN:GTIN:4712345060507", {C0, C1}),
        (
            "productid=urn:gtin:4712345060507&PRODUCTID=urn:pact:example.com:product-id:p-3",
            {C0, C1, 3},
        ),
        ("companyId=urn:pact:example.com:company-id:supplier-2&companyId=notaurn", {C0}),
        ("geography=DE", {i for i in GENERATED if i % 3 == 0}),  # not DE-BY: TC 22, exact
        ("geography=de-by", {C0}),
        ("geography=Western%20Europe&geography=FR", {*(i for i in GENERATED if i % 3 == 1), C1}),
        ("geography=XX", set()),
        ("geography=", {*GENERATED, C0, C1, C2}),
        ("classification=urn:pact:productclassification:un-cpc:7892", {C0}),
        ("status=Deprecated", {0, 5, 10, 15, 20, C1}),
        ("status=active", {*(i for i in GENERATED if i % 5), C0, C2}),
        ("status=BogusStatus", set()),
        ("validOn=2025-06-01T00:00:00Z", {*GENERATED, C0, C1}),
        ("validon=2025-04-01T00:00Z", {*GENERATED, C0, C1}),
        ("validOn=2021-01-01T00:00:00%2B01:00", {C2}),
        ("validOn=1900-01-01T00:00:00Z", set()),
        ("validAfter=2024-12-31T00:00:00Z", {C0}),
        ("validAfter=2099-12-31T23:59:59Z", set()),
        ("validBefore=2026-12-31T00:00:00Z", {C0, C1, C2}),
        ("validBefore=2023-03-01", {C2}),
        ("productId=urn:gtin:4712345060507&status=Active", {C0}),
        ("companyId=urn:bogus:company:x&productId=urn:gtin:4712345060507", set()),
    ],
)
def test_v3_filters(world: World, spec: SpecCheck, query: str, expected: set[int]) -> None:
    ids, _ = walk(world, spec, query)
    assert set(ids) == _ids(world, *expected)
    assert len(ids) == len(set(ids))


def test_empty_result_is_an_empty_array(world: World, spec: SpecCheck) -> None:
    with world.http() as http:
        response = http.get(LIST, params={"productId": "urn:bogus:product:1"}, headers=world.auth())
    assert response.status_code == 200
    assert response.json() == {"data": []}
    assert "link" not in response.headers


def test_trailing_slash_lists_too(world: World, spec: SpecCheck) -> None:
    with world.http() as http:
        response = http.get(f"{LIST}/", params={"geography": "CN"}, headers=world.auth())
    assert response.status_code == 200
    assert {fp["pcf"]["geographyCountry"] for fp in response.json()["data"]} == {"CN"}


def test_unknown_route_and_method(world: World) -> None:
    with world.http() as http:
        missing = http.get("/3/nothing", headers=world.auth())
        wrong = http.delete(f"{LIST}/{world.acme[0]['id']}", headers=world.auth())
    assert missing.status_code == 404 and missing.json()["code"] == "NotFound"
    assert wrong.status_code == 405 and wrong.json()["code"] == "BadRequest"


def test_responses_forbid_caching_and_require_https(world: World) -> None:
    with world.http() as http:
        response = http.get(LIST, headers=world.auth())
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert "server" not in response.headers


def test_plain_http_is_refused(world: World) -> None:
    plain = world.url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError), httpx.Client(timeout=5) as http:
        http.get(f"{plain}{LIST}", headers=world.auth())
