"""The filter as a pure value: parameter parsing, the OR-within/AND-across rule as a property,
validity-period defaults, event-criteria round trips and signed cursors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcf_exchange.gateway.api import ApiError, FootprintQuery, validity_period
from pcf_exchange.gateway.api._query import Cursor, CursorCodec, ListRequest
from tests.api._factory import make_footprint

PRODUCTS = [f"urn:pact:example.com:product-id:{c}" for c in "abcd"]
COMPANIES = [f"urn:pact:example.com:company-id:{c}" for c in "xyz"]
COUNTRIES = ["DE", "FR", "CN"]


@st.composite
def footprints(draw: st.DrawFn) -> dict[str, Any]:
    return make_footprint(
        product_ids=tuple(draw(st.sets(st.sampled_from(PRODUCTS), min_size=1))),
        company_ids=tuple(draw(st.sets(st.sampled_from(COMPANIES), min_size=1))),
        geography={"geographyCountry": draw(st.sampled_from(COUNTRIES))},
        status=draw(st.sampled_from(["Active", "Deprecated"])),
    )


def _case(values: list[str], flip: st.DataObject) -> tuple[str, ...]:
    return tuple(v.upper() if flip.draw(st.booleans()) else v for v in values)


@given(
    fp=footprints(),
    products=st.lists(st.sampled_from(PRODUCTS), max_size=3),
    companies=st.lists(st.sampled_from(COMPANIES), max_size=2),
    countries=st.lists(st.sampled_from(COUNTRIES), max_size=2),
    status=st.none() | st.sampled_from(["Active", "deprecated"]),
    flip=st.data(),
)
def test_criteria_are_ored_within_and_anded_across(
    fp: dict[str, Any],
    products: list[str],
    companies: list[str],
    countries: list[str],
    status: str | None,
    flip: st.DataObject,
) -> None:
    query = FootprintQuery(
        product_ids=_case(products, flip),
        company_ids=_case(companies, flip),
        geographies=_case(countries, flip),
        status=status,
    )
    expected = (
        (not products or any(p in fp["productIds"] for p in products))
        and (not companies or any(c in fp["companyIds"] for c in companies))
        and (not countries or fp["pcf"]["geographyCountry"] in countries)
        and (status is None or fp["status"].lower() == status.lower())
    )
    assert query.matches(fp) is expected


instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))


@given(
    products=st.lists(st.sampled_from(PRODUCTS), max_size=3).map(tuple),
    geographies=st.lists(st.sampled_from(COUNTRIES), max_size=2).map(tuple),
    valid_on=st.none() | instants,
    valid_before=st.none() | instants,
    status=st.none() | st.sampled_from(["Active", "Deprecated"]),
)
def test_event_criteria_round_trip(
    products: tuple[str, ...],
    geographies: tuple[str, ...],
    valid_on: datetime | None,
    valid_before: datetime | None,
    status: str | None,
) -> None:
    query = FootprintQuery(
        product_ids=products,
        geographies=geographies,
        valid_on=valid_on,
        valid_before=valid_before,
        status=status,
    )
    assert FootprintQuery.from_event_data(query.to_event_data()) == query


def test_parameter_names_are_case_insensitive_and_empty_values_absent() -> None:
    request = ListRequest.from_params(
        [
            ("productId", "x"),
            ("productid", "y"),
            ("PRODUCTID", "z"),
            ("geography", ""),
            ("LIMIT", "5"),
            ("other", "1"),
        ]
    )
    assert request.query == FootprintQuery(product_ids=("x", "y", "z"))
    assert request.limit == 5 and request.cursor is None


@pytest.mark.parametrize(
    "params",
    [
        [("limit", "-1")],
        [("validAfter", "soon")],
        [("$filter", "x")],
        [("x-acme-invoice", "1")],
        [("status", "A"), ("status", "B")],
    ],
)
def test_bad_parameters_raise_api_errors(params: list[tuple[str, str]]) -> None:
    with pytest.raises(ApiError) as caught:
        ListRequest.from_params(params)
    assert caught.value.status == 400


def test_validity_defaults_to_three_years_after_the_reference_period() -> None:
    leap = make_footprint(reference_end="2024-02-29T00:00:00Z")
    assert validity_period(leap) == (
        datetime(2024, 2, 29, tzinfo=UTC),
        datetime(2027, 2, 28, tzinfo=UTC),
    )
    explicit = make_footprint(validity=("2025-01-01T00:00:00+01:00", None))
    assert validity_period(explicit) == (
        datetime(2024, 12, 31, 23, tzinfo=UTC),
        datetime(2027, 12, 31, tzinfo=UTC),
    )
    broken = make_footprint(reference_end="not a date")
    assert validity_period(broken) is None
    assert not FootprintQuery(valid_on=datetime(2025, 1, 1, tzinfo=UTC)).matches(broken)


def test_cursor_round_trip_and_refusals() -> None:
    codec = CursorCodec(b"k" * 32)
    cursor = Cursor("acme", (datetime(2025, 1, 1, tzinfo=UTC), "abc"))
    text = codec.encode(cursor)
    assert codec.decode(text, recipient_id="acme") == cursor
    for bad, recipient in [(text, "globex"), (text[:-1], "acme"), ("", "acme"), ("!!", "acme")]:
        with pytest.raises(ApiError):
            codec.decode(bad, recipient_id=recipient)
    with pytest.raises(ApiError):
        CursorCodec(b"other-key-" * 4).decode(text, recipient_id="acme")


@pytest.mark.parametrize(
    ("declared", "wanted", "matches"),
    [
        ({"geographyCountry": "CN"}, "CN", True),
        ({"geographyCountry": "cn"}, "CN", True),
        ({"geographyCountrySubdivision": "CN-JS"}, "CN", False),  # TC 22: equality, not prefix
        ({"geographyCountrySubdivision": "CN-JS"}, "cn-js", True),
        ({"geographyCountry": "CN", "geographyCountrySubdivision": "CN-JS"}, "CN", True),
        ({"geographyRegionOrSubregion": "Eastern Asia"}, "CN", False),
        ({"geographyRegionOrSubregion": "Eastern Asia"}, "eastern asia", True),
        ({"geographyCountry": "CNX"}, "CN", False),
        ({}, "CN", False),
    ],
)
def test_geography_matches_only_equal_values(
    declared: dict[str, str], wanted: str, matches: bool
) -> None:
    query = FootprintQuery(geographies=(wanted,))
    assert query.matches(make_footprint(geography=declared)) is matches
