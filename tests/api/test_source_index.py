"""The in-memory source's listing index answers every page exactly as a full scan would
(:func:`page_of`), after any sequence of releases, re-releases and withdrawals, for any filter,
cursor and page size; and paging through it visits each footprint once, in order."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pcf_exchange.gateway.api import FootprintQuery, InMemoryFootprintSource, Page, page_of
from pcf_exchange.gateway.api._query import sort_key
from tests.api._factory import make_footprint

IDS = [str(uuid.UUID(int=n)) for n in range(12)]
CREATED = ["2025-01-01T00:00:00Z", "2025-01-01T01:00:00+01:00", "2025-03-01T00:00:00Z"]
QUERIES = [
    FootprintQuery(),
    FootprintQuery(geographies=("CN",)),
    FootprintQuery(status="Deprecated"),
    FootprintQuery(geographies=("de", "cn"), status="Active"),
]

release = st.tuples(
    st.just("release"),
    st.sampled_from(["acme", "beta"]),
    st.sampled_from(IDS),
    st.sampled_from(CREATED),
    st.sampled_from(["CN", "DE"]),
    st.sampled_from(["Active", "Deprecated"]),
)
withdraw = st.tuples(st.just("withdraw"), st.sampled_from(["acme", "beta"]), st.sampled_from(IDS))


def footprint(pf_id: str, created: str, country: str, status: str) -> dict[str, Any]:
    # ids in either case: the index is case-insensitive as GetFootprint is
    shown = pf_id.upper() if created.endswith("Z") else pf_id
    return make_footprint(
        pf_id=shown, created=created, status=status, geography={"geographyCountry": country}
    )


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.one_of(release, withdraw), max_size=40),
    query=st.sampled_from(QUERIES),
    size=st.integers(min_value=1, max_value=5),
    after_index=st.integers(min_value=-1, max_value=11),
)
def test_a_page_from_the_index_equals_a_full_scan(
    steps: list[tuple[Any, ...]], query: FootprintQuery, size: int, after_index: int
) -> None:
    source = InMemoryFootprintSource()
    model: dict[str, dict[str, dict[str, Any]]] = {"acme": {}, "beta": {}}
    for step in steps:
        if step[0] == "release":
            _, recipient, pf_id, created, country, status = step
            fp = footprint(pf_id, created, country, status)
            source.release(recipient, fp)
            model[recipient][pf_id] = fp
        else:
            _, recipient, pf_id = step
            assert source.withdraw(recipient, pf_id.upper()) == (pf_id in model[recipient])
            model[recipient].pop(pf_id, None)
    keys = sorted(sort_key(fp) for fp in model["acme"].values())
    after = keys[after_index] if 0 <= after_index < len(keys) else None
    got = asyncio.run(source.page_for("acme", query, after, size))
    assert got == page_of(model["acme"].values(), query, after, size)


def test_paging_visits_every_footprint_once_in_listing_order() -> None:
    source = InMemoryFootprintSource()
    released = [
        make_footprint(created=f"2025-02-{1 + n % 5:02d}T10:00:00Z", pf_id=str(uuid.uuid4()))
        for n in range(53)
    ]
    for fp in released:
        source.release("acme", fp)
    seen: list[str] = []
    after = None
    while True:
        page: Page = asyncio.run(source.page_for("acme", FootprintQuery(), after, 10))
        seen += [fp["id"] for fp in page.footprints]
        if not page.more:
            break
        after = page.entries[-1][0]
    assert seen == [fp["id"] for fp in sorted(released, key=sort_key)]
    assert asyncio.run(source.page_for("nobody", FootprintQuery(), None, 10)) == Page((), False)
