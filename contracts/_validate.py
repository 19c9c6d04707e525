"""The one seam where pydantic's ``ValidationError`` becomes our :class:`ValidationFailed`.

:func:`check` validates external data into a record and returns a :class:`CheckResult` (never
raises for bad data); :func:`parse` raises. Every pydantic error becomes a
:class:`~contracts.errors.Violation` whose path is written the way the sender wrote the field
(``pcf.fossilGhgEmissions``, ``components[2].quantity``), with a stable code and a message.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Generic, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from pcf_exchange.contracts.errors import ValidationFailed, Violation

__all__ = [
    "CheckResult",
    "HasWarnings",
    "check",
    "field_rules",
    "join_path",
    "model_rules",
    "parse",
    "render_loc",
]

T = TypeVar("T", bound=BaseModel)

MODEL_RULES: Final = "pcfx_model_rules"
"""Custom error type carrying violations relative to the model that raised them."""
FIELD_RULES: Final = "pcfx_field_rules"
"""Custom error type carrying violations relative to the model owning the field validator."""

_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def model_rules(violations: Iterable[Violation]) -> PydanticCustomError:
    """An error for a ``model_validator``: *violations* have paths relative to that model."""
    return PydanticCustomError(
        MODEL_RULES, "record rules failed", {"violations": tuple(violations)}
    )


def field_rules(violations: Iterable[Violation]) -> PydanticCustomError:
    """An error for a ``field_validator``: paths are relative to the model owning the field."""
    return PydanticCustomError(
        FIELD_RULES, "record rules failed", {"violations": tuple(violations)}
    )


def join_path(prefix: str, path: str) -> str:
    if not prefix:
        return path
    if not path:
        return prefix
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


def render_loc(loc: Sequence[int | str]) -> str:
    """``('components', 2, 'quantity')`` -> ``components[2].quantity``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        elif _IDENT.fullmatch(part):
            out = f"{out}.{part}" if out else part
        else:
            out += "[" + repr(part).replace("'", '"') + "]"
    return out


class HasWarnings:
    """Mixin: records that can flag suspicious-but-legal content implement ``warnings()``."""

    def warnings(self) -> list[Violation]:
        return []


@dataclass(frozen=True, slots=True)
class CheckResult(Generic[T]):
    """The outcome of checking one record: the record, or every violation; plus warnings."""

    subject: str
    value: T | None
    violations: tuple[Violation, ...] = ()
    warnings: tuple[Violation, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations

    def __bool__(self) -> bool:
        return self.ok

    def error(self) -> ValidationFailed:
        """The :class:`ValidationFailed` for these violations (there must be some)."""
        return ValidationFailed(self.violations, subject=self.subject)

    def unwrap(self) -> T:
        """The record, or raise :class:`ValidationFailed` listing every violation."""
        if self.violations or self.value is None:
            raise self.error()
        return self.value


# --------------------------------------------------------------------------------------------
# pydantic error -> Violation


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    """The record class inside ``X | None``, ``tuple[X, ...]``, ``dict[str, X]``, ``Annotated``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    if origin is None:
        return None
    args = get_args(annotation)
    if origin is typing.Annotated:
        return _unwrap_model(args[0])
    if origin in (typing.Union, types.UnionType, tuple, list, dict, Mapping, Sequence):
        for arg in args:
            found = _unwrap_model(arg)
            if found is not None:
                return found
    return None


def _field_index(model: type[BaseModel]) -> dict[str, str]:
    """alias -> attribute name for *model*."""
    return {(info.alias or name): name for name, info in model.model_fields.items()}


def _model_at(root: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    current: type[BaseModel] | None = root
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        name = _field_index(current).get(part)
        if name is None:
            # a dict key (e.g. fieldLabels["pcf.x"]): stay on the value type found before
            continue
        current = _unwrap_model(current.model_fields[name].annotation)
    return current


def _unknown_field(root: type[BaseModel], loc: Sequence[int | str]) -> tuple[str, str]:
    key = str(loc[-1])
    model = _model_at(root, loc[:-1])
    if model is None:
        return "unknown_field", "is not a known field"
    hints: Mapping[str, tuple[str, str]] = getattr(model, "unknown_field_hints", {})
    if key in hints:
        return hints[key]
    known = list(_field_index(model))
    lowered = {k.lower(): k for k in known}
    guess = lowered.get(key.lower()) or next(
        iter(difflib.get_close_matches(key, known, 1, 0.75)), None
    )
    title = getattr(model, "json_title", model.__name__)
    if guess:
        return "unknown_field", f"is not a field of {title}; did you mean '{guess}'?"
    return "unknown_field", f"is not a field of {title}"


_SIMPLE: Final[dict[str, tuple[str, str]]] = {
    "string_type": ("type", "must be a string"),
    "bool_type": ("type", "must be true or false"),
    "int_type": ("type", "must be an integer"),
    "int_parsing": ("type", "must be an integer"),
    "int_from_float": ("type", "must be an integer"),
    "list_type": ("type", "must be a list"),
    "tuple_type": ("type", "must be a list"),
    "dict_type": ("type", "must be an object"),
    "model_type": ("type", "must be an object"),
    "model_attributes_type": ("type", "must be an object"),
    "bytes_type": ("type", "must be bytes"),
    "none_required": ("type", "must be null"),
    "frozen_instance": ("frozen", "cannot be changed: records are immutable"),
}


def _convert(root: type[BaseModel], err: Mapping[str, Any]) -> Iterator[Violation]:
    loc: tuple[int | str, ...] = tuple(err["loc"])
    kind: str = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    got = err.get("input", ...)
    if kind in (MODEL_RULES, FIELD_RULES):
        base = render_loc(loc if kind == MODEL_RULES else loc[:-1])
        for v in ctx["violations"]:
            yield Violation(join_path(base, v.path), v.code, v.message, v.got)
        return
    path = render_loc(loc)
    if kind == "missing":
        yield Violation(path, "required", "is required", None)
        return
    if kind == "extra_forbidden":
        code, message = _unknown_field(root, loc)
        yield Violation.of(path, code, message, got)
        return
    if kind == "string_too_short":
        minimum = ctx.get("min_length", 1)
        message = (
            "must not be empty" if minimum == 1 else f"must have at least {minimum} characters"
        )
        yield Violation.of(path, "min_length", message, got)
        return
    if kind == "string_too_long":
        n = len(got) if isinstance(got, str) else "?"
        yield Violation(
            path,
            "max_length",
            f"must be at most {ctx.get('max_length')} characters",
            f"{n} characters",
        )
        return
    if kind == "too_short":
        yield Violation.of(
            path, "min_items", f"must have at least {ctx.get('min_length')} item(s)", got
        )
        return
    if kind == "too_long":
        actual = ctx.get("actual_length", "?")
        yield Violation(
            path, "max_items", f"must have at most {ctx.get('max_length')} items", f"{actual} items"
        )
        return
    if kind in ("literal_error", "enum"):
        yield Violation.of(path, "enum", f"must be one of {ctx.get('expected')}", got)
        return
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {
            "greater_than_equal": ">=",
            "greater_than": ">",
            "less_than_equal": "<=",
            "less_than": "<",
        }[kind]
        bound = next(iter(ctx.values()), "?")
        yield Violation.of(path, "range", f"must be {op} {bound}", got)
        return
    if kind == "string_pattern_mismatch":
        yield Violation.of(path, "pattern", f"must match {ctx.get('pattern')}", got)
        return
    if kind in _SIMPLE:
        code, message = _SIMPLE[kind]
        yield Violation.of(path, code, message, got)
        return
    # our own PydanticCustomError types carry our code and message already
    yield Violation.of(path, kind, str(err["msg"]), got)


def violations_of(root: type[BaseModel], error: ValidationError) -> list[Violation]:
    """Every pydantic error of *error* as violations, in the order pydantic found them."""
    errors = error.errors(include_url=False)
    # pydantic also reports a list as "too short" when its only items failed; the item errors
    # are the real story, so drop that echo.
    item_locs = {
        tuple(e["loc"][:i]) for e in errors for i, p in enumerate(e["loc"]) if isinstance(p, int)
    }
    out: list[Violation] = []
    for err in errors:
        if err["type"] == "too_short" and tuple(err["loc"]) in item_locs:
            continue
        out.extend(_convert(root, err))
    return out


# --------------------------------------------------------------------------------------------
# check / parse


_SUBJECTS: dict[type[BaseModel], str] = {}


def subject_of(model: type[BaseModel]) -> str:
    title: str | None = getattr(model, "json_title", None)
    return _SUBJECTS.setdefault(model, title or model.__name__)


def check(
    model: type[T],
    data: Any,
    *,
    subject: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> CheckResult[T]:
    """Validate external *data* (JSON-shaped, aliases only) into *model*; never raises for it."""
    name = subject or subject_of(model)
    try:
        value = model.model_validate(data, by_alias=True, by_name=False, context=context)
    except ValidationError as exc:
        return CheckResult(name, None, tuple(violations_of(model, exc)))
    warnings: list[Violation] = value.warnings() if isinstance(value, HasWarnings) else []
    return CheckResult(name, value, (), tuple(warnings))


def parse(model: type[T], data: Any, *, subject: str | None = None) -> T:
    """Validate external *data* into *model*; raise :class:`ValidationFailed` with all problems."""
    return check(model, data, subject=subject).unwrap()


class Titled:
    """Mixin naming a record in messages (``json_title``) and refining unknown-field messages."""

    json_title: ClassVar[str]
    unknown_field_hints: ClassVar[Mapping[str, tuple[str, str]]] = {}
