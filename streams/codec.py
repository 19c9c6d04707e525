"""JSON bytes for the roll-up core's messages and states, exact and type-directed.

The faust agents exchange the core's frozen dataclasses over an internal topic and keep the
nodes' states in changelog-backed tables. Both need bytes; pickle would let anyone who can write
an internal topic run code in every worker, so this codec writes plain JSON and reads it back
*guided by the dataclass annotations*: decimals travel as strings and come back as the same
:class:`~decimal.Decimal` (digits and exponent), bytes as base64 text, tuples stay tuples, enums
stay enums.

A value whose declared type is a union of several dataclasses carries its class name in
``"@type"``; top-level messages always do (:func:`encode_message`).

Three core types are not written field by field but through a *wire form* (:data:`_WIRE`):

* :class:`~streams.rollup.Identity` -- ``[footprint_id, content_hash]``. A rolled-up value's
  identity is pending (its result not built) while an update propagates; writing it resolves it
  (builds that result once, cached), so what crosses workers and rows carries plain strings.
* :class:`~streams.rollup.ProductState` -- its stored fields only (BOM, the latest value per
  input, sequence, the value published last); the running sums are derived and rebuilt on read.
* :class:`~streams.rollup.ProductRolledUp` -- with its full result (built if not yet).

>>> from streams.rollup import Ref
>>> decode(Ref, encode(Ref.product("urn:x")))
Ref(kind=<RefKind.PRODUCT: 'product'>, id='urn:x')
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import Any, TypeVar, get_args, get_origin

import orjson

from contracts.errors import ContractError, PcfError
from streams import rollup

__all__ = [
    "CodecError",
    "decode",
    "decode_message",
    "decode_pack",
    "encode",
    "encode_message",
    "encode_pack",
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


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:  # (a ValueError; also for bytes that are not UTF-8)
        raise CodecError(f"not JSON: {exc}") from exc


def encode(value: Any) -> bytes:
    """Compact JSON bytes of a core dataclass (or any value built from the supported types)."""
    return orjson.dumps(_plain(value))


def decode(tp: type[T], data: bytes) -> T:
    """Rebuild a value of type *tp* from :func:`encode`'s bytes."""
    raw = _loads(data)
    built: T = _checked(tp, raw)
    return built


def encode_message(message: Any) -> bytes:
    """JSON bytes of a message or state, tagged with its class name."""
    return orjson.dumps(_tagged(message))


def decode_message(data: bytes) -> Any:
    """Rebuild a message or state written by :func:`encode_message`."""
    return _message(_loads(data), "$")


def encode_pack(messages: Iterable[bytes]) -> bytes:
    """One JSON array of messages already encoded by :func:`encode_message`."""
    return b"[" + b",".join(messages) + b"]"


def decode_pack(data: bytes) -> list[Any]:
    """The messages of :func:`encode_pack`'s bytes, or the one message of
    :func:`encode_message`'s (what workers wrote before they packed: an upgrade reads them)."""
    raw = _loads(data)
    if not isinstance(raw, list):
        return [_message(raw, "$")]
    return [_message(item, f"$[{i}]") for i, item in enumerate(raw)]


def _message(raw: Any, path: str) -> Any:
    name = raw.get("@type") if isinstance(raw, dict) else None
    cls = _MESSAGE_TYPES.get(name or "")
    if cls is None:
        raise CodecError(
            f"'{path}.@type' must be one of {sorted(_MESSAGE_TYPES)} (got {name!r})",
            path=f"{path}.@type",
        )
    return _checked(cls, raw, path)
