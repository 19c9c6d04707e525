"""Canonical bytes for signatures.

We never sign Kafka message bytes or pretty-printed JSON: a signature covers a *canonical*
encoding of the typed record, wrapped in a PAE (pre-authentication encoding, as DSSE does) that
binds the payload type, so a footprint signature can never be replayed as a BOM signature.

Canonical JSON here is RFC 8785 (JCS) restricted to what our records hold: objects with keys
sorted by code point, no insignificant whitespace, UTF-8, strings escaped minimally, integers as
digits, booleans and null. Binary floats are refused: emission values are decimals and travel as
strings (PACT v3), so a float in a record to be signed is a bug upstream.

>>> canonical_json({"b": "1.50", "a": [1, True, None]})
b'{"a":[1,true,null],"b":"1.50"}'
>>> pae("application/vnd.pcfx.footprint+json", b"{}")
b'PCFXv1 35 application/vnd.pcfx.footprint+json 2 {}'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

__all__ = ["canonical_json", "pae", "to_canonical_value"]

_PAE_PREFIX = b"PCFXv1"


def to_canonical_value(value: Any, path: str = "$") -> Any:
    """Turn *value* into plain JSON types, rendering decimals, UUIDs and datetimes as strings."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        raise TypeError(f"'{path}' must be a decimal string, not a binary float (got {value!r})")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"'{path}' must be a finite decimal (got {value})")
        return format(value, "f")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_canonical_value(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [to_canonical_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"'{path}' has a type canonical JSON cannot hold (got {type(value).__name__})")


def _plain(value: Any) -> bool:
    """Whether *value* holds only JSON-native types (exact ``str``/``int``/``bool``/``None``,
    ``dict`` with ``str`` keys, ``list``/``tuple``), so :func:`to_canonical_value` would return
    an equal value. A fast check without field paths: the paths are built only on the slow way.
    """
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            t = type(item)
            if not (t is str or t is int or t is bool or item is None or _plain(item)):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:
            t = type(item)
            if not (t is str or t is int or t is bool or item is None or _plain(item)):
                return False
        return True
    return kind is str or kind is int or kind is bool or value is None


_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode
"""The reference encoder (built once: ``json.dumps`` would build one on every call)."""


def _dumps(value: Any) -> bytes:
    """:data:`_encode`'s UTF-8 bytes, written by orjson (several times faster) where it gives the
    same bytes: for JSON-native values it escapes the same characters the same way and sorts keys
    by code point. What orjson refuses (integers beyond 64 bits, lone surrogates, non-JSON types)
    goes to :data:`_encode`, which converts or raises exactly as before."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return _encode(value).encode("utf-8")


def canonical_json(value: Any, *, checked: bool = False) -> bytes:
    """RFC 8785-style canonical JSON bytes of *value* (see the module docstring).

    *checked*: the caller guarantees *value* holds no binary float and no non-string key (it
    built the value from checked parts), so the walk that looks for them is skipped. The bytes
    are the same for such values; other non-JSON types (decimals, UUIDs, ...) are still
    converted, since the encoder refuses them. Never pass it for a value read from outside.
    """
    if checked or _plain(value):
        try:
            return _dumps(value)
        except TypeError:
            if not checked:
                raise
    return _encode(to_canonical_value(value)).encode("utf-8")


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE-style pre-authentication encoding: ``PCFXv1 <len type> <type> <len body> <body>``."""
    kind = payload_type.encode("utf-8")
    return b" ".join([_PAE_PREFIX, str(len(kind)).encode(), kind, str(len(body)).encode(), body])
