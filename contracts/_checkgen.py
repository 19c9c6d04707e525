"""Validators compiled from rule tables: a JSON object's field rules as one generated function.

The fast path (:mod:`contracts._fast`) answers *does the model certainly accept this JSON?* for
every footprint the streams ingest and every footprint ``pcfx publish`` reads from a file.
Interpreting a table of per-field predicates costs a Python call (and a dict dispatch) per field
and per nested check: ~55 µs for a PACT footprint of ~60 fields. This module turns the same table
into straight-line Python source once, at import, and ``exec``\\s it: one function per object
whose body is the fields' checks inlined as expressions (``type(v) is str and len(v) <= 64 and
DEC(v) is not None``), with no call per field. The gateway compiles its policy extractors per
record layout the same way (:mod:`gateway`); here the layout is a schema version's rules.

**What a table says.** An :class:`Obj` lists its fields, each with a :data:`Check`:

- :class:`Str` (length bounds), :class:`Pattern` (a regex, full match, a length bound),
  :class:`OneOf` (a closed set of strings), :class:`Bool` (``true``/``false`` only),
  :class:`Instant` (RFC 3339 text the models read);
- :class:`Dec`: PACT decimal text (``[+-]digits[.digits]``, at most 64 characters) with a
  sign rule or range, read from the text where possible (its first character is its sign);
  ``written=True`` (on :class:`Dec` and :class:`Instant`) also asks for the exact text the
  models write back (``producers._fastpath`` checks the rules and that form in one pass);
- :class:`List` (bounds, an item check, items unique, optionally ignoring case);
- a nested :class:`Obj`; :class:`Recurring` (answered once per distinct value: sub-objects that
  recur record after record); :class:`Call` (a hand-written predicate, for what a table cannot say).

An :class:`Obj`'s ``post`` predicate runs after its fields passed: the cross-field rules.
``required`` fields must be present and not ``null``; ``not_null`` fields may be absent but not
``null``; every other field may be absent or ``null``; an unknown field fails. Exactly the rules
of :func:`contracts._fast`'s tables before they were compiled, and still the models' rules:
``tests/contracts/test_fast_path.py`` runs every bad-record case and generated mutations through
both the compiled validator and the models.

A generated function answers ``True`` only when every rule holds; ``False`` means "ask the
model" (which names the field and what was expected). :func:`source_of` returns the generated
source, for reading and for the tests.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import orjson

from pcf_exchange.contracts._types import _DECIMAL_RE, _RFC3339_RE, MAX_DECIMAL_CHARS

__all__ = [
    "WRITTEN_DECIMAL_RE",
    "Bool",
    "Call",
    "Check",
    "Dec",
    "Instant",
    "List",
    "Obj",
    "OneOf",
    "Pattern",
    "Recurring",
    "Str",
    "compile_object",
    "instant",
    "is_zero",
    "source_of",
    "written_datetime",
    "written_instant",
]


# -- the rule table's vocabulary ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Str:
    """A string of ``low..high`` characters."""

    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Pattern:
    """A string of at most ``high`` characters that *regex* matches in full."""

    regex: re.Pattern[str]
    high: int


@dataclass(frozen=True, slots=True)
class OneOf:
    """One of a closed set of strings."""

    choices: frozenset[str]


@dataclass(frozen=True, slots=True)
class Bool:
    """JSON ``true`` or ``false`` (not 0/1, not text)."""


@dataclass(frozen=True, slots=True)
class Instant:
    """RFC 3339 text that the models read as an instant; ``written``: and exactly as the models
    write it (:func:`written_instant`)."""

    written: bool = False


DEC_KINDS: Final = frozenset(
    {"any", "non_neg", "positive", "neg_or_zero", "percent", "one_to_five"}
)
"""``any``: a decimal; ``non_neg``: >= 0 and not ``-0`` (the model refuses a signed zero);
``positive``: > 0; ``neg_or_zero``: <= 0; ``percent``: 0..100, unsigned; ``one_to_five``: 1..5."""


@dataclass(frozen=True, slots=True)
class Dec:
    """PACT decimal text with a sign rule or range (:data:`DEC_KINDS`); ``written``: and exactly
    as the models write it (:data:`WRITTEN_DECIMAL_RE`)."""

    kind: str = "any"
    written: bool = False

    def __post_init__(self) -> None:
        if self.kind not in DEC_KINDS:
            raise ValueError(f"Dec kind must be one of {sorted(DEC_KINDS)} (got {self.kind!r})")


@dataclass(frozen=True, slots=True)
class List:
    """A list of ``low..high`` items, each passing *item*; ``unique``: no two equal
    (``fold_case``: no two equal ignoring case)."""

    item: Check
    low: int
    high: int
    unique: bool = True
    fold_case: bool = False


@dataclass(frozen=True, slots=True)
class Call:
    """A hand-written predicate (``True`` only when the model accepts the value)."""

    predicate: Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class Recurring:
    """*check*, answered once per distinct value (keyed by the value's JSON bytes)."""

    check: Check


@dataclass(frozen=True)
class Obj:
    """A JSON object: its fields' checks, which must be present, which may not be ``null``,
    and the cross-field rules (*post*, run once the fields passed)."""

    fields: Mapping[str, Check]
    required: frozenset[str] = frozenset()
    not_null: frozenset[str] = frozenset()
    post: Callable[[dict[str, Any]], bool] | None = None
    name: str = "obj"

    def __post_init__(self) -> None:
        unknown = (self.required | self.not_null) - self.fields.keys()
        if unknown:
            raise ValueError(f"{self.name}: required/not_null name no field: {sorted(unknown)}")


Check = Str | Pattern | OneOf | Bool | Instant | Dec | List | Call | Recurring | Obj


# -- what the generated code calls -------------------------------------------------------------


def is_zero(text: str) -> bool:
    """Whether decimal text (already matched) is a zero (``"0"``, ``"-0.00"``, ``"+000"``)."""
    return not text.lstrip("+-").replace(".", "").strip("0")


@functools.lru_cache(maxsize=4096)
def _bounded(text: str, low: int, high: int, unsigned: bool) -> bool:
    """(cached: percentages and DQRs recur across records)"""
    d = Decimal(text)
    return low <= d <= high and not (unsigned and d.is_signed())


@functools.lru_cache(maxsize=8192)
def instant(value: str) -> datetime | None:
    """The instant of RFC 3339 text as the model reads it, else None (cached: periods and
    creation times recur across records)."""
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        return None
    day, clock, fraction, offset = match.groups()
    fraction = (fraction or "")[:7]
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{day}T{clock}{fraction}{offset}")
    except ValueError:
        return None


@functools.lru_cache(maxsize=8192)
def written_instant(value: str) -> bool:
    """Whether RFC 3339 text is an instant the models read and write back as the same text
    (``format_datetime``: UTC, ``Z``, a fraction only when not zero and then six digits).

    That is its form (:data:`_WRITTEN_INSTANT_RE`) and a valid date and time: ``isoformat``
    writes each field back in the digits it was read from (``tests/producers/
    test_fastpath_written.py`` compares it with ``format_datetime(instant(value)) == value``).
    Text in that form is read by :func:`written_datetime` as :func:`instant` reads it."""
    return _WRITTEN_INSTANT_RE.fullmatch(value) is not None and written_datetime(value) is not None


def written_datetime(value: str) -> datetime | None:
    """The instant of text in the written form (``...Z``, no fraction or six digits), as
    :func:`instant` gives it, without its pattern and rebuilt text: ``datetime.fromisoformat``
    (Python 3.11 reads the ``Z``); ``None`` for a date or time that does not exist."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


_WRITTEN_INSTANT_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.(?!000000)[0-9]{6})?Z"
)


WRITTEN_DECIMAL_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
"""Decimal text (:data:`~contracts._types._DECIMAL_RE`) exactly as the models write it back
(``format_decimal(Decimal(text)) == text`` for text of at most :data:`MAX_DECIMAL_CHARS`): no
``+``, no leading zero before the integer digits (``"0.5"``, ``"-0"``, ``"61.40"`` are;
``"+1"``, ``"061.4"`` are not). A subset of ``_DECIMAL_RE``'s matches."""


_MEMO: Final[dict[tuple[int, bytes], bool]] = {}
_MEMO_SIZE: Final = 4096


def _recurring(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """*check*, answered once per distinct value. The key is the value's JSON bytes (orjson,
    ~1 µs), equal only for equal JSON values; the answer is a pure function of the value, so the
    cache changes nothing but the time."""
    tag = id(check)

    def cached(value: Any) -> bool:
        try:
            key = (tag, orjson.dumps(value))
        except orjson.JSONEncodeError:
            return check(value)
        known = _MEMO.get(key)
        if known is None:
            known = check(value)
            if len(_MEMO) >= _MEMO_SIZE:
                _MEMO.clear()
            _MEMO[key] = known
        return known

    return cached


# -- the compiler ------------------------------------------------------------------------------


_DEC_TAIL: Final = {
    "any": "",
    "non_neg": ' and {v}[0] != "-"',
    "positive": ' and {v}[0] != "-" and not IS_ZERO({v})',
    "neg_or_zero": ' and ({v}[0] == "-" or IS_ZERO({v}))',
    "percent": " and BOUNDED({v}, 0, 100, True)",
    "one_to_five": " and BOUNDED({v}, 1, 5, False)",
}


_WRITTEN_DEC: Final[dict[str, tuple[re.Pattern[str], str]]] = {
    "any": (WRITTEN_DECIMAL_RE, ""),
    "non_neg": (re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?"), ""),
    "positive": (re.compile(r"[1-9][0-9]*(?:\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*"), ""),
    "neg_or_zero": (re.compile(r"-(?:0|[1-9][0-9]*)(?:\.[0-9]+)?|0(?:\.0+)?"), ""),
    "percent": (WRITTEN_DECIMAL_RE, _DEC_TAIL["percent"]),
    "one_to_five": (WRITTEN_DECIMAL_RE, _DEC_TAIL["one_to_five"]),
}
"""A written decimal of each kind (:data:`WRITTEN_DECIMAL_RE` with its sign rule, so one
match answers both), and the tail still asked of it (a range)."""


class _Compiler:
    """Emits one module of source: a function per :class:`Obj` (and per list or recurring
    check), and the namespace of constants and helpers they name."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {
            "DEC": _DECIMAL_RE.fullmatch,
            "IS_ZERO": is_zero,
            "BOUNDED": _bounded,
            "INSTANT": instant,
            "WINSTANT": written_instant,
        }
        self.counter = 0

    def constant(self, value: Any, prefix: str) -> str:
        self.counter += 1
        name = f"{prefix}{self.counter}"
        self.namespace[name] = value
        return name

    def expr(self, check: Check, v: str) -> str:
        """A Python expression, true exactly when the value named *v* passes *check*."""
        match check:
            case Str(low, high):
                return f"type({v}) is str and {low} <= len({v}) <= {high}"
            case Pattern(regex, high):
                matcher = self.constant(regex.fullmatch, "RE")
                return f"type({v}) is str and len({v}) <= {high} and {matcher}({v}) is not None"
            case OneOf(choices):
                return f"type({v}) is str and {v} in {self.constant(choices, 'SET')}"
            case Bool():
                return f"type({v}) is bool"
            case Instant(written):
                if written:
                    return f"type({v}) is str and WINSTANT({v})"
                return f"type({v}) is str and INSTANT({v}) is not None"
            case Dec(kind, written):
                if written:  # the sign rule in the pattern, but for a range
                    regex, tail = _WRITTEN_DEC[kind]
                    matcher = self.constant(regex.fullmatch, "WDEC")
                else:
                    matcher, tail = "DEC", _DEC_TAIL[kind]
                return (
                    f"type({v}) is str and len({v}) <= {MAX_DECIMAL_CHARS}"
                    f" and {matcher}({v}) is not None{tail.format(v=v)}"
                )
            case List():
                return f"{self.list_function(check)}({v})"
            case Call(predicate):
                return f"{self.constant(predicate, 'CALL')}({v})"
            case Recurring(inner):
                function = self.function_of(inner)
                return f"{self.constant(_recurring(function), 'MEMO')}({v})"
            case Obj():
                return f"{self.object_function(check)}({v})"
        raise TypeError(f"not a check: {check!r}")  # pragma: no cover - the union is closed

    def function_of(self, check: Check) -> Callable[[Any], bool]:
        """*check* as a callable (compiled in a function of its own)."""
        match check:
            case Call(predicate):
                return predicate
            case Obj():
                name = self.object_function(check)
            case List():
                name = self.list_function(check)
            case _:
                self.counter += 1
                name = f"check{self.counter}"
                self.lines += [f"def {name}(v):", f"    return {self.expr(check, 'v')}", ""]
        return _Late(self.namespace, name)

    def list_function(self, check: List) -> str:
        self.counter += 1
        name = f"list{self.counter}"
        item = self.expr(check.item, "x")
        if not check.unique:
            result = "True"
        elif check.fold_case:
            result = "len({x.lower() for x in v}) == len(v)"
        else:
            result = "len(set(v)) == len(v)"
        self.lines += [
            f"def {name}(v):",
            f"    if type(v) is not list or not {check.low} <= len(v) <= {check.high}:",
            "        return False",
            "    for x in v:",
            f"        if not ({item}):",
            "            return False",
            f"    return {result}",
            "",
        ]
        return name

    def object_function(self, obj: Obj) -> str:
        self.counter += 1
        name = f"{re.sub(r'[^A-Za-z0-9_]', '_', obj.name)}{self.counter}"
        known = self.constant(frozenset(obj.fields), "KNOWN")
        body = [
            f"def {name}(d):",
            f'    """{obj.name}: every field known and valid, required ones present."""',
            "    if type(d) is not dict:",
            "        return False",
            "    k = d.keys()",
            f"    if not k <= {known}:",
            "        return False",
        ]
        if obj.required:
            body += [
                f"    if not {self.constant(obj.required, 'REQUIRED')} <= k:",
                "        return False",
            ]
        for key, check in obj.fields.items():
            test = self.expr(check, "v")
            if key in obj.required:
                body += [
                    f"    v = d[{key!r}]",
                    f"    if v is None or not ({test}):",
                    "        return False",
                ]
            elif key in obj.not_null:
                body += [
                    f"    if {key!r} in d:",
                    f"        v = d[{key!r}]",
                    f"        if v is None or not ({test}):",
                    "            return False",
                ]
            else:
                body += [
                    f"    v = d.get({key!r})",
                    f"    if v is not None and not ({test}):",
                    "        return False",
                ]
        if obj.post is not None:
            body.append(f"    return {self.constant(obj.post, 'POST')}(d)")
        else:
            body.append("    return True")
        self.lines += [*body, ""]
        return name


@dataclass(frozen=True, slots=True)
class _Late:
    """A generated function, looked up once the module's source has been executed."""

    namespace: dict[str, Any]
    name: str

    def __call__(self, value: Any) -> bool:
        result: bool = self.namespace[self.name](value)
        return result


_SOURCES: Final[dict[int, str]] = {}


def compile_object(obj: Obj) -> Callable[[Any], bool]:
    """*obj*'s rules as one generated function (plus one per nested list, object and recurring
    check): ``True`` exactly when every rule of the table holds."""
    compiler = _Compiler()
    name = compiler.object_function(obj)
    source = "\n".join(compiler.lines)
    exec(compile(source, f"<checks for {obj.name}>", "exec"), compiler.namespace)
    # the recurring checks' wrappers call the generated functions through _Late; bind them now
    for key, value in list(compiler.namespace.items()):
        if isinstance(value, _Late):
            compiler.namespace[key] = compiler.namespace[value.name]
    function: Callable[[Any], bool] = compiler.namespace[name]
    _SOURCES[id(function)] = source
    return function


def source_of(function: Callable[[Any], bool]) -> str:
    """The generated source of a function :func:`compile_object` returned."""
    return _SOURCES[id(function)]
