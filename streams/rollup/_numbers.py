"""Exact arithmetic for the roll-up: one explicit :class:`decimal.Context` and input checks.

Every figure is a :class:`decimal.Decimal`, never a binary float (ARCHITECTURE decision 3). All
roll-up arithmetic runs inside :func:`rollup_context`, a copy of :data:`ROLLUP_CONTEXT` with 50
significant digits. Additions and multiplications of the decimal figures suppliers send are exact
at that precision; the only operations that can round are divisions (a declared unit amount of 3,
a conversion from megajoule into kilowatt hour, a mass per declared unit). Because the core always
performs the same operations in the same order for the same inputs (lines in BOM order, metrics
in sorted order), a result has the same digits whatever order its inputs arrived in, even when a
division rounds. Whether anything rounded is recorded on each result (``RollupResult.exact``).

>>> with rollup_context():
...     Decimal(1) / Decimal(3)
Decimal('0.33333333333333333333333333333333333333333333333333')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)

from contracts.errors import RollupError

__all__ = [
    "PRECISION",
    "ROLLUP_CONTEXT",
    "ZERO",
    "check_decimal",
    "check_mapping",
    "rollup_context",
]

PRECISION = 50
"""Significant digits of every roll-up operation."""

ROLLUP_CONTEXT = Context(
    prec=PRECISION,
    rounding=ROUND_HALF_EVEN,
    Emin=-999_999,
    Emax=999_999,
    capitals=1,
    clamp=0,
    flags=[],
    traps=[InvalidOperation, DivisionByZero, Overflow],
)
"""The context all roll-up arithmetic runs in (copied per use, so flags never leak)."""

ZERO = Decimal(0)


@contextmanager
def rollup_context() -> Iterator[Context]:
    """Run the body with a fresh copy of :data:`ROLLUP_CONTEXT` (flags cleared)."""
    with localcontext(ROLLUP_CONTEXT) as ctx:
        ctx.clear_flags()
        yield ctx


def check_decimal(
    value: object,
    path: str,
    *,
    minimum: Decimal | None = None,
    positive: bool = False,
    maximum: Decimal | None = None,
) -> Decimal:
    """Return *value* if it is a finite Decimal within the bounds, else raise :class:`RollupError`.

    Binary floats are refused outright: ``0.1`` is not a decimal and would break exact sums.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal):
        kind = type(value).__name__
        raise RollupError(
            f"'{path}' must be a decimal.Decimal (got {value!r} that is a {kind})", path=path
        )
    if not value.is_finite():
        raise RollupError(f"'{path}' must be a finite decimal (got {value})", path=path)
    if positive and not value > 0:
        raise RollupError(f"'{path}' must be a decimal > 0 (got '{value}')", path=path)
    if minimum is not None and value < minimum:
        raise RollupError(f"'{path}' must be a decimal >= {minimum} (got '{value}')", path=path)
    if maximum is not None and value > maximum:
        raise RollupError(f"'{path}' must be a decimal <= {maximum} (got '{value}')", path=path)
    return value


def check_mapping(value: object, path: str) -> dict[str, Decimal]:
    """A sorted plain-dict copy of a ``str -> Decimal`` mapping (values checked for finiteness)."""
    if not isinstance(value, Mapping):
        raise RollupError(f"'{path}' must be a mapping (got {type(value).__name__})", path=path)
    out: dict[str, Decimal] = {}
    for key in sorted(value):
        if not isinstance(key, str) or not key:
            raise RollupError(f"'{path}' keys must be non-empty strings (got {key!r})", path=path)
        out[key] = check_decimal(value[key], f"{path}.{key}")
    return out
