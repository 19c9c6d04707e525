"""Field types shared by every record: PACT decimals, UTC instants, URNs, ids, bounded strings.

Each type is an ``Annotated`` pydantic type whose validator raises a ``PydanticCustomError`` with
a stable code and a message a supplier can act on; :mod:`contracts._validate` turns those into
:class:`~contracts.errors.Violation` objects at one seam. Decimals are :class:`decimal.Decimal`,
never binary floats; a JSON number where PACT wants a decimal string is refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Annotated, Any, Final, TypeVar
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from pcf_exchange.contracts.units import UNITS

__all__ = [
    "MAX_ID",
    "MAX_LIST",
    "MAX_NAME",
    "MAX_TEXT",
    "AnyDecimal",
    "Base64Bytes",
    "DecimalOneToFive",
    "FactorId",
    "FieldPath",
    "HexSha256",
    "IdText",
    "JsonNumber",
    "Name",
    "NegOrZeroDecimal",
    "NonEmptyText",
    "NonNegDecimal",
    "PercentDecimal",
    "PositiveDecimal",
    "Record",
    "SemVer",
    "Text",
    "UnitName",
    "Uri",
    "Urn",
    "UtcDateTime",
    "Uuid",
    "decimal_fits",
    "format_datetime",
    "format_decimal",
    "pattern_str",
    "unique_items",
]

MAX_ID: Final = 512
"""Longest identifier (URN, factor id, supplier id, key id) we accept."""
MAX_NAME: Final = 1_000
"""Longest name-like string (company name, product name, source)."""
MAX_TEXT: Final = 20_000
"""Longest free text (descriptions, comments)."""
MAX_LIST: Final = 10_000
"""Most items in any list (components, ids, inputs)."""
MAX_DECIMAL_CHARS: Final = 64
"""Longest decimal string: 64 characters is ~60 significant digits, far beyond any measurement."""

_DECIMAL_RE: Final = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_RFC3339_RE: Final = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_UUID_RE: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_URN_RE: Final = re.compile(r"[uU][rR][nN]:\S+")
_URI_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
_SEMVER_RE: Final = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+(?:[-+][0-9A-Za-z.-]+)?")
_FACTOR_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._/+-]*")
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
_FIELD_PATH_RE: Final = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(?:\[(?:[0-9]+|\*)\])?(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[(?:[0-9]+|\*)\])?)*"
)


class JsonNumber(Decimal):
    """A number that came from JSON *as a number*: exact, but refused where PACT wants a string.

    :func:`contracts._jsonio.loads` parses JSON numbers with a fraction or exponent into this
    subclass, so extension data keeps exact digits while decimal fields can tell a JSON number
    (``1.5``) from a decimal string (``"1.5"``).
    """

    __slots__ = ()


def _err(code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(code, message)


# --------------------------------------------------------------------------------------------
# Decimals


def _to_decimal(value: Any) -> Decimal:
    kind = type(value)
    if kind is str:
        if len(value) > MAX_DECIMAL_CHARS:
            raise _err(
                "max_length", f"must be a decimal string of at most {MAX_DECIMAL_CHARS} characters"
            )
        if _DECIMAL_RE.fullmatch(value) is None:
            raise _err(
                "decimal_pattern",
                'must be a decimal string matching ^[+-]?\\d+(\\.\\d+)?$, e.g. "1.50" '
                "(digits with an optional sign and fraction; no exponent, spaces or commas)",
            )
        return Decimal(value)
    if kind is Decimal:
        if not value.is_finite():
            raise _err(
                "decimal_finite", "must be a finite decimal (NaN and Infinity are not numbers here)"
            )
        return value  # type: ignore[no-any-return]
    if kind is bool:
        raise _err("decimal_type", 'must be a decimal string such as "1.50", not a boolean')
    if isinstance(value, int | float | Decimal):
        raise _err(
            "decimal_type",
            'must be a decimal string such as "1.50", not a JSON number '
            "(PACT v3 carries decimals as strings so no digit is lost)",
        )
    raise _err("decimal_type", 'must be a decimal string such as "1.50"')


def format_decimal(value: Decimal) -> str:
    """PACT decimal text of *value*: plain digits, never an exponent, trailing zeros kept.

    Text longer than :data:`MAX_DECIMAL_CHARS` would be refused by every reader, so a value
    with more fractional digits than fit is rounded (half even) to the ones that do. Only a
    computed value needs it: a roll-up keeps 50 significant digits, which below 1e-12 take
    more than 64 characters (``0.0000000000000191568627450788823529411764705882352941176470588``
    ``24``). A value whose integer digits alone do not fit (:func:`decimal_fits`) raises
    :class:`ValueError`.
    """
    text = format(value, "f")
    if len(text) <= MAX_DECIMAL_CHARS:
        return text
    if not decimal_fits(value):
        raise ValueError(
            f"a decimal must fit in {MAX_DECIMAL_CHARS} characters (got {value:.3E}, with more "
            "digits than that before the point)"
        )
    whole = text.find(".")  # (there is a point: the integer digits fit, the text does not)
    keep = max(MAX_DECIMAL_CHARS - whole - 1, 0)  # fractional digits after the point
    fitted = format(value.quantize(Decimal(1).scaleb(-keep), context=_FIT_CONTEXT), "f")
    if len(fitted) > MAX_DECIMAL_CHARS:  # 99…9.5 rounded up to a digit more
        raise ValueError(f"a decimal must fit in {MAX_DECIMAL_CHARS} characters (got {fitted})")
    return fitted


def decimal_fits(value: Decimal) -> bool:
    """Whether :func:`format_decimal` can write *value*: its sign and integer digits take at most
    :data:`MAX_DECIMAL_CHARS` characters (fractional digits are rounded to fit)."""
    return max(value.adjusted() + 1, 1) + value.is_signed() <= MAX_DECIMAL_CHARS


_FIT_CONTEXT: Final = Context(prec=MAX_DECIMAL_CHARS, rounding=ROUND_HALF_EVEN)
"""Room for every digit a fitted decimal keeps (the default context rounds to 28)."""


def _bounded(check: Callable[[Decimal], bool], code: str, message: str) -> BeforeValidator:
    """Parse a decimal and check its bounds in one Python call (the decode hot path)."""

    def validate(value: Any) -> Decimal:
        parsed = _to_decimal(value)
        if not check(parsed):
            raise _err(code, message)
        return parsed

    return BeforeValidator(validate)


_DECIMAL_SER: Final = PlainSerializer(format_decimal, return_type=str)

AnyDecimal = Annotated[Decimal, BeforeValidator(_to_decimal), _DECIMAL_SER]
"""PACT ``Decimal``: any sign."""
PositiveDecimal = Annotated[
    Decimal, _bounded(lambda d: d > 0, "min_value", "must be a decimal > 0"), _DECIMAL_SER
]
"""PACT ``PositiveNonZeroDecimal``."""
NonNegDecimal = Annotated[
    Decimal,
    _bounded(lambda d: d >= 0 and not d.is_signed(), "min_value", "must be a decimal >= 0"),
    _DECIMAL_SER,
]
"""PACT ``PositiveOrZeroDecimal`` (``"-0"`` is refused: the OpenAPI pattern forbids a minus)."""
NegOrZeroDecimal = Annotated[
    Decimal,
    _bounded(
        lambda d: d <= 0, "max_value", "must be a decimal <= 0 (uptakes and removals are negative)"
    ),
    _DECIMAL_SER,
]
"""PACT ``NegativeOrZeroDecimal``."""
PercentDecimal = Annotated[
    Decimal,
    _bounded(
        lambda d: 0 <= d <= 100 and not d.is_signed(),
        "range",
        "must be a percentage between 0 and 100",
    ),
    _DECIMAL_SER,
]
DecimalOneToFive = Annotated[
    Decimal,
    _bounded(
        lambda d: 1 <= d <= 5, "range", "must be a data quality rating between 1 and 5 inclusive"
    ),
    _DECIMAL_SER,
]


# --------------------------------------------------------------------------------------------
# Instants


def _to_utc(value: Any) -> datetime:
    if type(value) is datetime:
        tz = value.tzinfo
        if tz is UTC:
            return value
        if tz is None or tz.utcoffset(value) is None:
            raise _err(
                "datetime_offset", "must carry a UTC offset (a naive date-time is ambiguous)"
            )
        return value.astimezone(UTC)
    if isinstance(value, str):
        match = _RFC3339_RE.fullmatch(value)
        if match is None:
            raise _err(
                "datetime_format",
                'must be an RFC 3339 date-time with an offset, e.g. "2025-01-31T00:00:00Z"',
            )
        day, clock, fraction, offset = match.groups()
        fraction = (fraction or "")[:7]  # datetime keeps microseconds; finer digits are dropped
        offset = "+00:00" if offset in ("Z", "z") else offset
        try:
            parsed = datetime.fromisoformat(f"{day}T{clock}{fraction}{offset}")
        except ValueError:
            raise _err("datetime_format", "must be a real calendar date and time") from None
        return parsed.astimezone(UTC)
    if isinstance(value, datetime):  # a subclass (pendulum, ...): normalise through the offset
        return _to_utc(datetime.fromisoformat(value.isoformat()))
    raise _err(
        "datetime_format", 'must be an RFC 3339 date-time string, e.g. "2025-01-31T00:00:00Z"'
    )


def format_datetime(value: datetime) -> str:
    """RFC 3339 text in UTC with a ``Z`` suffix (what we emit in PACT JSON and sign)."""
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


UtcDateTime = Annotated[
    datetime,
    BeforeValidator(_to_utc),
    PlainSerializer(format_datetime, return_type=str, when_used="json"),
]
"""An instant, normalised to UTC. JSON renders it as ``2025-01-31T00:00:00Z``."""


# --------------------------------------------------------------------------------------------
# Identifiers and strings


def _to_uuid(value: Any) -> UUID:
    if type(value) is UUID:
        return value
    if isinstance(value, str) and _UUID_RE.fullmatch(value):
        return UUID(value)
    raise _err("uuid", 'must be a UUID such as "f4b1225a-bd44-4c8e-861d-079e4e1dfd69"')


Uuid = Annotated[
    UUID, BeforeValidator(_to_uuid), PlainSerializer(str, return_type=str, when_used="json")
]


def pattern_str(
    regex: re.Pattern[str] | str, code: str, message: str, max_length: int
) -> BeforeValidator:
    compiled = re.compile(regex) if isinstance(regex, str) else regex

    def validate(value: Any) -> str:
        if not isinstance(value, str):
            raise _err("type", "must be a string")
        if len(value) > max_length:
            raise _err("max_length", f"must be at most {max_length} characters")
        if compiled.fullmatch(value) is None:
            raise _err(code, message)
        return value

    return BeforeValidator(validate)


Urn = Annotated[
    str,
    pattern_str(
        _URN_RE,
        "urn",
        'must be a URN (RFC 8141) such as "urn:pact:example.com:product:123"',
        MAX_ID,
    ),
]
Uri = Annotated[
    str,
    pattern_str(_URI_RE, "uri", 'must be an absolute URI such as "https://example.com/x"', 2048),
]
SemVer = Annotated[
    str,
    pattern_str(_SEMVER_RE, "semver", 'must be a version "major.minor.patch", e.g. "2.0.0"', 64),
]
FactorId = Annotated[
    str,
    pattern_str(
        _FACTOR_ID_RE,
        "factor_id",
        'must be a factor id of letters, digits and ":._/+-", e.g. "bg:cn-grid-2022"',
        MAX_ID,
    ),
]
HexSha256 = Annotated[
    str,
    pattern_str(
        _SHA256_RE, "sha256_hex", "must be a SHA-256 digest as 64 lower-case hex digits", 64
    ),
]
FieldPath = Annotated[
    str,
    pattern_str(
        _FIELD_PATH_RE,
        "field_path",
        'must be a field path such as "pcf.fossilGhgEmissions" or "components[*].productId"',
        300,
    ),
]


def _unit_name(value: Any) -> str:
    if not isinstance(value, str):
        raise _err("type", "must be a string")
    if value not in UNITS:
        raise _err("unit", "must be one of " + ", ".join(repr(u) for u in UNITS))
    return value


UnitName = Annotated[str, BeforeValidator(_unit_name)]
"""A unit from :data:`contracts.units.UNITS` (PACT declared units plus gram, ton, megawatt hour)."""

Text = Annotated[str, StringConstraints(strict=True, max_length=MAX_TEXT)]
NonEmptyText = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_TEXT)]
Name = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_NAME)]
IdText = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_ID)]


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise _err(
                "base64", "must be standard base64 text (A-Z a-z 0-9 + /, padded with =)"
            ) from None
    raise _err("type", "must be bytes (base64 text in JSON)")


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_to_bytes),
    PlainSerializer(
        lambda b: base64.b64encode(b).decode("ascii"), return_type=str, when_used="json"
    ),
]


_H = TypeVar("_H", bound=Hashable)


def unique_items(items: Sequence[_H] | None) -> Sequence[_H] | None:
    """Refuse a list that repeats an item, naming both positions."""
    if items is None:
        return None
    seen: dict[_H, int] = {}
    for index, item in enumerate(items):
        first = seen.setdefault(item, index)
        if first != index:
            raise _err(
                "unique_items",
                f"must not repeat an item: [{index}] repeats [{first}] ({item!s:.80})",
            )
    return items


# --------------------------------------------------------------------------------------------
# Base model


class Record(BaseModel):
    """Base of every record: frozen, unknown fields refused, camelCase on the wire.

    External input (JSON, Avro) is validated by alias only; Python code may construct records
    with snake_case attribute names.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
        str_max_length=MAX_TEXT,
        hide_input_in_errors=False,
        use_attribute_docstrings=True,
    )
