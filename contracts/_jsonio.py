"""Strict JSON in, exact JSON out.

:func:`loads` refuses what a lax parser lets through (non-UTF-8 bytes, NaN/Infinity literals,
duplicate keys, absurd nesting) with a :class:`~contracts.errors.ValidationFailed` naming the
place, and parses numbers exactly (:class:`~contracts._types.JsonNumber`, never ``float``).
:func:`dumps` writes decimals back as number literals so extension data keeps its digits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final, NoReturn

from pcf_exchange.contracts._types import JsonNumber
from pcf_exchange.contracts.errors import ValidationFailed, Violation

__all__ = ["MAX_JSON_BYTES", "dumps", "loads"]

MAX_JSON_BYTES: Final = 64 * 1024 * 1024
"""Largest JSON document a loader reads (64 MiB)."""


class _Refused(ValueError):
    def __init__(self, code: str, message: str, got: Any = ...) -> None:
        super().__init__(message)
        self.code, self.message, self.got = code, message, got


def _constant(name: str) -> Any:
    raise _Refused("json_constant", f"{name} is not a JSON number; write decimals as strings", name)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(
                "duplicate_key", f"object repeats the key {key!r}; keys must be unique", key
            )
        result[key] = value
    return result


def loads(data: bytes | str, *, subject: str = "document") -> Any:
    """Parse JSON strictly. Raises :class:`ValidationFailed` with one violation on bad input."""
    if isinstance(data, bytes | bytearray):
        if len(data) > MAX_JSON_BYTES:
            _fail(
                subject,
                "too_large",
                f"must be at most {MAX_JSON_BYTES} bytes",
                f"{len(data)} bytes",
            )
        try:
            text = bytes(data).decode("utf-8-sig" if data[:3] == b"\xef\xbb\xbf" else "utf-8")
        except UnicodeDecodeError as exc:
            _fail(subject, "not_utf8", f"must be UTF-8 text; byte {exc.start} is not valid UTF-8")
    else:
        text = data
    try:
        return json.loads(
            text, parse_float=JsonNumber, parse_constant=_constant, object_pairs_hook=_pairs
        )
    except _Refused as exc:
        _fail(subject, exc.code, exc.message, exc.got)
    except json.JSONDecodeError as exc:
        _fail(
            subject,
            "json_syntax",
            f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        )
    except RecursionError:
        _fail(subject, "json_depth", "nests arrays or objects too deeply")
    except ValueError as exc:  # e.g. an integer literal longer than Python's digit limit
        _fail(subject, "json_number", f"holds a number that cannot be read: {exc}")


def _fail(subject: str, code: str, message: str, got: Any = ...) -> NoReturn:
    raise ValidationFailed([Violation.of("", code, message, got)], subject=subject)


def _dump(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot write a non-finite decimal ({value}) as JSON")
        out.append(str(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(json.dumps(value, allow_nan=False))
    elif isinstance(value, Mapping):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _dump(item, out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _dump(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")


def dumps(value: Any) -> str:
    """Compact JSON; :class:`~decimal.Decimal` values are written as exact number literals."""
    out: list[str] = []
    _dump(value, out)
    return "".join(out)
