"""The v3 footprint filter (ListFootprints parameters and RequestCreatedEvent criteria) as a pure
value: parsing, matching with the spec's OR-within / AND-across rule, validity periods, and the
stable order plus signed keyset cursors that pagination links carry.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from pcf_exchange.gateway.api._errors import ApiError

__all__ = [
    "Cursor",
    "CursorCodec",
    "Footprint",
    "FootprintQuery",
    "ListRequest",
    "parse_instant",
    "sort_key",
    "validity_period",
]

Footprint = Mapping[str, Any]
"""A PACT v3 ``ProductFootprint`` as parsed JSON (decimals are strings)."""

SortKey = tuple[datetime, str]

_MIN_INSTANT: Final = datetime.min.replace(tzinfo=UTC)
_LIST_PARAMS: Final = {
    "productid": "productId",
    "companyid": "companyId",
    "geography": "geography",
    "classification": "classification",
}
_INSTANT_PARAMS: Final = {
    "validon": "validOn",
    "validafter": "validAfter",
    "validbefore": "validBefore",
}
CURSOR_PARAM: Final = "cursor"


def parse_instant(value: str, *, name: str = "value") -> datetime:
    """An ISO 8601 date-time (or date) as an aware UTC datetime; naive values are read as UTC.

    A ``+`` that form-decoding turned into a space (``...T10:00:00 01:00``) is put back.
    """
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        repaired = text[:10] + text[10:].replace(" ", "+")
        try:
            parsed = datetime.fromisoformat(repaired)
        except ValueError:
            raise ApiError.bad_request(
                f"'{name}' must be an ISO 8601 date-time (got {value[:60]!r})"
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _instant_or_none(value: Any) -> datetime | None:
    return _cached_instant(value) if isinstance(value, str) else None


@functools.lru_cache(maxsize=2**16)
def _cached_instant(value: str) -> datetime | None:
    """Footprint dates repeat across pages and requests; parse each text once."""
    try:
        return parse_instant(value)
    except ApiError:
        return None


def _plus_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February → 28 February
        return moment.replace(year=moment.year + years, day=28)


def validity_period(footprint: Footprint) -> tuple[datetime, datetime] | None:
    """``(start, end)`` of a footprint's validity period, defaults applied (v3 §validity-period).

    Without ``validityPeriodStart`` the period starts at ``pcf.referencePeriodEnd``; without
    ``validityPeriodEnd`` it ends 3 years after ``pcf.referencePeriodEnd``. ``None`` when the
    dates needed are missing or unreadable.
    """
    pcf = footprint.get("pcf")
    reference_end = (
        _instant_or_none(pcf.get("referencePeriodEnd")) if isinstance(pcf, Mapping) else None
    )
    start = _instant_or_none(footprint.get("validityPeriodStart")) or reference_end
    end = _instant_or_none(footprint.get("validityPeriodEnd"))
    if end is None and reference_end is not None:
        end = _plus_years(reference_end, 3)
    if start is None or end is None:
        return None
    return start, end


def sort_key(footprint: Footprint) -> SortKey:
    """The stable listing order: ``created`` (UTC), then ``id`` (lower case)."""
    created = _instant_or_none(footprint.get("created")) or _MIN_INSTANT
    return created, str(footprint.get("id", "")).lower()


def _lowered(values: Iterable[Any]) -> frozenset[str]:
    return frozenset(v.lower() for v in values if isinstance(v, str))


@dataclass(frozen=True, slots=True)
class FootprintQuery:
    """The v3 filter criteria. Values of one criterion are ORed, criteria are ANDed; string
    matching is case-insensitive. An empty query matches every footprint.

    ``geography`` matches a footprint whose ``pcf.geographyRegionOrSubregion``,
    ``pcf.geographyCountry`` or ``pcf.geographyCountrySubdivision`` *equals* one of the values
    (case-insensitive): ``CN`` matches a footprint of country ``CN``, not one that declares only
    the subdivision ``CN-JS`` (the official conformance suite's TC 22 checks exactly this).
    ``status`` values other than Active/Deprecated match nothing.
    """

    product_ids: tuple[str, ...] = ()
    company_ids: tuple[str, ...] = ()
    geographies: tuple[str, ...] = ()
    classifications: tuple[str, ...] = ()
    valid_on: datetime | None = None
    valid_after: datetime | None = None
    valid_before: datetime | None = None
    status: str | None = None
    _lower: tuple[frozenset[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lowered = tuple(
            _lowered(v)
            for v in (self.product_ids, self.company_ids, self.geographies, self.classifications)
        )
        object.__setattr__(self, "_lower", lowered)

    @property
    def is_empty(self) -> bool:
        return self == FootprintQuery()

    def matches(self, footprint: Footprint) -> bool:
        """Whether *footprint* satisfies every criterion given."""
        products, companies, geographies, classifications = self._lower
        if products and not products & _lowered(footprint.get("productIds") or ()):
            return False
        if companies and not companies & _lowered(footprint.get("companyIds") or ()):
            return False
        if classifications and not classifications & _lowered(
            footprint.get("productClassifications") or ()
        ):
            return False
        if geographies and not self._geography_matches(footprint, geographies):
            return False
        if (
            self.status is not None
            and str(footprint.get("status", "")).lower() != self.status.lower()
        ):
            return False
        return self._validity_matches(footprint)

    @staticmethod
    def _geography_matches(footprint: Footprint, wanted: frozenset[str]) -> bool:
        pcf = footprint.get("pcf")
        if not isinstance(pcf, Mapping):
            return False
        region, country, subdivision = (
            pcf.get(k)
            for k in (
                "geographyRegionOrSubregion",
                "geographyCountry",
                "geographyCountrySubdivision",
            )
        )
        return bool(_lowered(v for v in (region, country, subdivision) if v) & wanted)

    def _validity_matches(self, footprint: Footprint) -> bool:
        if self.valid_on is None and self.valid_after is None and self.valid_before is None:
            return True
        period = validity_period(footprint)
        if period is None:
            return False
        start, end = period
        if self.valid_on is not None and not start <= self.valid_on <= end:
            return False
        if self.valid_after is not None and not start > self.valid_after:
            return False
        return self.valid_before is None or end < self.valid_before

    @classmethod
    def from_event_data(cls, data: Mapping[str, Any]) -> FootprintQuery:
        """The criteria of a ``RequestCreatedEvent``'s ``data`` (already schema-validated)."""

        def strings(key: str) -> tuple[str, ...]:
            values = data.get(key) or ()
            return tuple(v for v in values if isinstance(v, str) and v)

        def instant(key: str) -> datetime | None:
            value = data.get(key)
            return parse_instant(value, name=f"data.{key}") if isinstance(value, str) else None

        status = data.get("status")
        return cls(
            product_ids=strings("productId"),
            company_ids=strings("companyId"),
            geographies=strings("geography"),
            classifications=strings("classification"),
            valid_on=instant("validOn"),
            valid_after=instant("validAfter"),
            valid_before=instant("validBefore"),
            status=status if isinstance(status, str) else None,
        )

    def to_event_data(self) -> dict[str, Any]:
        """The criteria as a ``RequestCreatedEvent`` ``data`` object (round-trips
        :meth:`from_event_data`)."""
        data: dict[str, Any] = {}
        for key, values in (
            ("productId", self.product_ids),
            ("companyId", self.company_ids),
            ("geography", self.geographies),
            ("classification", self.classifications),
        ):
            if values:
                data[key] = list(values)
        for key, moment in (
            ("validOn", self.valid_on),
            ("validAfter", self.valid_after),
            ("validBefore", self.valid_before),
        ):
            if moment is not None:
                data[key] = moment.isoformat().replace("+00:00", "Z")
        if self.status is not None:
            data["status"] = self.status
        return data


@dataclass(frozen=True, slots=True)
class ListRequest:
    """One ListFootprints call: the filter, the page size asked for and the cursor, if any."""

    query: FootprintQuery
    limit: int | None
    cursor: str | None

    @classmethod
    def from_params(cls, params: Sequence[tuple[str, str]]) -> ListRequest:
        """Parse the query string. Parameter names are case-insensitive (the spec's own example
        mixes ``productId`` and ``productid``); empty values count as absent.

        Raises :class:`ApiError` 400 ``BadRequest`` for a malformed ``limit`` or date, a repeated
        single-valued parameter, and 400 ``NotImplemented`` for OData ``$filter`` or an unknown
        ``x-`` extension parameter. Other unknown parameters are ignored.
        """
        lists: dict[str, list[str]] = {name: [] for name in _LIST_PARAMS}
        singles: dict[str, str] = {}
        for raw_name, value in params:
            name = raw_name.lower()
            if name == "$filter":
                raise ApiError.not_implemented(
                    "OData '$filter' was deprecated in PACT v3 and is not supported; "
                    "use the v3 filter parameters (productId, companyId, geography, ...)"
                )
            if name.startswith("x-"):
                raise ApiError.not_implemented(f"filter parameter '{raw_name}' is not supported")
            if value == "":
                continue
            if name in lists:
                lists[name].append(value)
            elif name in _INSTANT_PARAMS or name in {"limit", "status", CURSOR_PARAM}:
                if name in singles and singles[name] != value:
                    raise ApiError.bad_request(f"'{raw_name}' may be given only once")
                singles[name] = value
        limit = _parse_limit(singles["limit"]) if "limit" in singles else None
        query = FootprintQuery(
            product_ids=tuple(lists["productid"]),
            company_ids=tuple(lists["companyid"]),
            geographies=tuple(lists["geography"]),
            classifications=tuple(lists["classification"]),
            status=singles.get("status"),
            **{
                attr: parse_instant(singles[name], name=_INSTANT_PARAMS[name])
                for name, attr in (
                    ("validon", "valid_on"),
                    ("validafter", "valid_after"),
                    ("validbefore", "valid_before"),
                )
                if name in singles
            },
        )
        return cls(query=query, limit=limit, cursor=singles.get(CURSOR_PARAM))


def _parse_limit(value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise ApiError.bad_request(f"'limit' must be a non-negative integer (got {value[:40]!r})")
    return int(value)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends: the sort key of its last footprint, bound to one recipient."""

    recipient_id: str
    after: SortKey


class CursorCodec:
    """Opaque, HMAC-signed keyset cursors for pagination links.

    A cursor holds the sort key of the last footprint served, so a link can be called again
    and again with the same result, stays valid as long as the key (hence across restarts and
    instances that share ``secret``), and never skips or repeats a footprint of an unchanged
    set. A cursor minted for one recipient is refused for another.
    """

    _MAC_BYTES: Final = 16

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("cursor secret must be at least 16 bytes")
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[: self._MAC_BYTES]

    def encode(self, cursor: Cursor) -> str:
        created, pf_id = cursor.after
        body = {"v": 1, "r": cursor.recipient_id, "c": created.isoformat(), "i": pf_id}
        payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        token = payload + self._mac(payload)
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def decode(self, text: str, *, recipient_id: str) -> Cursor:
        """The cursor in *text*; 400 ``BadRequest`` if it is forged, damaged or not this
        recipient's."""
        invalid = ApiError.bad_request("invalid pagination cursor; start again without 'cursor'")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (ValueError, TypeError):
            raise invalid from None
        payload, mac = raw[: -self._MAC_BYTES], raw[-self._MAC_BYTES :]
        if len(raw) <= self._MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise invalid
        try:
            body = json.loads(payload)
            after = (datetime.fromisoformat(body["c"]), str(body["i"]))
            owner = str(body["r"])
        except (ValueError, KeyError, TypeError):
            raise invalid from None
        if owner != recipient_id:
            raise invalid
        return Cursor(recipient_id=owner, after=after)
