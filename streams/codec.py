"""Bytes for the roll-up core's messages and states: positional, exact and type-directed.

The faust agents exchange the core's frozen dataclasses over an internal topic and keep the
nodes' states in changelog-backed tables. Both need bytes; pickle would let anyone who can write
an internal topic run code in every worker, so this codec writes plain JSON (orjson) and reads it
back *guided by the dataclass annotations*: decimals travel as strings and come back as the same
:class:`~decimal.Decimal` (digits and exponent), bytes as base64 text, tuples stay tuples, enums
stay enums.

**Layout 1** (what :func:`encode` and :func:`encode_message` write): the byte ``0x01``, then JSON
with no field names, since the reader knows the type:

* a dataclass is the list of its fields' values in declaration order, without the trailing ones
  that equal their defaults (so the order of a dataclass's fields is part of the layout: add
  fields at the end, with a default);
* a mapping is a flat list ``[key, value, key, value, ...]``;
* a string of :data:`INTERN_MIN` characters or more is written once per record: a later
  occurrence is its number (0 for the first such string of the record, in the order written).
  Refs, metric names, grid-factor source names and content hashes recur in every value a row
  holds;
* likewise a :class:`~streams.rollup.SourceValue` met again in a record (the same object: a
  product's value is in its row as published, as offered and as its input role's value) is its
  number among the record's values, and reads back as one object again (:data:`_SHARED`);
* a value, a BOM, a footprint and a factor number their long strings in a scope of their own
  (:data:`_SCOPED`), so their bytes are the same in any record: the codec writes each instance
  once and reuses its bytes in every row and message it is in afterwards (a child's value is in
  its own row, its parents' rows and the messages to them).
* a message (and a field whose type is a union of several dataclasses) is ``[number, fields]``,
  the number of its class in :data:`_MESSAGE_CODES` (append only).

On the roll-up benchmark's 1k graph (``bench/bench_rollup.py``) a row is 1 329 bytes against
3 228 in layout 0 (mean of 2 064 rows), and writing a row again costs 51 µs of CPU against
101-146 µs in layout 0 (two runs), since its values' bytes are kept.
Errors name the field as before (``'$[1].child.id' must be str (got 7)``), found on the way
out of the fast path, which carries no paths.

**Layout 0** is the JSON with field names that workers wrote before (a value whose declared type
is a union of several dataclasses carries its class name in ``"@type"``, as every top-level
message does). It is still read (:func:`decode`, :func:`decode_pack` tell the layouts apart by
the first byte: JSON starts with ``{`` or ``[``), so a changelog or topic written before the
upgrade restores; :func:`encode_layout0` writes it, for tests and tools.

Three core types are not written field by field but through a *wire form* (:data:`_WIRE`):

* :class:`~streams.rollup.Identity` -- ``[footprint_id, content_hash]``. A rolled-up value's
  identity is pending (its result not built) while an update propagates; writing it resolves it
  (builds that result once, cached), so what crosses workers and rows carries plain strings.
  The rows the runtime writes hold the values of the batch's last results, whose identities the
  publish step resolves anyway (:mod:`streams._publish`).
* :class:`~streams.rollup.ProductState` -- its stored fields only (BOM, the latest value per
  input, sequence, the value published last); the running sums are derived and rebuilt on read.
* :class:`~streams.rollup.ProductRolledUp` -- with its full result (built if not yet).

>>> from pcf_exchange.streams.rollup import Ref
>>> decode(Ref, encode(Ref.product("urn:x")))
Ref(kind=<RefKind.PRODUCT: 'product'>, id='urn:x')
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import operator
import struct
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import Any, TypeVar, get_args, get_origin

import orjson

from pcf_exchange.contracts.errors import ContractError, PcfError
from pcf_exchange.streams import rollup

__all__ = [
    "CodecError",
    "decode",
    "decode_message",
    "decode_pack",
    "decode_rows",
    "encode",
    "encode_message",
    "encode_pack",
    "encode_rows",
]

T = TypeVar("T")

_MESSAGE_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        rollup.FootprintDeclared,
        rollup.FactorPublished,
        rollup.BomDeclared,
        rollup.ProductRolledUp,
        rollup.ProductOffered,
        rollup.Subscribe,
        rollup.Unsubscribe,
        rollup.ChildValue,
        rollup.ComponentState,
        rollup.ProductState,
    )
}


class CodecError(ContractError):
    """Bytes on an internal topic or changelog that do not decode into the expected type."""

    code = "codec"
    hint = "Only pcfx streams workers write the internal topic (pcf.rollup) and changelogs."

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path
        """The JSON path of the value that does not fit (``$`` is the whole message)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _ProductRow:
    """The wire form of a :class:`~streams.rollup.ProductState` (no sums: they are derived)."""

    product_id: str
    bom: rollup.Bom | None = None
    children: Mapping[rollup.Ref, rollup.ChildSlot] = dataclasses.field(default_factory=dict)
    sequence: int = 0
    value: rollup.SourceValue | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _RolledRow:
    """The wire form of a :class:`~streams.rollup.ProductRolledUp`: the value as its result."""

    product_id: str
    sequence: int
    result: rollup.RollupResult
    trace: tuple[str, ...] = ()


def _product_row(state: rollup.ProductState) -> _ProductRow:
    return _ProductRow(state.product_id, state.bom, state.children, state.sequence, state.value)


def _product_state(row: _ProductRow) -> rollup.ProductState:
    return rollup.ProductState(row.product_id, row.bom, row.children, row.sequence, row.value)


def _rolled_row(rolled: rollup.ProductRolledUp) -> _RolledRow:
    return _RolledRow(rolled.product_id, rolled.sequence, rolled.result, rolled.trace)


def _rolled(row: _RolledRow) -> rollup.ProductRolledUp:
    return rollup.ProductRolledUp(row.product_id, row.sequence, row.result, row.trace)


def _identity_row(identity: rollup.Identity) -> tuple[str, str]:
    return (identity.footprint_id, identity.content_hash)


def _identity(row: tuple[str, str]) -> rollup.Identity:
    return rollup.Identity(*row)


_WIRE: dict[type[Any], tuple[Any, Callable[[Any], Any], Callable[[Any], Any]]] = {
    rollup.Identity: (tuple[str, str], _identity_row, _identity),
    rollup.ProductState: (_ProductRow, _product_row, _product_state),
    rollup.ProductRolledUp: (_RolledRow, _rolled_row, _rolled),
}
"""Types written through a wire form: (wire type, to wire, from wire); see the docstring."""


def _flat_identity(data: dict[str, Any]) -> dict[str, Any]:
    """A value written before identities were lazy carried them as two fields: read them."""
    if "identity" not in data and "content_hash" in data and "footprint_id" in data:
        data = dict(data)
        data["identity"] = [data.pop("footprint_id"), data.pop("content_hash")]
    return data


_UPGRADES: dict[type[Any], Callable[[dict[str, Any]], dict[str, Any]]] = {
    rollup.SourceValue: _flat_identity,
}
"""Per dataclass, how the JSON an earlier worker wrote is read (rows outlive an upgrade)."""


def _plain(value: Any) -> Any:
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        encoder = _ENCODERS[type(value)] = _encoder(type(value))
    return encoder(value)


_ENCODERS: dict[type[Any], Callable[[Any], Any]] = {}
"""Per concrete type, how :func:`_plain` writes its values (found once per type)."""


def _same(value: Any) -> Any:
    return value


def _encoder(cls: type[Any]) -> Callable[[Any], Any]:
    wire = _WIRE.get(cls)
    if wire is not None:
        to_wire = wire[1]
        return lambda value: _plain(to_wire(value))
    if cls is type(None) or issubclass(cls, bool | int | str):
        return _same
    if issubclass(cls, Decimal):
        return str
    if issubclass(cls, bytes):
        return _base64
    if issubclass(cls, Enum):
        return _enum_value
    if dataclasses.is_dataclass(cls):
        names = tuple(f.name for f in dataclasses.fields(cls))
        return lambda value: {name: _plain(getattr(value, name)) for name in names}
    if issubclass(cls, Mapping):
        return _plain_mapping
    if issubclass(cls, tuple | list):
        return lambda value: [_plain(v) for v in value]
    if issubclass(cls, frozenset | set):
        return lambda value: [_plain(v) for v in sorted(value)]

    def refuse(value: Any) -> Any:
        raise CodecError(f"cannot encode a {type(value).__name__}")

    return refuse


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _enum_value(value: Enum) -> Any:
    return value.value


def _plain_mapping(value: Mapping[Any, Any]) -> Any:
    if all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    # Keys that are not strings (e.g. Ref) travel as [key, value] pairs.
    return [[_plain(k), _plain(v)] for k, v in value.items()]


def _tagged(value: Any) -> Any:
    data = _plain(value)
    if isinstance(data, dict):
        data["@type"] = type(value).__name__
    return data


@cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(tp: Any, data: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return data
    wire = _WIRE.get(tp) if isinstance(tp, type) else None
    if wire is not None:
        row = _build(wire[0], data, path)
        try:
            return wire[2](row)
        except (TypeError, ValueError, PcfError) as exc:
            raise CodecError(f"'{path}' is not a valid {tp.__name__}: {exc}", path=path) from exc
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if data is None:
            return None
        if len(options) == 1:
            return _build(options[0], data, path)
        name = data.get("@type") if isinstance(data, dict) else None
        for option in options:
            if getattr(option, "__name__", None) == name:
                return _build(option, data, path)
        raise CodecError(
            f"'{path}' must name one of {options} in '@type' (got {name!r})", path=path
        )
    if origin in (tuple,):
        args = get_args(tp)
        if not isinstance(data, list):
            raise CodecError(f"'{path}' must be a list (got {type(data).__name__})", path=path)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v, f"{path}[{i}]") for i, v in enumerate(data))
        return tuple(
            _build(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, data, strict=True))
        )
    if origin in (frozenset, set):
        (arg,) = get_args(tp)
        return frozenset(_build(arg, v, path) for v in data)
    if origin in (Mapping, dict, typing.Mapping):
        key_tp, value_tp = get_args(tp)
        if key_tp is not str and data != {}:  # an empty mapping encodes as {} whatever its keys
            if not isinstance(data, list):
                raise CodecError(
                    f"'{path}' must be a list of pairs (got {type(data).__name__})", path=path
                )
            return {
                _build(key_tp, k, f"{path}[{i}].key"): _build(value_tp, v, f"{path}[{i}].value")
                for i, (k, v) in enumerate(data)
            }
        if not isinstance(data, dict):
            raise CodecError(f"'{path}' must be an object (got {type(data).__name__})", path=path)
        return {k: _build(value_tp, v, f"{path}.{k}") for k, v in data.items()}
    if tp is Decimal:
        if not isinstance(data, str):
            raise CodecError(f"'{path}' must be a decimal string (got {data!r})", path=path)
        return Decimal(data)
    if tp is bytes:
        try:
            return _bytes(data)
        except (_Mismatch, binascii.Error):
            got = f"{data!r:.40}"
            raise CodecError(f"'{path}' must be base64 text (got {got})", path=path) from None
    if isinstance(tp, type) and issubclass(tp, Enum):
        if data not in [m.value for m in tp]:  # (a list: data may be unhashable)
            allowed = ", ".join(repr(m.value) for m in tp)
            raise CodecError(f"'{path}' must be one of {allowed} (got {data!r})", path=path)
        return tp(data)
    if tp in (str, int, bool):
        if type(data) is not tp:
            raise CodecError(f"'{path}' must be {tp.__name__} (got {data!r})", path=path)
        return data
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(data, dict):
            raise CodecError(f"'{path}' must be an object (got {type(data).__name__})", path=path)
        hints = _hints(tp)
        kwargs = {}
        upgrade = _UPGRADES.get(tp)
        if upgrade is not None:
            data = upgrade(data)
        for f in dataclasses.fields(tp):
            if not f.init:
                continue
            if f.name in data:
                kwargs[f.name] = _build(hints[f.name], data[f.name], f"{path}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise CodecError(f"'{path}.{f.name}' is required", path=f"{path}.{f.name}")
        try:
            return tp(**kwargs)
        except (TypeError, ValueError, PcfError) as exc:  # the class's own checks
            raise CodecError(f"'{path}' is not a valid {tp.__name__}: {exc}", path=path) from exc
    raise CodecError(f"'{path}' has a type the codec does not know: {tp!r}", path=path)


class _Mismatch(Exception):
    """The fast path met data it does not expect: :func:`_build` says exactly what is wrong."""


@cache
def _decoder(tp: Any) -> Callable[[Any], Any]:
    """A function that builds *tp* from JSON data as :func:`_build` does, without the paths in
    error messages (any surprise raises, and :func:`_checked` re-runs :func:`_build`)."""
    origin = get_origin(tp)
    if tp is Any:
        return _same
    wire = _WIRE.get(tp) if isinstance(tp, type) else None
    if wire is not None:
        of_row, from_wire = _decoder(wire[0]), wire[2]
        return lambda data: from_wire(of_row(data))
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if len(options) == 1:
            only = _decoder(options[0])
            return lambda data: None if data is None else only(data)
        by_name = {getattr(o, "__name__", None): o for o in options}

        def union(data: Any) -> Any:
            if data is None:
                return None
            return _decoder(by_name[data["@type"]])(data)

        return union
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _decoder(args[0])
            return lambda data: tuple([item(v) for v in _list(data)])
        items = tuple(_decoder(a) for a in args)
        return lambda data: tuple([f(v) for f, v in zip(items, _list(data), strict=True)])
    if origin in (frozenset, set):
        (arg,) = get_args(tp)
        member = _decoder(arg)
        return lambda data: frozenset([member(v) for v in data])
    if origin in (Mapping, dict, typing.Mapping):
        key_tp, value_tp = get_args(tp)
        value_of = _decoder(value_tp)
        if key_tp is str:
            return lambda data: {k: value_of(v) for k, v in _dict(data).items()}
        key_of = _decoder(key_tp)
        return lambda data: {} if data == {} else {key_of(k): value_of(v) for k, v in _list(data)}
    if tp is Decimal:
        return _decimal
    if tp is bytes:
        return _bytes
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp
    if tp in (str, int, bool):

        def scalar(data: Any) -> Any:
            if type(data) is not tp:
                raise _Mismatch
            return data

        return scalar
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        cls: type[Any] = tp
        fields: list[tuple[str, Callable[[Any], Any]]] = []
        upgrade = _UPGRADES.get(cls)

        def instance(data: Any) -> Any:
            if not fields:  # resolved on first use: a dataclass may refer to itself
                hints = _hints(tp)
                fields.extend(
                    (f.name, _decoder(hints[f.name])) for f in dataclasses.fields(cls) if f.init
                )
            d = _dict(data)
            if upgrade is not None:
                d = upgrade(d)
            return cls(**{name: of(d[name]) for name, of in fields if name in d})

        return instance
    raise CodecError(f"the codec does not know the type {tp!r}")


def _list(data: Any) -> list[Any]:
    if type(data) is not list:
        raise _Mismatch
    return data


def _dict(data: Any) -> dict[str, Any]:
    if type(data) is not dict:
        raise _Mismatch
    return data


def _decimal(data: Any) -> Decimal:
    if type(data) is not str:
        raise _Mismatch
    return Decimal(data)


def _bytes(data: Any) -> bytes:
    if type(data) is not str:
        raise _Mismatch
    return base64.b64decode(data, validate=True)


def _checked(tp: Any, raw: Any, path: str = "$") -> Any:
    """*raw* built into *tp*: the fast path, else :func:`_build` with its precise errors."""
    try:
        return _decoder(tp)(raw)
    except Exception:
        return _build(tp, raw, path)


def _loads(data: bytes | memoryview) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:  # (a ValueError; also for bytes that are not UTF-8)
        raise CodecError(f"not JSON: {exc}") from exc


# --- layout 1: positional ------------------------------------------------------------------------

LAYOUT = 1
"""The layout :func:`encode` and :func:`encode_message` write (the first byte of their bytes)."""

_V1 = b"\x01"

INTERN_MIN = 8
"""Strings at least this long are written once per record; a later occurrence is its number."""

_MESSAGE_CODES: tuple[type[Any], ...] = (
    rollup.FootprintDeclared,
    rollup.FactorPublished,
    rollup.BomDeclared,
    rollup.ProductRolledUp,
    rollup.ProductOffered,
    rollup.Subscribe,
    rollup.Unsubscribe,
    rollup.ChildValue,
    rollup.ComponentState,
    rollup.ProductState,
)
"""A message's class on the wire (layout 1): its number here. Append only: the numbers are the
layout, as much as the order of each dataclass's fields is."""
_CODE_OF = {cls: code for code, cls in enumerate(_MESSAGE_CODES)}

_SHARED: frozenset[type[Any]] = frozenset({rollup.SourceValue})
"""Classes whose instance, met again in the same record (the same object), is written as its
number: a product's value is in its row three times (published, offered, as an input's value)."""


_SCOPED: frozenset[type[Any]] = frozenset(
    {rollup.SourceValue, rollup.Bom, rollup.ComponentFootprint, rollup.Factor}
)
"""Immutable classes whose long strings are numbered apart from the record's (a scope of their
own), so that an instance's bytes do not depend on the record it is in: they are written once
per instance and kept (:data:`_WRITTEN_MAX` per class), since the same value is in many rows and
messages (a child's value: its own row, each parent's row, each ``ChildValue``)."""

_WRITTEN_MAX = 4096
"""Most instances per class of :data:`_SCOPED` whose bytes the codec keeps (the oldest written
goes first). Each is kept with its instance, and so with everything hung on it (a value's
lazily built result and lineage: about 10 KB at three lines): at 20 000 a worker held 200+ MB
of superseded values, a new one per ancestor per update until the cache was full (the soak's
15 MB a minute, issue #22). 4 096 holds the values of the last batches, which are the ones
written again (a child's value in its parents' rows and messages); on the 300-product soak
graph 2 000 cost no measurable CPU against 20 000 (15.1 vs 16.6 s for 1 536 updates)."""


class _Interned:
    """While encoding a record: each long string and each shared object written so far, with
    its number (separate counts)."""

    __slots__ = ("objects", "strings")

    def __init__(self) -> None:
        self.strings: dict[str, int] = {}
        self.objects: dict[int, int] = {}  # id() -> number (the record holds the objects)


class _Strings:
    """While decoding a record: the long strings and shared objects read so far, in order."""

    __slots__ = ("objects", "strings")

    def __init__(self) -> None:
        self.strings: list[str] = []
        self.objects: list[Any] = []


_Enc = Callable[[Any, _Interned], Any]
_Dec = Callable[[Any, _Strings], Any]


class _Bad(Exception):
    """Layout-1 data that does not fit its type; :func:`_v1` turns it into a
    :class:`CodecError` whose path is built on the way out (no paths on the fast path)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.parts: list[str] = []


def _str_out(value: str, seen: _Interned) -> Any:
    if len(value) >= INTERN_MIN:
        strings = seen.strings
        number = strings.get(value)
        if number is not None:
            return number
        strings[value] = len(strings)
    return value


def _str_in(data: Any, seen: _Strings) -> str:
    if type(data) is str:
        if len(data) >= INTERN_MIN:
            seen.strings.append(data)
        return data
    if type(data) is int and 0 <= data < len(seen.strings):
        return seen.strings[data]
    raise _Bad(f"must be str (got {data!r:.40})")


def _same_out(value: Any, seen: _Interned) -> Any:
    return value


def _decimal_out(value: Decimal, seen: _Interned) -> str:
    return str(value)


def _decimal_in(data: Any, seen: _Strings) -> Decimal:
    if type(data) is not str:
        raise _Bad(f"must be a decimal string (got {data!r:.40})")
    try:
        return Decimal(data)
    except ArithmeticError:
        raise _Bad(f"must be a decimal string (got {data!r:.40})") from None


def _bytes_out(value: bytes, seen: _Interned) -> str:
    return base64.b64encode(value).decode("ascii")


def _bytes_in(data: Any, seen: _Strings) -> bytes:
    try:
        return _bytes(data)
    except (_Mismatch, binascii.Error):
        raise _Bad(f"must be base64 text (got {data!r:.40})") from None


def _any_out(value: Any, seen: _Interned) -> Any:
    """A value whose declared type is not known (``Any``, or the top of :func:`encode`)."""
    return _out(type(value))(value, seen)


def _out(tp: Any) -> _Enc:
    """How a value declared as *tp* is written in layout 1 (see the module docstring)."""
    return _out_of(tp)


@cache
def _out_of(tp: Any) -> _Enc:
    origin = get_origin(tp)
    if tp is Any:
        return _any_out
    wire = _WIRE.get(tp) if isinstance(tp, type) else None
    if wire is not None:
        to_wire, row_out = wire[1], _out(wire[0])
        return lambda value, seen: row_out(to_wire(value), seen)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if len(options) == 1:
            only = _out(options[0])
            return lambda value, seen: None if value is None else only(value, seen)
        return lambda value, seen: None if value is None else _tagged_out(value, seen)
    if origin is tuple or tp is tuple or origin is list or tp is list:
        args = get_args(tp)
        if (len(args) == 2 and args[1] is Ellipsis) or len(args) == 1:
            item = _out(args[0])
            return lambda value, seen: [item(v, seen) for v in value]
        if args:
            items = tuple(_out(a) for a in args)
            return lambda value, seen: [f(v, seen) for f, v in zip(items, value, strict=True)]
        return lambda value, seen: [_any_out(v, seen) for v in value]
    if origin in (frozenset, set) or tp in (frozenset, set):
        member = _out(get_args(tp)[0]) if get_args(tp) else _any_out
        return lambda value, seen: [member(v, seen) for v in sorted(value)]
    if origin in (Mapping, dict, typing.Mapping) or tp is dict:
        key_out, value_out = (_out(a) for a in get_args(tp)) if get_args(tp) else (_any_out,) * 2

        def mapping(value: Mapping[Any, Any], seen: _Interned) -> list[Any]:
            flat: list[Any] = []
            for k, v in value.items():
                flat.append(key_out(k, seen))
                flat.append(value_out(v, seen))
            return flat

        return mapping
    if tp is type(None) or tp in (int, bool):
        return _same_out
    if tp is str:
        return _str_out
    if tp is Decimal:
        return _decimal_out
    if tp is bytes:
        return _bytes_out
    if isinstance(tp, type) and issubclass(tp, Enum):
        return lambda value, seen: value.value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_out(tp)
    if isinstance(tp, type) and issubclass(tp, Mapping):
        return _out(Mapping[Any, Any])

    def refuse(value: Any, seen: _Interned) -> Any:
        raise CodecError(f"cannot encode a {type(value).__name__}")

    return refuse


def _dataclass_out(cls: type[Any]) -> _Enc:
    """A dataclass as the list of its fields' values in declaration order, without the trailing
    ones that equal their defaults."""
    encoders: list[_Enc] = []
    defaults: list[Any] = []
    getter: list[Callable[[Any], tuple[Any, ...]]] = []

    def instance(value: Any, seen: _Interned) -> Any:
        if not getter:  # resolved on first use: a dataclass may refer to itself
            hints = _hints(typing.cast(Any, cls))
            names = []
            for f in dataclasses.fields(cls):
                if f.init:
                    default = f.default
                    if f.default_factory is not dataclasses.MISSING:
                        default = f.default_factory()
                    names.append(f.name)
                    encoders.append(_out(hints[f.name]))
                    defaults.append(default)
            get = operator.attrgetter(*names)
            getter.append(get if len(names) > 1 else lambda v: (get(v),))
        if shared:
            number = seen.objects.get(id(value))
            if number is not None:
                return number
        if scoped:
            hit = written.get(id(value))
            if hit is not None and hit[0] is value:
                out: Any = hit[1]
            else:
                out = orjson.Fragment(orjson.dumps(fields(value, _Interned())))
                if len(written) >= _WRITTEN_MAX:
                    del written[next(iter(written))]  # the oldest
                written[id(value)] = (value, out)  # (holds the value: its id stays its own)
        else:
            out = fields(value, seen)
        if shared:  # (numbered once written, as the reader numbers it once read)
            seen.objects[id(value)] = len(seen.objects)
        return out

    def fields(value: Any, seen: _Interned) -> list[Any]:
        values = getter[0](value)
        n = len(values)
        while n and (values[n - 1] is defaults[n - 1] or values[n - 1] == defaults[n - 1]):
            n -= 1
        return [of(v, seen) for of, v in zip(encoders, values[:n], strict=False)]

    shared = cls in _SHARED
    scoped = cls in _SCOPED
    written: dict[int, tuple[Any, orjson.Fragment]] = {}
    return instance


def _tagged_out(value: Any, seen: _Interned) -> list[Any]:
    code = _CODE_OF.get(type(value))
    if code is None:
        raise CodecError(f"cannot encode a {type(value).__name__} as a message")
    return [code, _out(type(value))(value, seen)]


def _in(tp: Any) -> _Dec:
    """How data of layout 1 declared as *tp* is read (raises :class:`_Bad`)."""
    return _in_of(tp)


@cache
def _in_of(tp: Any) -> _Dec:
    origin = get_origin(tp)
    if tp is Any:
        return lambda data, seen: data
    wire = _WIRE.get(tp) if isinstance(tp, type) else None
    if wire is not None:
        row_in, from_wire, name = _in(wire[0]), wire[2], tp.__name__

        def wired(data: Any, seen: _Strings) -> Any:
            row = row_in(data, seen)
            try:
                return from_wire(row)
            except (TypeError, ValueError, PcfError) as exc:
                raise _Bad(f"is not a valid {name}: {exc}") from exc

        return wired
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if len(options) == 1:
            only = _in(options[0])
            return lambda data, seen: None if data is None else only(data, seen)
        allowed = tuple(o for o in options if o in _CODE_OF)
        return lambda data, seen: None if data is None else _tagged_in(data, seen, allowed)
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _in(args[0])

            def many(data: Any, seen: _Strings) -> tuple[Any, ...]:
                items = _array(data)
                out: list[Any] = []
                try:
                    for v in items:
                        out.append(item(v, seen))
                except _Bad as bad:
                    bad.parts.append(f"[{len(out)}]")
                    raise
                return tuple(out)

            return many
        fixed = tuple(_in(a) for a in args)

        def each(data: Any, seen: _Strings) -> tuple[Any, ...]:
            items = _array(data)
            if len(items) != len(fixed):
                raise _Bad(f"must be a list of {len(fixed)} (got {len(items)})")
            out: list[Any] = []
            try:
                for of, v in zip(fixed, items, strict=True):
                    out.append(of(v, seen))
            except _Bad as bad:
                bad.parts.append(f"[{len(out)}]")
                raise
            return tuple(out)

        return each
    if origin in (frozenset, set):
        member = _in(get_args(tp)[0])
        return lambda data, seen: frozenset([member(v, seen) for v in _array(data)])
    if origin in (Mapping, dict, typing.Mapping):
        key_in, value_in = (_in(a) for a in get_args(tp))

        def mapping(data: Any, seen: _Strings) -> dict[Any, Any]:
            flat = _array(data)
            if len(flat) % 2:
                raise _Bad(f"must be a list of keys and values (got {len(flat)} items)")
            out: dict[Any, Any] = {}
            i = 0
            try:
                for i in range(0, len(flat), 2):
                    k = key_in(flat[i], seen)
                    out[k] = value_in(flat[i + 1], seen)
            except _Bad as bad:
                bad.parts.append(f"[{i // 2}]")
                raise
            return out

        return mapping
    if tp is str:
        return _str_in
    if tp is Decimal:
        return _decimal_in
    if tp is bytes:
        return _bytes_in
    if tp in (int, bool):

        def scalar(data: Any, seen: _Strings) -> Any:
            if type(data) is not tp:
                raise _Bad(f"must be {tp.__name__} (got {data!r:.40})")
            return data

        return scalar
    if isinstance(tp, type) and issubclass(tp, Enum):
        enum: type[Enum] = tp
        members = {m.value: m for m in enum}
        values = ", ".join(repr(v) for v in members)

        def member(data: Any, seen: _Strings) -> Any:
            try:
                return members[data]
            except (KeyError, TypeError):
                raise _Bad(f"must be one of {values} (got {data!r:.40})") from None

        return member
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_in(tp)
    raise CodecError(f"the codec does not know the type {tp!r}")


def _dataclass_in(cls: type[Any]) -> _Dec:
    fields: list[tuple[str, _Dec]] = []
    required = [0]

    def instance(data: Any, seen: _Strings) -> Any:
        if not fields:  # resolved on first use: a dataclass may refer to itself
            hints = _hints(typing.cast(Any, cls))
            init = [f for f in dataclasses.fields(cls) if f.init]
            fields.extend((f.name, _in(hints[f.name])) for f in init)
            required[0] = sum(
                1
                for f in init
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            )
        if shared and type(data) is int:
            if 0 <= data < len(seen.objects):
                return seen.objects[data]
            raise _Bad(f"must be a {cls.__name__} or the number of one read before (got {data})")
        items = _array(data)
        if len(items) < required[0]:
            bad = _Bad("is required")
            bad.parts.append(f".{fields[len(items)][0]}")
            raise bad
        if len(items) > len(fields):
            raise _Bad(f"must have at most {len(fields)} fields (got {len(items)})")
        kwargs: dict[str, Any] = {}
        inner = seen
        if scoped:
            inner = _Strings()
            inner.objects = seen.objects
        try:
            for (name, of), v in zip(fields, items, strict=False):
                kwargs[name] = of(v, inner)
        except _Bad as bad:
            bad.parts.append(f".{fields[len(kwargs)][0]}")
            raise
        try:
            built = cls(**kwargs)
        except (TypeError, ValueError, PcfError) as exc:  # the class's own checks
            raise _Bad(f"is not a valid {cls.__name__}: {exc}") from exc
        if shared:
            seen.objects.append(built)
        return built

    shared = cls in _SHARED
    scoped = cls in _SCOPED
    return instance


def _tagged_in(data: Any, seen: _Strings, allowed: tuple[type[Any], ...]) -> Any:
    items = _array(data)
    code = items[0] if items else None
    cls = _MESSAGE_CODES[code] if type(code) is int and 0 <= code < len(_MESSAGE_CODES) else None
    if cls is None or cls not in allowed or len(items) != 2:
        bad = _Bad(f"must be one of {sorted(c.__name__ for c in allowed)} (got {code!r:.40})")
        bad.parts.append("[0]")
        raise bad
    try:
        return _in(cls)(items[1], seen)
    except _Bad as bad:
        bad.parts.append("[1]")
        raise


def _array(data: Any) -> list[Any]:
    if type(data) is not list:
        raise _Bad(f"must be a list (got {type(data).__name__})")
    return data


def _v1(decoder: _Dec, raw: Any, path: str) -> Any:
    """*raw* (layout 1) read by *decoder*, or a :class:`CodecError` naming the field."""
    try:
        return decoder(raw, _Strings())
    except _Bad as bad:
        where = path + "".join(reversed(bad.parts))
        raise CodecError(f"'{where}' {bad.message}", path=where) from None


def _loads_v1(data: bytes) -> Any:
    return _loads(memoryview(data)[1:])


_ALL_MESSAGES: tuple[type[Any], ...] = _MESSAGE_CODES


# --- the API -------------------------------------------------------------------------------------


def encode(value: Any) -> bytes:
    """Layout-1 bytes of a core dataclass (or any value built from the supported types)."""
    return _V1 + orjson.dumps(_out(type(value))(value, _Interned()))


def decode(tp: type[T], data: bytes) -> T:
    """Rebuild a value of type *tp* from :func:`encode`'s bytes (or the JSON of layout 0)."""
    if data[:1] == _V1:
        built: T = _v1(_in(tp), _loads_v1(data), "$")
        return built
    legacy: T = _checked(tp, _loads(data))
    return legacy


def encode_message(message: Any) -> bytes:
    """Layout-1 bytes of a message or state, tagged with its class's number."""
    return _V1 + orjson.dumps(_tagged_out(message, _Interned()))


def decode_message(data: bytes) -> Any:
    """Rebuild a message or state written by :func:`encode_message` (either layout)."""
    if data[:1] == _V1:
        return _v1(_message_in, _loads_v1(data), "$")
    return _message(_loads(data), "$")


def _message_in(data: Any, seen: _Strings) -> Any:
    return _tagged_in(data, seen, _ALL_MESSAGES)


def encode_pack(messages: Iterable[bytes]) -> bytes:
    """One record of messages already encoded by :func:`encode_message` (layout 1: a list of
    them, each with its own strings)."""
    return _V1 + b"[" + b",".join(m[1:] for m in messages) + b"]"


def decode_pack(data: bytes) -> list[Any]:
    """The messages of :func:`encode_pack`'s bytes, or the one message of
    :func:`encode_message`'s, in either layout (layout 0 also as workers wrote it before they
    packed): an upgrade reads what its predecessors left on the topic."""
    if data[:1] == _V1:
        raw = _loads_v1(data)
        if type(raw) is list and raw and type(raw[0]) is int:
            return [_v1(_message_in, raw, "$")]
        if type(raw) is not list:
            raise CodecError(f"'$' must be a list (got {type(raw).__name__})", path="$")
        return [_v1(_message_in, item, f"$[{i}]") for i, item in enumerate(raw)]
    raw = _loads(data)
    if not isinstance(raw, list):
        return [_message(raw, "$")]
    return [_message(item, f"$[{i}]") for i, item in enumerate(raw)]


def encode_layout0(value: Any) -> bytes:
    """The JSON with field names that workers wrote before layout 1 (what a changelog from
    before the upgrade holds; for tests and tools: the workers write layout 1)."""
    return orjson.dumps(_plain(value))


def encode_message_layout0(message: Any) -> bytes:
    """A message as workers wrote it before layout 1 (see :func:`encode_layout0`)."""
    return orjson.dumps(_tagged(message))


def _message(raw: Any, path: str) -> Any:
    name = raw.get("@type") if isinstance(raw, dict) else None
    cls = _MESSAGE_TYPES.get(name or "")
    if cls is None:
        raise CodecError(
            f"'{path}.@type' must be one of {sorted(_MESSAGE_TYPES)} (got {name!r})",
            path=f"{path}.@type",
        )
    return _checked(cls, raw, path)


# --- a batch's rows of one partition: one changelog record ---------------------------------------

_GROUP = b"\x02"
_LENGTH = struct.Struct(">I")


def encode_rows(rows: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Several table rows (key, stored bytes) as one record: the byte ``0x02``, then per row
    its key and its bytes, each after its length (4 bytes, big-endian). The rows' bytes are
    kept as they are (no re-encoding), so reading a row back gives the bytes written."""
    parts = [_GROUP]
    for key, value in rows:
        parts += (_LENGTH.pack(len(key)), key, _LENGTH.pack(len(value)), value)
    return b"".join(parts)


def decode_rows(data: bytes) -> list[tuple[bytes, bytes]]:
    """The rows of :func:`encode_rows`'s bytes, in order, else a :class:`CodecError` saying
    where the record stops making sense."""
    if data[:1] != _GROUP:
        raise CodecError(f"a group of rows must start with 0x02 (got {data[:1]!r})", path="$")
    out: list[tuple[bytes, bytes]] = []
    at, end = 1, len(data)
    while at < end:
        pair = []
        for what in ("key", "value"):
            if at + 4 > end:
                where = f"$[{len(out)}].{what}"
                raise CodecError(f"'{where}' is cut off (the record ends)", path=where)
            (n,) = _LENGTH.unpack_from(data, at)
            at += 4
            if at + n > end:
                where = f"$[{len(out)}].{what}"
                raise CodecError(
                    f"'{where}' must be {n} bytes long (got {end - at}: the record ends)",
                    path=where,
                )
            pair.append(data[at : at + n])
            at += n
        out.append((pair[0], pair[1]))
    return out
